//! The QXL guest/device ABI: every structure the device reads from or writes to guest memory,
//! declared once with the names `spice/qxl_dev.h` uses so a reader can cross-check them.
//!
//! All structures are `#[repr(C, packed)]` and little-endian (the only byte order QXL exists
//! for); their sizes and the offsets the device relies on are asserted at compile time.
//! They implement [`vm_memory::ByteValued`] so they can only be moved in and out of guest
//! memory by copy (`read_obj`/`write_obj`), never borrowed in place.

/// Implements `ByteValued` for ABI structs and asserts their size at compile time.
macro_rules! abi_pod {
    ($($ty:ty = $size:expr),* $(,)?) => {
        $(
            // SAFETY: `$ty` is `repr(C, packed)` and made only of integers and arrays of
            // integers or of other such structs: it has no padding, no pointers, and every bit
            // pattern is a valid value, which is what `ByteValued` requires.
            unsafe impl vm_memory::ByteValued for $ty {}
            const _: () = assert!(core::mem::size_of::<$ty>() == $size);
        )*
    };
}

mod basic;
mod consts;
mod cursor;
mod draw;
mod image;
mod monitors;
mod ram;
mod rom;
mod surface;

pub use basic::*;
pub use consts::*;
pub use cursor::*;
pub use draw::*;
pub use image::*;
pub use monitors::*;
pub use ram::*;
pub use rom::*;
pub use surface::*;
