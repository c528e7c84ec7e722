//! The red worker: on its own thread, it takes commands from the QXL device's rings, renders
//! them into surfaces (whose pixels live in the device's BAR memory, as in QEMU), keeps the
//! cursor state, and hands commands back through the release ring.

pub mod cursor;
pub mod heads;
pub mod pixel;
pub mod publish;
pub mod record;
pub mod red;
pub mod region;
pub mod render;
pub mod screendump;
pub mod scroll;
pub mod vga_screen;

pub mod surface;

pub use cursor::{CursorChange, CursorState, CursorSummary, shape_argb};
pub use render::{DrawCounts, DrawKind, Limitation, RenderError, RenderStats, Renderer};
/// The shape types a [`CursorState`] holds, for its users (the VMM's cursor source).
pub use saffron_ring::parse::{CursorShape, CursorType};
pub use screendump::{Area, ScreendumpError, area_bgrx, area_rgb, encode_png, surface_rgb};
pub use surface::{Surface, SurfaceError, SurfaceTable};
