//! The display items the red worker pushes to the Spice server, and the pipe they travel in.
//!
//! The worker renders each guest command into its surfaces; for the primary surface it also
//! publishes what the command did, as a typed [`DisplayItem`], to one bounded [`Pipe`] per
//! subscribed display client. The server takes items from its client's pipe, encodes them and
//! writes them out. Nothing polls: a client hears about a change because the worker drew it.
//!
//! Neither the worker nor the server depends on the other; both depend on this crate.

pub mod frames;
pub mod item;
pub mod pipe;
pub mod rect;
pub mod watch;

pub use frames::{Frame, FrameSource};
pub use item::{DisplayItem, Draw, DrawContent, Head, Monitors, Pixels, SurfaceInfo};
pub use pipe::{Pipe, PipeStats, Popped};
pub use rect::Rect;
pub use watch::Watch;

/// The guest's screen as the server sees it: a source of display items. The VMM implements it
/// over the red worker.
pub trait DisplaySource: Send + Sync + 'static {
    /// Registers `pipe` as a new display client. The worker first pushes the current state
    /// into it (the primary surface, the monitors config, all of its pixels), then every
    /// change, in order. False when there is no worker to subscribe to.
    fn subscribe(&self, pipe: std::sync::Arc<Pipe>) -> bool;

    /// Asks the worker to push the current pixels of the area `pipe` lost when it overflowed
    /// (see [`Pipe::take_resync`]). Called by the consumer when [`Pipe::pop`] says
    /// [`Popped::Resync`]; the answer arrives in the pipe, in order with later items.
    fn resync(&self, pipe: &std::sync::Arc<Pipe>);

    /// A client asked for this monitor layout (its MONITORS_CONFIG, sent through the agent
    /// channel): one rectangle per head, in the client's space, already checked by the server
    /// (at most 64 heads, no rectangle past `u32`). The VMM offers it to the guest's display
    /// driver, as QEMU's qxl does through its ROM. A source without a device ignores it.
    fn client_monitors_config(&self, _heads: &[Head]) {}
}
