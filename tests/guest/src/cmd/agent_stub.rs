//! `agent-stub`: the least a Spice guest agent must do for a client to send it monitors
//! configs, and nothing more. A client (spice-gtk) only sends VD_AGENT_MONITORS_CONFIG while the
//! server says an agent is connected; this stub answers capability requests with
//! VD_AGENT_CAP_MONITORS_CONFIG and acts on nothing, so whatever the guest's display then does
//! comes from the QXL device (its ROM's client monitors config and interrupt), not from an
//! agent's xrandr.
//!
//! Prints `SAFFRON-AGENTSTUB type=T size=N` per whole message the server sends, and
//! `SAFFRON-AGENTSTUB monitors=K heads=WxH+X+Y,...` for each monitors config.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::args::Options;
use crate::error::{Error, Result};

/// VDIChunkHeader: port and size, then that many bytes.
const CHUNK_HEADER: usize = 8;
/// VDAgentMessage: protocol, type, opaque, size.
const MESSAGE_HEADER: usize = 20;
/// VDP_CLIENT_PORT: messages for the client.
const CLIENT_PORT: u32 = 1;
const VD_AGENT_PROTOCOL: u32 = 1;
const VD_AGENT_MONITORS_CONFIG: u32 = 2;
const VD_AGENT_ANNOUNCE_CAPABILITIES: u32 = 6;
/// VD_AGENT_CAP_MONITORS_CONFIG's bit.
const CAPS: u32 = 1 << 1;
/// Largest message the stub keeps (a 64-head monitors config is 1.5 KiB; clipboards are not
/// offered, so nothing larger is expected).
const MAX_MESSAGE: usize = 64 << 10;

fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_le_bytes)
}

/// A whole agent message to the client, in one chunk.
fn announce() -> Vec<u8> {
    let body = [0u32.to_le_bytes(), CAPS.to_le_bytes()].concat();
    let mut msg = Vec::new();
    msg.extend(VD_AGENT_PROTOCOL.to_le_bytes());
    msg.extend(VD_AGENT_ANNOUNCE_CAPABILITIES.to_le_bytes());
    msg.extend(0u64.to_le_bytes());
    msg.extend((body.len() as u32).to_le_bytes());
    msg.extend(body);
    let mut chunk = CLIENT_PORT.to_le_bytes().to_vec();
    chunk.extend((msg.len() as u32).to_le_bytes());
    chunk.extend(msg);
    chunk
}

/// What a monitors config body says, as `WxH+X+Y` per head.
fn describe_monitors(body: &[u8]) -> String {
    let n = le32(body, 0) as usize;
    let mut heads = Vec::new();
    for i in 0..n.min(64) {
        let at = 8 + i * 20;
        if body.len() < at + 20 {
            break;
        }
        // VDAgentMonConfig: height, width, depth, x, y.
        heads.push(format!(
            "{}x{}+{}+{}",
            le32(body, at + 4),
            le32(body, at),
            le32(body, at + 12) as i32,
            le32(body, at + 16) as i32
        ));
    }
    format!("monitors={n} heads={}", heads.join(","))
}

/// `agent-stub [--port PATH] [--seconds 120]`: serves the port until the time is up.
pub fn run(mut opts: Options) -> Result<()> {
    let path = PathBuf::from(
        opts.take("port")
            .unwrap_or_else(|| "/dev/virtio-ports/com.redhat.spice.0".to_string()),
    );
    let seconds = opts.u64_or("seconds", 120, 3600)?;
    opts.finish()?;
    let io = |op: &'static str| {
        let path = path.clone();
        move |source| Error::Io { op, path, source }
    };
    let mut port = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(io("open"))?;
    // Say who we are at once, as spice-vdagentd does when it opens its port.
    port.write_all(&announce()).map_err(io("write"))?;
    println!("SAFFRON-AGENTSTUB status=up caps={CAPS:#x}");
    let until = Instant::now() + Duration::from_secs(seconds);
    let (mut stream, mut message) = (Vec::new(), Vec::new());
    let mut buf = vec![0u8; 4096];
    while Instant::now() < until {
        let n = port.read(&mut buf).map_err(io("read"))?;
        if n == 0 {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        stream.extend_from_slice(buf.get(..n).unwrap_or_default());
        // Chunks → one message stream; whole messages out of it.
        while stream.len() >= CHUNK_HEADER {
            let size = le32(&stream, 4) as usize;
            if stream.len() < CHUNK_HEADER + size {
                break;
            }
            message.extend(stream.drain(..CHUNK_HEADER + size).skip(CHUNK_HEADER));
        }
        while message.len() >= MESSAGE_HEADER {
            let (type_, size) = (le32(&message, 4), le32(&message, 16) as usize);
            if size > MAX_MESSAGE {
                return Err(Error::Check(format!("agent message of {size} bytes")));
            }
            if message.len() < MESSAGE_HEADER + size {
                break;
            }
            let whole: Vec<u8> = message.drain(..MESSAGE_HEADER + size).collect();
            let body = whole.get(MESSAGE_HEADER..).unwrap_or_default();
            println!("SAFFRON-AGENTSTUB type={type_} size={size}");
            match type_ {
                VD_AGENT_ANNOUNCE_CAPABILITIES if le32(body, 0) != 0 => {
                    port.write_all(&announce()).map_err(io("write"))?;
                }
                VD_AGENT_MONITORS_CONFIG => {
                    println!("SAFFRON-AGENTSTUB {}", describe_monitors(body));
                }
                _ => {}
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announce_is_one_chunk_to_the_client() {
        let a = announce();
        assert_eq!(le32(&a, 0), CLIENT_PORT);
        assert_eq!(le32(&a, 4) as usize, a.len() - CHUNK_HEADER);
        assert_eq!(le32(&a, 8 + 4), VD_AGENT_ANNOUNCE_CAPABILITIES);
        assert_eq!(le32(&a, 8 + 20 + 4), CAPS);
    }

    #[test]
    fn monitors_are_described() {
        let mut body = [1u32.to_le_bytes(), 1u32.to_le_bytes()].concat();
        for v in [600u32, 800, 32, 0, 0] {
            body.extend(v.to_le_bytes());
        }
        assert_eq!(describe_monitors(&body), "monitors=1 heads=800x600+0+0");
        assert_eq!(describe_monitors(&body[..10]), "monitors=1 heads=");
    }
}
