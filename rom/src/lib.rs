//! What the QXL device shows the guest before any command: the ROM BAR (device description,
//! compat mode table, the client's preferred monitor layout) and the RAM header at the end of
//! BAR0 (magic, interrupt registers, the three rings).
//!
//! - [`rom`]: builds the 8 KiB ROM image from a [`RomConfig`], and restores it on reset.
//! - [`modes`]: the compat mode table, filtered by the size of the surface 0 area.
//! - [`monitors`]: the client monitors config and its CRC.
//! - [`ram`]: RAM header reset values, interrupt registers and the guest's port arguments.

pub mod modes;
pub mod monitors;
pub mod ram;
pub mod rom;

pub use monitors::{ClientMonitorsError, client_monitors_config, client_monitors_crc};
pub use ram::{RamError, RamHeader};
pub use rom::{Rom, RomConfig, RomError};
