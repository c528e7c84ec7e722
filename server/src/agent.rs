//! What a client sends for the guest agent on the main channel (spec §11): AGENT_START and
//! AGENT_TOKEN (tokens for agent data we send it) and AGENT_DATA (pieces of VDAgentMessages
//! for the guest agent).
//!
//! A client may send agent data whether or not an agent is there, and this is where
//! spice-server had CVE-2017-7506 (a VDAgentMonitorsConfig whose `num_of_monitors` exceeded
//! its data, and reassembly sizes that overflowed). So the stream is parsed and checked with
//! bounded memory before anything reaches the guest:
//!
//! - each AGENT_DATA body is at most [`VD_AGENT_MAX_DATA_SIZE`] and costs one of the tokens
//!   the server granted; a client with none left is breaking the protocol (tokens come back
//!   once the agent link has written the data to the guest, see `agent_link`);
//! - messages are reassembled from their 20-byte header; only a MONITORS_CONFIG is kept (at
//!   most [`MAX_MONITORS_CONFIG_BYTES`], refused from its header if larger), and it reaches
//!   the guest only once checked; every other type is passed on by counting (or dropped, as
//!   the copy-paste and file-transfer policy says), so a 4 GiB message costs no memory;
//! - a MONITORS_CONFIG must hold at most [`MAX_AGENT_MONITORS`] heads and
//!   `num_of_monitors` × entry size must fit its data (checked arithmetic); nothing is
//!   allocated from the claimed count before that;
//! - what is passed on comes out as segments that each lie within one message, so that the
//!   chunks framed from them never cross a message boundary (spice-vdagentd drops its port
//!   on a chunk that does).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use thiserror::Error;

use crate::vdi::AgentPolicy;
use crate::wire::{Reader, WireError, Writer};

/// Largest AGENT_DATA body (VD_AGENT_MAX_DATA_SIZE): clients split larger agent messages.
pub const VD_AGENT_MAX_DATA_SIZE: usize = 2048;
/// VDAgentMessage header: protocol u32, type u32, opaque u64, size u32.
pub const AGENT_HEADER_SIZE: usize = 20;
/// VD_AGENT_PROTOCOL.
pub const VD_AGENT_PROTOCOL: u32 = 1;
/// VD_AGENT_MONITORS_CONFIG.
pub const VD_AGENT_MONITORS_CONFIG: u32 = 2;
/// VD_AGENT_CONFIG_MONITORS_FLAG_PHYSICAL_SIZE: a {height u16, width u16} in mm per head
/// follows the heads.
const FLAG_PHYSICAL_SIZE: u32 = 2;
/// One VDAgentMonConfig: height, width, depth u32, x, y i32.
const MON_CONFIG_SIZE: u64 = 20;
/// One physical size entry.
const MON_MM_SIZE: u64 = 4;
/// Most heads a client monitors config may name: what the device can pass on to the guest
/// (the ROM's client monitors config holds 64 heads, `saffron_ring::parse::MAX_MONITORS`).
pub const MAX_AGENT_MONITORS: u32 = 64;
/// Largest MONITORS_CONFIG payload: num and flags, then the most heads with their physical
/// sizes (1544 bytes). The only agent message kept in memory.
pub const MAX_MONITORS_CONFIG_BYTES: u32 =
    8 + MAX_AGENT_MONITORS * (MON_CONFIG_SIZE + MON_MM_SIZE) as u32;

/// Errors in a client's agent stream; each ends the main channel (the session).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AgentError {
    #[error("AGENT_DATA of {size} bytes exceeds {VD_AGENT_MAX_DATA_SIZE}")]
    DataTooLarge { size: usize },
    #[error("AGENT_DATA without a token (the server granted {granted})")]
    NoToken { granted: u32 },
    #[error("agent message protocol {protocol}, expected {VD_AGENT_PROTOCOL}")]
    Protocol { protocol: u32 },
    #[error("monitors config of {size} bytes exceeds {MAX_MONITORS_CONFIG_BYTES}")]
    MonitorsConfigTooLarge { size: u32 },
    #[error("monitors config names {count} heads, more than {MAX_AGENT_MONITORS}")]
    TooManyMonitors { count: u32 },
    #[error("monitors config names {count} heads needing {needed} bytes, it has {found}")]
    MonitorsConfigShort { count: u32, needed: u64, found: u64 },
    #[error("malformed agent message: {0}")]
    Wire(#[from] WireError),
}

/// One head of a client's monitors config.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AgentMonitor {
    pub width: u32,
    pub height: u32,
    pub depth: u32,
    pub x: i32,
    pub y: i32,
}

/// A complete agent message from the client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentMessage {
    /// VD_AGENT_MONITORS_CONFIG, checked.
    MonitorsConfig {
        flags: u32,
        monitors: Vec<AgentMonitor>,
    },
    /// Any other type, skipped (its payload was not kept).
    Other { type_: u32, size: u32 },
}

/// What happens to the body of the message being read.
enum Fate {
    /// A MONITORS_CONFIG, kept whole (header first) and checked before it is passed on.
    Keep(Vec<u8>),
    /// Passed on as it comes.
    Forward,
    /// Dropped (the policy forbids its type).
    Drop,
}

/// Where the reassembly of the current message stands.
enum Stage {
    Header {
        buf: [u8; AGENT_HEADER_SIZE],
        have: usize,
    },
    Body {
        type_: u32,
        size: u32,
        left: u32,
        fate: Fate,
    },
}

/// What one AGENT_DATA body gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ClientData {
    /// The messages it completed.
    pub messages: Vec<AgentMessage>,
    /// Bytes for the guest agent, each segment within one message, in order.
    pub forward: Vec<Vec<u8>>,
}

/// One main channel's agent state.
pub struct AgentInbox {
    granted: u32,
    tokens: u32,
    /// Tokens the agent link gave back (data written to the guest), added before each check.
    returned: Arc<AtomicU32>,
    policy: AgentPolicy,
    stage: Stage,
}

impl AgentInbox {
    /// An inbox for a client that was granted `tokens`, under the default policy.
    pub fn new(tokens: u32) -> AgentInbox {
        AgentInbox::with_policy(tokens, AgentPolicy::default())
    }

    /// An inbox for a client that was granted `tokens`, passing on what `policy` allows.
    pub fn with_policy(tokens: u32, policy: AgentPolicy) -> AgentInbox {
        AgentInbox {
            granted: tokens,
            tokens,
            returned: Arc::default(),
            policy,
            stage: Stage::Header {
                buf: [0; AGENT_HEADER_SIZE],
                have: 0,
            },
        }
    }

    /// The counter through which tokens come back.
    pub fn token_return(&self) -> Arc<AtomicU32> {
        self.returned.clone()
    }

    /// AGENT_START or AGENT_TOKEN: the `num_tokens` the client grants.
    pub fn on_tokens(&mut self, body: &[u8]) -> Result<u32, AgentError> {
        Ok(Reader::new(body).u32()?)
    }

    /// Whether the client stands between messages (nothing half sent).
    pub fn at_boundary(&self) -> bool {
        matches!(self.stage, Stage::Header { have: 0, .. })
    }

    /// One AGENT_DATA body: the messages it completed and what goes to the guest agent.
    pub fn on_data(&mut self, body: &[u8]) -> Result<ClientData, AgentError> {
        if body.len() > VD_AGENT_MAX_DATA_SIZE {
            return Err(AgentError::DataTooLarge { size: body.len() });
        }
        let back = self.returned.swap(0, Ordering::AcqRel);
        self.tokens = self.tokens.saturating_add(back).min(self.granted);
        self.tokens = self.tokens.checked_sub(1).ok_or(AgentError::NoToken {
            granted: self.granted,
        })?;
        let mut rest = body;
        let mut done = ClientData::default();
        // The segment being built for the current message.
        let mut segment: Vec<u8> = Vec::new();
        while !rest.is_empty() {
            match &mut self.stage {
                Stage::Header { buf, have } => {
                    let n = (AGENT_HEADER_SIZE - *have).min(rest.len());
                    let (take, tail) = rest.split_at(n);
                    buf[*have..*have + n].copy_from_slice(take);
                    *have += n;
                    rest = tail;
                    if *have == AGENT_HEADER_SIZE {
                        let header = *buf;
                        self.start_body(&header)?;
                        if matches!(
                            self.stage,
                            Stage::Body {
                                fate: Fate::Forward,
                                ..
                            }
                        ) {
                            segment.extend_from_slice(&header);
                        }
                        self.finish_if_complete(&mut done, &mut segment)?;
                    }
                }
                Stage::Body { left, fate, .. } => {
                    let n = (*left as usize).min(rest.len());
                    let (take, tail) = rest.split_at(n);
                    match fate {
                        Fate::Keep(k) => k.extend_from_slice(take),
                        Fate::Forward => segment.extend_from_slice(take),
                        Fate::Drop => {}
                    }
                    *left -= n as u32;
                    rest = tail;
                    self.finish_if_complete(&mut done, &mut segment)?;
                }
            }
        }
        if !segment.is_empty() {
            done.forward.push(segment);
        }
        Ok(done)
    }

    fn start_body(&mut self, header: &[u8; AGENT_HEADER_SIZE]) -> Result<(), AgentError> {
        let mut r = Reader::new(header);
        let protocol = r.u32()?;
        let type_ = r.u32()?;
        let _opaque = r.u64()?;
        let size = r.u32()?;
        if protocol != VD_AGENT_PROTOCOL {
            return Err(AgentError::Protocol { protocol });
        }
        let fate = if type_ == VD_AGENT_MONITORS_CONFIG {
            if size > MAX_MONITORS_CONFIG_BYTES {
                return Err(AgentError::MonitorsConfigTooLarge { size });
            }
            // size ≤ MAX_MONITORS_CONFIG_BYTES (1544).
            let mut kept = Vec::with_capacity(AGENT_HEADER_SIZE + size as usize);
            kept.extend_from_slice(header);
            Fate::Keep(kept)
        } else if self.policy.allows(type_) {
            Fate::Forward
        } else {
            Fate::Drop
        };
        self.stage = Stage::Body {
            type_,
            size,
            left: size,
            fate,
        };
        Ok(())
    }

    fn finish_if_complete(
        &mut self,
        done: &mut ClientData,
        segment: &mut Vec<u8>,
    ) -> Result<(), AgentError> {
        let Stage::Body {
            type_, size, left, ..
        } = &self.stage
        else {
            return Ok(());
        };
        if *left != 0 {
            return Ok(());
        }
        let (type_, size) = (*type_, *size);
        let stage = std::mem::replace(
            &mut self.stage,
            Stage::Header {
                buf: [0; AGENT_HEADER_SIZE],
                have: 0,
            },
        );
        match stage {
            Stage::Body {
                fate: Fate::Keep(data),
                ..
            } => {
                let message = parse_monitors_config(data.get(AGENT_HEADER_SIZE..).unwrap_or(&[]))?;
                if let AgentMessage::MonitorsConfig { flags, monitors } = &message {
                    done.forward
                        .push(monitors_config_for_agent(*flags, monitors));
                }
                done.messages.push(message);
            }
            Stage::Body { fate, .. } => {
                if matches!(fate, Fate::Forward) && !segment.is_empty() {
                    done.forward.push(std::mem::take(segment));
                }
                done.messages.push(AgentMessage::Other { type_, size });
            }
            Stage::Header { .. } => {}
        }
        Ok(())
    }
}

/// The checked monitors config as the guest agent gets it: re-encoded from the parsed heads,
/// without the physical sizes. spice-gtk adds them (FLAG_PHYSICAL_SIZE), and spice-vdagentd
/// 0.22 (Debian 12's) refuses any monitors config whose size is not exactly the heads'
/// ("invalid message size"), so it would never set X's layout; the sizes only serve DPI.
pub fn monitors_config_for_agent(flags: u32, monitors: &[AgentMonitor]) -> Vec<u8> {
    let mut data = Writer::default();
    // ≤ 64 heads (checked by the parse).
    data.u32(monitors.len() as u32)
        .u32(flags & !FLAG_PHYSICAL_SIZE);
    for m in monitors {
        data.u32(m.height)
            .u32(m.width)
            .u32(m.depth)
            .i32(m.x)
            .i32(m.y);
    }
    let mut w = Writer::default();
    // ≤ 8 + 64 × 20 bytes.
    w.u32(VD_AGENT_PROTOCOL)
        .u32(VD_AGENT_MONITORS_CONFIG)
        .u64(0)
        .u32(data.buf.len() as u32)
        .bytes(&data.buf);
    w.buf
}

/// Checks and decodes a VDAgentMonitorsConfig payload.
pub fn parse_monitors_config(data: &[u8]) -> Result<AgentMessage, AgentError> {
    let mut r = Reader::new(data);
    let count = r.u32()?;
    let flags = r.u32()?;
    if count > MAX_AGENT_MONITORS {
        return Err(AgentError::TooManyMonitors { count });
    }
    let per_head = MON_CONFIG_SIZE
        + if flags & FLAG_PHYSICAL_SIZE != 0 {
            MON_MM_SIZE
        } else {
            0
        };
    // count ≤ 64: no overflow; checked anyway against the data actually present.
    let needed = 8 + u64::from(count) * per_head;
    if needed > data.len() as u64 {
        return Err(AgentError::MonitorsConfigShort {
            count,
            needed,
            found: data.len() as u64,
        });
    }
    let mut monitors = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (height, width, depth) = (r.u32()?, r.u32()?, r.u32()?);
        let (x, y) = (r.i32()?, r.i32()?);
        monitors.push(AgentMonitor {
            width,
            height,
            depth,
            x,
            y,
        });
    }
    Ok(AgentMessage::MonitorsConfig { flags, monitors })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(type_: u32, payload: &[u8]) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(VD_AGENT_PROTOCOL)
            .u32(type_)
            .u64(0)
            .u32(payload.len() as u32)
            .bytes(payload);
        w.buf
    }

    fn monitors(count: u32, heads: u32) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(count).u32(0);
        for i in 0..heads {
            w.u32(768).u32(1024).u32(32).i32(i as i32 * 1024).i32(0);
        }
        w.buf
    }

    #[test]
    fn monitors_config_split_over_messages() {
        let mut inbox = AgentInbox::new(10);
        let bytes = message(VD_AGENT_MONITORS_CONFIG, &monitors(2, 2));
        let (a, b) = bytes.split_at(7);
        assert_eq!(inbox.on_data(a).unwrap(), ClientData::default());
        let done = inbox.on_data(b).unwrap();
        let AgentMessage::MonitorsConfig { monitors, .. } = &done.messages[0] else {
            panic!("{done:?}")
        };
        assert_eq!(monitors.len(), 2);
        assert_eq!((monitors[1].width, monitors[1].x), (1024, 1024));
        // Checked, it goes to the guest whole, header first.
        assert_eq!(done.forward, vec![bytes.clone()]);
    }

    #[test]
    fn forwarded_segments_never_cross_messages_and_policy_drops() {
        let clip = message(4, &[9; 3000]);
        let grab = message(7, &[1, 0, 0, 0]);
        let caps = message(6, &[1, 0, 0, 0, 0xff, 0, 0, 0]);
        let mut stream = clip.clone();
        stream.extend(&grab);
        stream.extend(&caps);
        for (policy, want) in [
            (
                AgentPolicy::default(),
                vec![clip.clone(), grab.clone(), caps.clone()],
            ),
            (
                AgentPolicy {
                    copy_paste: false,
                    file_xfer: true,
                },
                vec![caps.clone()],
            ),
        ] {
            for step in [1, 13, 2048] {
                let mut inbox = AgentInbox::with_policy(u32::MAX, policy);
                let mut got: Vec<Vec<u8>> = Vec::new();
                let mut starts = Vec::new();
                for body in stream.chunks(step) {
                    for seg in inbox.on_data(body).unwrap().forward {
                        // A segment starts a message exactly when it starts with a header.
                        if got.last().is_none_or(|m| {
                            m.len() >= 20 && {
                                let size = u32::from_le_bytes(m[16..20].try_into().unwrap());
                                m.len() == 20 + size as usize
                            }
                        }) {
                            starts.push(seg.len());
                            got.push(seg);
                        } else {
                            got.last_mut().unwrap().extend(seg);
                        }
                    }
                }
                assert_eq!(got, want, "step {step}, {policy:?}");
                assert!(inbox.at_boundary());
            }
        }
    }

    #[test]
    fn the_agent_gets_monitors_configs_without_physical_sizes() {
        let mut payload = Writer::default();
        payload.u32(2).u32(FLAG_PHYSICAL_SIZE | 1);
        for i in 0..2 {
            payload.u32(600).u32(800).u32(32).i32(i * 800).i32(0);
        }
        payload.u16(200).u16(300).u16(200).u16(300);
        let mut inbox = AgentInbox::new(10);
        let done = inbox
            .on_data(&message(VD_AGENT_MONITORS_CONFIG, &payload.buf))
            .unwrap();
        let mut want = Writer::default();
        want.u32(2).u32(1);
        for i in 0..2 {
            want.u32(600).u32(800).u32(32).i32(i * 800).i32(0);
        }
        assert_eq!(
            done.forward,
            vec![message(VD_AGENT_MONITORS_CONFIG, &want.buf)],
            "8 + 2 × 20 bytes, USE_POS kept, PHYSICAL_SIZE gone"
        );
    }

    #[test]
    fn tokens_come_back_through_the_counter() {
        let mut inbox = AgentInbox::new(2);
        let back = inbox.token_return();
        let m = message(7, &[1, 0, 0, 0]);
        inbox.on_data(&m).unwrap();
        inbox.on_data(&m).unwrap();
        assert!(inbox.on_data(&m).is_err(), "out of tokens");
        back.fetch_add(5, Ordering::AcqRel);
        // Never more than granted: 2 back, not 5.
        inbox.on_data(&m).unwrap();
        inbox.on_data(&m).unwrap();
        assert!(inbox.on_data(&m).is_err());
    }

    #[test]
    fn claimed_counts_are_checked_against_the_data() {
        for (count, heads, err) in [
            (u32::MAX, 1, AgentError::TooManyMonitors { count: u32::MAX }),
            (65, 65, AgentError::TooManyMonitors { count: 65 }),
            (
                3,
                2,
                AgentError::MonitorsConfigShort {
                    count: 3,
                    needed: 68,
                    found: 48,
                },
            ),
        ] {
            let mut inbox = AgentInbox::new(10);
            let bytes = message(VD_AGENT_MONITORS_CONFIG, &monitors(count, heads));
            let got = bytes
                .chunks(VD_AGENT_MAX_DATA_SIZE)
                .map(|c| inbox.on_data(c))
                .find_map(Result::err);
            assert_eq!(got, Some(err), "{count} heads claimed, {heads} sent");
        }
        // 64 heads is the bound.
        let mut inbox = AgentInbox::new(10);
        let bytes = message(VD_AGENT_MONITORS_CONFIG, &monitors(64, 64));
        assert!(bytes.len() <= VD_AGENT_MAX_DATA_SIZE);
        assert!(matches!(
            &inbox.on_data(&bytes).unwrap().messages[..],
            [AgentMessage::MonitorsConfig { monitors, .. }] if monitors.len() == 64
        ));
    }

    #[test]
    fn big_messages_are_skipped_not_kept_and_tokens_run_out() {
        let mut inbox = AgentInbox::new(3);
        // A 4 GiB clipboard message: header only, then skipped by counting.
        let mut header = message(4, &[]);
        header[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(inbox.on_data(&header).unwrap().messages, vec![]);
        assert_eq!(inbox.on_data(&[0; 2048]).unwrap().messages, vec![]);
        assert_eq!(inbox.on_data(&[0; 10]).unwrap().messages, vec![]);
        assert_eq!(
            inbox.on_data(&[0; 10]),
            Err(AgentError::NoToken { granted: 3 })
        );
        // Oversized pieces, bad protocol and oversized monitors configs are refused.
        let mut inbox = AgentInbox::new(10);
        assert_eq!(
            inbox.on_data(&[0; 2049]),
            Err(AgentError::DataTooLarge { size: 2049 })
        );
        let mut bad = message(1, &[]);
        bad[0] = 2;
        assert_eq!(
            inbox.on_data(&bad),
            Err(AgentError::Protocol { protocol: 2 })
        );
        let mut inbox = AgentInbox::new(10);
        let mut big = message(VD_AGENT_MONITORS_CONFIG, &[]);
        big[16..20].copy_from_slice(&(MAX_MONITORS_CONFIG_BYTES + 1).to_le_bytes());
        assert_eq!(
            inbox.on_data(&big),
            Err(AgentError::MonitorsConfigTooLarge {
                size: MAX_MONITORS_CONFIG_BYTES + 1
            })
        );
        assert_eq!(
            inbox.on_tokens(&[1, 0]),
            Err(WireError::Truncated {
                offset: 0,
                needed: 4,
                len: 2
            }
            .into())
        );
        assert_eq!(inbox.on_tokens(&u32::MAX.to_le_bytes()), Ok(u32::MAX));
        assert_eq!(inbox.on_tokens(&5u32.to_le_bytes()), Ok(5));
    }
}
