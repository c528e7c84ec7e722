//! A browser's bytes on a Spice port: the first byte picks what the rest is.
//! - 0: an HTTP request head, parsed and checked as `web::serve` does (request line, headers,
//!   the upgrade's headers and key, the Host for the redirect, the Origin, the file path
//!   against a web root).
//! - otherwise: the client's WebSocket frames after the upgrade, read through the server's
//!   `ws::Deframer` (masks, reserved bits, opcodes, control frames, fragments, the 64-bit
//!   length bound) in reads of the size the next byte gives, with its answers collected.
//!
//! What must hold: no panic; the deframer yields no more payload than the input carried; it
//! only ever answers PONG and CLOSE, with at most 125 bytes; an error is either the end of the
//! input or a `FrameError` answered by a CLOSE with its status.
#![no_main]

use std::io;

use libfuzzer_sys::fuzz_target;
use saffron_server::web::fuzz_request;
use saffron_server::ws::{Deframer, FrameError, MAX_CONTROL_PAYLOAD, opcode};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode == 0 {
        let _ = fuzz_request(rest);
        return;
    }
    let chunk = usize::from(mode).max(1);
    let mut deframer = Deframer::new();
    let mut input = rest;
    let mut answers: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut sink = |op: u8, payload: &[u8]| {
        answers.push((op, payload.to_vec()));
        Ok(())
    };
    let mut out = 0usize;
    let mut buf = vec![0u8; chunk];
    let err = loop {
        match deframer.read(&mut input, &mut buf, &mut sink) {
            Ok(0) => break None,
            Ok(n) => {
                assert!(n <= chunk);
                out += n;
            }
            Err(e) => break Some(e),
        }
    };
    assert!(out <= rest.len(), "more payload than input");
    for (op, payload) in &answers {
        assert!(matches!(*op, opcode::PONG | opcode::CLOSE), "answered {op}");
        assert!(payload.len() <= MAX_CONTROL_PAYLOAD);
    }
    if let Some(e) = err {
        match e.kind() {
            io::ErrorKind::UnexpectedEof => {}
            io::ErrorKind::InvalidData => {
                let frame_error = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<FrameError>())
                    .expect("a frame error");
                let status = frame_error.status().to_be_bytes().to_vec();
                assert_eq!(answers.last(), Some(&(opcode::CLOSE, status)));
            }
            other => panic!("in-memory read failed: {other:?}"),
        }
    }
});
