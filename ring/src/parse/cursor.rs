//! Cursor ring commands (QXL_CMD_CURSOR) and cursor shapes.
//!
//! The shape header is read once (CVE-2021-4207 was a second read of width and height
//! between the size check and the copy), its dimensions are bounded before any size is
//! computed (CVE-2021-4206 was an overflow in width × height), and the data a shape needs
//! for its type must be present.

use vm_memory::GuestMemory;

use super::{Context, MAX_CURSOR_BYTES, MAX_CURSOR_DIMENSION, ParseError, Point, ReleaseInfo};
use crate::abi::{
    QXL_CURSOR_HIDE, QXL_CURSOR_MOVE, QXL_CURSOR_SET, QXL_CURSOR_TRAIL, QXLCursor, QXLCursorCmd,
    QXLCursorSet, QXLCursorTrail, QXLPHYSICAL, QXLPoint16, SPICE_CURSOR_TYPE_ALPHA,
    SPICE_CURSOR_TYPE_COLOR4, SPICE_CURSOR_TYPE_COLOR8, SPICE_CURSOR_TYPE_COLOR16,
    SPICE_CURSOR_TYPE_COLOR24, SPICE_CURSOR_TYPE_COLOR32, SPICE_CURSOR_TYPE_MONO, union_member,
};
use crate::chunks::{ChainStart, ChunkLimits};
use crate::memslot::phys_add;

/// Pixel layouts of cursor shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CursorType {
    /// `width × height` ARGB u32 pixels (the only type Linux sends).
    Alpha,
    /// AND mask then XOR mask, each `height × ceil(width / 8)` bytes.
    Mono,
    Color4,
    Color8,
    Color16,
    Color24,
    Color32,
}

impl CursorType {
    /// The type of a `SPICE_CURSOR_TYPE_*` value.
    pub fn from_raw(type_: u16) -> Option<Self> {
        Some(match type_ {
            SPICE_CURSOR_TYPE_ALPHA => Self::Alpha,
            SPICE_CURSOR_TYPE_MONO => Self::Mono,
            SPICE_CURSOR_TYPE_COLOR4 => Self::Color4,
            SPICE_CURSOR_TYPE_COLOR8 => Self::Color8,
            SPICE_CURSOR_TYPE_COLOR16 => Self::Color16,
            SPICE_CURSOR_TYPE_COLOR24 => Self::Color24,
            SPICE_CURSOR_TYPE_COLOR32 => Self::Color32,
            _ => return None,
        })
    }

    /// Bytes a shape of this type and size needs at least, where the layout is defined
    /// (ALPHA and MONO); the colour types are left to the renderer.
    pub fn min_data_size(self, width: u16, height: u16) -> u64 {
        let (w, h) = (u64::from(width), u64::from(height));
        match self {
            Self::Alpha => w * h * 4,
            Self::Mono => 2 * w.div_ceil(8) * h,
            _ => 0,
        }
    }
}

/// A cursor image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorShape {
    /// The guest's cache key.
    pub unique: u64,
    pub kind: CursorType,
    pub width: u16,
    pub height: u16,
    pub hot_spot_x: u16,
    pub hot_spot_y: u16,
    /// The shape's pixels: the declared size, clipped to what the chunks hold.
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CursorCmdKind {
    Set {
        position: Point,
        visible: bool,
        shape: CursorShape,
    },
    Move {
        position: Point,
    },
    Hide,
    Trail {
        length: u16,
        frequency: u16,
    },
}

/// A cursor command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorCmd {
    pub release: ReleaseInfo,
    pub kind: CursorCmdKind,
}

pub(super) fn parse_cursor_cmd<M: GuestMemory>(
    ctx: &Context<'_, M>,
    phys: QXLPHYSICAL,
    release: ReleaseInfo,
) -> Result<CursorCmd, ParseError> {
    let (cmd, _) = ctx.read::<QXLCursorCmd>(phys)?;
    let kind = match cmd.type_ {
        QXL_CURSOR_SET => {
            let set: QXLCursorSet = union_member(&cmd.u);
            CursorCmdKind::Set {
                position: set.position.into(),
                visible: set.visible != 0,
                shape: parse_shape(ctx, set.shape)?,
            }
        }
        QXL_CURSOR_MOVE => CursorCmdKind::Move {
            position: union_member::<QXLPoint16>(&cmd.u).into(),
        },
        QXL_CURSOR_HIDE => CursorCmdKind::Hide,
        QXL_CURSOR_TRAIL => {
            let trail: QXLCursorTrail = union_member(&cmd.u);
            CursorCmdKind::Trail {
                length: trail.length,
                frequency: trail.frequency,
            }
        }
        type_ => return Err(ParseError::UnknownCursorCmd { type_ }),
    };
    Ok(CursorCmd { release, kind })
}

fn parse_shape<M: GuestMemory>(
    ctx: &Context<'_, M>,
    phys: QXLPHYSICAL,
) -> Result<CursorShape, ParseError> {
    let (cursor, _) = ctx.read::<QXLCursor>(phys)?;
    let h = cursor.header;
    let (type_, width, height) = (h.type_, h.width, h.height);
    let kind = CursorType::from_raw(type_).ok_or(ParseError::UnknownCursorType { type_ })?;
    if width > MAX_CURSOR_DIMENSION || height > MAX_CURSOR_DIMENSION {
        return Err(ParseError::CursorTooLarge { width, height });
    }
    let header_at = phys_add(phys, core::mem::offset_of!(QXLCursor, chunk) as u64)?;
    let data = ctx.chain(
        ChainStart::Inline {
            header: cursor.chunk,
            header_at,
        },
        ChunkLimits::bytes(MAX_CURSOR_BYTES),
    )?;
    // spice-server's rule: the declared size, but never more than the chunks hold.
    let mut data = data;
    data.truncate(usize::try_from(cursor.data_size).unwrap_or(usize::MAX));
    let needed = kind.min_data_size(width, height);
    if (data.len() as u64) < needed {
        return Err(ParseError::CursorDataTooShort {
            needed,
            found: data.len() as u64,
        });
    }
    Ok(CursorShape {
        unique: h.unique,
        kind,
        width,
        height,
        hot_spot_x: h.hot_spot_x,
        hot_spot_y: h.hot_spot_y,
        data,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{BAR, p, put, put_bytes, setup};
    use super::*;
    use crate::abi::{QXLCursorHeader, QXLDataChunk, QXLReleaseInfo};
    use vm_memory::{ByteValued, GuestAddress};

    fn release() -> ReleaseInfo {
        ReleaseInfo {
            id: 1,
            addr: GuestAddress(BAR),
        }
    }

    fn cmd(type_: u8, u: &[u8]) -> QXLCursorCmd {
        let mut c = QXLCursorCmd {
            release_info: QXLReleaseInfo { id: 1 },
            type_,
            ..Default::default()
        };
        c.u[..u.len()].copy_from_slice(u);
        c
    }

    fn shape(type_: u16, w: u16, h: u16, data_size: u32, chunk_size: u32) -> QXLCursor {
        QXLCursor {
            header: QXLCursorHeader {
                unique: 5,
                type_,
                width: w,
                height: h,
                hot_spot_x: 1,
                hot_spot_y: 2,
            },
            data_size,
            chunk: QXLDataChunk {
                data_size: chunk_size,
                prev_chunk: 0,
                next_chunk: 0,
            },
        }
    }

    #[test]
    fn set_like_linux() {
        let (mem, slots) = setup();
        let ctx = Context::new(&mem, &slots, 1024);
        let set = QXLCursorSet {
            position: QXLPoint16 { x: 10, y: -3 },
            visible: 1,
            shape: p(0x400),
        };
        put(&mem, 0x100, cmd(QXL_CURSOR_SET, set.as_slice()));
        put(&mem, 0x400, shape(0, 64, 64, 16384, 16384));
        put_bytes(&mem, 0x400 + 42, &[0xabu8; 16384]);
        let parsed = parse_cursor_cmd(&ctx, p(0x100), release()).unwrap();
        let CursorCmdKind::Set {
            position,
            visible,
            shape,
        } = parsed.kind
        else {
            panic!()
        };
        assert_eq!((position, visible), (Point { x: 10, y: -3 }, true));
        assert_eq!(
            (shape.kind, shape.width, shape.height, shape.hot_spot_y),
            (CursorType::Alpha, 64, 64, 2)
        );
        assert_eq!(shape.data.len(), 16384);
    }

    #[test]
    fn shapes_are_bounded() {
        let (mem, slots) = setup();
        let ctx = Context::new(&mem, &slots, 1024);
        let set = QXLCursorSet {
            position: QXLPoint16::default(),
            visible: 1,
            shape: p(0x400),
        };
        put(&mem, 0x100, cmd(QXL_CURSOR_SET, set.as_slice()));
        let parse = || parse_cursor_cmd(&ctx, p(0x100), release());
        put(&mem, 0x400, shape(0, 513, 1, 0, 0));
        assert!(matches!(
            parse(),
            Err(ParseError::CursorTooLarge { width: 513, .. })
        ));
        put(&mem, 0x400, shape(9, 1, 1, 0, 0));
        assert!(matches!(
            parse(),
            Err(ParseError::UnknownCursorType { type_: 9 })
        ));
        // Declared 16384 bytes, chunk holds 100: clipped, then too short for 64x64 ARGB.
        put(&mem, 0x400, shape(0, 64, 64, 16384, 100));
        assert!(matches!(
            parse(),
            Err(ParseError::CursorDataTooShort {
                needed: 16384,
                found: 100
            })
        ));
        // MONO 16x2: 2 × 2 × 2 = 8 bytes.
        put(&mem, 0x400, shape(1, 16, 2, 8, 8));
        assert!(parse().is_ok());
        put(&mem, 0x400, shape(1, 16, 2, 7, 8));
        assert!(parse().is_err());
    }

    #[test]
    fn move_hide_trail_and_unknown() {
        let (mem, slots) = setup();
        let ctx = Context::new(&mem, &slots, 1024);
        put(
            &mem,
            0x100,
            cmd(QXL_CURSOR_MOVE, QXLPoint16 { x: 7, y: 8 }.as_slice()),
        );
        assert_eq!(
            parse_cursor_cmd(&ctx, p(0x100), release()).unwrap().kind,
            CursorCmdKind::Move {
                position: Point { x: 7, y: 8 }
            }
        );
        put(&mem, 0x100, cmd(QXL_CURSOR_HIDE, &[]));
        assert_eq!(
            parse_cursor_cmd(&ctx, p(0x100), release()).unwrap().kind,
            CursorCmdKind::Hide
        );
        put(
            &mem,
            0x100,
            cmd(
                QXL_CURSOR_TRAIL,
                QXLCursorTrail {
                    length: 3,
                    frequency: 4,
                }
                .as_slice(),
            ),
        );
        assert_eq!(
            parse_cursor_cmd(&ctx, p(0x100), release()).unwrap().kind,
            CursorCmdKind::Trail {
                length: 3,
                frequency: 4
            }
        );
        put(&mem, 0x100, cmd(4, &[]));
        assert!(matches!(
            parse_cursor_cmd(&ctx, p(0x100), release()),
            Err(ParseError::UnknownCursorCmd { type_: 4 })
        ));
    }
}
