//! The VGA picture shown while the device is in VGA mode (QEMU's host primary of qxl-vga):
//! the device renders its legacy VGA and hands each changed frame over; the worker shows it to
//! screendumps and display clients as a primary surface of the frame's size, until the guest's
//! driver creates its own primary or the device is reset.

use std::sync::Arc;

use saffron_display::{DisplayItem, Monitors, Rect, SurfaceInfo};
use saffron_seam::VgaFrame;

use crate::red::Screendump;

/// The frame on screen, if the VGA is what the display shows.
#[derive(Default)]
pub struct VgaScreen {
    frame: Option<Arc<VgaFrame>>,
}

impl VgaScreen {
    /// Whether a VGA frame is on screen.
    pub fn is_shown(&self) -> bool {
        self.frame.is_some()
    }

    /// Shows `next`; returns what display clients need to follow: a new surface when the size
    /// changed (or nothing was shown), else the rectangle of pixels that changed.
    pub fn show(&mut self, next: Arc<VgaFrame>) -> Vec<DisplayItem> {
        let items = match self.frame.as_deref() {
            Some(prev) if prev.width == next.width && prev.height == next.height => {
                changed_rect(prev, &next)
                    .and_then(|r| image(&next, r))
                    .into_iter()
                    .collect()
            }
            prev => {
                let mut items = Vec::new();
                if prev.is_some() {
                    items.push(DisplayItem::SurfaceDestroy);
                }
                items.extend(initial_items(&next));
                items
            }
        };
        self.frame = Some(next);
        items
    }

    /// Stops showing the VGA; true when a frame was on screen (clients must drop its surface).
    pub fn end(&mut self) -> bool {
        self.frame.take().is_some()
    }

    /// What a new client needs: the surface, its monitor and all of its pixels.
    pub fn initial_items(&self) -> Vec<DisplayItem> {
        self.frame.as_deref().map(initial_items).unwrap_or_default()
    }

    /// The pixels of `area` (clipped to the frame), for a client's resync.
    pub fn area_item(&self, area: Rect) -> Option<DisplayItem> {
        let f = self.frame.as_deref()?;
        let area = area.intersect(&Rect::of_size(f.width, f.height))?;
        image(f, area)
    }

    /// The frame as a screendump.
    pub fn screendump(&self) -> Option<Screendump> {
        self.frame
            .as_deref()
            .map(|f| Ok((f.width, f.height, f.to_rgb())))
    }

    /// The frame's size.
    pub fn size(&self) -> Option<(u32, u32)> {
        self.frame.as_deref().map(|f| (f.width, f.height))
    }
}

fn initial_items(f: &VgaFrame) -> Vec<DisplayItem> {
    let mut items = vec![
        DisplayItem::SurfaceCreate(SurfaceInfo {
            width: f.width,
            height: f.height,
        }),
        DisplayItem::Monitors(Monitors::whole(f.width, f.height)),
    ];
    items.extend(image(f, Rect::of_size(f.width, f.height)));
    items
}

/// The smallest rectangle holding every pixel that differs between two same-sized frames.
fn changed_rect(prev: &VgaFrame, next: &VgaFrame) -> Option<Rect> {
    let w = next.width as usize;
    if w == 0 {
        return None;
    }
    let (mut top, mut bottom, mut left, mut right) = (usize::MAX, 0, usize::MAX, 0);
    for (y, (a, b)) in prev
        .pixels
        .chunks_exact(w)
        .zip(next.pixels.chunks_exact(w))
        .enumerate()
    {
        if a == b {
            continue;
        }
        let first = a.iter().zip(b).position(|(p, q)| p != q).unwrap_or(0);
        let last = a.iter().zip(b).rposition(|(p, q)| p != q).unwrap_or(w - 1);
        top = top.min(y);
        bottom = y + 1;
        left = left.min(first);
        right = right.max(last + 1);
    }
    if top == usize::MAX {
        return None;
    }
    // Every bound is at most the frame's width or height, which are u32.
    Rect::new(left as u32, top as u32, right as u32, bottom as u32)
}

/// `area` (inside the frame) of `f` as an image item.
fn image(f: &VgaFrame, area: Rect) -> Option<DisplayItem> {
    let w = f.width as usize;
    let (l, r) = (area.left as usize, area.right as usize);
    let mut bgrx = Vec::with_capacity(area.width() as usize * area.height() as usize * 4);
    for y in area.top as usize..area.bottom as usize {
        let row = f.pixels.get(y * w + l..y * w + r)?;
        for p in row {
            bgrx.extend_from_slice(&p.to_le_bytes());
        }
    }
    Some(DisplayItem::image(area, bgrx, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use saffron_display::{Draw, DrawContent};

    fn frame(w: u32, h: u32, f: impl Fn(u32, u32) -> u32) -> Arc<VgaFrame> {
        let pixels = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y));
        Arc::new(VgaFrame {
            width: w,
            height: h,
            pixels: pixels.collect(),
        })
    }

    fn area_of(item: &DisplayItem) -> Rect {
        match item {
            DisplayItem::Draw(Draw {
                area,
                content: DrawContent::Image(_),
            }) => *area,
            other => panic!("not an image: {other:?}"),
        }
    }

    #[test]
    fn first_frame_is_a_new_surface_with_all_its_pixels() {
        let mut s = VgaScreen::default();
        let items = s.show(frame(8, 4, |x, _| x));
        assert!(matches!(
            items[0],
            DisplayItem::SurfaceCreate(SurfaceInfo {
                width: 8,
                height: 4
            })
        ));
        assert!(matches!(items[1], DisplayItem::Monitors(_)));
        assert_eq!(area_of(&items[2]), Rect::of_size(8, 4));
        let (w, h, rgb) = s.screendump().unwrap().unwrap();
        assert_eq!((w, h), (8, 4));
        assert_eq!(&rgb[3..6], &[0, 0, 1], "pixel 1 is 0x000001: blue 1");
    }

    #[test]
    fn a_change_sends_only_its_rectangle_and_a_resize_a_new_surface() {
        let mut s = VgaScreen::default();
        s.show(frame(8, 4, |_, _| 0));
        assert!(s.show(frame(8, 4, |_, _| 0)).is_empty(), "same picture");
        let items = s.show(frame(8, 4, |x, y| {
            u32::from((x, y) == (5, 2) || (x, y) == (3, 1))
        }));
        assert_eq!(items.len(), 1);
        assert_eq!(area_of(&items[0]), Rect::new(3, 1, 6, 3).unwrap());
        let items = s.show(frame(4, 4, |_, _| 0));
        assert!(matches!(items[0], DisplayItem::SurfaceDestroy));
        assert!(matches!(items[1], DisplayItem::SurfaceCreate(_)));
        assert!(s.end());
        assert!(!s.end());
        assert!(s.screendump().is_none());
    }
}
