//! GLZ (`SPICE_IMAGE_TYPE_GLZ_RGB`): LZ whose copies may also reach into earlier images.
//!
//! # Stream
//! Header: big-endian magic and version as in LZ, then **one byte** `type | top_down << 4`,
//! width, height, stride (u32 BE, stride = width * bytes per pixel), the image id (u64 BE)
//! and `win_head_image_dist` (u32 BE). Codes follow, as in LZ (literal runs `c < 32`, the
//! same length code and bias), but a copy names its source differently: after the length
//! come the pixel offset and an *image distance*. Image distance 0 means "this image" and the
//! offset is `distance - 1` back; otherwise the source is the image whose id is
//! `id - image distance`, and the offset counts pixels from that image's first pixel. The
//! offset takes 12, 17 or 25 bits and the image distance 6 to 30 bits (see `put_copy`).
//! RGBA is a colour stream and then an alpha stream, each able to reach earlier images.
//!
//! # The dictionary window, as spice-gtk keeps it (src/decode-glz.c)
//! The client keeps every decoded GLZ image (as 32-bit pixels) in a table indexed by
//! `id % slots`. When image `N` has been decoded and added, it looks at the newest image of
//! the run of consecutive ids it has received from id 0 on (`tail_gap - 1`; with one display
//! channel and images arriving in order, that is `N` itself) and frees every image whose id
//! is below `that.id - that.win_head_image_dist`. It never frees anything else, and never
//! looks at the window size it advertised in DISPLAY_INIT: only `win_head_image_dist` bounds
//! its memory. A copy from an image it does not hold makes it wait for that image (another
//! display channel may still bring it), which with one channel means forever.
//!
//! So the server must (a) send every image it encodes, in id order, ids starting at 0 in a
//! session, and (b) only reference ids in `id - win_head_image_dist ..= id`.
//! spice-server's dictionary (glz-encoder-dict.c) makes room for an image of `n` pixels by
//! dropping the oldest images until the pixels of those kept plus `n` fit the window, then
//! sends as `win_head_image_dist` the distance to the oldest image kept (0 if none is), and
//! references only images from that one on, and only images of the same type. [`Encoder`]
//! does exactly that, so what it may reference is exactly what the client still holds, and
//! the client's memory stays within the window too.
//!
//! spice-gtk asks for a window of `glz-window-size / 4` pixels, where the size defaults to
//! half the guest's video RAM clamped to 12..64 MiB, i.e. 3 Mi..16 Mi pixels (users may set up
//! to 128 MiB = 2^25 pixels); spice-html5 asks for 0, meaning no GLZ. This encoder keeps a
//! copy of the pixels of its window (4 bytes each, 5 for RGBA), so it clamps the window to
//! [`MAX_WINDOW_PIXELS`] (spice-gtk's default maximum): a smaller window than the client's is
//! always safe, since the client frees by `win_head_image_dist`, not by its own size.

use std::collections::VecDeque;

use thiserror::Error;

use crate::image::{DecodedImage, ImageRef, PixelFormat};
use crate::lz::{
    AlphaByte, ByteKind, Kind, LzType, MAGIC, Reader, Rgb16Kind, RgbKind, StreamError, Target,
    VERSION, Whole, alpha_keys, colour_keys, common_len, hash32, keys_to_pixels, local_copy,
    plausible, put_len, put_literals,
};

/// The largest window (in pixels) an [`Encoder`] or [`Decoder`] uses: 16 Mi pixels, what
/// spice-gtk asks for at most by default. Memory for the window is at most 4 bytes per pixel
/// (5 for RGBA images) plus a fixed 2 MiB hash table (4 MiB once RGBA images are seen).
pub const MAX_WINDOW_PIXELS: u32 = 1 << 24;
/// Bytes of the GLZ header.
pub const HEADER_LEN: usize = 33;
/// Offsets (same-image distance - 1, or position in an earlier image) must stay below this.
const MAX_PIXEL_OFFSET: usize = 1 << 25;
/// The farthest image distance spice-server codes (the long-offset form holds 24 bits).
const MAX_IMAGE_DIST: u64 = (1 << 24) - 1;
/// log2 of the hash table entries (u64 each): 2 MiB.
const HASH_BITS: u32 = 18;

/// A hash table entry: the low 32 bits of a global position, and the full 32-bit hash of
/// the three keys there. With a window of millions of pixels most candidates lie in images
/// long out of the cache; comparing the stored hash first avoids touching them unless the
/// three keys almost surely match.
#[inline(always)]
fn entry(pos: u64, hash: u32) -> u64 {
    u64::from(hash) << 32 | (pos & 0xffff_ffff)
}

/// Why an image was not GLZ-encoded (the caller then sends it another way).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum EncodeError {
    #[error("image of {pixels} pixels does not fit a GLZ window of {window} pixels")]
    TooBigForWindow { pixels: u64, window: u32 },
}

/// Why a GLZ payload was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("{len} bytes are too short for the {HEADER_LEN}-byte GLZ header")]
    ShortHeader { len: usize },
    #[error("bad magic {0:#010x} (GLZ uses LZ's 0x20205a4c)")]
    BadMagic(u32),
    #[error("unsupported version {0:#010x}")]
    BadVersion(u32),
    #[error("GLZ image type {0} is not RGB16, RGB24, RGB32 or RGBA")]
    UnsupportedType(u8),
    #[error("image of {width}x{height} is empty")]
    Empty { width: u32, height: u32 },
    #[error("stride {stride} of a {width}-pixel {ty:?} row should be {expected}")]
    BadStride {
        ty: LzType,
        width: u32,
        stride: u32,
        expected: u64,
    },
    #[error("image of {width}x{height} has more than the {max} pixels allowed")]
    TooManyPixels { width: u32, height: u32, max: u64 },
    #[error("image of {pixels} pixels is larger than our window of {window}")]
    LargerThanWindow { pixels: u64, window: u32 },
    #[error("{pixels} pixels cannot come out of a {len}-byte stream")]
    ImplausibleSize { pixels: u64, len: usize },
    #[error("image id {id} does not follow the previous id {last}")]
    IdNotIncreasing { id: u64, last: u64 },
    #[error("image {id} says the window starts {dist} images earlier, before id 0")]
    HeadBeforeZero { id: u64, dist: u32 },
    #[error("image {id} copies from image {wanted}, which we do not hold")]
    MissingImage { id: u64, wanted: u64 },
    #[error("image {id} ({ty:?}) copies from image {wanted} of type {wanted_ty:?}")]
    TypeMismatch {
        id: u64,
        ty: LzType,
        wanted: u64,
        wanted_ty: LzType,
    },
    #[error(
        "copy of {len} pixels at offset {offset} of image {wanted} ({size} pixels) runs past it"
    )]
    SourceOverrun {
        wanted: u64,
        offset: u64,
        len: u64,
        size: u64,
    },
    #[error("{count} bytes left after the last pixel")]
    TrailingBytes { count: usize },
    #[error("keeping images {first}..={last} ({held} pixels) exceeds our window of {window}")]
    WindowOverflow {
        first: u64,
        last: u64,
        held: u64,
        window: u32,
    },
    #[error(transparent)]
    Stream(#[from] StreamError),
}

/// Bytes a copy's source takes after the length code (what spice-server's
/// `get_encode_ref_size` counts): decides whether a short copy is worth it.
fn copy_cost(image_dist: u64, offset: usize) -> usize {
    if offset < 4096 {
        match image_dist {
            0..64 => 3,
            64..16384 => 4,
            16384..4_194_304 => 5,
            _ => 6,
        }
    } else {
        let base = match image_dist {
            0 => 3,
            1..256 => 4,
            256..65536 => 5,
            _ => 6,
        };
        base + usize::from(offset >= 1 << 17)
    }
}

/// Whether a copy of `len` pixels costing `cost` bytes beats sending them as literals.
#[inline(always)]
fn worth<K: Kind>(len: usize, cost: usize) -> bool {
    len > K::BIAS && len * K::LIT > cost
}

/// Appends a GLZ copy of `len` pixels. `offset` is `distance - 1` when `image_dist` is 0,
/// else the position in the earlier image.
///
/// Control byte: length code (3 bits), a flag for offsets of 4096 and more, the low 4
/// offset bits. Then offset bits 4..12. Short offsets: then a byte whose top two bits say
/// how many more bytes the image distance takes (0..3) and whose low 6 bits are the distance's
/// low bits. Long offsets: that byte holds the byte count (top two bits), a flag for offsets
/// of 2^17 and more, and offset bits 12..17; then the image distance bytes (little end
/// first), then offset bits 17..25 if flagged.
fn put_copy<K: Kind>(out: &mut Vec<u8>, len: usize, image_dist: u64, offset: usize) {
    let short = offset < 4096;
    let low5 = if short { 0 } else { 16 } | (offset & 15) as u8;
    put_len::<K>(out, len, low5);
    out.push((offset >> 4) as u8);
    let d = image_dist;
    if short {
        let low = (d & 63) as u8;
        match d {
            0..64 => out.push(low),
            64..16384 => out.extend_from_slice(&[0x40 | low, (d >> 6) as u8]),
            16384..4_194_304 => {
                out.extend_from_slice(&[0x80 | low, (d >> 6) as u8, (d >> 14) as u8]);
            }
            _ => out.extend_from_slice(&[
                0xc0 | low,
                (d >> 6) as u8,
                (d >> 14) as u8,
                (d >> 22) as u8,
            ]),
        }
    } else {
        let long = offset >= 1 << 17;
        let top = if long { 32 } else { 0 } | ((offset >> 12) & 31) as u8;
        match d {
            0 => out.push(top),
            1..256 => out.extend_from_slice(&[0x40 | top, d as u8]),
            256..65536 => out.extend_from_slice(&[0x80 | top, d as u8, (d >> 8) as u8]),
            _ => out.extend_from_slice(&[0xc0 | top, d as u8, (d >> 8) as u8, (d >> 16) as u8]),
        }
        if long {
            out.push((offset >> 17) as u8);
        }
    }
}

/// How densely the pixels of a copy are re-entered in the hash table (see [`compress`]): a
/// later image finds a moved copy within this many positions of trying.
const REHASH_STEP: usize = 4;

/// An image the encoder may still reference.
struct Held {
    id: u64,
    /// Global position of its first pixel (positions count every pixel ever added).
    base: u64,
    ty: LzType,
    /// Colour keys, as [`colour_keys`] makes them.
    keys: Vec<u32>,
    /// Alpha keys (RGBA images only).
    alpha: Vec<u32>,
}

impl Held {
    fn pixels(&self) -> u64 {
        self.keys.len() as u64
    }
}

/// What one compression pass may reference.
struct Scope<'a> {
    held: &'a VecDeque<Held>,
    /// Global position of the oldest pixel still referable.
    min_base: u64,
    cur_base: u64,
    cur_id: u64,
    ty: LzType,
    /// Pixels a row of the image being encoded.
    width: usize,
}

impl Scope<'_> {
    /// The held image containing global position `g` (below `cur_base`).
    fn find(&self, g: u64) -> Option<&Held> {
        let i = self.held.partition_point(|h| h.base + h.pixels() <= g);
        self.held.get(i).filter(|h| h.base <= g)
    }
}

/// Rows sampled to find a vertical move, and the step between the pixels of a row that
/// make its signature (prime, so it does not fall in step with character cells).
const SHIFT_SAMPLE_ROWS: usize = 32;
const SHIFT_COLUMN_STEP: usize = 7;

/// By how many rows `cur` is `prev` moved down (negative: up), when most sampled rows of
/// `cur` that are unique in `prev` say the same; `None` when they do not agree or nothing
/// moved. Both images are `width` pixels wide and equally tall.
fn vertical_shift(prev: &[u32], cur: &[u32], width: usize) -> Option<isize> {
    use std::collections::HashMap;
    if width < SHIFT_COLUMN_STEP || prev.len() != cur.len() {
        return None;
    }
    let rows = cur.len() / width;
    if rows < 8 {
        return None;
    }
    let signature = |img: &[u32], row: usize| -> u64 {
        img[row * width..(row + 1) * width]
            .iter()
            .step_by(SHIFT_COLUMN_STEP)
            .fold(0xcbf2_9ce4_8422_2325u64, |h, k| {
                (h ^ u64::from(*k)).wrapping_mul(0x0100_0000_01b3)
            })
    };
    // Each signature of `prev` with its row, or None when several rows share it (blank rows).
    let mut at: HashMap<u64, Option<usize>> = HashMap::with_capacity(rows);
    for row in 0..rows {
        at.entry(signature(prev, row))
            .and_modify(|r| *r = None)
            .or_insert(Some(row));
    }
    let mut votes: HashMap<isize, usize> = HashMap::new();
    let step = (rows / SHIFT_SAMPLE_ROWS).max(1);
    for row in (0..rows).step_by(step) {
        if let Some(Some(from)) = at.get(&signature(cur, row)) {
            *votes.entry(row as isize - *from as isize).or_insert(0) += 1;
        }
    }
    let (dy, n) = votes.into_iter().max_by_key(|(_, n)| *n)?;
    (dy != 0 && n >= 2).then_some(dy)
}

/// One GLZ stream over `keys` (colour or alpha, chosen by `source`).
///
/// Besides the hash candidate, each position tries the "repeat" candidate: the image and
/// relative position the last cross-image copy came from, which starts as the same spot in
/// the newest earlier image of the same type and size. Screen updates often resend an area
/// that barely changed, and a single-entry hash table mostly forgets where the old copy was
/// (its entries point at the newest occurrence of each 3-pixel pattern).
fn compress<K: Kind>(
    scope: &Scope<'_>,
    keys: &[u32],
    source: fn(&Held) -> &[u32],
    htab: &mut [u64],
    out: &mut Vec<u8>,
) {
    let n = keys.len();
    let (mut pos, mut lit, mut misses) = (0usize, 0usize, 0usize);
    // (image, its offset minus our position)
    let mut rep: Option<(&Held, isize)> = scope
        .held
        .iter()
        .rev()
        .find(|h| {
            h.ty == scope.ty && h.pixels() == n as u64 && scope.cur_id - h.id <= MAX_IMAGE_DIST
        })
        .map(|h| (h, 0));
    // A scrolled screen: the same picture moved up or down by whole rows. Text repeats its
    // glyphs, so the hash table's newest occurrence of a pattern is mostly in the image being
    // encoded, never the moved copy; finding the move by rows offers it directly.
    let scroll = rep.and_then(|(prev, _)| {
        let dy = vertical_shift(source(prev), keys, scope.width)?;
        Some((prev, -dy * scope.width as isize))
    });
    while pos + 3 <= n {
        let k0 = keys[pos];
        // (length, image distance, offset, source image)
        let mut found: (usize, u64, usize, Option<&Held>) = (0, 0, 0, None);
        if pos > 0 && keys[pos - 1] == k0 && keys[pos + 1] == k0 && keys[pos + 2] == k0 {
            let len = 3 + keys[pos + 3..].iter().take_while(|&&k| k == k0).count();
            found = (len, 0, 0, None);
        } else {
            if let Some((img, delta)) = rep {
                let offset = pos as isize + delta;
                let src = source(img);
                if offset >= 0 && (offset as usize) < src.len() {
                    let offset = offset as usize;
                    let len = common_len(&src[offset..], &keys[pos..]);
                    let dist = scope.cur_id - img.id;
                    if worth::<K>(len, copy_cost(dist, offset)) {
                        found = (len, dist, offset, Some(img));
                    }
                }
            }
            if let Some((img, delta)) = scroll
                && rep.is_none_or(|(_, d)| d != delta)
            {
                let offset = pos as isize + delta;
                let src = source(img);
                if offset >= 0 && (offset as usize) < src.len() {
                    let offset = offset as usize;
                    let len = common_len(&src[offset..], &keys[pos..]);
                    let dist = scope.cur_id - img.id;
                    if len > found.0 && worth::<K>(len, copy_cost(dist, offset)) {
                        found = (len, dist, offset, Some(img));
                    }
                }
            }
            let hash = hash32(k0, keys[pos + 1], keys[pos + 2]);
            let h = (hash >> (32 - HASH_BITS)) as usize;
            let g_cur = scope.cur_base + pos as u64;
            let old = htab[h];
            let age = u64::from((g_cur as u32).wrapping_sub(old as u32));
            htab[h] = entry(g_cur, hash);
            if (old >> 32) as u32 == hash && age != 0 && age <= g_cur - scope.min_base {
                let g = g_cur - age;
                if g >= scope.cur_base {
                    let offset = (age - 1) as usize;
                    if offset < MAX_PIXEL_OFFSET {
                        let from = (g - scope.cur_base) as usize;
                        let len = common_len(&keys[from..], &keys[pos..]);
                        if len > found.0 && worth::<K>(len, copy_cost(0, offset)) {
                            found = (len, 0, offset, None);
                        }
                    }
                } else if let Some(img) = scope.find(g) {
                    let dist = scope.cur_id - img.id;
                    if img.ty == scope.ty && dist <= MAX_IMAGE_DIST {
                        let offset = (g - img.base) as usize;
                        let len = common_len(&source(img)[offset..], &keys[pos..]);
                        if len > found.0 && worth::<K>(len, copy_cost(dist, offset)) {
                            found = (len, dist, offset, Some(img));
                        }
                    }
                }
            }
        }
        let (len, dist, offset, img) = found;
        if len == 0 {
            misses += 1;
            pos += 1 + (misses >> 6);
            continue;
        }
        misses = 0;
        if let Some(img) = img {
            rep = Some((img, offset as isize - pos as isize));
        }
        put_literals::<K>(out, &keys[lit..pos]);
        put_copy::<K>(out, len, dist, offset);
        let end = pos + len;
        // Re-hash the copied pixels sparsely (every REHASH_STEP-th position, and the last
        // two) so this image becomes the newest place its content is found. Without it,
        // content that is only ever copied forward (a scrolled screen) keeps hash entries
        // pointing at the image it first appeared in, and every match is lost when that
        // image leaves the window.
        let mut p = pos + REHASH_STEP;
        while p + 3 <= n && p < end {
            let hash = hash32(keys[p], keys[p + 1], keys[p + 2]);
            htab[(hash >> (32 - HASH_BITS)) as usize] = entry(scope.cur_base + p as u64, hash);
            p += REHASH_STEP;
        }
        for p in [end - 2, end - 1] {
            if p > pos && p + 3 <= n {
                let hash = hash32(keys[p], keys[p + 1], keys[p + 2]);
                htab[(hash >> (32 - HASH_BITS)) as usize] = entry(scope.cur_base + p as u64, hash);
            }
        }
        pos = end;
        lit = end;
    }
    put_literals::<K>(out, &keys[lit..]);
}

fn put_header(out: &mut Vec<u8>, image: &ImageRef<'_>, ty: LzType, id: u64, head_dist: u32) {
    let width = image.width();
    let stride = width * image.format().bytes_per_pixel() as u32;
    out.extend_from_slice(&MAGIC.to_be_bytes());
    out.extend_from_slice(&VERSION.to_be_bytes());
    // Always top-down.
    out.push(ty as u8 | 1 << 4);
    out.extend_from_slice(&width.to_be_bytes());
    out.extend_from_slice(&image.height().to_be_bytes());
    out.extend_from_slice(&stride.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&head_dist.to_be_bytes());
}

/// A client's GLZ dictionary, server side. One per client session: spice-gtk shares one
/// window among all its display channels, so they must share this encoder too. Encode an
/// image only when it is about to be sent, and send every image encoded: the client frees
/// images only once all ids up to the newest have arrived, and a copy from an image that
/// never arrives makes it wait forever. With several channels, a copy from an image still
/// queued on another channel makes the client wait for it, which is correct but stalls.
pub struct Encoder {
    window: u32,
    next_id: u64,
    next_base: u64,
    held: VecDeque<Held>,
    held_pixels: u64,
    htab: Vec<u64>,
    atab: Vec<u64>,
}

impl Encoder {
    /// A dictionary for a client that asked for `window_pixels` (DISPLAY_INIT's
    /// `glz_dictionary_window_size`), clamped to [`MAX_WINDOW_PIXELS`]. A window of 0 (what
    /// spice-html5 sends) makes every [`encode`](Self::encode) fail: no GLZ for that client.
    pub fn new(window_pixels: u32) -> Encoder {
        Encoder {
            window: window_pixels.min(MAX_WINDOW_PIXELS),
            next_id: 0,
            next_base: 0,
            held: VecDeque::new(),
            held_pixels: 0,
            htab: Vec::new(),
            atab: Vec::new(),
        }
    }

    /// The window in use (the client's, clamped).
    pub fn window_pixels(&self) -> u32 {
        self.window
    }

    /// The id the next image will get.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Ids of the images the next image may reference (oldest first), before the room for
    /// that image is made.
    pub fn held_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.held.iter().map(|h| h.id)
    }

    /// Forgets every image, for a new client session: ids restart at 0, as spice-gtk expects
    /// after it clears its window on connecting (its `tail_gap` restarts at 0 and it frees
    /// images only once ids from 0 on have all arrived). Within a session there is no
    /// message that makes the client forget its window, so never call this mid-session.
    /// (spice-gtk's clear does not reset the id below which it frees images, so after a
    /// reconnection it keeps images longer than needed until the new ids pass the old ones;
    /// that costs the client memory, never correctness.)
    pub fn reset(&mut self) {
        self.next_id = 0;
        self.held.clear();
        self.held_pixels = 0;
        // Keep global positions growing: old hash entries then point outside the window.
        self.htab.fill(0);
        self.atab.fill(0);
    }

    /// Encodes `image` as a GLZ_RGB payload (RGB32, RGBA, RGB24 or RGB16 by its format) and
    /// adds it to the dictionary. An image of at least the window's size is refused
    /// (spice-server does the same) and changes nothing.
    pub fn encode(&mut self, image: &ImageRef<'_>) -> Result<Vec<u8>, EncodeError> {
        let pixels = u64::from(image.width()) * u64::from(image.height());
        if pixels >= u64::from(self.window) {
            return Err(EncodeError::TooBigForWindow {
                pixels,
                window: self.window,
            });
        }
        // Make room: the oldest images go first, exactly as spice-server's dictionary does.
        while self.held_pixels + pixels > u64::from(self.window) {
            let Some(old) = self.held.pop_front() else {
                break;
            };
            self.held_pixels -= old.pixels();
        }
        let id = self.next_id;
        // The distance fits: there are fewer held images than window pixels (< 2^24).
        let head_dist = self.held.front().map_or(0, |h| (id - h.id) as u32);
        let ty = LzType::for_format(image.format());
        if self.htab.is_empty() {
            self.htab = vec![0; 1 << HASH_BITS];
        }
        let keys = colour_keys(image);
        let mut out = Vec::with_capacity(HEADER_LEN + keys.len() + 64);
        put_header(&mut out, image, ty, id, head_dist);
        let scope = Scope {
            held: &self.held,
            min_base: self.held.front().map_or(self.next_base, |h| h.base),
            cur_base: self.next_base,
            cur_id: id,
            ty,
            width: image.width() as usize,
        };
        let mut alpha = Vec::new();
        match ty {
            LzType::Rgb16 => {
                compress::<Rgb16Kind>(&scope, &keys, |h| &h.keys, &mut self.htab, &mut out)
            }
            _ => compress::<RgbKind>(&scope, &keys, |h| &h.keys, &mut self.htab, &mut out),
        }
        if ty == LzType::Rgba {
            if self.atab.is_empty() {
                self.atab = vec![0; 1 << HASH_BITS];
            }
            alpha = alpha_keys(image);
            compress::<ByteKind>(&scope, &alpha, |h| &h.alpha, &mut self.atab, &mut out);
        }
        self.held.push_back(Held {
            id,
            base: self.next_base,
            ty,
            keys,
            alpha,
        });
        self.held_pixels += pixels;
        self.next_id += 1;
        self.next_base += pixels;
        Ok(out)
    }
}

/// A decoded image kept for later references: 32-bit pixels as spice-gtk keeps them
/// (B, G, R, and alpha or whatever a copy brought; RGB16 images keep their x555 value).
struct Kept {
    id: u64,
    ty: LzType,
    px: Vec<u32>,
}

/// The client side of a GLZ dictionary (our library client, tests and fuzzers).
pub struct Decoder {
    window: u32,
    kept: VecDeque<Kept>,
    last_id: Option<u64>,
}

/// Whether pixels of `a` images may be copied into `b` images: spice-gtk keeps every type
/// as 32-bit pixels, so only our RGB16 (kept as x555) differs.
fn compatible(a: LzType, b: LzType) -> bool {
    (a == LzType::Rgb16) == (b == LzType::Rgb16)
}

struct Parsed {
    ty: LzType,
    top_down: bool,
    width: u32,
    height: u32,
    id: u64,
    head_dist: u32,
}

fn parse_header(data: &[u8]) -> Result<Parsed, DecodeError> {
    if data.len() < HEADER_LEN {
        return Err(DecodeError::ShortHeader { len: data.len() });
    }
    let be = |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    if be(0) != MAGIC {
        return Err(DecodeError::BadMagic(be(0)));
    }
    if be(4) != VERSION {
        return Err(DecodeError::BadVersion(be(4)));
    }
    let tb = data[8];
    let ty = match LzType::from_wire(u32::from(tb & 15)) {
        Some(t @ (LzType::Rgb16 | LzType::Rgb24 | LzType::Rgb32 | LzType::Rgba)) => t,
        _ => return Err(DecodeError::UnsupportedType(tb & 15)),
    };
    let (width, height, stride) = (be(9), be(13), be(17));
    if width == 0 || height == 0 {
        return Err(DecodeError::Empty { width, height });
    }
    let expected = u64::from(width) * ty.rgb_bytes_per_pixel().unwrap_or(4) as u64;
    if u64::from(stride) != expected {
        return Err(DecodeError::BadStride {
            ty,
            width,
            stride,
            expected,
        });
    }
    Ok(Parsed {
        ty,
        top_down: tb >> 4 != 0,
        width,
        height,
        id: u64::from(be(21)) << 32 | u64::from(be(25)),
        head_dist: be(29),
    })
}

/// Decodes one GLZ stream filling `px`.
fn decompress<K: Kind, T: Target>(
    r: &mut Reader<'_>,
    px: &mut [u32],
    kept: &VecDeque<Kept>,
    id: u64,
    ty: LzType,
) -> Result<(), DecodeError> {
    let total = px.len();
    let mut op = 0usize;
    while op < total {
        let ctrl = r.byte()?;
        if ctrl < 32 {
            let count = usize::from(ctrl) + 1;
            r.literals::<K, T>(px, op, count)?;
            op += count;
            continue;
        }
        let len = r.length::<K>(ctrl)?;
        let mut offset = usize::from(ctrl & 15) | usize::from(r.byte()?) << 4;
        let b = r.byte()?;
        let extra = b >> 6;
        let mut dist = 0u64;
        if ctrl & 16 == 0 {
            dist = u64::from(b & 63);
            for i in 0..extra {
                dist |= u64::from(r.byte()?) << (6 + 8 * i);
            }
        } else {
            offset |= usize::from(b & 31) << 12;
            for i in 0..extra {
                dist |= u64::from(r.byte()?) << (8 * i);
            }
            if b & 32 != 0 {
                offset |= usize::from(r.byte()?) << 17;
            }
        }
        if dist == 0 {
            local_copy::<T>(px, op, offset + 1, len)?;
        } else {
            let wanted = id.checked_sub(dist).ok_or(DecodeError::MissingImage {
                id,
                wanted: u64::MAX,
            })?;
            let i = kept.partition_point(|k| k.id < wanted);
            let src = kept
                .get(i)
                .filter(|k| k.id == wanted)
                .ok_or(DecodeError::MissingImage { id, wanted })?;
            if !compatible(src.ty, ty) {
                return Err(DecodeError::TypeMismatch {
                    id,
                    ty,
                    wanted,
                    wanted_ty: src.ty,
                });
            }
            let from = src.px.get(offset..).and_then(|s| s.get(..len)).ok_or(
                DecodeError::SourceOverrun {
                    wanted,
                    offset: offset as u64,
                    len: len as u64,
                    size: src.px.len() as u64,
                },
            )?;
            let to = px.get_mut(op..).and_then(|s| s.get_mut(..len)).ok_or(
                StreamError::CopyOverrun {
                    at: op as u64,
                    len: len as u64,
                    total: total as u64,
                },
            )?;
            T::copy_from(to, from);
        }
        op += len;
    }
    Ok(())
}

impl Decoder {
    /// A dictionary for a client that advertised `window_pixels` (clamped to
    /// [`MAX_WINDOW_PIXELS`]): a server that makes us keep more is refused.
    pub fn new(window_pixels: u32) -> Decoder {
        Decoder {
            window: window_pixels.min(MAX_WINDOW_PIXELS),
            kept: VecDeque::new(),
            last_id: None,
        }
    }

    /// Ids of the images kept for later references, oldest first.
    pub fn kept_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.kept.iter().map(|k| k.id)
    }

    /// Decodes a GLZ_RGB payload, keeps it for later images and frees the images the
    /// payload's `win_head_image_dist` says are no longer referenced, as spice-gtk does.
    /// Ids must increase (one channel, in order). On error nothing is kept or freed.
    pub fn decode(&mut self, data: &[u8], max_pixels: u64) -> Result<DecodedImage, DecodeError> {
        let h = parse_header(data)?;
        let pixels = u64::from(h.width) * u64::from(h.height);
        if pixels > max_pixels {
            return Err(DecodeError::TooManyPixels {
                width: h.width,
                height: h.height,
                max: max_pixels,
            });
        }
        if pixels > u64::from(self.window) {
            return Err(DecodeError::LargerThanWindow {
                pixels,
                window: self.window,
            });
        }
        if !plausible(pixels, data.len() - HEADER_LEN) {
            return Err(DecodeError::ImplausibleSize {
                pixels,
                len: data.len() - HEADER_LEN,
            });
        }
        if let Some(last) = self.last_id.filter(|&l| h.id <= l) {
            return Err(DecodeError::IdNotIncreasing { id: h.id, last });
        }
        let head =
            h.id.checked_sub(u64::from(h.head_dist))
                .ok_or(DecodeError::HeadBeforeZero {
                    id: h.id,
                    dist: h.head_dist,
                })?;
        // What stays once this image is in: images from the head on.
        let first_kept = self.kept.partition_point(|k| k.id < head);
        let held = pixels
            + self
                .kept
                .iter()
                .skip(first_kept)
                .map(|k| k.px.len() as u64)
                .sum::<u64>();
        if held > u64::from(self.window) {
            return Err(DecodeError::WindowOverflow {
                first: head,
                last: h.id,
                held,
                window: self.window,
            });
        }
        let mut px = vec![0u32; pixels as usize];
        let mut r = Reader {
            data,
            pos: HEADER_LEN,
        };
        match h.ty {
            LzType::Rgb16 => {
                decompress::<Rgb16Kind, Whole>(&mut r, &mut px, &self.kept, h.id, h.ty)?
            }
            _ => decompress::<RgbKind, Whole>(&mut r, &mut px, &self.kept, h.id, h.ty)?,
        }
        if h.ty == LzType::Rgba {
            decompress::<ByteKind, AlphaByte>(&mut r, &mut px, &self.kept, h.id, h.ty)?;
        }
        if r.pos != data.len() {
            return Err(DecodeError::TrailingBytes {
                count: data.len() - r.pos,
            });
        }
        let format = match h.ty {
            LzType::Rgb16 => PixelFormat::Rgb16,
            LzType::Rgb24 => PixelFormat::Rgb24,
            LzType::Rgba => PixelFormat::Rgba,
            _ => PixelFormat::Rgb32,
        };
        let pixels_out = keys_to_pixels(&px, h.width, format, h.top_down);
        self.kept.drain(..first_kept);
        self.kept.push_back(Kept {
            id: h.id,
            ty: h.ty,
            px,
        });
        self.last_id = Some(h.id);
        Ok(DecodedImage {
            width: h.width,
            height: h.height,
            format,
            pixels: pixels_out,
        })
    }
}

#[cfg(test)]
mod tests;
