//! The virtio-sound request path of saffron-audio without a VM: fuzz bytes become a stream of
//! driver actions — control requests with a writable size (`Card::handle`), I/O messages
//! against the current stream state (`check_io`), descriptor chains over a small guest memory
//! (`Segments`: split, read, write), and pacer operations on a synthetic clock. Invariants: no
//! panic; an OK info answer fits in what the driver gave; accepted I/O is whole frames; chain
//! lengths add up; the pacer never completes faster than real time.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use saffron_audio::abi::status;
use saffron_audio::chain::Segments;
use saffron_audio::control::{Card, FRAME_BYTES};
use saffron_audio::pace::{Pacer, duration_of};
use saffron_audio::request::check_io;
use vm_memory::{GuestAddress, GuestMemoryMmap};

const MEM: u64 = 0x1_0000;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap();
    let mut card = Card::new();
    let mut pacer: Pacer<u32> = Pacer::default();
    let mut now = Instant::now();
    let mut started: Option<Instant> = None;
    // `arbitrary` yields zeros once the input is used up: stop there.
    while !u.is_empty() {
        let Ok(op) = u.arbitrary::<u8>() else {
            break;
        };
        match op % 4 {
            0 => {
                let len = u.arbitrary::<u8>().unwrap_or(0) as usize;
                let req = u.bytes(len).unwrap_or(&[]).to_vec();
                let writable = u.arbitrary::<u8>().unwrap_or(0) as usize;
                let r = card.handle(&req, writable);
                let st = r.status_code();
                assert!(
                    [
                        status::OK,
                        status::BAD_MSG,
                        status::NOT_SUPP,
                        status::IO_ERR
                    ]
                    .contains(&st)
                );
                if st == status::OK && r.bytes.len() > 4 {
                    assert!(
                        r.bytes.len() <= writable,
                        "info answer larger than its buffer"
                    );
                }
            }
            1 => {
                let stream = u.arbitrary::<u8>().unwrap_or(0) as u32 % 3;
                let playback = u.arbitrary::<bool>().unwrap_or(false);
                let len = u.arbitrary::<u8>().unwrap_or(0) as usize;
                let readable = u.bytes(len).unwrap_or(&[]).to_vec();
                let writable = u.arbitrary::<u16>().unwrap_or(0) as usize;
                if let Ok((pcm, bytes)) =
                    check_io(card.state(stream), stream, playback, &readable, writable)
                {
                    assert!(bytes > 0 && bytes.is_multiple_of(FRAME_BYTES));
                    if playback {
                        assert_eq!(pcm.len(), bytes as usize);
                    } else {
                        assert_eq!(bytes as usize + 8, writable);
                    }
                }
            }
            2 => {
                let n = u.arbitrary::<u8>().unwrap_or(0) % 8;
                let mut descs = Vec::new();
                for _ in 0..n {
                    let addr = u.arbitrary::<u32>().unwrap_or(0) as u64;
                    let len = u.arbitrary::<u16>().unwrap_or(0) as u32;
                    let w = u.arbitrary::<bool>().unwrap_or(false);
                    descs.push((GuestAddress(addr), len, w));
                }
                let expect_r: usize = descs.iter().filter(|d| !d.2).map(|d| d.1 as usize).sum();
                if let Ok(segs) = Segments::from_descriptors(descs, 4096) {
                    assert_eq!(segs.readable_len, expect_r);
                    if let Ok(bytes) = segs.read_all(&mem) {
                        assert_eq!(bytes.len(), segs.readable_len);
                    }
                    let at = u.arbitrary::<u16>().unwrap_or(0) as usize;
                    let _ = segs.write_at(&mem, at, &[0x5a; 12]);
                }
            }
            _ => match u.arbitrary::<u8>().unwrap_or(0) % 5 {
                0 => {
                    let bytes = u.arbitrary::<u16>().unwrap_or(0) as u32;
                    pacer.push(0, bytes);
                }
                1 => {
                    pacer.start();
                    started = Some(now);
                }
                2 => pacer.stop(),
                3 => {
                    let _ = pacer.drain();
                }
                _ => {
                    now += Duration::from_micros(u.arbitrary::<u16>().unwrap_or(0) as u64 * 10);
                    let (done, next) = pacer.poll(now);
                    for d in &done {
                        assert!(d.start <= now);
                        assert!(d.start + duration_of(d.bytes) <= now, "completed early");
                        if let Some(s) = started {
                            assert!(d.start >= s, "played before its start");
                        }
                    }
                    if let Some(n) = next {
                        assert!(n > now);
                    }
                }
            },
        }
    }
});
