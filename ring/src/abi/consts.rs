//! Numeric constants of the ABI: PCI identity, I/O ports, interrupts, ring sizes and the
//! enumerations carried in command fields.
//!
//! Names follow `spice/qxl_dev.h` (`QXL_*`) and `spice/enums.h` (`SPICE_*`).

// --- PCI identity and revisions -------------------------------------------------------------

/// Red Hat's PCI vendor id, shared by all SPICE devices.
pub const REDHAT_PCI_VENDOR_ID: u16 = 0x1b36;
/// The only device id drivers bind to.
pub const QXL_DEVICE_ID_STABLE: u16 = 0x0100;
/// Reserved for unstable work; no driver binds to it.
pub const QXL_DEVICE_ID_DEVEL: u16 = 0x01ff;

/// spice 0.4 ("qxl-1"): ports 0..7 only.
pub const QXL_REVISION_STABLE_V04: u8 = 0x01;
/// spice 0.6: memslots and surfaces.
pub const QXL_REVISION_STABLE_V06: u8 = 0x02;
/// spice 0.10: asynchronous ports and the IO_CMD interrupt.
pub const QXL_REVISION_STABLE_V10: u8 = 0x03;
/// spice 0.12: monitors config and client fields in the ROM. Linux refuses anything older.
pub const QXL_REVISION_STABLE_V12: u8 = 0x04;
/// Same ABI as V12, but legacy VGA port writes no longer drop the device out of native mode;
/// Linux skips its VGA arbitration for it. Not named in `qxl_dev.h`; QEMU's default.
pub const QXL_REVISION_V12_NO_VGA_TRAP: u8 = 0x05;

// --- Magic values ---------------------------------------------------------------------------

/// "QXRO" read as a little-endian u32; Linux refuses to probe without it.
pub const QXL_ROM_MAGIC: u32 = 0x4f52_5851;
/// "QXRA" read as a little-endian u32, written into the RAM header at reset.
pub const QXL_RAM_MAGIC: u32 = 0x4152_5851;

// --- I/O ports (offset in the I/O BAR; the written byte is the argument) --------------------

pub const QXL_IO_NOTIFY_CMD: u8 = 0;
pub const QXL_IO_NOTIFY_CURSOR: u8 = 1;
pub const QXL_IO_UPDATE_AREA: u8 = 2;
pub const QXL_IO_UPDATE_IRQ: u8 = 3;
pub const QXL_IO_NOTIFY_OOM: u8 = 4;
pub const QXL_IO_RESET: u8 = 5;
pub const QXL_IO_SET_MODE: u8 = 6;
pub const QXL_IO_LOG: u8 = 7;
pub const QXL_IO_MEMSLOT_ADD: u8 = 8;
pub const QXL_IO_MEMSLOT_DEL: u8 = 9;
pub const QXL_IO_DETACH_PRIMARY: u8 = 10;
pub const QXL_IO_ATTACH_PRIMARY: u8 = 11;
pub const QXL_IO_CREATE_PRIMARY: u8 = 12;
pub const QXL_IO_DESTROY_PRIMARY: u8 = 13;
pub const QXL_IO_DESTROY_SURFACE_WAIT: u8 = 14;
pub const QXL_IO_DESTROY_ALL_SURFACES: u8 = 15;
pub const QXL_IO_UPDATE_AREA_ASYNC: u8 = 16;
pub const QXL_IO_MEMSLOT_ADD_ASYNC: u8 = 17;
pub const QXL_IO_CREATE_PRIMARY_ASYNC: u8 = 18;
pub const QXL_IO_DESTROY_PRIMARY_ASYNC: u8 = 19;
pub const QXL_IO_DESTROY_SURFACE_ASYNC: u8 = 20;
pub const QXL_IO_DESTROY_ALL_SURFACES_ASYNC: u8 = 21;
pub const QXL_IO_FLUSH_SURFACES_ASYNC: u8 = 22;
pub const QXL_IO_FLUSH_RELEASE: u8 = 23;
pub const QXL_IO_MONITORS_CONFIG_ASYNC: u8 = 24;
/// Number of defined ports; anything at or above it is a guest bug.
pub const QXL_IO_RANGE_SIZE: u8 = 25;

// --- Interrupt bits (RAM header int_pending / int_mask) -------------------------------------

pub const QXL_INTERRUPT_DISPLAY: u32 = 1 << 0;
pub const QXL_INTERRUPT_CURSOR: u32 = 1 << 1;
pub const QXL_INTERRUPT_IO_CMD: u32 = 1 << 2;
pub const QXL_INTERRUPT_ERROR: u32 = 1 << 3;
pub const QXL_INTERRUPT_CLIENT: u32 = 1 << 4;
pub const QXL_INTERRUPT_CLIENT_MONITORS_CONFIG: u32 = 1 << 5;

// --- Rings ----------------------------------------------------------------------------------

/// Entries of the command ring. The device masks indices with this, never with the
/// guest-writable `num_items`.
pub const QXL_COMMAND_RING_SIZE: u32 = 32;
/// Entries of the cursor ring.
pub const QXL_CURSOR_RING_SIZE: u32 = 32;
/// Entries of the release ring.
pub const QXL_RELEASE_RING_SIZE: u32 = 8;
/// Bytes of the guest's log buffer in the RAM header.
pub const QXL_LOG_BUF_SIZE: usize = 4096;

// --- Memslots -------------------------------------------------------------------------------

/// Number of memslots the device offers (ids 0..7).
pub const QXL_NUM_MEMSLOTS: u8 = 8;
/// Bits of a QXLPHYSICAL holding the slot id (published in the ROM as `slot_id_bits`).
pub const QXL_SLOT_ID_BITS: u8 = 8;
/// Bits of a QXLPHYSICAL holding the slot generation (ROM `slot_gen_bits`).
pub const QXL_SLOT_GEN_BITS: u8 = 8;

// --- Commands -------------------------------------------------------------------------------

pub const QXL_CMD_NOP: u32 = 0;
pub const QXL_CMD_DRAW: u32 = 1;
pub const QXL_CMD_UPDATE: u32 = 2;
pub const QXL_CMD_CURSOR: u32 = 3;
pub const QXL_CMD_MESSAGE: u32 = 4;
pub const QXL_CMD_SURFACE: u32 = 5;

/// Command flag of qxl-1 compat mode: drawables use the QXLCompatDrawable layout.
pub const QXL_COMMAND_FLAG_COMPAT: u32 = 1 << 0;
/// Compat mode with a 16-bpp primary: colours are x555 and need widening.
pub const QXL_COMMAND_FLAG_COMPAT_16BPP: u32 = 2;

// --- Surfaces -------------------------------------------------------------------------------

pub const QXL_SURF_TYPE_PRIMARY: u32 = 0;
pub const QXL_SURF_FLAG_KEEP_DATA: u32 = 1 << 0;

pub const QXL_SURFACE_CMD_CREATE: u8 = 0;
pub const QXL_SURFACE_CMD_DESTROY: u8 = 1;

pub const SPICE_SURFACE_FMT_INVALID: u32 = 0;
pub const SPICE_SURFACE_FMT_1_A: u32 = 1;
pub const SPICE_SURFACE_FMT_8_A: u32 = 8;
pub const SPICE_SURFACE_FMT_16_555: u32 = 16;
#[allow(non_upper_case_globals)]
pub const SPICE_SURFACE_FMT_32_xRGB: u32 = 32;
pub const SPICE_SURFACE_FMT_16_565: u32 = 80;
pub const SPICE_SURFACE_FMT_32_ARGB: u32 = 96;

// --- Drawables ------------------------------------------------------------------------------

pub const QXL_DRAW_NOP: u8 = 0;
pub const QXL_DRAW_FILL: u8 = 1;
pub const QXL_DRAW_OPAQUE: u8 = 2;
pub const QXL_DRAW_COPY: u8 = 3;
pub const QXL_COPY_BITS: u8 = 4;
pub const QXL_DRAW_BLEND: u8 = 5;
pub const QXL_DRAW_BLACKNESS: u8 = 6;
pub const QXL_DRAW_WHITENESS: u8 = 7;
pub const QXL_DRAW_INVERS: u8 = 8;
pub const QXL_DRAW_ROP3: u8 = 9;
pub const QXL_DRAW_STROKE: u8 = 10;
pub const QXL_DRAW_TEXT: u8 = 11;
pub const QXL_DRAW_TRANSPARENT: u8 = 12;
pub const QXL_DRAW_ALPHA_BLEND: u8 = 13;
pub const QXL_DRAW_COMPOSITE: u8 = 14;

pub const QXL_EFFECT_BLEND: u8 = 0;
pub const QXL_EFFECT_OPAQUE: u8 = 1;
pub const QXL_EFFECT_REVERT_ON_DUP: u8 = 2;
pub const QXL_EFFECT_BLACKNESS_ON_DUP: u8 = 3;
pub const QXL_EFFECT_WHITENESS_ON_DUP: u8 = 4;
pub const QXL_EFFECT_NOP_ON_DUP: u8 = 5;
pub const QXL_EFFECT_NOP: u8 = 6;
pub const QXL_EFFECT_OPAQUE_BRUSH: u8 = 7;

pub const SPICE_CLIP_TYPE_NONE: u32 = 0;
pub const SPICE_CLIP_TYPE_RECTS: u32 = 1;

pub const SPICE_BRUSH_TYPE_NONE: u32 = 0;
pub const SPICE_BRUSH_TYPE_SOLID: u32 = 1;
pub const SPICE_BRUSH_TYPE_PATTERN: u32 = 2;

pub const SPICE_MASK_FLAGS_INVERS: u8 = 1 << 0;

pub const SPICE_ROPD_INVERS_SRC: u16 = 1 << 0;
pub const SPICE_ROPD_INVERS_BRUSH: u16 = 1 << 1;
pub const SPICE_ROPD_INVERS_DEST: u16 = 1 << 2;
pub const SPICE_ROPD_OP_PUT: u16 = 1 << 3;
pub const SPICE_ROPD_OP_OR: u16 = 1 << 4;
pub const SPICE_ROPD_OP_AND: u16 = 1 << 5;
pub const SPICE_ROPD_OP_XOR: u16 = 1 << 6;
pub const SPICE_ROPD_OP_BLACKNESS: u16 = 1 << 7;
pub const SPICE_ROPD_OP_WHITENESS: u16 = 1 << 8;
pub const SPICE_ROPD_OP_INVERS: u16 = 1 << 9;
pub const SPICE_ROPD_INVERS_RES: u16 = 1 << 10;
pub const SPICE_ROPD_MASK: u16 = 0x7ff;

pub const SPICE_IMAGE_SCALE_MODE_INTERPOLATE: u8 = 0;
pub const SPICE_IMAGE_SCALE_MODE_NEAREST: u8 = 1;

pub const SPICE_LINE_FLAGS_START_WITH_GAP: u8 = 1 << 2;
pub const SPICE_LINE_FLAGS_STYLED: u8 = 1 << 3;

pub const QXL_PATH_BEGIN: u32 = 1 << 0;
pub const QXL_PATH_END: u32 = 1 << 1;
pub const QXL_PATH_CLOSE: u32 = 1 << 3;
pub const QXL_PATH_BEZIER: u32 = 1 << 4;

pub const SPICE_STRING_FLAGS_RASTER_A1: u16 = 1 << 0;
pub const SPICE_STRING_FLAGS_RASTER_A4: u16 = 1 << 1;
pub const SPICE_STRING_FLAGS_RASTER_A8: u16 = 1 << 2;
pub const SPICE_STRING_FLAGS_RASTER_TOP_DOWN: u16 = 1 << 3;

pub const SPICE_ALPHA_FLAGS_DEST_HAS_ALPHA: u16 = 1 << 0;
pub const SPICE_ALPHA_FLAGS_SRC_SURFACE_HAS_ALPHA: u16 = 1 << 1;

// --- Images ---------------------------------------------------------------------------------

pub const SPICE_IMAGE_TYPE_BITMAP: u8 = 0;
pub const SPICE_IMAGE_TYPE_QUIC: u8 = 1;
pub const SPICE_IMAGE_TYPE_RESERVED: u8 = 2;
pub const SPICE_IMAGE_TYPE_LZ_PLT: u8 = 100;
pub const SPICE_IMAGE_TYPE_LZ_RGB: u8 = 101;
pub const SPICE_IMAGE_TYPE_GLZ_RGB: u8 = 102;
pub const SPICE_IMAGE_TYPE_FROM_CACHE: u8 = 103;
pub const SPICE_IMAGE_TYPE_SURFACE: u8 = 104;
pub const SPICE_IMAGE_TYPE_JPEG: u8 = 105;
pub const SPICE_IMAGE_TYPE_FROM_CACHE_LOSSLESS: u8 = 106;
pub const SPICE_IMAGE_TYPE_ZLIB_GLZ_RGB: u8 = 107;
pub const SPICE_IMAGE_TYPE_JPEG_ALPHA: u8 = 108;
pub const SPICE_IMAGE_TYPE_LZ4: u8 = 109;

/// Image descriptor flag: the guest would like the image cached under its id.
pub const QXL_IMAGE_CACHE: u8 = 1 << 0;
pub const QXL_IMAGE_HIGH_BITS_SET: u8 = 1 << 1;

/// Bitmap flag: `data` points at the pixels themselves, not at a chunk chain.
pub const QXL_BITMAP_DIRECT: u8 = 1 << 0;
/// Bitmap flag: the guest may change the pixels after submission.
pub const QXL_BITMAP_UNSTABLE: u8 = 1 << 1;
/// Bitmap flag: row 0 is the top row (otherwise rows are stored bottom-up).
pub const QXL_BITMAP_TOP_DOWN: u8 = 1 << 2;

pub const SPICE_BITMAP_FMT_INVALID: u8 = 0;
pub const SPICE_BITMAP_FMT_1BIT_LE: u8 = 1;
pub const SPICE_BITMAP_FMT_1BIT_BE: u8 = 2;
pub const SPICE_BITMAP_FMT_4BIT_LE: u8 = 3;
pub const SPICE_BITMAP_FMT_4BIT_BE: u8 = 4;
pub const SPICE_BITMAP_FMT_8BIT: u8 = 5;
pub const SPICE_BITMAP_FMT_16BIT: u8 = 6;
pub const SPICE_BITMAP_FMT_24BIT: u8 = 7;
pub const SPICE_BITMAP_FMT_32BIT: u8 = 8;
pub const SPICE_BITMAP_FMT_RGBA: u8 = 9;
pub const SPICE_BITMAP_FMT_8BIT_A: u8 = 10;

// --- Cursor ---------------------------------------------------------------------------------

pub const QXL_CURSOR_SET: u8 = 0;
pub const QXL_CURSOR_MOVE: u8 = 1;
pub const QXL_CURSOR_HIDE: u8 = 2;
pub const QXL_CURSOR_TRAIL: u8 = 3;

/// Size of the opaque per-command scratch area at the end of QXLCursorCmd.
pub const QXL_CURSUR_DEVICE_DATA_SIZE: usize = 128;

pub const SPICE_CURSOR_TYPE_ALPHA: u16 = 0;
pub const SPICE_CURSOR_TYPE_MONO: u16 = 1;
pub const SPICE_CURSOR_TYPE_COLOR4: u16 = 2;
pub const SPICE_CURSOR_TYPE_COLOR8: u16 = 3;
pub const SPICE_CURSOR_TYPE_COLOR16: u16 = 4;
pub const SPICE_CURSOR_TYPE_COLOR24: u16 = 5;
pub const SPICE_CURSOR_TYPE_COLOR32: u16 = 6;

// --- Monitors -------------------------------------------------------------------------------

/// Heads the ROM's client monitors config can describe.
pub const QXL_CLIENT_MONITORS_MAX: usize = 64;
/// Polynomial of the client monitors config CRC (reflected CRC-32).
pub const CLIENT_MONITORS_CONFIG_CRC32_POLY: u32 = 0xedb8_8320;
