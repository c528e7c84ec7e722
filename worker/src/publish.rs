//! Publishing what the worker draws on the primary surface to display clients.
//!
//! Each subscribed client has a [`Pipe`]; after a command changed the primary, the worker
//! pushes one [`DisplayItem`] saying what changed, in the most useful form it can prove
//! exact: a solid fill as a fill, the guest's COPY_BITS as a copy of pixels the client has,
//! anything else as the area's pixels as rendered. A client that applies the items in order
//! holds exactly what the worker rendered, and nothing is sent for work that does not change
//! the primary (cursor commands, memslots, flushes).

use std::sync::Arc;

use saffron_display::{DisplayItem, Draw, DrawContent, Monitors, Pipe, Rect, SurfaceInfo};
use saffron_ring::abi::{QXL_IMAGE_CACHE, SPICE_ROPD_OP_PUT};
use saffron_ring::parse::{
    Bitmap, BitmapFormat, Brush, Clip, DrawBody, Drawable, Image, SurfaceFormat,
};
use tracing::{debug, warn};
use vm_memory::GuestMemory;

use crate::screendump::{Area, area_bgrx};
use crate::scroll::ScrollDetector;
use crate::surface::Surface;

/// Counters of what was published.
#[derive(Clone, Copy, Debug, Default)]
pub struct PublishStats {
    /// Items pushed (counted once however many clients took them).
    pub items: u64,
    /// Of them, fills.
    pub fills: u64,
    /// Of them, COPY_BITS.
    pub copy_bits: u64,
    /// Of them, rendered pixels.
    pub images: u64,
    /// Bytes of pixels copied out of the surface for them.
    pub image_bytes: u64,
    /// Of the images, those taken from a plain copy's bitmap instead of read back.
    pub images_from_commands: u64,
    /// Resyncs answered.
    pub resyncs: u64,
    /// Plain copies sent as a COPY_BITS of what the client has plus the rows that are new
    /// (a scrolled console), instead of whole.
    pub scrolls: u64,
}

/// The subscribed clients' pipes.
#[derive(Default)]
pub struct Publisher {
    pipes: Vec<Arc<Pipe>>,
    stats: PublishStats,
    scroll: ScrollDetector,
}

impl Publisher {
    /// Whether anybody listens (when nobody does, nothing is captured).
    pub fn is_idle(&self) -> bool {
        self.pipes.is_empty()
    }

    pub fn stats(&self) -> PublishStats {
        self.stats
    }

    /// Subscribers now.
    pub fn subscribers(&self) -> usize {
        self.pipes.len()
    }

    /// Pushes `item` to every pipe, forgetting the closed ones.
    pub fn push(&mut self, item: DisplayItem) {
        self.count(&item);
        self.pipes.retain(|p| p.push(item.clone()));
    }

    fn count(&mut self, item: &DisplayItem) {
        self.stats.items += 1;
        match item {
            DisplayItem::Draw(Draw {
                content: DrawContent::Fill(_),
                ..
            }) => self.stats.fills += 1,
            DisplayItem::Draw(Draw {
                content: DrawContent::Image(p),
                ..
            }) => {
                self.stats.images += 1;
                self.stats.image_bytes += p.bgrx.len() as u64;
            }
            DisplayItem::CopyBits { .. } => self.stats.copy_bits += 1,
            _ => {}
        }
    }

    /// A new client: it gets the current state first (the primary, what the monitor shows,
    /// all of its pixels), then everything that follows.
    pub fn subscribe<M: GuestMemory>(
        &mut self,
        pipe: Arc<Pipe>,
        mem: &M,
        primary: Option<&Surface>,
        monitors: Monitors,
    ) {
        if let Some(s) = primary {
            for item in initial_items(mem, s, monitors) {
                self.count(&item);
                pipe.push(item);
            }
        }
        debug!(
            subscribers = self.pipes.len() + 1,
            "display client subscribed"
        );
        self.pipes.push(pipe);
    }

    /// A new client whose first items come from elsewhere (the VGA picture in VGA mode):
    /// `items`, then everything that follows.
    pub fn subscribe_items(&mut self, pipe: Arc<Pipe>, items: Vec<DisplayItem>) {
        for item in items {
            self.count(&item);
            pipe.push(item);
        }
        self.pipes.push(pipe);
    }

    /// Answers a pipe's resync from elsewhere: `item_for` gives the pixels of the lost area.
    pub fn resync_with(
        &mut self,
        pipe: &Arc<Pipe>,
        item_for: impl FnOnce(Rect) -> Option<DisplayItem>,
    ) {
        let Some(area) = pipe.take_resync() else {
            return;
        };
        if !self.pipes.iter().any(|p| Arc::ptr_eq(p, pipe)) {
            return;
        }
        if let Some(item) = item_for(area) {
            self.stats.resyncs += 1;
            self.count(&item);
            pipe.push(item);
        }
    }

    /// Answers a pipe's resync: the current pixels of the area it lost.
    pub fn resync<M: GuestMemory>(&mut self, pipe: &Arc<Pipe>, mem: &M, primary: Option<&Surface>) {
        let Some(area) = pipe.take_resync() else {
            return;
        };
        let Some(s) = primary else {
            return;
        };
        if !self.pipes.iter().any(|p| Arc::ptr_eq(p, pipe)) {
            return;
        }
        let Some(area) = area.intersect(&Rect::of_size(s.width, s.height)) else {
            return;
        };
        self.stats.resyncs += 1;
        if let Some(item) = capture(mem, s, area, None) {
            self.count(&item);
            pipe.push(item);
        }
    }

    /// Before `d` is rendered onto the primary `s`: when it is a plain copy of a picture
    /// that is mostly what the same area showed, moved up or down (a scrolled console), the
    /// items that say so — a COPY_BITS of the pixels the client has and the rows that are
    /// really new — checked row by row against the surface. Push them with
    /// [`Publisher::push_all`] once `d` is drawn; `None` means publish with
    /// [`Publisher::drawn`].
    pub fn scrolled<M: GuestMemory>(
        &mut self,
        mem: &M,
        s: &Surface,
        d: &Drawable,
    ) -> Option<Vec<DisplayItem>> {
        if self.is_idle() || !matches!(s.format, SurfaceFormat::Xrgb8888 | SurfaceFormat::Argb8888)
        {
            return None;
        }
        let area = clipped(&d.bbox, s)?;
        // Linux sends its damage as a clip even when it is the whole box.
        if clip_parts(&d.clip, area, s)? != [area] {
            return None;
        }
        let b = plain_bitmap(d, area)?;
        let (stride, row_len) = (b.stride as usize, area.width() as usize * 4);
        let row = |y: usize| &b.data[y * stride..y * stride + row_len];
        let up = self.scroll.observe(area, row)?;
        let items = scroll_items(mem, s, area, up, row)?;
        self.stats.scrolls += 1;
        Some(items)
    }

    /// Pushes items made before the drawing they describe was rendered.
    pub fn push_all(&mut self, items: Vec<DisplayItem>) {
        for item in items {
            self.push(item);
        }
    }

    /// After `d` was rendered onto the primary `s`: what it changed. A plain copy of a
    /// 32-bit bitmap gives its pixels away (they are what the area now shows), so `d` may
    /// lose them.
    pub fn drawn<M: GuestMemory>(&mut self, mem: &M, s: &Surface, d: &mut Drawable) {
        if self.is_idle() {
            return;
        }
        let (items, taken) = draw_items(mem, s, d);
        if taken {
            self.stats.images_from_commands += 1;
        }
        for item in items {
            self.push(item);
        }
    }
}

/// What a new client needs before any change: the surface and all of its pixels.
pub fn initial_items<M: GuestMemory>(mem: &M, s: &Surface, monitors: Monitors) -> Vec<DisplayItem> {
    // The monitor before the pixels: clients (spice-gtk) show a display once they know its
    // monitor and have seen the MARK that follows the first drawing.
    let mut items = vec![
        DisplayItem::SurfaceCreate(SurfaceInfo {
            width: s.width,
            height: s.height,
        }),
        DisplayItem::Monitors(monitors),
    ];
    items.extend(capture(mem, s, Rect::of_size(s.width, s.height), None));
    items
}

/// The pixels of `area` (inside the surface) as an image item.
fn capture<M: GuestMemory>(
    mem: &M,
    s: &Surface,
    area: Rect,
    guest_id: Option<u64>,
) -> Option<DisplayItem> {
    let a = Area {
        x: area.left,
        y: area.top,
        width: area.width(),
        height: area.height(),
    };
    match area_bgrx(mem, s, a) {
        Ok((_, _, bgrx)) => Some(DisplayItem::image(area, bgrx, guest_id)),
        Err(e) => {
            warn!("cannot read the primary surface for display clients: {e}");
            None
        }
    }
}

/// `r` as a display rectangle clipped to the surface, or `None` when nothing is left.
fn clipped(r: &saffron_ring::parse::Rect, s: &Surface) -> Option<Rect> {
    let c = |v: i32, max: u32| u32::try_from(v.max(0)).unwrap_or(0).min(max);
    Rect::new(
        c(r.left, s.width),
        c(r.top, s.height),
        c(r.right, s.width),
        c(r.bottom, s.height),
    )
    .filter(|r| !r.is_empty())
}

/// The items describing what `d` did to `s`, and whether their pixels were taken from the
/// command rather than read back.
fn draw_items<M: GuestMemory>(mem: &M, s: &Surface, d: &mut Drawable) -> (Vec<DisplayItem>, bool) {
    let Some(area) = clipped(&d.bbox, s) else {
        return (Vec::new(), false);
    };
    let xrgb = matches!(s.format, SurfaceFormat::Xrgb8888 | SurfaceFormat::Argb8888);
    if xrgb && let Some(items) = plain_copy_items(d, area, s) {
        return (items, true);
    }
    (other_items(mem, s, d, area, xrgb), false)
}

/// [`draw_items`] for everything but a plain copy.
fn other_items<M: GuestMemory>(
    mem: &M,
    s: &Surface,
    d: &Drawable,
    area: Rect,
    xrgb: bool,
) -> Vec<DisplayItem> {
    match &d.body {
        DrawBody::Fill(f) if xrgb && f.rop_descriptor == SPICE_ROPD_OP_PUT && f.mask.is_none() => {
            if let Brush::Solid(color) = f.brush {
                let color = color & 0x00ff_ffff;
                let fill = |area| {
                    DisplayItem::Draw(Draw {
                        area,
                        content: DrawContent::Fill(color),
                    })
                };
                return match &d.clip {
                    Clip::None => vec![fill(area)],
                    Clip::Rects(rects) => rects
                        .iter()
                        .filter_map(|r| clipped(r, s).and_then(|r| r.intersect(&area)))
                        .map(fill)
                        .collect(),
                };
            }
        }
        DrawBody::CopyBits { src_pos } if d.clip == Clip::None => {
            // Only a copy whose source and destination both lie wholly inside the surface
            // goes as COPY_BITS; anything the renderer clipped goes as its pixels.
            let fits = |x: i32, y: i32| {
                let (Ok(x), Ok(y)) = (u32::try_from(x), u32::try_from(y)) else {
                    return None;
                };
                let inside = u64::from(x) + u64::from(area.width()) <= u64::from(s.width)
                    && u64::from(y) + u64::from(area.height()) <= u64::from(s.height);
                inside.then_some((x, y))
            };
            let dest_whole = fits(d.bbox.left, d.bbox.top) == Some((area.left, area.top))
                && i64::from(d.bbox.right) - i64::from(d.bbox.left) == i64::from(area.width())
                && i64::from(d.bbox.bottom) - i64::from(d.bbox.top) == i64::from(area.height());
            if dest_whole && let Some((src_x, src_y)) = fits(src_pos.x, src_pos.y) {
                return vec![DisplayItem::CopyBits { area, src_x, src_y }];
            }
        }
        _ => {}
    }
    capture(mem, s, area, guest_image_id(d))
        .into_iter()
        .collect()
}

/// Most clip rectangles sent as items of their own; a drawing clipped to more goes as its
/// whole box (one message beats hundreds of tiny ones).
const MAX_CLIP_ITEMS: usize = 64;

/// The parts of `area` a drawing clipped by `clip` may have changed: `area` itself without a
/// clip, else each clip rectangle inside it (none when they miss it). `None` when there are
/// too many rectangles to send one by one.
fn clip_parts(clip: &Clip, area: Rect, s: &Surface) -> Option<Vec<Rect>> {
    match clip {
        Clip::None => Some(vec![area]),
        Clip::Rects(rects) if rects.len() <= MAX_CLIP_ITEMS => Some(
            rects
                .iter()
                .filter_map(|r| clipped(r, s).and_then(|r| r.intersect(&area)))
                .collect(),
        ),
        Clip::Rects(_) => None,
    }
}

/// When `d` copies a whole top-down, tightly packed 32-bit bitmap unchanged onto its box
/// (rop PUT, no mask, no scaling, the box wholly inside the surface: what Linux's DIRTYFB
/// sends), each part the clip lets through now shows exactly the bitmap's pixels there:
/// they are taken from the command (the parser's one copy of guest memory) instead of being
/// read back from the surface — without a copy at all when one part is the whole box of a
/// tightly packed bitmap. The X byte is cleared, as a read-back clears it.
fn plain_copy_items(d: &mut Drawable, area: Rect, s: &Surface) -> Option<Vec<DisplayItem>> {
    let guest_id = guest_image_id(d);
    let parts = clip_parts(&d.clip, area, s)?;
    plain_bitmap(d, area)?;
    let DrawBody::Copy(c) = &mut d.body else {
        return None;
    };
    let Image::Bitmap(b) = c.src.as_mut() else {
        return None;
    };
    let row = u64::from(b.width) * 4;
    if parts.as_slice() == [area] && u64::from(b.stride) == row {
        let mut data = std::mem::take(&mut b.data);
        data.truncate(row as usize * b.height as usize);
        return Some(vec![image(area, data, guest_id)]);
    }
    let stride = b.stride as usize;
    let items = parts
        .iter()
        .map(|r| {
            let (x, y) = ((r.left - area.left) as usize, (r.top - area.top) as usize);
            let row = r.width() as usize * 4;
            let mut bgrx = Vec::with_capacity(row * r.height() as usize);
            for line in y..y + r.height() as usize {
                let start = line * stride + x * 4;
                bgrx.extend_from_slice(&b.data[start..start + row]);
            }
            image(*r, bgrx, None)
        })
        .collect();
    Some(items)
}

/// The bitmap of `d` when `d` copies a whole top-down 32-bit bitmap unchanged onto its whole
/// box `area` (see [`plain_copy_items`]); the clip is the caller's business.
fn plain_bitmap(d: &Drawable, area: Rect) -> Option<&Bitmap> {
    let DrawBody::Copy(c) = &d.body else {
        return None;
    };
    if c.rop_descriptor != SPICE_ROPD_OP_PUT || c.mask.is_some() {
        return None;
    }
    let Image::Bitmap(b) = c.src.as_ref() else {
        return None;
    };
    let whole_bbox = i64::from(d.bbox.left) == i64::from(area.left)
        && i64::from(d.bbox.top) == i64::from(area.top)
        && i64::from(d.bbox.right) == i64::from(area.right)
        && i64::from(d.bbox.bottom) == i64::from(area.bottom);
    let whole_source = c.src_area.left == 0
        && c.src_area.top == 0
        && i64::from(c.src_area.right) == i64::from(b.width)
        && i64::from(c.src_area.bottom) == i64::from(b.height);
    let row = u64::from(b.width) * 4;
    let plain = b.format == BitmapFormat::Bit32
        && b.top_down
        && b.width == area.width()
        && b.height == area.height()
        && u64::from(b.stride) >= row
        && b.data.len() as u64 >= u64::from(b.stride) * u64::from(b.height - 1) + row;
    (whole_bbox && whole_source && plain).then_some(b)
}

/// An image item of `area` from BGRX rows, their X bytes cleared (as a read-back clears them).
fn image(area: Rect, mut bgrx: Vec<u8>, guest_id: Option<u64>) -> DisplayItem {
    for px in bgrx.chunks_exact_mut(4) {
        px[3] = 0;
    }
    DisplayItem::image(area, bgrx, guest_id)
}

/// Whether two rows of BGRX pixels show the same colours (X bytes ignored).
fn same_colours(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.chunks_exact(4)
            .zip(b.chunks_exact(4))
            .all(|(p, q)| p[..3] == q[..3])
}

/// Copies that change fewer rows than this share of the area (in quarters) after the move go
/// as a scroll; otherwise the whole picture is as cheap.
const MAX_NEW_QUARTERS: usize = 3;

/// The items for a plain copy of rows `row(0..h)` onto `area` whose picture is what `area`
/// shows now moved up by `up` rows (down when negative): a COPY_BITS moving the rows the
/// client has, then each band of rows that the move does not give exactly. `None` when that
/// would not save much, or the surface cannot be read.
fn scroll_items<'a, M: GuestMemory>(
    mem: &M,
    s: &Surface,
    area: Rect,
    up: i32,
    row: impl Fn(usize) -> &'a [u8],
) -> Option<Vec<DisplayItem>> {
    let h = area.height() as usize;
    let n = up.unsigned_abs() as usize;
    if n == 0 || n >= h {
        return None;
    }
    let a = Area {
        x: area.left,
        y: area.top,
        width: area.width(),
        height: area.height(),
    };
    let (_, _, old) = area_bgrx(mem, s, a).ok()?;
    let row_len = area.width() as usize * 4;
    let old_row = |y: usize| &old[y * row_len..(y + 1) * row_len];
    let n32 = n as u32;
    // The rows the copy moves, as new row indices, and where each comes from.
    let (copy, moved, src_y) = if up > 0 {
        let copy = Rect::new(area.left, area.top, area.right, area.bottom - n32)?;
        (copy, 0..h - n, area.top + n32)
    } else {
        let copy = Rect::new(area.left, area.top + n32, area.right, area.bottom)?;
        (copy, n..h, area.top)
    };
    let source = |y: usize| if up > 0 { y + n } else { y - n };
    let exact = |y: usize| moved.contains(&y) && same_colours(row(y), old_row(source(y)));
    // Bands of rows the move does not give: [start, end) in new row indices.
    let mut bands: Vec<(usize, usize)> = Vec::new();
    for y in 0..h {
        if exact(y) {
            continue;
        }
        match bands.last_mut() {
            Some((_, end)) if *end == y => *end = y + 1,
            _ => bands.push((y, y + 1)),
        }
    }
    let new_rows: usize = bands.iter().map(|(a, b)| b - a).sum();
    if new_rows * 4 > h * MAX_NEW_QUARTERS {
        return None;
    }
    let mut items = vec![DisplayItem::CopyBits {
        area: copy,
        src_x: area.left,
        src_y,
    }];
    for (start, end) in bands {
        let band = Rect::new(
            area.left,
            area.top + start as u32,
            area.right,
            area.top + end as u32,
        )?;
        let mut bgrx = Vec::with_capacity((end - start) * row_len);
        for y in start..end {
            bgrx.extend_from_slice(row(y));
        }
        items.push(image(band, bgrx, None));
    }
    Some(items)
}

/// The guest's id of the image `d` copies unchanged onto its whole bbox, when the guest
/// marked it cacheable.
fn guest_image_id(d: &Drawable) -> Option<u64> {
    let DrawBody::Copy(c) = &d.body else {
        return None;
    };
    let plain = c.rop_descriptor == SPICE_ROPD_OP_PUT && c.mask.is_none() && d.clip == Clip::None;
    let desc = match c.src.as_ref() {
        Image::Bitmap(b) => &b.descriptor,
        _ => return None,
    };
    let whole = c.src_area.left == 0
        && c.src_area.top == 0
        && i64::from(c.src_area.right) == i64::from(desc.width)
        && i64::from(c.src_area.bottom) == i64::from(desc.height)
        && c.src_area.right - c.src_area.left == d.bbox.right - d.bbox.left
        && c.src_area.bottom - c.src_area.top == d.bbox.bottom - d.bbox.top;
    (plain && whole && desc.flags & QXL_IMAGE_CACHE != 0).then_some(desc.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surface::tests::{memory, xrgb};

    /// Row `y` of a "text" picture `w` pixels wide whose first row is line `first` of a page.
    fn text_row(w: u32, first: u32, y: u32) -> Vec<u8> {
        let line = first + y;
        (0..w)
            .flat_map(|x| {
                let v = ((line * 7919 + x * 31) % 253) as u8;
                [v, v ^ 0x5a, v.wrapping_add(77), 0xff]
            })
            .collect()
    }

    /// What a client holding `held` (BGRX rows of a `w`-wide surface) shows after `items`.
    fn apply(mut held: Vec<u8>, w: u32, items: &[DisplayItem]) -> Vec<u8> {
        let row = w as usize * 4;
        for item in items {
            match item {
                DisplayItem::CopyBits { area, src_x, src_y } => {
                    let before = held.clone();
                    for dy in 0..area.height() {
                        let (from, to) = ((src_y + dy) as usize, (area.top + dy) as usize);
                        let (fx, tx) = (*src_x as usize * 4, area.left as usize * 4);
                        let len = area.width() as usize * 4;
                        held[to * row + tx..to * row + tx + len]
                            .copy_from_slice(&before[from * row + fx..from * row + fx + len]);
                    }
                }
                DisplayItem::Draw(Draw {
                    area,
                    content: DrawContent::Image(px),
                }) => {
                    let len = area.width() as usize * 4;
                    for dy in 0..area.height() as usize {
                        let at = (area.top as usize + dy) * row + area.left as usize * 4;
                        held[at..at + len].copy_from_slice(&px.bgrx[dy * len..(dy + 1) * len]);
                    }
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        held
    }

    fn cleared(mut bgrx: Vec<u8>) -> Vec<u8> {
        bgrx.iter_mut().skip(3).step_by(4).for_each(|x| *x = 0);
        bgrx
    }

    /// A picture that is the surface moved up (or down), with a few rows changed besides,
    /// goes as a COPY_BITS and the bands the move does not give; a client applying them ends
    /// with exactly the new picture.
    #[test]
    fn a_scroll_goes_as_copy_bits_and_the_new_rows() {
        let (w, h) = (64u32, 40u32);
        let mem = memory();
        let s = xrgb(0x1000, w, h, (w * 4) as i32);
        let mut scratch = Vec::new();
        let old: Vec<Vec<u8>> = (0..h).map(|y| text_row(w, 0, y)).collect();
        for (y, r) in old.iter().enumerate() {
            let px: Vec<u32> = r
                .chunks_exact(4)
                .map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]))
                .collect();
            s.write_pixels(&mem, 0, y as u32, &px, &mut scratch)
                .unwrap();
        }
        let held = cleared(old.concat());
        let area = Rect::of_size(w, h);
        for up in [8i32, -5] {
            // The page moved by `up` rows; row 20 also changed (a cursor, say).
            let moved = |y: i32| match u32::try_from(y + up) {
                Ok(from) if from < h => text_row(w, 0, from),
                _ => text_row(w, 1000, y as u32),
            };
            let mut new: Vec<Vec<u8>> = (0..h as i32).map(moved).collect();
            new[20] = vec![1; w as usize * 4];
            let items = scroll_items(&mem, &s, area, up, |y| &new[y][..]).expect("a scroll");
            assert!(
                matches!(items[0], DisplayItem::CopyBits { .. }),
                "{items:?}"
            );
            let image_rows: u32 = items[1..]
                .iter()
                .map(|i| i.touched_area().unwrap().height())
                .sum();
            assert_eq!(
                image_rows,
                up.unsigned_abs() + 1,
                "the new rows and row 20 only"
            );
            assert_eq!(
                apply(held.clone(), w, &items),
                cleared(new.concat()),
                "up {up}"
            );
        }
        // Nothing in common with the surface: not worth a scroll.
        let unrelated: Vec<Vec<u8>> = (0..h).map(|y| text_row(w, 5000, y)).collect();
        assert!(scroll_items(&mem, &s, area, 8, |y| &unrelated[y][..]).is_none());
    }
}
