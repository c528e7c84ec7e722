//! A display source fed with whole frames, for VMMs (and tests) that have a framebuffer but
//! no drawing commands. Each new frame is compared with the last; what changed goes to the
//! clients as the bounding box of the changed rows.

use std::sync::{Arc, Mutex};

use crate::DisplaySource;
use crate::item::{DisplayItem, Draw, DrawContent, Head, Monitors, Pixels, SurfaceInfo};
use crate::pipe::Pipe;
use crate::rect::Rect;

/// A frame: `width * height` pixels of B, G, R, X bytes, top-down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub bgrx: Arc<Vec<u8>>,
    /// What the monitor shows of it; `None` for all of it.
    pub head: Option<Head>,
}

impl Frame {
    /// Builds a frame from `0x00RRGGBB` pixels.
    pub fn from_xrgb(width: u32, height: u32, xrgb: &[u32]) -> Frame {
        Frame {
            width,
            height,
            bgrx: Arc::new(
                xrgb.iter()
                    .flat_map(|p| (p & 0xff_ffff).to_le_bytes())
                    .collect(),
            ),
            head: None,
        }
    }

    fn is_consistent(&self) -> bool {
        (self.width as usize)
            .checked_mul(self.height as usize)
            .and_then(|n| n.checked_mul(4))
            .is_some_and(|n| n == self.bgrx.len() && n > 0)
    }

    fn monitors(&self) -> Monitors {
        match self.head {
            Some(head) => Monitors {
                max_allowed: 1,
                heads: vec![head],
            },
            None => Monitors::whole(self.width, self.height),
        }
    }

    /// The pixels of `area` (inside the frame).
    fn pixels(&self, area: Rect) -> Pixels {
        let stride = self.width as usize * 4;
        let mut bgrx = Vec::with_capacity(area.area() as usize * 4);
        for y in area.top..area.bottom {
            let start = y as usize * stride + area.left as usize * 4;
            bgrx.extend_from_slice(&self.bgrx[start..start + area.width() as usize * 4]);
        }
        Pixels {
            width: area.width(),
            height: area.height(),
            bgrx,
            guest_id: None,
        }
    }
}

#[derive(Default)]
struct State {
    frame: Option<Frame>,
    pipes: Vec<Arc<Pipe>>,
}

/// A [`DisplaySource`] that publishes the frames it is given.
#[derive(Default)]
pub struct FrameSource {
    state: Mutex<State>,
}

impl FrameSource {
    pub fn new() -> Arc<FrameSource> {
        Arc::new(FrameSource::default())
    }

    /// Shows `frame`: subscribers get what changed since the last one (an inconsistent frame,
    /// whose buffer does not match its size, is ignored).
    pub fn set_frame(&self, frame: Frame) {
        if !frame.is_consistent() {
            return;
        }
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut items = Vec::new();
        match &s.frame {
            Some(old) if old.width == frame.width && old.height == frame.height => {
                if let Some(area) = changed_rows(old, &frame) {
                    items.push(image(&frame, area));
                }
                if old.head != frame.head {
                    items.push(DisplayItem::Monitors(frame.monitors()));
                }
            }
            old => {
                if old.is_some() {
                    items.push(DisplayItem::SurfaceDestroy);
                }
                items.extend(initial(&frame));
            }
        }
        for item in items {
            s.pipes.retain(|p| p.push(item.clone()));
        }
        s.frame = Some(frame);
    }

    /// Subscribers now (closed pipes are forgotten at the next frame).
    pub fn subscribers(&self) -> usize {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.pipes.iter().filter(|p| !p.is_closed()).count()
    }
}

fn image(frame: &Frame, area: Rect) -> DisplayItem {
    DisplayItem::Draw(Draw {
        area,
        content: DrawContent::Image(Arc::new(frame.pixels(area))),
    })
}

fn initial(frame: &Frame) -> Vec<DisplayItem> {
    vec![
        DisplayItem::SurfaceCreate(SurfaceInfo {
            width: frame.width,
            height: frame.height,
        }),
        DisplayItem::Monitors(frame.monitors()),
        image(frame, Rect::of_size(frame.width, frame.height)),
    ]
}

/// The bounding box of the pixels that differ, if any.
fn changed_rows(old: &Frame, new: &Frame) -> Option<Rect> {
    let stride = new.width as usize * 4;
    let rows = || {
        old.bgrx
            .chunks_exact(stride)
            .zip(new.bgrx.chunks_exact(stride))
    };
    let top = rows().position(|(a, b)| a != b)?;
    let bottom = rows().rposition(|(a, b)| a != b)? + 1;
    let (mut left, mut right) = (new.width as usize, 0usize);
    for (a, b) in rows().skip(top).take(bottom - top) {
        let px = || a.chunks_exact(4).zip(b.chunks_exact(4));
        if let Some(l) = px().position(|(p, q)| p != q) {
            left = left.min(l);
            right = right.max(px().rposition(|(p, q)| p != q).unwrap_or(l) + 1);
        }
    }
    Rect::new(left as u32, top as u32, right as u32, bottom as u32)
}

impl DisplaySource for FrameSource {
    fn subscribe(&self, pipe: Arc<Pipe>) -> bool {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(frame) = &s.frame {
            for item in initial(frame) {
                pipe.push(item);
            }
        }
        s.pipes.push(pipe);
        true
    }

    fn resync(&self, pipe: &Arc<Pipe>) {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(area) = pipe.take_resync() else {
            return;
        };
        if let Some(frame) = &s.frame
            && let Some(area) = area.intersect(&Rect::of_size(frame.width, frame.height))
        {
            pipe.push(image(frame, area));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Popped;

    #[test]
    fn subscribers_get_the_frame_then_the_changed_rows() {
        let src = FrameSource::new();
        src.set_frame(Frame::from_xrgb(4, 4, &[1; 16]));
        let pipe = Arc::new(Pipe::new(1 << 20));
        src.subscribe(pipe.clone());
        let mut px = [1; 16];
        px[9] = 2;
        src.set_frame(Frame::from_xrgb(4, 4, &px));
        let mut items = Vec::new();
        while let Popped::Item(i) = pipe.pop(Duration::ZERO) {
            items.push(i);
        }
        assert_eq!(items.len(), 4);
        assert!(
            matches!(&items[3], DisplayItem::Draw(d) if d.area == Rect::new(1, 2, 2, 3).unwrap())
        );
    }
}
