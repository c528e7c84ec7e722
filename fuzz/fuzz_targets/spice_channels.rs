//! Data-stage client messages of every channel we serve (main, display, inputs, cursor,
//! playback, record), fed
//! to the server's own per-channel loop (`server::fuzz_client_messages`: `read_message` with
//! the channel's size limit, `handle_common` for ACK_SYNC/ACK/PONG/DISCONNECTING/migration,
//! then main's ATTACH_CHANNELS / MOUSE_MODE_REQUEST, the inputs key/mouse decoders or the
//! record channel's MODE/DATA/START_MARK into a bounded capture buffer).
//!
//! Input: byte 0 bits 0–1 pick the channel (main, display, inputs, cursor; bit 6 playback,
//! bit 7 record instead), bit 2 set = the
//! full 18-byte header (no MINI_HEADER cap); the rest is the client's byte stream.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron_server::conn::ConnError;
use saffron_server::server::fuzz_client_messages;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, stream)) = data.split_first() else {
        return;
    };
    // Bits 0-1: main, display, inputs or cursor; bit 6 playback, bit 7 record instead.
    let channel = match sel {
        s if s & 0x80 != 0 => 6,
        s if s & 0x40 != 0 => 5,
        s => (s & 3) + 1,
    };
    let mini = sel & 4 == 0;
    let header = if mini { 6 } else { 18 };
    match fuzz_client_messages(channel, mini, stream) {
        Ok(n) => assert!(n * header <= stream.len()),
        Err(ConnError::TooLarge { size, max, .. }) => {
            assert!(size > max);
            assert!(max <= 64 << 10, "per-channel limits stay small");
        }
        Err(ConnError::Closed) | Err(ConnError::Malformed { .. }) | Err(ConnError::Agent(_)) => {}
        Err(ConnError::Io(e)) => panic!("in-memory read failed: {e}"),
    }
});
