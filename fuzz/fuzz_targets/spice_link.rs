//! A Spice client's whole byte stream as the server's connection state machine reads it
//! (server.rs `handle_connection`, spec §1): SpiceLinkHeader → SpiceLinkMess + caps →
//! (auth mechanism word iff the client set AUTH_SELECTION) → the 128-byte ticket → data
//! messages for the requested channel, framed with the mini header iff the client set
//! MINI_HEADER. Every parser is the server's own (`link::parse_header`, `link::parse_mess`,
//! and `fuzz_client_messages`, the channel's `read_message`/`handle_common`/handler loop).
//!
//! Not over a socket: the listener polls `accept` every 100 ms and each link that parses
//! takes a fresh RSA-1024 key (generated per link), so a socket round trip costs tens of ms
//! per input. The RSA decryption is skipped (a fuzzer cannot forge a ticket anyway); the
//! ticket bytes are consumed as the server would consume them.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron_server::conn::ConnError;
use saffron_server::link::{error_reply, parse_header, parse_mess, reply};
use saffron_server::server::fuzz_client_messages;
use saffron_server::wire::{
    LINK_HEADER_SIZE, LINK_MESS_SIZE, LINK_REPLY_SIZE, LinkErr, MAX_CAPS, MAX_LINK_SIZE,
    PUBKEY_BYTES, TICKET_BYTES, common_cap, has_cap,
};

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fuzz_target!(|data: &[u8]| {
    let Some((header, rest)) = data.split_first_chunk::<LINK_HEADER_SIZE>() else {
        return;
    };
    let size = match parse_header(header) {
        Ok(size) => size,
        Err(e) => {
            let r = error_reply(e);
            assert_eq!(r.len(), LINK_HEADER_SIZE + LINK_REPLY_SIZE);
            assert_eq!(u32_at(&r, LINK_HEADER_SIZE), e as u32);
            return;
        }
    };
    assert!((LINK_MESS_SIZE as u32..=MAX_LINK_SIZE).contains(&size));
    let Some((mess, rest)) = rest.split_at_checked(size as usize) else {
        return; // the server's read_exact would fail: connection ends
    };
    let req = match parse_mess(mess) {
        Ok(req) => req,
        Err(e) => {
            assert_eq!(e, LinkErr::InvalidData);
            return;
        }
    };
    // Everything accepted is bounded and inside the message.
    assert!(req.common_caps.len() <= MAX_CAPS as usize);
    assert!(req.channel_caps.len() <= MAX_CAPS as usize);
    let caps_bytes = 4 * (req.common_caps.len() + req.channel_caps.len());
    assert!(LINK_MESS_SIZE + caps_bytes <= mess.len());
    assert_eq!(u32_at(mess, 6) as usize, req.common_caps.len());
    assert_eq!(u32_at(mess, 10) as usize, req.channel_caps.len());

    // The reply echoes nothing of the client's but is laid out from our caps.
    let r = reply(LinkErr::Ok, &[7; PUBKEY_BYTES], &[0xb], &req.channel_caps);
    assert_eq!(r.len(), LINK_HEADER_SIZE + u32_at(&r, 12) as usize);

    let mut rest = rest;
    if has_cap(&req.common_caps, common_cap::AUTH_SELECTION) {
        let Some((mech, tail)) = rest.split_first_chunk::<4>() else {
            return;
        };
        if u32::from_le_bytes(*mech) != saffron_server::wire::AUTH_MECHANISM_SPICE {
            return; // INVALID_DATA result, connection ends
        }
        rest = tail;
    }
    let Some((_ticket, data_stage)) = rest.split_first_chunk::<TICKET_BYTES>() else {
        return;
    };
    let mini = has_cap(&req.common_caps, common_cap::MINI_HEADER);
    if !(1..=6).contains(&req.channel_type) || (req.channel_type != 1 && req.channel_id != 0) {
        return; // CHANNEL_NOT_AVAILABLE
    }
    match fuzz_client_messages(req.channel_type, mini, data_stage) {
        Ok(_)
        | Err(ConnError::Closed)
        | Err(ConnError::Malformed { .. })
        | Err(ConnError::Agent(_)) => {}
        Err(ConnError::TooLarge { size, max, .. }) => assert!(size > max),
        Err(ConnError::Io(e)) => panic!("in-memory read failed: {e}"),
    }
});
