//! What a display client says of our streams: a STREAM_REPORT body
//! (`server::stream::StreamReport::parse`), the quality the server then picks (`next_quality`)
//! and the multimedia latency it then asks for (`required_latency`); and a
//! PREFERRED_VIDEO_CODEC_TYPE body (`parse_preferred_codecs`) and the codecs the client then
//! gets (`client_codecs`). Any bytes are refused with an error or give: a report with no more
//! drops than frames, a quality within the encoder's bounds, a latency no lower than before;
//! codecs that are ours, each once.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron_codec::mjpeg;
use saffron_server::stream::{
    DEFAULT_QUALITY, STREAM_REPORT_SIZE, StreamReport, VideoCodec, client_codecs, next_quality,
    parse_preferred_codecs, required_latency,
};

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
            let latency = u32::from(current) * 20;
            if let Some(l) = required_latency(&r, latency) {
                assert!(l > latency);
            }
        }
        Err(_) => {}
    }
    if let Ok(list) = parse_preferred_codecs(body) {
        assert_eq!(list.len() + 1, body.len());
        let ours = [VideoCodec::Vp8, VideoCodec::Mjpeg];
        // Which caps the client announces: from the first byte's bits.
        let got = client_codecs(
            &ours,
            current & 1 == 1,
            |cap| current & (1 << (cap % 8)) != 0,
            list,
        );
        assert!(got.len() <= ours.len());
        for (i, c) in got.iter().enumerate() {
            assert!(ours.contains(c));
            assert!(!got[..i].contains(c));
        }
    }
});
