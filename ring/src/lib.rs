//! QXL display device ABI and the device's view of guest memory.
//!
//! This crate knows the guest/device contract of the QXL paravirtual display
//! (`spice/qxl_dev.h`) and nothing about the VMM: it reaches guest memory only through
//! [`vm_memory::GuestMemory`] and returns owned, validated Rust values.
//!
//! - [`abi`]: the packed structures and constants, size- and offset-asserted.
//! - [`memslot`]: QXLPHYSICAL → guest address translation through the guest's memslots.
//! - [`ring`]: command/cursor ring consumer and release ring producer.
//! - [`chunks`]: QXLDataChunk chain reader with length and count caps.
//! - [`parse`]: commands copied out of guest memory once and validated.

pub mod abi;
pub mod chunks;
pub mod memslot;
pub mod parse;
pub mod ring;
