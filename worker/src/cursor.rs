//! Cursor state kept from the cursor ring, ready for a cursor channel.
//!
//! Mirrors spice-server's cursor channel bookkeeping: SET replaces the shape and sets the
//! position and visibility the command carries; MOVE moves the cursor and shows it; HIDE
//! hides it; TRAIL records the trail parameters (which clients ignore). A reset (device reset,
//! the primary surface destroyed) forgets the shape, as spice-server's does: the guest driver
//! sets its cursor again afterwards (Linux qxl re-applies it when it creates the primary).
//!
//! The worker publishes this state after every command (a [`saffron_display::Watch`]); a
//! cursor channel wakes on it and sends what changed since it last looked: `generation` tells
//! it cheaply whether anything did, and `resets` whether it must start the client over.

use std::sync::Arc;

use saffron_ring::parse::{CursorCmd, CursorCmdKind, CursorShape, CursorType, Point};

/// The guest's cursor as the cursor ring left it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CursorState {
    /// Hot spot position on the primary surface.
    pub position: Point,
    pub visible: bool,
    /// The last shape set, owned (the command it came from may be released) and shared, so
    /// that publishing the state after each move copies no pixels.
    pub shape: Option<Arc<CursorShape>>,
    /// Trail length and frequency from the last TRAIL.
    pub trail: (u16, u16),
    /// Bumped whenever the shape changes, so a channel can tell when to resend it.
    pub shape_generation: u64,
    /// Bumped by every command and reset: equal generations mean an equal state.
    pub generation: u64,
    /// How many resets there were, so a channel can tell its clients to start over.
    pub resets: u64,
}

/// The cursor state without the shape's pixels: what the control socket's `stats` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CursorSummary {
    /// Hot spot position.
    pub x: i32,
    /// Hot spot position.
    pub y: i32,
    pub visible: bool,
    /// Type name, width, height, hot spot x and y of the current shape.
    pub shape: Option<(String, u16, u16, u16, u16)>,
    /// Shapes set since the worker started (each SET and each reset counts).
    pub shape_generation: u64,
    pub resets: u64,
}

/// What a cursor command changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CursorChange {
    Shape,
    Position,
    Visibility,
    Trail,
}

impl CursorState {
    pub fn new() -> Self {
        CursorState::default()
    }

    /// Applies one cursor command and says what changed.
    pub fn apply(&mut self, cmd: &CursorCmd) -> CursorChange {
        self.generation = self.generation.wrapping_add(1);
        match &cmd.kind {
            CursorCmdKind::Set {
                position,
                visible,
                shape,
            } => {
                self.position = *position;
                self.visible = *visible;
                self.shape = Some(Arc::new(shape.clone()));
                self.shape_generation = self.shape_generation.wrapping_add(1);
                CursorChange::Shape
            }
            CursorCmdKind::Move { position } => {
                self.position = *position;
                self.visible = true;
                CursorChange::Position
            }
            CursorCmdKind::Hide => {
                self.visible = false;
                CursorChange::Visibility
            }
            CursorCmdKind::Trail { length, frequency } => {
                self.trail = (*length, *frequency);
                CursorChange::Trail
            }
        }
    }

    /// Forgets everything (device reset, DESTROY_PRIMARY).
    pub fn reset(&mut self) {
        *self = CursorState {
            shape_generation: self.shape_generation.wrapping_add(1),
            generation: self.generation.wrapping_add(1),
            resets: self.resets.wrapping_add(1),
            ..CursorState::default()
        };
    }

    /// The state without the pixels.
    pub fn summary(&self) -> CursorSummary {
        CursorSummary {
            x: self.position.x,
            y: self.position.y,
            visible: self.visible,
            shape: self.shape.as_ref().map(|s| {
                (
                    format!("{:?}", s.kind).to_lowercase(),
                    s.width,
                    s.height,
                    s.hot_spot_x,
                    s.hot_spot_y,
                )
            }),
            shape_generation: self.shape_generation,
            resets: self.resets,
        }
    }
}

/// The shape as premultiplied-free ARGB pixels (row-major, top row first), for ALPHA and
/// MONO shapes; `None` for the colour types, whose layouts no current driver uses.
///
/// MONO shapes are an AND mask then an XOR mask, each row `ceil(width / 8)` bytes, most
/// significant bit first: AND 1 / XOR 0 is transparent, AND 0 gives black (XOR 0) or white
/// (XOR 1); AND 1 / XOR 1 inverts the screen, which ARGB cannot say: it becomes opaque
/// black.
pub fn shape_argb(shape: &CursorShape) -> Option<Vec<u32>> {
    let (w, h) = (usize::from(shape.width), usize::from(shape.height));
    match shape.kind {
        CursorType::Alpha => {
            let bytes = shape.data.get(..w * h * 4)?;
            Some(
                bytes
                    .chunks_exact(4)
                    .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
            )
        }
        CursorType::Mono => {
            let row = w.div_ceil(8);
            let and = shape.data.get(..row * h)?;
            let xor = shape.data.get(row * h..2 * row * h)?;
            let bit = |plane: &[u8], x: usize, y: usize| {
                plane
                    .get(y * row + x / 8)
                    .is_some_and(|b| b & (0x80 >> (x % 8)) != 0)
            };
            let mut out = Vec::with_capacity(w * h);
            for y in 0..h {
                for x in 0..w {
                    out.push(match (bit(and, x, y), bit(xor, x, y)) {
                        (true, false) => 0,
                        (false, true) => 0xffff_ffff,
                        _ => 0xff00_0000,
                    });
                }
            }
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use saffron_ring::parse::ReleaseInfo;
    use vm_memory::GuestAddress;

    fn cmd(kind: CursorCmdKind) -> CursorCmd {
        CursorCmd {
            release: ReleaseInfo {
                id: 1,
                addr: GuestAddress(0),
            },
            kind,
        }
    }

    fn shape(kind: CursorType, w: u16, h: u16, data: Vec<u8>) -> CursorShape {
        CursorShape {
            unique: 7,
            kind,
            width: w,
            height: h,
            hot_spot_x: 1,
            hot_spot_y: 2,
            data,
        }
    }

    #[test]
    fn set_move_hide_trail() {
        let mut c = CursorState::new();
        let s = shape(CursorType::Alpha, 1, 1, vec![1, 2, 3, 4]);
        let change = c.apply(&cmd(CursorCmdKind::Set {
            position: Point { x: 5, y: 6 },
            visible: false,
            shape: s.clone(),
        }));
        assert_eq!(change, CursorChange::Shape);
        assert_eq!(
            (c.position, c.visible, c.shape_generation),
            (Point { x: 5, y: 6 }, false, 1)
        );
        assert_eq!(c.shape.as_deref(), Some(&s));
        c.apply(&cmd(CursorCmdKind::Move {
            position: Point { x: 9, y: 9 },
        }));
        assert_eq!((c.position, c.visible), (Point { x: 9, y: 9 }, true));
        c.apply(&cmd(CursorCmdKind::Hide));
        assert!(!c.visible);
        c.apply(&cmd(CursorCmdKind::Trail {
            length: 3,
            frequency: 4,
        }));
        assert_eq!(c.trail, (3, 4));
        assert_eq!(c.generation, 4, "every command changes the generation");
        let summary = c.summary();
        assert_eq!((summary.x, summary.y, summary.visible), (9, 9, false));
        assert_eq!(summary.shape, Some(("alpha".to_string(), 1, 1, 1, 2)));
        c.reset();
        assert_eq!(
            (c.shape.is_none(), c.visible, c.shape_generation),
            (true, false, 2)
        );
        assert_eq!((c.generation, c.resets), (5, 1));
        assert_eq!(c.summary().shape, None);
    }

    #[test]
    fn shapes_as_argb() {
        let s = shape(CursorType::Alpha, 2, 1, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(shape_argb(&s), Some(vec![0x0403_0201, 0x0807_0605]));
        // 4x1 mono: AND 0b1010, XOR 0b1100 → transparent? no: pixel by pixel.
        let s = shape(CursorType::Mono, 4, 1, vec![0b1010_0000, 0b1100_0000]);
        assert_eq!(
            shape_argb(&s),
            Some(vec![0xff00_0000, 0xffff_ffff, 0, 0xff00_0000])
        );
        let short = shape(CursorType::Alpha, 2, 2, vec![0; 4]);
        assert_eq!(shape_argb(&short), None);
        assert_eq!(
            shape_argb(&shape(CursorType::Color8, 1, 1, vec![0; 8])),
            None
        );
    }
}
