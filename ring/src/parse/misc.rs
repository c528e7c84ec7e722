//! The small commands (UPDATE, MESSAGE) and the guest's monitors config.

use vm_memory::GuestMemory;

use super::{ByteReader, Context, MAX_MESSAGE_BYTES, MAX_MONITORS, ParseError, Rect, ReleaseInfo};
use crate::abi::{QXLHead, QXLMessage, QXLMonitorsConfig, QXLPHYSICAL, QXLUpdateCmd};
use crate::memslot::phys_add;

/// The deprecated UPDATE command: render `area` of a surface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateCmd {
    pub release: ReleaseInfo,
    pub area: Rect,
    pub update_id: u32,
    pub surface_id: u32,
}

/// A debug message from the guest driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub release: ReleaseInfo,
    /// The text, without its NUL; not necessarily UTF-8.
    pub text: Vec<u8>,
}

/// One head of the guest's monitor layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub id: u32,
    pub surface_id: u32,
    pub width: u32,
    pub height: u32,
    pub x: u32,
    pub y: u32,
    pub flags: u32,
}

impl From<QXLHead> for Head {
    fn from(h: QXLHead) -> Self {
        Head {
            id: h.id,
            surface_id: h.surface_id,
            width: h.width,
            height: h.height,
            x: h.x,
            y: h.y,
            flags: h.flags,
        }
    }
}

/// The guest's monitor layout (MONITORS_CONFIG_ASYNC).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorsConfig {
    /// The most heads the guest will use (0 = no stated limit).
    pub max_allowed: u16,
    /// At most [`MAX_MONITORS`] heads; further ones are dropped, as spice-server does.
    pub heads: Vec<Head>,
}

pub(super) fn parse_update<M: GuestMemory>(
    ctx: &Context<'_, M>,
    phys: QXLPHYSICAL,
    release: ReleaseInfo,
) -> Result<UpdateCmd, ParseError> {
    let (cmd, _) = ctx.read::<QXLUpdateCmd>(phys)?;
    Ok(UpdateCmd {
        release,
        area: cmd.area.into(),
        update_id: cmd.update_id,
        surface_id: ctx.surface_id(cmd.surface_id)?,
    })
}

pub(super) fn parse_message<M: GuestMemory>(
    ctx: &Context<'_, M>,
    phys: QXLPHYSICAL,
    release: ReleaseInfo,
) -> Result<Message, ParseError> {
    // The text has no declared length: scan at most to the slot end or the cap.
    let text_at = phys_add(phys, core::mem::size_of::<QXLMessage>() as u64)?;
    let scanned = ctx.slots.remaining(text_at)?.min(MAX_MESSAGE_BYTES);
    let mut text = ctx.read_bytes(text_at, scanned, MAX_MESSAGE_BYTES)?;
    let end = text
        .iter()
        .position(|&b| b == 0)
        .ok_or(ParseError::UnterminatedMessage { scanned })?;
    text.truncate(end);
    Ok(Message { release, text })
}

/// Reads the guest's monitors config at `phys`, reading its head count once.
pub fn parse_monitors_config<M: GuestMemory>(
    ctx: &Context<'_, M>,
    phys: QXLPHYSICAL,
) -> Result<MonitorsConfig, ParseError> {
    let (header, _) = ctx.read::<QXLMonitorsConfig>(phys)?;
    let (count, max_allowed) = (header.count, header.max_allowed);
    if count == 0 {
        return Err(ParseError::NoMonitors);
    }
    if max_allowed != 0 && count > max_allowed {
        return Err(ParseError::TooManyMonitors { count, max_allowed });
    }
    let head_size = core::mem::size_of::<QXLHead>() as u64;
    let heads_at = phys_add(phys, core::mem::size_of::<QXLMonitorsConfig>() as u64)?;
    // The whole declared array must be inside the slot, even the heads we drop.
    ctx.slots
        .translate(heads_at, u64::from(count) * head_size)?;
    let kept = count.min(MAX_MONITORS);
    let bytes = ctx.read_bytes(
        heads_at,
        u64::from(kept) * head_size,
        u64::from(MAX_MONITORS) * head_size,
    )?;
    let mut reader = ByteReader::new(&bytes);
    let heads = std::iter::from_fn(|| reader.take_obj::<QXLHead>())
        .map(Head::from)
        .collect();
    Ok(MonitorsConfig { max_allowed, heads })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{BAR, p, put, setup};
    use super::*;
    use crate::abi::QXLRect;
    use vm_memory::GuestAddress;

    fn release() -> ReleaseInfo {
        ReleaseInfo {
            id: 1,
            addr: GuestAddress(BAR),
        }
    }

    #[test]
    fn update_command() {
        let (mem, slots) = setup();
        let ctx = Context::new(&mem, &slots, 1024);
        let area = QXLRect {
            top: 1,
            left: 2,
            bottom: 3,
            right: 4,
        };
        put(
            &mem,
            0x100,
            QXLUpdateCmd {
                area,
                update_id: 9,
                surface_id: 0,
                ..Default::default()
            },
        );
        let u = parse_update(&ctx, p(0x100), release()).unwrap();
        assert_eq!((u.area, u.update_id), (Rect::from(area), 9));
        put(
            &mem,
            0x100,
            QXLUpdateCmd {
                surface_id: 5000,
                ..Default::default()
            },
        );
        assert!(parse_update(&ctx, p(0x100), release()).is_err());
    }

    #[test]
    fn messages_stop_at_nul_or_slot_end() {
        let (mem, slots) = setup();
        let ctx = Context::new(&mem, &slots, 1024);
        put(&mem, 0x108, *b"hello\0");
        assert_eq!(
            parse_message(&ctx, p(0x100), release()).unwrap().text,
            b"hello"
        );
        // No NUL before the end of the slot.
        let end = 0x10_0000u64;
        put(&mem, end - 8, [b'x'; 8]);
        assert!(matches!(
            parse_message(&ctx, p(end - 16), release()),
            Err(ParseError::UnterminatedMessage { scanned: 8 })
        ));
    }

    #[test]
    fn monitors_config_reads_count_once_and_caps() {
        let (mem, slots) = setup();
        let ctx = Context::new(&mem, &slots, 1024);
        put(
            &mem,
            0x100,
            QXLMonitorsConfig {
                count: 2,
                max_allowed: 4,
            },
        );
        let head = QXLHead {
            id: 1,
            width: 1280,
            height: 800,
            ..Default::default()
        };
        put(&mem, 0x104, QXLHead { id: 0, ..head });
        put(&mem, 0x104 + 28, head);
        let config = parse_monitors_config(&ctx, p(0x100)).unwrap();
        assert_eq!(config.heads.len(), 2);
        assert_eq!(config.heads[1], Head::from(head));
        put(
            &mem,
            0x100,
            QXLMonitorsConfig {
                count: 0,
                max_allowed: 4,
            },
        );
        assert!(matches!(
            parse_monitors_config(&ctx, p(0x100)),
            Err(ParseError::NoMonitors)
        ));
        put(
            &mem,
            0x100,
            QXLMonitorsConfig {
                count: 5,
                max_allowed: 4,
            },
        );
        assert!(matches!(
            parse_monitors_config(&ctx, p(0x100)),
            Err(ParseError::TooManyMonitors { .. })
        ));
        put(
            &mem,
            0x100,
            QXLMonitorsConfig {
                count: 100,
                max_allowed: 0,
            },
        );
        assert_eq!(
            parse_monitors_config(&ctx, p(0x100)).unwrap().heads.len(),
            64
        );
        // Declared heads past the slot end.
        put(
            &mem,
            0x10_0000 - 32,
            QXLMonitorsConfig {
                count: 2,
                max_allowed: 0,
            },
        );
        assert!(matches!(
            parse_monitors_config(&ctx, p(0x10_0000 - 32)),
            Err(ParseError::Translate(_))
        ));
    }
}
