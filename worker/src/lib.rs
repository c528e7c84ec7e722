//! The red worker: on its own thread, it takes commands from the QXL device's rings, renders
//! them into surfaces (whose pixels live in the device's BAR memory, as in QEMU), keeps the
//! cursor state, and hands commands back through the release ring.

pub mod seam;
