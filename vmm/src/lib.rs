//! The `saffron` VMM side: the vfio-user front end for the QXL device, launching QEMU for
//! `saffron run`, and the control socket.

pub mod agent;
pub mod api;
pub mod builtin;
pub mod control;
pub mod intx;
pub mod memfd;
pub mod qemu;
pub mod qmp;
pub mod run;
pub mod signals;
pub mod sound;
pub mod spice;
pub mod vfio_user;
pub mod vga_replay;
