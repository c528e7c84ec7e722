//! The test signal `sound-play` plays: a linear chirp in integer arithmetic only, so that the
//! host test (`saffron_tests::chirp`, a copy of this function) regenerates the very same
//! bytes.
//!
//! Frequency rises linearly from 100 Hz to 10 kHz over the length; the phase is a u32 turn
//! accumulator; the sine is the parabola y = x(π − |x|) scaled to ±16384 (half full scale).
//! Left is the wave, right its negation, S16_LE interleaved at 48 kHz.

/// `frames` frames of the chirp.
pub fn chirp(frames: u32) -> Vec<u8> {
    const RATE_MHZ: u64 = 48_000 * 1000;
    const F0_MHZ: u64 = 100_000;
    const F1_MHZ: u64 = 10_000_000;
    let mut out = Vec::with_capacity(frames as usize * 4);
    let mut phase: u32 = 0;
    let n_max = u64::from(frames.max(1));
    for n in 0..u64::from(frames) {
        let f = F0_MHZ + (F1_MHZ - F0_MHZ) * n / n_max;
        let step = ((f << 32) / RATE_MHZ) as u32;
        phase = phase.wrapping_add(step);
        // x in [-32768, 32767] stands for [-π, π).
        let x = i64::from((phase as i32) >> 16);
        let y = (x * (32768 - x.abs())) >> 14;
        let s = y as i16;
        out.extend_from_slice(&s.to_le_bytes());
        out.extend_from_slice(&s.wrapping_neg().to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_deterministic() {
        let c = chirp(48_000);
        assert_eq!(c.len(), 192_000);
        let samples: Vec<i16> = c
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        assert!(samples.iter().all(|s| s.abs() <= 16384));
        assert!(
            samples.iter().any(|s| s.abs() > 16000),
            "reaches its amplitude"
        );
        // First frame: 100 Hz, one step of phase (8947848 / 2^32 turns): x = 136.
        assert_eq!(&c[..4], &[14, 1, 242, 254], "270 and -270");
    }
}
