//! A display client's STREAM_REPORT body (`server::stream::StreamReport::parse`) and the
//! quality the server then picks (`next_quality`): any bytes are either refused with an error
//! or give a report with no more drops than frames, and the quality always stays within the
//! encoder's bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron_codec::mjpeg;
use saffron_server::stream::{DEFAULT_QUALITY, STREAM_REPORT_SIZE, StreamReport, next_quality};

fuzz_target!(|data: &[u8]| {
    let Some((&current, body)) = data.split_first() else {
        return;
    };
    match StreamReport::parse(body) {
        Ok(r) => {
            assert_eq!(body.len(), STREAM_REPORT_SIZE);
            assert!(r.cannot_decode() || r.num_drops <= r.num_frames);
            let q = next_quality(current, &r);
            assert!((mjpeg::MIN_QUALITY..=DEFAULT_QUALITY).contains(&q));
        }
        Err(_) => {}
    }
});
