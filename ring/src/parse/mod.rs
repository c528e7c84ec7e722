//! Commands copied out of guest memory once and validated, as owned Rust values.
//!
//! Each parser reads every guest structure exactly once into a local, checks it, and follows
//! its pointers through the memslots with the size of the object pointed at. What comes out
//! owns its data (clip rectangles, palettes, pixels, cursor shapes), so nothing the guest
//! does afterwards can change what was validated — the double-fetch class of bugs
//! (CVE-2015-3247, CVE-2015-5261, CVE-2021-4207) has nothing to bite on.
//!
//! Surfaces are the exception by design: their pixels stay in guest memory (the device
//! renders into them), so a surface parses to a validated guest address range.
//!
//! A command whose body does not parse must still be released: [`parse_command`] returns
//! the command's release info alongside the error whenever it could be read.

mod body;
mod cursor;
mod drawable;
mod image;
mod misc;
mod surface;
mod text;

pub use body::{
    AlphaBlend, Brush, Composite, CopyBody, DrawBody, Fill, LineAttr, Opaque, QMask, Rop3, Stroke,
    Text, Transparent,
};
pub use cursor::{CursorCmd, CursorCmdKind, CursorShape, CursorType};
pub use drawable::{Clip, Drawable};
pub use image::{Bitmap, BitmapFormat, Image, ImageDescriptor, Palette};
pub use misc::{Head, Message, MonitorsConfig, UpdateCmd, parse_monitors_config};
pub use surface::{
    PrimarySurface, SurfaceCmd, SurfaceCmdKind, SurfaceCreate, SurfaceFormat, SurfaceMemory,
    parse_primary, validate_surface,
};
pub use text::{GlyphString, Path, PathSeg, RasterGlyph};

use thiserror::Error;
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemory, GuestMemoryError};

use crate::abi::{
    QXL_CMD_CURSOR, QXL_CMD_DRAW, QXL_CMD_MESSAGE, QXL_CMD_SURFACE, QXL_CMD_UPDATE, QXLCommand,
    QXLPHYSICAL, QXLPoint, QXLPoint16, QXLPointFix, QXLRect, QXLReleaseInfo,
};
use crate::chunks::{ChainStart, ChunkError, ChunkLimits, read_chain, read_chain_observed};
use crate::memslot::{MemSlotError, MemSlotTable};

// --- Caps on what a single command may make the device copy -------------------------------

/// Most clip rectangles per drawable. Linux sends at most DRM_MODE_FB_DIRTY_MAX_CLIPS (256)
/// per flush and X drivers a few hundred; 16384 (256 KiB of rectangles) is generous and
/// keeps a per-drawable clip loop bounded.
pub const MAX_CLIP_RECTS: u32 = 16_384;

/// Largest surface width or height: 8192, the largest mode of QEMU's qxl and of Linux's
/// qxl driver (`mode_config.max_width/height`) and the largest resolution we accept.
pub const MAX_SURFACE_DIMENSION: u32 = 8192;

/// Largest surface in bytes (`height × |stride|`): an 8192 × 8192 surface at 32 bpp,
/// 256 MiB, also QEMU's cap on the memory holding the primary (vgamem ≤ 256 MiB). Every
/// Spice frame query copies the primary, so this bounds that copy too (spice-server allows
/// up to 2 GiB − 1, which a 2 GiB BAR could otherwise back).
pub const MAX_SURFACE_BYTES: u64 = 8192 * 8192 * 4;

/// Largest image width or height: images are drawn onto surfaces, which are at most
/// [`MAX_SURFACE_DIMENSION`] wide and high; drivers send the damaged area of a surface.
/// `width × height × 4` stays far below 2^31, so 32-bit coordinates and strides cannot
/// overflow in a renderer.
pub const MAX_IMAGE_DIMENSION: u32 = MAX_SURFACE_DIMENSION;

/// Largest bitmap or QUIC payload: one full largest surface ([`MAX_SURFACE_BYTES`]). An
/// image must also fit in the memory the memslots cover, checked before anything is copied.
pub const MAX_IMAGE_BYTES: u64 = MAX_SURFACE_BYTES;

/// Largest cursor width or height. QEMU bounds cursors to 512 since CVE-2021-4206; Linux
/// sends 64 × 64.
pub const MAX_CURSOR_DIMENSION: u16 = 512;

/// Largest cursor shape payload: a 512 × 512 ARGB image (1 MiB) plus room for the masks
/// and palettes of the colour cursor types.
pub const MAX_CURSOR_BYTES: u64 = 2 << 20;

/// Largest path or glyph string payload. Text and strokes come from X/Windows drivers in
/// small pieces; 16 MiB is far above any real one and bounds the copy.
pub const MAX_VECTOR_BYTES: u64 = 16 << 20;

/// Longest guest debug message scanned for its NUL, as spice-server does.
pub const MAX_MESSAGE_BYTES: u64 = 100_000;

/// Most heads a guest monitors config is read for (the ROM's client config holds 64).
pub const MAX_MONITORS: u16 = 64;

/// Most palette entries: bitmap pixels index a palette with at most 8 bits.
pub const MAX_PALETTE_ENTRIES: u16 = 256;

/// Largest line-style array: `style_nseg` is a u8, so at most 255 four-byte segments.
pub const MAX_LINE_STYLE_BYTES: u64 = 255 * 4;

/// Errors parsing guest commands. All of them are guest bugs or hostile input.
#[derive(Debug, Error)]
pub enum ParseError {
    #[error("pointer does not translate")]
    Translate(#[from] MemSlotError),
    #[error("chunk chain is invalid")]
    Chunks(#[from] ChunkError),
    #[error("guest memory access at {addr:#x} failed")]
    Memory {
        addr: u64,
        #[source]
        source: GuestMemoryError,
    },
    #[error("command type {type_} is not handled here")]
    UnknownCommandType { type_: u32 },
    #[error("draw type {type_} is unknown")]
    UnknownDrawType { type_: u8 },
    #[error("clip type {type_} is unknown")]
    UnknownClipType { type_: u32 },
    #[error("{num_rects} clip rectangles exceed the cap of {MAX_CLIP_RECTS}")]
    TooManyClipRects { num_rects: u32 },
    #[error("{num_rects} clip rectangles need {expected} bytes, the chunks hold {found}")]
    ClipRectsSize {
        num_rects: u32,
        expected: u64,
        found: u64,
    },
    #[error("brush type {type_} is unknown")]
    UnknownBrushType { type_: u32 },
    #[error("rectangle {rect:?} is inverted or negative")]
    InvalidRect { rect: Rect },
    #[error("surface id {id} is not below {n_surfaces}")]
    SurfaceIdOutOfRange { id: i64, n_surfaces: u32 },
    #[error("a source image is required but the pointer is 0")]
    MissingImage,
    #[error("image type {type_} cannot come from a guest")]
    UnsupportedImageType { type_: u8 },
    #[error("bitmap format {format} is invalid")]
    InvalidBitmapFormat { format: u8 },
    #[error("bitmap of {width}x{height} is empty or exceeds {MAX_IMAGE_DIMENSION} per side")]
    InvalidImageSize { width: u32, height: u32 },
    #[error("bitmap stride {stride} is below {width} pixels at {bpp} bpp")]
    StrideTooSmall { stride: u32, width: u32, bpp: u32 },
    #[error("bitmap of {size} bytes exceeds {limit}")]
    ImageTooLarge { size: u64, limit: u64 },
    #[error("bitmap needs {expected} bytes of data, the chunks hold {found}")]
    BitmapDataSize { expected: u64, found: u64 },
    #[error("paletted bitmap format {format} has no palette")]
    MissingPalette { format: u8 },
    #[error("palette of {num_ents} entries exceeds {MAX_PALETTE_ENTRIES}")]
    PaletteTooLarge { num_ents: u16 },
    #[error("QUIC image declares {declared} bytes, the chunks hold {found}")]
    QuicDataSize { declared: u32, found: u64 },
    #[error("source area {area:?} is not inside the {width}x{height} source image")]
    SourceAreaOutside { area: Rect, width: u32, height: u32 },
    #[error("styled line has {nseg} style segments but no style pointer")]
    MissingLineStyle { nseg: u8 },
    #[error("path segment of {count} points overruns the {remaining} bytes left")]
    PathOverrun { count: u32, remaining: u64 },
    #[error("glyph string declares {declared} bytes, the chunks hold {found}")]
    StringDataSize { declared: u32, found: u64 },
    #[error("glyph string flags {flags:#x} name no raster depth")]
    StringRasterFlags { flags: u16 },
    #[error("glyph {index} overruns the string data")]
    GlyphOverrun { index: usize },
    #[error("glyph string declares {declared} glyphs, its data holds {found}")]
    GlyphCount { declared: u16, found: usize },
    #[error("surface format {format} is unknown")]
    InvalidSurfaceFormat { format: u32 },
    #[error("surface of {width}x{height} is empty or exceeds {MAX_SURFACE_DIMENSION} per side")]
    InvalidSurfaceSize { width: u32, height: u32 },
    #[error(
        "surface stride {stride} does not fit {width} pixels at {bpp} bpp, or is not a multiple of 4"
    )]
    InvalidSurfaceStride { stride: i32, width: u32, bpp: u32 },
    #[error("surface of {size} bytes exceeds {MAX_SURFACE_BYTES}")]
    SurfaceTooLarge { size: u64 },
    #[error("surface command type {type_} is unknown")]
    UnknownSurfaceCmd { type_: u8 },
    #[error("cursor command type {type_} is unknown")]
    UnknownCursorCmd { type_: u8 },
    #[error("cursor type {type_} is unknown")]
    UnknownCursorType { type_: u16 },
    #[error("cursor of {width}x{height} exceeds {MAX_CURSOR_DIMENSION} per side")]
    CursorTooLarge { width: u16, height: u16 },
    #[error("cursor shape needs {needed} bytes, has {found}")]
    CursorDataTooShort { needed: u64, found: u64 },
    #[error("message has no NUL within {scanned} bytes")]
    UnterminatedMessage { scanned: u64 },
    #[error("monitors config has no heads")]
    NoMonitors,
    #[error("monitors config has {count} heads, more than its own max_allowed {max_allowed}")]
    TooManyMonitors { count: u16, max_allowed: u16 },
}

/// A rectangle in surface coordinates (the ABI's QXLRect, unpacked).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Rect {
    pub top: i32,
    pub left: i32,
    pub bottom: i32,
    pub right: i32,
}

impl From<QXLRect> for Rect {
    fn from(r: QXLRect) -> Self {
        Rect {
            top: r.top,
            left: r.left,
            bottom: r.bottom,
            right: r.right,
        }
    }
}

impl Rect {
    /// Whether all coordinates are ≥ 0 and the rectangle is not inverted (it may be empty).
    pub fn is_well_formed(&self) -> bool {
        self.top >= 0 && self.left >= 0 && self.top <= self.bottom && self.left <= self.right
    }

    fn well_formed(self) -> Result<Rect, ParseError> {
        if self.is_well_formed() {
            Ok(self)
        } else {
            Err(ParseError::InvalidRect { rect: self })
        }
    }
}

/// A point (the ABI's QXLPoint / QXLPoint16, unpacked).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Point {
    pub x: i32,
    pub y: i32,
}

impl From<QXLPoint> for Point {
    fn from(p: QXLPoint) -> Self {
        Point { x: p.x, y: p.y }
    }
}

/// Keeps the raw 28.4 fixed-point values.
impl From<QXLPointFix> for Point {
    fn from(p: QXLPointFix) -> Self {
        Point { x: p.x, y: p.y }
    }
}

impl From<QXLPoint16> for Point {
    fn from(p: QXLPoint16) -> Self {
        Point {
            x: i32::from(p.x),
            y: i32::from(p.y),
        }
    }
}

/// How to hand a command back: its release id, and where its `release_info` is (the device
/// overwrites it with the release chain link).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReleaseInfo {
    pub id: u64,
    pub addr: GuestAddress,
}

/// One piece of guest memory a parse used, as the command recorder keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceEntry {
    /// `bytes` were copied out of guest memory at `phys` (a structure, a chunk header, chunk
    /// data, a palette, ...).
    Copied { phys: QXLPHYSICAL, bytes: Vec<u8> },
    /// `len` bytes at `phys` were validated but stay in guest memory (surface pixels).
    Referenced { phys: QXLPHYSICAL, len: u64 },
}

/// Collects, in order, the guest memory a parse used (see [`Context::with_trace`]).
pub type ReadTrace = core::cell::RefCell<Vec<TraceEntry>>;

/// What parsers need: guest memory, the memslots, and the number of surfaces the ROM offers.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a, M> {
    pub mem: &'a M,
    pub slots: &'a MemSlotTable,
    pub n_surfaces: u32,
    /// When set, every guest read and surface reference is appended here (command recorder).
    pub trace: Option<&'a ReadTrace>,
}

impl<'a, M: GuestMemory> Context<'a, M> {
    pub fn new(mem: &'a M, slots: &'a MemSlotTable, n_surfaces: u32) -> Self {
        Context {
            mem,
            slots,
            n_surfaces,
            trace: None,
        }
    }

    /// The same context, appending what parses read to `trace`.
    pub fn with_trace(self, trace: &'a ReadTrace) -> Self {
        Context {
            trace: Some(trace),
            ..self
        }
    }

    fn record(&self, entry: impl FnOnce() -> TraceEntry) {
        if let Some(t) = self.trace {
            t.borrow_mut().push(entry());
        }
    }

    /// Copies the `T` at `phys` out of guest memory; also returns its guest address.
    fn read<T: ByteValued>(&self, phys: QXLPHYSICAL) -> Result<(T, GuestAddress), ParseError> {
        let addr = self
            .slots
            .translate(phys, core::mem::size_of::<T>() as u64)?;
        let value: T = self
            .mem
            .read_obj(addr)
            .map_err(|source| ParseError::Memory {
                addr: addr.0,
                source,
            })?;
        self.record(|| TraceEntry::Copied {
            phys,
            bytes: value.as_slice().to_vec(),
        });
        Ok((value, addr))
    }

    /// Copies `len` bytes at `phys`.
    fn read_bytes(&self, phys: QXLPHYSICAL, len: u64, max: u64) -> Result<Vec<u8>, ParseError> {
        let bytes = crate::chunks::read_flat(self.mem, self.slots, phys, len, max)?;
        self.record(|| TraceEntry::Copied {
            phys,
            bytes: bytes.clone(),
        });
        Ok(bytes)
    }

    fn chain(&self, start: ChainStart, limits: ChunkLimits) -> Result<Vec<u8>, ParseError> {
        match self.trace {
            None => Ok(read_chain(self.mem, self.slots, start, limits)?),
            Some(t) => Ok(read_chain_observed(
                self.mem,
                self.slots,
                start,
                limits,
                &mut |phys, bytes| {
                    t.borrow_mut().push(TraceEntry::Copied {
                        phys,
                        bytes: bytes.to_vec(),
                    })
                },
            )?),
        }
    }

    /// Translates memory that stays in the guest (surfaces), noting it in the trace.
    fn reference(&self, phys: QXLPHYSICAL, len: u64) -> Result<GuestAddress, ParseError> {
        let addr = self.slots.translate(phys, len)?;
        self.record(|| TraceEntry::Referenced { phys, len });
        Ok(addr)
    }

    fn surface_id(&self, id: u32) -> Result<u32, ParseError> {
        if id < self.n_surfaces {
            Ok(id)
        } else {
            Err(ParseError::SurfaceIdOutOfRange {
                id: i64::from(id),
                n_surfaces: self.n_surfaces,
            })
        }
    }
}

/// A parsed ring entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Draw(Drawable),
    Update(UpdateCmd),
    Message(Message),
    Surface(SurfaceCmd),
    Cursor(CursorCmd),
}

impl Command {
    /// How to hand this command back to the guest.
    pub fn release(&self) -> ReleaseInfo {
        match self {
            Command::Draw(c) => c.release,
            Command::Update(c) => c.release,
            Command::Message(c) => c.release,
            Command::Surface(c) => c.release,
            Command::Cursor(c) => c.release,
        }
    }
}

/// A command that failed to parse, with what is needed to release it if that much could be
/// read.
#[derive(Debug, Error)]
#[error("invalid command {command_type} at {data:#x}")]
pub struct CommandError {
    pub command_type: u32,
    pub data: QXLPHYSICAL,
    /// `None` when not even the release id could be read (or the type has none, as NOP):
    /// such a command cannot be handed back.
    pub release: Option<ReleaseInfo>,
    #[source]
    pub error: ParseError,
}

/// Reads the release info at the start of the command structure at `data`.
pub fn release_info<M: GuestMemory>(
    ctx: &Context<'_, M>,
    data: QXLPHYSICAL,
) -> Result<ReleaseInfo, ParseError> {
    let (info, addr) = ctx.read::<QXLReleaseInfo>(data)?;
    Ok(ReleaseInfo { id: info.id, addr })
}

/// Parses the command a ring entry points at.
pub fn parse_command<M: GuestMemory>(
    ctx: &Context<'_, M>,
    command: &QXLCommand,
) -> Result<Command, CommandError> {
    let (command_type, data) = (command.type_, command.data);
    let fail = |release, error| CommandError {
        command_type,
        data,
        release,
        error,
    };
    let known = matches!(
        command_type,
        QXL_CMD_DRAW | QXL_CMD_UPDATE | QXL_CMD_MESSAGE | QXL_CMD_SURFACE | QXL_CMD_CURSOR
    );
    if !known {
        return Err(fail(
            None,
            ParseError::UnknownCommandType {
                type_: command_type,
            },
        ));
    }
    let release = release_info(ctx, data).map_err(|e| fail(None, e))?;
    let parsed = match command_type {
        QXL_CMD_DRAW => drawable::parse_drawable(ctx, data, release).map(Command::Draw),
        QXL_CMD_UPDATE => misc::parse_update(ctx, data, release).map(Command::Update),
        QXL_CMD_MESSAGE => misc::parse_message(ctx, data, release).map(Command::Message),
        QXL_CMD_SURFACE => surface::parse_surface_cmd(ctx, data, release).map(Command::Surface),
        _ => cursor::parse_cursor_cmd(ctx, data, release).map(Command::Cursor),
    };
    parsed.map_err(|e| fail(Some(release), e))
}

/// Sequential reads of ABI values out of an owned (already copied) buffer.
struct ByteReader<'a> {
    bytes: &'a [u8],
}

impl<'a> ByteReader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        ByteReader { bytes }
    }

    fn remaining(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// The next `len` bytes, or `None` if fewer are left.
    fn take(&mut self, len: u64) -> Option<&'a [u8]> {
        let len = usize::try_from(len).ok()?;
        let (head, tail) = self.bytes.split_at_checked(len)?;
        self.bytes = tail;
        Some(head)
    }

    /// The next `T`, or `None` if fewer bytes are left.
    fn take_obj<T: ByteValued + Default>(&mut self) -> Option<T> {
        self.take(core::mem::size_of::<T>() as u64)
            .map(crate::abi::union_member)
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    pub(crate) use crate::chunks::tests::{BAR, p, put_chunk, setup};
    use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

    /// Writes `value` at BAR offset `offset` of slot 1.
    pub(crate) fn put<T: ByteValued>(mem: &GuestMemoryMmap, offset: u64, value: T) {
        mem.write_obj(value, GuestAddress(BAR + offset)).unwrap();
    }

    /// Writes `bytes` at BAR offset `offset` of slot 1.
    pub(crate) fn put_bytes(mem: &GuestMemoryMmap, offset: u64, bytes: &[u8]) {
        mem.write_slice(bytes, GuestAddress(BAR + offset)).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::{BAR, p, put, put_bytes, setup};
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the guest wrote, parsing any command type ends in a value or a typed
        /// error, never a panic, and carries the release id whenever it could be read.
        #[test]
        fn arbitrary_commands_never_panic(
            bytes in proptest::collection::vec(any::<u8>(), 0..600),
            type_ in 0u32..8,
            offset in prop_oneof![0u64..0x800, (0x10_0000u64 - 64)..0x10_0000],
            inner in 0u64..0x400,
        ) {
            let (mem, slots) = setup();
            put_bytes(&mem, 0x100, &bytes);
            // Give nested pointers (at the usual offsets) a chance to land on the bytes.
            for at in [0x100 + 14, 0x100 + 17 + 16, 0x100 + 123] {
                put(&mem, at, p(0x100 + inner));
            }
            let ctx = Context::new(&mem, &slots, 1024);
            let command = QXLCommand { data: p(offset), type_, padding: 0 };
            match parse_command(&ctx, &command) {
                Ok(parsed) => prop_assert_eq!(parsed.release().addr.0, BAR + offset),
                Err(e) => {
                    if let Some(release) = e.release {
                        prop_assert_eq!(release.addr.0, BAR + offset);
                    }
                }
            }
        }
    }
}
