//! The deterministic byte pattern that `bar-rw` and `bench-memcpy` write into BAR0.
//!
//! The host test regenerates the same bytes to check what reached the device, so the algorithm
//! is fixed: xorshift32 (Marsaglia's 13/17/5 triple) starting from the seed, one little-endian
//! word per step, the last word truncated when the length is not a multiple of four. A zero seed
//! would make xorshift emit zeros forever, so it is replaced by [`ZERO_SEED_REPLACEMENT`].

/// The state used when the caller asks for seed 0 (the golden ratio constant).
pub const ZERO_SEED_REPLACEMENT: u32 = 0x9E37_79B9;

/// An endless xorshift32 word stream.
#[derive(Debug, Clone)]
pub struct Xorshift32 {
    state: u32,
}

impl Xorshift32 {
    /// Starts a stream at `seed` (0 is replaced, see the module doc).
    pub fn new(seed: u32) -> Self {
        let state = if seed == 0 {
            ZERO_SEED_REPLACEMENT
        } else {
            seed
        };
        Xorshift32 { state }
    }

    /// Advances the state and returns it.
    pub fn next_word(&mut self) -> u32 {
        let mut s = self.state;
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        self.state = s;
        s
    }
}

/// Fills `buf` with the pattern for `seed`.
pub fn fill(seed: u32, buf: &mut [u8]) {
    let mut rng = Xorshift32::new(seed);
    for chunk in buf.chunks_mut(4) {
        let word = rng.next_word().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
}

/// Returns the first `len` bytes of the pattern for `seed`.
pub fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    fill(seed, &mut buf);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference words the host-side test can copy to check its own implementation.
    #[test]
    fn first_words_of_rig_seed() {
        let mut rng = Xorshift32::new(0x5AFF_0001);
        let words: Vec<u32> = (0..4).map(|_| rng.next_word()).collect();
        assert_eq!(words, [0xe510_d2be, 0x17aa_cebd, 0x81d4_79e3, 0xd3eb_cc77]);
    }

    /// Seed 1 makes the shifts easy to follow by hand.
    #[test]
    fn first_words_of_seed_one() {
        let mut rng = Xorshift32::new(1);
        let words: Vec<u32> = (0..4).map(|_| rng.next_word()).collect();
        assert_eq!(words, [0x0004_2021, 0x0408_0601, 0x9dcc_a8c5, 0x1255_994f]);
    }

    #[test]
    fn zero_seed_uses_replacement() {
        let mut rng = Xorshift32::new(0);
        let words: Vec<u32> = (0..4).map(|_| rng.next_word()).collect();
        assert_eq!(words, [0x510c_4619, 0xe02e_553e, 0x7bb9_8f3a, 0x0183_a8b5]);
        assert_eq!(pattern(0, 16), pattern(ZERO_SEED_REPLACEMENT, 16));
        assert_ne!(pattern(0, 4), [0, 0, 0, 0]);
    }

    #[test]
    fn bytes_are_little_endian_words_and_tail_is_truncated() {
        let full = pattern(1, 8);
        assert_eq!(full, [0x21, 0x20, 0x04, 0x00, 0x01, 0x06, 0x08, 0x04]);
        assert_eq!(pattern(1, 7), full[..7]);
        assert_eq!(pattern(1, 0), Vec::<u8>::new());
    }
}
