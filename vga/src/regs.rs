//! Port numbers, register indices and bit masks of the VGA and of the Bochs VBE (DISPI)
//! interface, named as in QEMU's `vga_regs.h` / `vga_int.h` so a reader can cross-check.

/// Attribute controller: index/data write port (one port, a flip-flop picks which).
pub const ATT_W: u16 = 0x3c0;
/// Attribute controller: data read.
pub const ATT_R: u16 = 0x3c1;
/// Miscellaneous output write; reads give input status 0.
pub const MIS_W: u16 = 0x3c2;
/// Sequencer index.
pub const SEQ_I: u16 = 0x3c4;
/// Sequencer data.
pub const SEQ_D: u16 = 0x3c5;
/// DAC read index (reads give the DAC state).
pub const PEL_IR: u16 = 0x3c7;
/// DAC write index.
pub const PEL_IW: u16 = 0x3c8;
/// DAC data.
pub const PEL_D: u16 = 0x3c9;
/// Feature control read.
pub const FTC_R: u16 = 0x3ca;
/// Miscellaneous output read.
pub const MIS_R: u16 = 0x3cc;
/// Graphics controller index.
pub const GFX_I: u16 = 0x3ce;
/// Graphics controller data.
pub const GFX_D: u16 = 0x3cf;
/// CRTC index, monochrome decode.
pub const CRT_IM: u16 = 0x3b4;
/// CRTC data, monochrome decode.
pub const CRT_DM: u16 = 0x3b5;
/// Input status 1, monochrome decode (feature control on writes).
pub const IS1_RM: u16 = 0x3ba;
/// CRTC index, colour decode.
pub const CRT_IC: u16 = 0x3d4;
/// CRTC data, colour decode.
pub const CRT_DC: u16 = 0x3d5;
/// Input status 1, colour decode (feature control on writes).
pub const IS1_RC: u16 = 0x3da;

/// Bochs VBE index port.
pub const VBE_DISPI_IOPORT_INDEX: u16 = 0x1ce;
/// Bochs VBE data port.
pub const VBE_DISPI_IOPORT_DATA: u16 = 0x1cf;

/// Misc output: I/O address select (colour ports 0x3dx when set, mono 0x3bx when clear).
pub const MIS_COLOR: u8 = 0x01;

/// Input status 1 bits that the "dumb retrace" toggles on every read.
pub const ST01_V_RETRACE: u8 = 0x08;
pub const ST01_DISP_ENABLE: u8 = 0x01;

// Sequencer.
pub const SEQ_CLOCK_MODE: usize = 0x01;
pub const SEQ_PLANE_WRITE: usize = 0x02;
pub const SEQ_CHARACTER_MAP: usize = 0x03;
pub const SEQ_MEMORY_MODE: usize = 0x04;
pub const SR01_CHAR_CLK_8DOTS: u8 = 0x01;
pub const SR01_DOUBLE_CLOCK: u8 = 0x08;
pub const SR02_ALL_PLANES: u8 = 0x0f;
/// Sequential (not odd/even) addressing on CPU writes.
pub const SR04_SEQ_MODE: u8 = 0x04;
pub const SR04_CHN_4M: u8 = 0x08;

/// Writable bits of each sequencer register (QEMU's `sr_mask`).
pub const SR_MASK: [u8; 8] = [0x03, 0x3d, 0x0f, 0x3f, 0x0e, 0x00, 0x00, 0xff];

// Graphics controller.
pub const GFX_SR_VALUE: usize = 0x00;
pub const GFX_SR_ENABLE: usize = 0x01;
pub const GFX_COMPARE_VALUE: usize = 0x02;
pub const GFX_DATA_ROTATE: usize = 0x03;
pub const GFX_PLANE_READ: usize = 0x04;
pub const GFX_MODE: usize = 0x05;
pub const GFX_MISC: usize = 0x06;
pub const GFX_COMPARE_MASK: usize = 0x07;
pub const GFX_BIT_MASK: usize = 0x08;
pub const GR05_READ_MODE1: u8 = 0x08;
pub const GR05_HOST_ODD_EVEN: u8 = 0x10;
pub const GR06_GRAPHICS_MODE: u8 = 0x01;
pub const GR06_CHAIN_ODD_EVEN: u8 = 0x02;

/// Writable bits of each graphics controller register (QEMU's `gr_mask`).
pub const GR_MASK: [u8; 16] = [
    0x0f, 0x0f, 0x0f, 0x1f, 0x03, 0x7b, 0x0f, 0x0f, 0xff, 0, 0, 0, 0, 0, 0, 0,
];

// CRT controller.
pub const CRTC_H_DISP: usize = 0x01;
pub const CRTC_OVERFLOW: usize = 0x07;
pub const CRTC_MAX_SCAN: usize = 0x09;
pub const CRTC_CURSOR_START: usize = 0x0a;
pub const CRTC_CURSOR_END: usize = 0x0b;
pub const CRTC_START_HI: usize = 0x0c;
pub const CRTC_START_LO: usize = 0x0d;
pub const CRTC_CURSOR_HI: usize = 0x0e;
pub const CRTC_CURSOR_LO: usize = 0x0f;
pub const CRTC_V_SYNC_END: usize = 0x11;
pub const CRTC_V_DISP_END: usize = 0x12;
pub const CRTC_OFFSET: usize = 0x13;
pub const CRTC_UNDERLINE: usize = 0x14;
pub const CRTC_MODE: usize = 0x17;
pub const CRTC_LINE_COMPARE: usize = 0x18;
pub const CRTC_V_TOTAL: usize = 0x06;
pub const CR11_LOCK_CR0_CR7: u8 = 0x80;
/// Double-word addressing.
pub const CR14_DW: u8 = 0x40;
/// Byte (set) or word (clear) addressing.
pub const CR17_WORD_BYTE: u8 = 0x40;

// Attribute controller.
/// Number of attribute registers (0x00-0x14).
pub const ATT_C: usize = 0x15;
pub const ATC_MODE: usize = 0x10;
pub const ATC_OVERSCAN: usize = 0x11;
pub const ATC_PLANE_ENABLE: usize = 0x12;
pub const ATC_PEL: usize = 0x13;
pub const ATC_COLOR_PAGE: usize = 0x14;
/// Attribute index bit: palette address source (the display runs only while it is set).
pub const AR_INDEX_PAS: u8 = 0x20;

// Bochs VBE (DISPI).
pub const VBE_DISPI_INDEX_ID: u16 = 0x0;
pub const VBE_DISPI_INDEX_XRES: u16 = 0x1;
pub const VBE_DISPI_INDEX_YRES: u16 = 0x2;
pub const VBE_DISPI_INDEX_BPP: u16 = 0x3;
pub const VBE_DISPI_INDEX_ENABLE: u16 = 0x4;
pub const VBE_DISPI_INDEX_BANK: u16 = 0x5;
pub const VBE_DISPI_INDEX_VIRT_WIDTH: u16 = 0x6;
pub const VBE_DISPI_INDEX_VIRT_HEIGHT: u16 = 0x7;
pub const VBE_DISPI_INDEX_X_OFFSET: u16 = 0x8;
pub const VBE_DISPI_INDEX_Y_OFFSET: u16 = 0x9;
/// Number of DISPI registers kept.
pub const VBE_DISPI_INDEX_NB: u16 = 0xa;
/// Read-only: video memory size in 64 KiB units.
pub const VBE_DISPI_INDEX_VIDEO_MEMORY_64K: u16 = 0xa;
pub const VBE_DISPI_MAX_XRES: u16 = 16000;
pub const VBE_DISPI_MAX_YRES: u16 = 12000;
pub const VBE_DISPI_MAX_BPP: u16 = 32;
pub const VBE_DISPI_ID0: u16 = 0xb0c0;
pub const VBE_DISPI_ID5: u16 = 0xb0c5;
pub const VBE_DISPI_ENABLED: u16 = 0x01;
pub const VBE_DISPI_GETCAPS: u16 = 0x02;
pub const VBE_DISPI_8BIT_DAC: u16 = 0x20;
pub const VBE_DISPI_NOCLEARMEM: u16 = 0x80;

/// Size of the planar address space that non-VBE scan-out wraps in (QEMU's `VGA_VRAM_SIZE`).
pub const VGA_VRAM_SIZE: u32 = 256 * 1024;
