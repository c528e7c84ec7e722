//! The guest agent's chunk reassembly, both ways (server `vdi.rs` and `agent.rs`).
//!
//! Byte 0: bit 0 picks the direction, bits 1-2 the policy (copy-paste, file transfer).
//! - Guest → client (`GuestReader`): the rest is what the guest writes, fed in reads whose
//!   sizes come from byte 1. Every piece a client gets is at most 2048 bytes and lies within
//!   one message, a first piece starts with a whole header of protocol 1, the pieces of a
//!   message add up to its size, and nothing the policy forbids comes out.
//! - Client → guest (`AgentInbox`): the rest is a sequence of AGENT_DATA bodies (a length
//!   byte, then that many bytes × 8, capped at 2048). What is forwarded, framed by
//!   `frame_chunks`, is read as spice-vdagentd reads its port: no chunk over 2048 bytes, and no
//!   chunk past the end of the message it continues ("lost sync" there).
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron_server::agent::{AGENT_HEADER_SIZE, AgentInbox, VD_AGENT_MAX_DATA_SIZE};
use saffron_server::vdi::{
    AgentPolicy, GuestOutput, GuestReader, VDI_CHUNK_HEADER_SIZE, VDP_CLIENT_PORT, frame_chunks,
};

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// spice-vdagentd's view of one port: header bytes read, data bytes left.
#[derive(Default)]
struct VdagentdPort {
    header: Vec<u8>,
    left: u64,
}

impl VdagentdPort {
    fn chunk(&mut self, mut payload: &[u8]) {
        assert!(payload.len() <= VD_AGENT_MAX_DATA_SIZE, "chunk too large");
        if self.header.len() < AGENT_HEADER_SIZE {
            let n = (AGENT_HEADER_SIZE - self.header.len()).min(payload.len());
            self.header.extend_from_slice(&payload[..n]);
            payload = &payload[n..];
            if self.header.len() == AGENT_HEADER_SIZE {
                self.left = u64::from(le32(&self.header, 16));
            } else {
                return;
            }
        }
        assert!(
            payload.len() as u64 <= self.left,
            "chunk larger than message, lost sync"
        );
        self.left -= payload.len() as u64;
        if self.left == 0 {
            self.header.clear();
        }
    }
}

fn forbidden(policy: AgentPolicy, type_: u32) -> bool {
    !policy.allows(type_)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let policy = AgentPolicy {
        copy_paste: mode & 2 == 0,
        file_xfer: mode & 4 == 0,
    };
    if mode & 1 == 0 {
        let Some((&step, stream)) = rest.split_first() else {
            return;
        };
        let step = usize::from(step).max(1) * 7;
        let mut reader = GuestReader::new(policy);
        let mut out = Vec::new();
        // (size, bytes seen) of the message being passed to the client.
        let mut current: Option<(u64, u64)> = None;
        for read in stream.chunks(step) {
            out.clear();
            let fed = reader.feed(read, &mut out);
            for o in &out {
                let GuestOutput::ToClient { first, data } = o else {
                    continue;
                };
                assert!(data.len() <= VD_AGENT_MAX_DATA_SIZE);
                if *first {
                    if let Some((size, seen)) = current {
                        assert_eq!(seen, size, "the previous message was cut short");
                    }
                    assert!(data.len() >= AGENT_HEADER_SIZE);
                    assert_eq!(le32(data, 0), 1, "protocol");
                    assert!(!forbidden(policy, le32(data, 4)), "a forbidden type passed");
                    current = Some((u64::from(le32(data, 16)) + AGENT_HEADER_SIZE as u64, 0));
                }
                let (size, seen) = current
                    .as_mut()
                    .expect("a continuation after a first piece");
                *seen += data.len() as u64;
                assert!(*seen <= *size, "a piece crossed its message's end");
            }
            if fed.is_err() {
                return;
            }
        }
    } else {
        let mut inbox = AgentInbox::with_policy(u32::MAX, policy);
        let mut guest = VdagentdPort::default();
        let mut rest = rest;
        while let Some((&len, tail)) = rest.split_first() {
            let n = (usize::from(len) * 8)
                .min(VD_AGENT_MAX_DATA_SIZE)
                .min(tail.len());
            let (body, tail) = tail.split_at(n);
            rest = tail;
            let Ok(done) = inbox.on_data(body) else {
                return;
            };
            for segment in done.forward {
                let framed = frame_chunks(VDP_CLIENT_PORT, &segment);
                let mut at = 0;
                while at < framed.len() {
                    assert_eq!(le32(&framed, at), VDP_CLIENT_PORT);
                    let size = le32(&framed, at + 4) as usize;
                    let start = at + VDI_CHUNK_HEADER_SIZE;
                    guest.chunk(&framed[start..start + size]);
                    at = start + size;
                }
            }
        }
    }
});
