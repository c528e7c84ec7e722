//! The red worker: on its own thread, it takes commands from the QXL device's rings, renders
//! them into surfaces (whose pixels live in the device's BAR memory, as in QEMU), keeps the
//! cursor state, and hands commands back through the release ring.

pub mod cursor;
pub mod pixel;
pub mod record;
pub mod red;
pub mod region;
pub mod render;
pub mod screendump;
pub mod seam;
pub mod surface;

pub use cursor::{CursorChange, CursorState, shape_argb};
pub use render::{DrawCounts, DrawKind, Limitation, RenderError, RenderStats, Renderer};
pub use screendump::{ScreendumpError, encode_png, surface_rgb};
pub use surface::{Surface, SurfaceError, SurfaceTable};
