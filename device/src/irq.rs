//! The device's interrupt output.
//!
//! The device only knows a level: asserted or not. How that level reaches the guest (an INTx
//! eventfd with mask/unmask, a polled mode that never signals, an in-process irqchip) is the
//! front end's business.

/// A level-triggered interrupt line driven by the device.
pub trait IrqLine: Send {
    /// Drives the line. Called on every re-evaluation, not only on changes, so an
    /// implementation must tolerate repeats.
    fn set_level(&self, asserted: bool);
}

/// A line that goes nowhere: for devices whose front end polls the level instead.
#[derive(Debug, Default)]
pub struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&self, _asserted: bool) {}
}
