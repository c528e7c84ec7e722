//! What a guest finds at boot in saffron's built-in VMM: a PCI host bridge with configuration
//! mechanism #1 on ports 0xcf8/0xcfc and the functions behind it ([`pci`]), the guest-physical
//! layout with BARs assigned as firmware would ([`layout`]), and the state of a 64-bit entry
//! (identity page tables and a GDT in guest memory, control registers) for freestanding
//! programs ([`entry`]).
//!
//! No KVM and no I/O here: the VMM adapts these to its vCPUs and buses.

pub mod entry;
pub mod layout;
pub mod pci;
