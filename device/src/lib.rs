//! The QXL PCI device, with no VMM inside: a front end (vfio-user server, an in-process VMM)
//! hands it configuration-space and BAR accesses as `(region, offset, bytes)` and gives it the
//! memory behind BAR0/BAR1 and an interrupt line; a worker (`saffron-worker`) consumes its
//! rings through [`DeviceInterface`].

pub mod bus;
pub mod irq;
pub mod memory;
pub mod pci;
pub mod qxl;
mod shared;

pub use irq::IrqLine;
pub use memory::DeviceMemory;
pub use qxl::{ClientMonitorsOutcome, QxlConfig, QxlDevice, QxlError, QxlStats};
pub use shared::{DeviceInterface, SharedStats};
