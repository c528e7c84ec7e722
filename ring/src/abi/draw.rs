//! Drawing commands (QXL_CMD_DRAW): QXLDrawable, its union of bodies, and the helper
//! structures the bodies point at (clip lists, brushes, masks, paths, strings).

use core::mem::{offset_of, size_of};

use super::basic::{
    QXLDataChunk, QXLFIXED, QXLPHYSICAL, QXLPoint, QXLPoint16, QXLRect, QXLReleaseInfo,
};

/// Bytes of the drawable body union (its largest member is [`QXLText`]).
pub const QXL_DRAWABLE_UNION_SIZE: usize = 68;
/// Bytes of the compat drawable body union (largest member [`QXLText`] as well).
pub const QXL_COMPAT_DRAWABLE_UNION_SIZE: usize = 68;

/// Clip of a drawable: `type_` is `SPICE_CLIP_TYPE_*`; for RECTS `data` → [`QXLClipRects`].
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLClip {
    pub type_: u32,
    pub data: QXLPHYSICAL,
}

/// Header of a clip rectangle list; the rectangles are the payload of the inline chunk.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLClipRects {
    pub num_rects: u32,
    pub chunk: QXLDataChunk,
}

/// Pattern variant of a brush.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLPattern {
    /// → QXLImage.
    pub pat: QXLPHYSICAL,
    pub pos: QXLPoint,
}

/// A brush: `type_` is `SPICE_BRUSH_TYPE_*`; `u` is a colour (u32) or a [`QXLPattern`].
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLBrush {
    pub type_: u32,
    pub u: [u8; 16],
}

/// A 1-bpp mask applied to a drawing operation; `bitmap` 0 means no mask.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLQMask {
    /// `SPICE_MASK_FLAGS_*`.
    pub flags: u8,
    pub pos: QXLPoint,
    /// → QXLImage.
    pub bitmap: QXLPHYSICAL,
}

#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLFill {
    pub brush: QXLBrush,
    pub rop_descriptor: u16,
    pub mask: QXLQMask,
}

#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLOpaque {
    pub src_bitmap: QXLPHYSICAL,
    pub src_area: QXLRect,
    pub brush: QXLBrush,
    pub rop_descriptor: u16,
    pub scale_mode: u8,
    pub mask: QXLQMask,
}

/// Body of COPY; BLEND has the same layout.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLCopy {
    /// → QXLImage.
    pub src_bitmap: QXLPHYSICAL,
    /// Rectangle of the source image to draw into the drawable's bbox.
    pub src_area: QXLRect,
    pub rop_descriptor: u16,
    pub scale_mode: u8,
    pub mask: QXLQMask,
}

/// Body of BLEND (`typedef QXLCopy QXLBlend`).
pub type QXLBlend = QXLCopy;

#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLTransparent {
    pub src_bitmap: QXLPHYSICAL,
    pub src_area: QXLRect,
    pub src_color: u32,
    pub true_color: u32,
}

#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLAlphaBlend {
    /// `SPICE_ALPHA_FLAGS_*`.
    pub alpha_flags: u16,
    pub alpha: u8,
    pub src_bitmap: QXLPHYSICAL,
    pub src_area: QXLRect,
}

/// qxl-1 form of ALPHA_BLEND (no flags).
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLCompatAlphaBlend {
    pub alpha: u8,
    pub src_bitmap: QXLPHYSICAL,
    pub src_area: QXLRect,
}

/// Body of COPY_BITS: copy the bbox-sized area at `src_pos` of the same surface to bbox.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLCopyBits {
    pub src_pos: QXLPoint,
}

#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLRop3 {
    pub src_bitmap: QXLPHYSICAL,
    pub src_area: QXLRect,
    pub brush: QXLBrush,
    pub rop3: u8,
    pub scale_mode: u8,
    pub mask: QXLQMask,
}

#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLLineAttr {
    /// `SPICE_LINE_FLAGS_*`.
    pub flags: u8,
    pub join_style: u8,
    pub end_style: u8,
    pub style_nseg: u8,
    pub width: QXLFIXED,
    pub miter_limit: QXLFIXED,
    /// → `style_nseg` QXLFIXED values when STYLED.
    pub style: QXLPHYSICAL,
}

#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLStroke {
    /// → QXLPath.
    pub path: QXLPHYSICAL,
    pub attr: QXLLineAttr,
    pub brush: QXLBrush,
    pub fore_mode: u16,
    pub back_mode: u16,
}

#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLText {
    /// → QXLString.
    pub str_: QXLPHYSICAL,
    pub back_area: QXLRect,
    pub fore_brush: QXLBrush,
    pub back_brush: QXLBrush,
    pub fore_mode: u16,
    pub back_mode: u16,
}

/// Body of BLACKNESS, WHITENESS and INVERS: only a mask.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLBlackness {
    pub mask: QXLQMask,
}

pub type QXLWhiteness = QXLBlackness;
pub type QXLInvers = QXLBlackness;

/// Affine transform of COMPOSITE, in 16.16 fixed point.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLTransform {
    pub t00: u32,
    pub t01: u32,
    pub t02: u32,
    pub t10: u32,
    pub t11: u32,
    pub t12: u32,
}

#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLComposite {
    /// Operator (bits 0-7), filters, repeats and component alpha; see `qxl_dev.h`.
    pub flags: u32,
    pub src: QXLPHYSICAL,
    /// → QXLTransform, may be 0.
    pub src_transform: QXLPHYSICAL,
    /// → QXLImage, may be 0.
    pub mask: QXLPHYSICAL,
    pub mask_transform: QXLPHYSICAL,
    pub src_origin: QXLPoint16,
    pub mask_origin: QXLPoint16,
}

/// Header of a path; `data_size` bytes of [`QXLPathSeg`]s (each followed by its points)
/// are the payload of the inline chunk.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLPath {
    pub data_size: u32,
    pub chunk: QXLDataChunk,
}

/// Header of one path segment; `count` [`super::QXLPointFix`]es follow.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLPathSeg {
    /// `QXL_PATH_*`.
    pub flags: u32,
    pub count: u32,
}

/// Header of a glyph string; `length` glyphs are the payload of the inline chunk.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLString {
    pub data_size: u32,
    /// Number of glyphs.
    pub length: u16,
    /// `SPICE_STRING_FLAGS_*`.
    pub flags: u16,
    pub chunk: QXLDataChunk,
}

/// Header of one glyph; `height * ceil(width * bpp / 8)` bytes of coverage follow.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLRasterGlyph {
    pub render_pos: QXLPoint,
    pub glyph_origin: QXLPoint,
    pub width: u16,
    pub height: u16,
}

/// A native-mode drawing command. The body union `u` is kept as raw bytes; read a member
/// with [`super::union_member`] according to `type_`.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QXLDrawable {
    pub release_info: QXLReleaseInfo,
    /// Destination surface (0 = primary).
    pub surface_id: u32,
    /// `QXL_EFFECT_*`.
    pub effect: u8,
    /// `QXL_DRAW_*` / `QXL_COPY_BITS`.
    pub type_: u8,
    pub self_bitmap: u8,
    pub self_bitmap_area: QXLRect,
    pub bbox: QXLRect,
    pub clip: QXLClip,
    pub mm_time: u32,
    /// Other surfaces this drawing reads (-1 = unused).
    pub surfaces_dest: [i32; 3],
    pub surfaces_rects: [QXLRect; 3],
    pub u: [u8; QXL_DRAWABLE_UNION_SIZE],
}

impl Default for QXLDrawable {
    fn default() -> Self {
        QXLDrawable {
            release_info: QXLReleaseInfo::default(),
            surface_id: 0,
            effect: 0,
            type_: 0,
            self_bitmap: 0,
            self_bitmap_area: QXLRect::default(),
            bbox: QXLRect::default(),
            clip: QXLClip::default(),
            mm_time: 0,
            surfaces_dest: [0; 3],
            surfaces_rects: [QXLRect::default(); 3],
            u: [0; QXL_DRAWABLE_UNION_SIZE],
        }
    }
}

/// The qxl-1 (compat mode) drawing command. Linux never sends it.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QXLCompatDrawable {
    pub release_info: QXLReleaseInfo,
    pub effect: u8,
    pub type_: u8,
    pub bitmap_offset: u16,
    pub bitmap_area: QXLRect,
    pub bbox: QXLRect,
    pub clip: QXLClip,
    pub mm_time: u32,
    pub u: [u8; QXL_COMPAT_DRAWABLE_UNION_SIZE],
}

impl Default for QXLCompatDrawable {
    fn default() -> Self {
        QXLCompatDrawable {
            release_info: QXLReleaseInfo::default(),
            effect: 0,
            type_: 0,
            bitmap_offset: 0,
            bitmap_area: QXLRect::default(),
            bbox: QXLRect::default(),
            clip: QXLClip::default(),
            mm_time: 0,
            u: [0; QXL_COMPAT_DRAWABLE_UNION_SIZE],
        }
    }
}

/// The deprecated UPDATE command.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLUpdateCmd {
    pub release_info: QXLReleaseInfo,
    pub area: QXLRect,
    pub update_id: u32,
    pub surface_id: u32,
}

/// Header of a MESSAGE command; NUL-terminated text of unspecified length follows.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QXLMessage {
    pub release_info: QXLReleaseInfo,
}

abi_pod! {
    QXLClip = 12,
    QXLClipRects = 24,
    QXLPattern = 16,
    QXLBrush = 20,
    QXLQMask = 17,
    QXLFill = 39,
    QXLOpaque = 64,
    QXLCopy = 44,
    QXLTransparent = 32,
    QXLAlphaBlend = 27,
    QXLCompatAlphaBlend = 25,
    QXLCopyBits = 8,
    QXLRop3 = 63,
    QXLLineAttr = 20,
    QXLStroke = 52,
    QXLText = 68,
    QXLBlackness = 17,
    QXLTransform = 24,
    QXLComposite = 44,
    QXLPath = 24,
    QXLPathSeg = 8,
    QXLString = 28,
    QXLRasterGlyph = 20,
    QXLDrawable = 191,
    QXLCompatDrawable = 128,
    QXLUpdateCmd = 32,
    QXLMessage = 8,
}

// Every union member fits in the union bytes.
const _: () = assert!(size_of::<QXLPattern>() <= 16);
const _: () = assert!(size_of::<QXLFill>() <= QXL_DRAWABLE_UNION_SIZE);
const _: () = assert!(size_of::<QXLOpaque>() <= QXL_DRAWABLE_UNION_SIZE);
const _: () = assert!(size_of::<QXLCopy>() <= QXL_DRAWABLE_UNION_SIZE);
const _: () = assert!(size_of::<QXLTransparent>() <= QXL_DRAWABLE_UNION_SIZE);
const _: () = assert!(size_of::<QXLAlphaBlend>() <= QXL_DRAWABLE_UNION_SIZE);
const _: () = assert!(size_of::<QXLCopyBits>() <= QXL_DRAWABLE_UNION_SIZE);
const _: () = assert!(size_of::<QXLRop3>() <= QXL_DRAWABLE_UNION_SIZE);
const _: () = assert!(size_of::<QXLStroke>() <= QXL_DRAWABLE_UNION_SIZE);
const _: () = assert!(size_of::<QXLText>() == QXL_DRAWABLE_UNION_SIZE);
const _: () = assert!(size_of::<QXLBlackness>() <= QXL_DRAWABLE_UNION_SIZE);
const _: () = assert!(size_of::<QXLComposite>() <= QXL_DRAWABLE_UNION_SIZE);

const _: () = assert!(offset_of!(QXLDrawable, surface_id) == 8);
const _: () = assert!(offset_of!(QXLDrawable, effect) == 12);
const _: () = assert!(offset_of!(QXLDrawable, type_) == 13);
const _: () = assert!(offset_of!(QXLDrawable, self_bitmap_area) == 15);
const _: () = assert!(offset_of!(QXLDrawable, bbox) == 31);
const _: () = assert!(offset_of!(QXLDrawable, clip) == 47);
const _: () = assert!(offset_of!(QXLDrawable, mm_time) == 59);
const _: () = assert!(offset_of!(QXLDrawable, surfaces_dest) == 63);
const _: () = assert!(offset_of!(QXLDrawable, surfaces_rects) == 75);
const _: () = assert!(offset_of!(QXLDrawable, u) == 123);
const _: () = assert!(offset_of!(QXLCompatDrawable, bbox) == 28);
const _: () = assert!(offset_of!(QXLCompatDrawable, clip) == 44);
const _: () = assert!(offset_of!(QXLCompatDrawable, u) == 60);
const _: () = assert!(offset_of!(QXLClipRects, chunk) == 4);
const _: () = assert!(offset_of!(QXLFill, rop_descriptor) == 20);
const _: () = assert!(offset_of!(QXLFill, mask) == 22);
const _: () = assert!(offset_of!(QXLOpaque, brush) == 24);
const _: () = assert!(offset_of!(QXLOpaque, mask) == 47);
const _: () = assert!(offset_of!(QXLCopy, src_area) == 8);
const _: () = assert!(offset_of!(QXLCopy, rop_descriptor) == 24);
const _: () = assert!(offset_of!(QXLCopy, scale_mode) == 26);
const _: () = assert!(offset_of!(QXLCopy, mask) == 27);
const _: () = assert!(offset_of!(QXLQMask, pos) == 1);
const _: () = assert!(offset_of!(QXLQMask, bitmap) == 9);
const _: () = assert!(offset_of!(QXLRop3, rop3) == 44);
const _: () = assert!(offset_of!(QXLRop3, mask) == 46);
const _: () = assert!(offset_of!(QXLStroke, attr) == 8);
const _: () = assert!(offset_of!(QXLStroke, brush) == 28);
const _: () = assert!(offset_of!(QXLStroke, fore_mode) == 48);
const _: () = assert!(offset_of!(QXLLineAttr, width) == 4);
const _: () = assert!(offset_of!(QXLLineAttr, style) == 12);
const _: () = assert!(offset_of!(QXLText, fore_brush) == 24);
const _: () = assert!(offset_of!(QXLText, back_brush) == 44);
const _: () = assert!(offset_of!(QXLText, fore_mode) == 64);
const _: () = assert!(offset_of!(QXLAlphaBlend, src_bitmap) == 3);
const _: () = assert!(offset_of!(QXLAlphaBlend, src_area) == 11);
const _: () = assert!(offset_of!(QXLComposite, src_transform) == 12);
const _: () = assert!(offset_of!(QXLComposite, mask) == 20);
const _: () = assert!(offset_of!(QXLComposite, src_origin) == 36);
const _: () = assert!(offset_of!(QXLComposite, mask_origin) == 40);
const _: () = assert!(offset_of!(QXLPath, chunk) == 4);
const _: () = assert!(offset_of!(QXLString, chunk) == 8);
const _: () = assert!(offset_of!(QXLRasterGlyph, width) == 16);
const _: () = assert!(offset_of!(QXLUpdateCmd, update_id) == 24);
