//! `sound-play`: plays the test chirp through the first sound card's playback PCM with raw
//! ALSA ioctls, and says what it played.

use std::path::PathBuf;
use std::time::Instant;

use crate::alsa::{FRAME_BYTES, Pcm};
use crate::args::Options;
use crate::chirp::chirp;
use crate::cmd::sha256_hex;
use crate::cmd::sync::{DEFAULT_TIMEOUT_MS, check_token, hand_over};
use crate::error::Result;

/// Most frames `--frames` may ask for: a minute at 48 kHz.
const MAX_FRAMES: u64 = 60 * 48_000;

/// `sound-play [--frames 144000] [--device /dev/snd/pcmC0D0p] [--period 960] [--periods 16]
/// [--sync-id ID]`: with `--sync-id`, first hands over to the host (`SAFFRON-SYNC id=ID
/// label=sound-ready`, waits for `go`); then sets S16_LE 48 kHz stereo with the given period
/// (frames) and period count, plays `--frames` frames of the chirp, then silence for a whole
/// buffer plus a period (so that whatever a driver sends past the end of the chirp is
/// silence, not stale ring-buffer data), drains, and prints
/// `SAFFRON-SOUND-PLAY frames=N bytes=B sha256=H period=P buffer=F pad_frames=S elapsed_ms=T`
/// (the hash is of the chirp alone).
pub fn play(mut opts: Options) -> Result<()> {
    let frames = opts.u64_or("frames", 144_000, MAX_FRAMES)? as u32;
    let device = PathBuf::from(
        opts.take("device")
            .unwrap_or_else(|| "/dev/snd/pcmC0D0p".to_string()),
    );
    let period = opts.u64_or("period", 960, 48_000)? as u32;
    let periods = opts.u64_or("periods", 16, 64)? as u32;
    let sync_id = opts.take("sync-id");
    opts.finish()?;
    if let Some(id) = &sync_id {
        check_token("sync-id", id)?;
        hand_over(id, Some("sound-ready"), DEFAULT_TIMEOUT_MS)?;
    }
    let signal = chirp(frames);
    let pcm = Pcm::open(&device)?;
    let setup = pcm.setup(2, 48_000, period, periods)?;
    let pad_frames = setup.buffer_frames + setup.period_frames;
    let started = Instant::now();
    pcm.write_all(&signal)?;
    pcm.write_all(&vec![0u8; pad_frames as usize * FRAME_BYTES])?;
    pcm.drain()?;
    println!(
        "SAFFRON-SOUND-PLAY frames={frames} bytes={} sha256={} period={} buffer={} pad_frames={pad_frames} elapsed_ms={}",
        signal.len(),
        sha256_hex(&signal),
        setup.period_frames,
        setup.buffer_frames,
        started.elapsed().as_millis()
    );
    Ok(())
}
