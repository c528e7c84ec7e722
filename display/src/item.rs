//! What the worker publishes.

use std::sync::Arc;

use crate::rect::Rect;

/// One change to what a display client shows, in the order the guest made them. Applied in
/// order, the items of a pipe turn a client's copy of the primary surface into exactly the
/// worker's rendering of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DisplayItem {
    /// A primary surface now exists (32-bit xRGB, `width` x `height`). Its pixels follow as
    /// a [`Draw`] of the whole surface.
    SurfaceCreate(SurfaceInfo),
    /// The primary surface is gone.
    SurfaceDestroy,
    /// Something was drawn on the primary surface.
    Draw(Draw),
    /// `area` now shows the pixels of the same-sized rectangle whose top-left corner is
    /// (`src_x`, `src_y`), as they were before — the guest's COPY_BITS (a scroll): the client
    /// moves pixels it already has. Both rectangles lie inside the surface.
    CopyBits { area: Rect, src_x: u32, src_y: u32 },
    /// What the guest's monitors show of the primary: every enabled head of its monitors
    /// config (up to the device's head count); one head of the whole surface when the guest
    /// set none.
    Monitors(Monitors),
    /// The device was reset: the guest's ids (surfaces, images) start over, so a consumer
    /// that keys anything by them must forget it. The server's pixmap cache is keyed by the
    /// pixels' content, so what clients hold stays right and nothing needs sending.
    Reset,
}

impl DisplayItem {
    /// What the item costs a pipe: the pixels it holds plus a fixed overhead, so that a flood
    /// of tiny items counts too.
    /// A drawing that sets `area` to `bgrx`: `area`'s rows of BGRX pixels, top row first.
    pub fn image(area: Rect, bgrx: Vec<u8>, guest_id: Option<u64>) -> DisplayItem {
        DisplayItem::Draw(Draw {
            area,
            content: DrawContent::Image(std::sync::Arc::new(Pixels {
                width: area.width(),
                height: area.height(),
                bgrx,
                guest_id,
            })),
        })
    }

    pub fn cost(&self) -> usize {
        const OVERHEAD: usize = 64;
        OVERHEAD
            + match self {
                DisplayItem::Draw(Draw {
                    content: DrawContent::Image(p),
                    ..
                }) => p.bgrx.len(),
                _ => 0,
            }
    }

    /// The area of the surface the item sets to final pixels regardless of what was there
    /// before, if it does (fills and images; not COPY_BITS, which reads the client's pixels).
    pub fn opaque_area(&self) -> Option<Rect> {
        match self {
            DisplayItem::Draw(d) => Some(d.area),
            _ => None,
        }
    }

    /// The area of the surface the item changes, if any.
    pub fn touched_area(&self) -> Option<Rect> {
        match self {
            DisplayItem::Draw(d) => Some(d.area),
            DisplayItem::CopyBits { area, .. } => Some(*area),
            _ => None,
        }
    }
}

/// A primary surface's geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SurfaceInfo {
    pub width: u32,
    pub height: u32,
}

/// A rectangle of the surface that one monitor shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// The monitor's id (the guest's head id; a client's index in its own layout).
    pub id: u32,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

/// The monitors a display client shows, all on the primary surface (one QXL device with
/// several heads, as spice-server serves it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Monitors {
    /// The most heads the guest may enable (SPICE's `max_allowed`; remote-viewer offers that
    /// many displays). At least `heads.len()`.
    pub max_allowed: u32,
    /// The enabled heads, each non-empty and inside the surface, in the guest's order.
    pub heads: Vec<Head>,
}

impl Monitors {
    /// One monitor showing the whole `width` x `height` surface: what a guest without a
    /// monitors config (or with no usable head in it) shows, as spice-server sets up for a
    /// primary surface.
    pub fn whole(width: u32, height: u32) -> Monitors {
        Monitors {
            max_allowed: 1,
            heads: vec![Head {
                id: 0,
                x: 0,
                y: 0,
                width,
                height,
            }],
        }
    }
}

/// A drawing on the primary surface: `area` (inside the surface) now holds `content`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Draw {
    pub area: Rect,
    pub content: DrawContent,
}

/// What a [`Draw`] put in its area.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DrawContent {
    /// One colour, `0x00RRGGBB` (a solid fill with rop PUT).
    Fill(u32),
    /// The area's pixels as the worker rendered them.
    Image(Arc<Pixels>),
}

/// Pixels of an area, as B, G, R, X bytes, top-down, `width * 4` bytes a row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub bgrx: Vec<u8>,
    /// The guest's own id for the source image when the draw copied one image unchanged
    /// (a COPY with rop PUT, no mask, no scaling, the whole image) and the guest marked it
    /// cacheable; `None` otherwise. Linux guests mark nothing, so caches key on content too.
    pub guest_id: Option<u64>,
}

impl Pixels {
    /// Whether the buffer holds exactly `width * height` pixels (a worker bug must not
    /// become an out-of-bounds slice in the server).
    pub fn is_consistent(&self) -> bool {
        (self.width as usize)
            .checked_mul(self.height as usize)
            .and_then(|n| n.checked_mul(4))
            .is_some_and(|n| n == self.bgrx.len() && n > 0)
    }

    /// The single colour (`0x00RRGGBB`) of all the pixels, if they have one.
    pub fn solid_color(&self) -> Option<u32> {
        let mut px = self.bgrx.chunks_exact(4);
        let first = px.next()?;
        let key = [first[0], first[1], first[2]];
        px.all(|p| p[..3] == key)
            .then(|| u32::from_le_bytes([key[0], key[1], key[2], 0]))
    }
}
