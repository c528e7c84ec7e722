//! `sound-play` and `sound-capture`: the test chirp through the first sound card's playback
//! PCM, and the dominant frequency of what its capture PCM records, with raw ALSA ioctls.

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

/// Goertzel power of `samples` at `hz` (48 kHz), normalised by the length.
fn power_at(samples: &[f64], hz: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * hz / 48_000.0;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for x in samples {
        let s0 = x + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / samples.len().max(1) as f64
}

/// `sound-capture [--frames 48000] [--skip-frames 24000] [--device /dev/snd/pcmC0D0c]
/// [--period 960] [--periods 16] [--sync-id ID]`: with `--sync-id`, first hands over to the
/// host (`SAFFRON-SYNC id=ID label=capture-ready`); then captures S16_LE 48 kHz stereo,
/// drops the first `--skip-frames` frames (the client's audio takes a moment to arrive), and
/// prints `SAFFRON-SOUND-CAPTURE frames=N dominant_hz=F rms=R peak_share=P` for the left
/// channel of the rest: the strongest frequency between 50 Hz and 4 kHz (5 Hz steps, then
/// 1 Hz around the best), its root mean square, and the share of the power at the dominant
/// frequency among all the steps (a pure tone gives nearly all of it to one).
pub fn capture(mut opts: Options) -> Result<()> {
    let frames = opts.u64_or("frames", 48_000, MAX_FRAMES)? as usize;
    let skip = opts.u64_or("skip-frames", 24_000, MAX_FRAMES)? as usize;
    let device = PathBuf::from(
        opts.take("device")
            .unwrap_or_else(|| "/dev/snd/pcmC0D0c".to_string()),
    );
    let period = opts.u64_or("period", 960, 48_000)? as u32;
    let periods = opts.u64_or("periods", 16, 64)? as u32;
    let sync_id = opts.take("sync-id");
    opts.finish()?;
    if let Some(id) = &sync_id {
        check_token("sync-id", id)?;
        hand_over(id, Some("capture-ready"), DEFAULT_TIMEOUT_MS)?;
    }
    let pcm = Pcm::open(&device)?;
    pcm.setup(2, 48_000, period, periods)?;
    let mut buf = vec![0u8; (skip + frames) * FRAME_BYTES];
    pcm.capture(&mut buf)?;
    let samples: Vec<f64> = buf[skip * FRAME_BYTES..]
        .chunks_exact(FRAME_BYTES)
        .map(|f| f64::from(i16::from_le_bytes([f[0], f[1]])))
        .collect();
    let rms = (samples.iter().map(|x| x * x).sum::<f64>() / samples.len().max(1) as f64).sqrt();
    let coarse: Vec<(f64, f64)> = (10..=800)
        .map(|i| {
            let hz = f64::from(i) * 5.0;
            (hz, power_at(&samples, hz))
        })
        .collect();
    let total: f64 = coarse.iter().map(|c| c.1).sum();
    let (best, best_power) = coarse
        .iter()
        .copied()
        .fold((0.0, 0.0), |a, c| if c.1 > a.1 { c } else { a });
    let dominant = (-5..=5)
        .map(|d| best + f64::from(d))
        .map(|hz| (hz, power_at(&samples, hz)))
        .fold((best, 0.0), |a, c| if c.1 > a.1 { c } else { a })
        .0;
    let share = if total > 0.0 { best_power / total } else { 0.0 };
    println!(
        "SAFFRON-SOUND-CAPTURE frames={frames} dominant_hz={dominant} rms={rms:.1} peak_share={share:.3}"
    );
    Ok(())
}
