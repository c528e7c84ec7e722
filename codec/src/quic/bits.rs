//! QUIC's bit packing: bits are sent most significant first, 32 at a time, each 32-bit word
//! stored little endian.

/// Collects codewords into 32-bit words.
pub(super) struct BitWriter {
    out: Vec<u8>,
    /// Pending bits in the low `pending` bits (higher bits are stale and ignored).
    acc: u64,
    pending: u32,
}

impl BitWriter {
    pub fn with_capacity(bytes: usize) -> Self {
        BitWriter {
            out: Vec::with_capacity(bytes),
            acc: 0,
            pending: 0,
        }
    }

    /// Appends the `len` low bits of `bits` (`len <= 32`, no bits set above `len`).
    #[inline(always)]
    pub fn put(&mut self, bits: u32, len: u32) {
        debug_assert!(len <= 32 && (len == 32 || bits >> len == 0));
        self.acc = (self.acc << len) | bits as u64;
        self.pending += len;
        if self.pending >= 32 {
            self.pending -= 32;
            let word = (self.acc >> self.pending) as u32;
            self.out.extend_from_slice(&word.to_le_bytes());
        }
    }

    /// Appends a packed codeword (`bits << 5 | len`, see `tables::Family::code`).
    #[inline(always)]
    pub fn put_packed(&mut self, packed: u32) {
        self.put(packed >> 5, packed & 31);
    }

    /// Appends `n` one bits.
    pub fn put_ones(&mut self, mut n: usize) {
        while n >= 32 {
            self.put(u32::MAX, 32);
            n -= 32;
        }
        if n > 0 {
            self.put((1u32 << n) - 1, n as u32);
        }
    }

    /// Pads the last word with zeros and appends one more zero word. spice-common's decoder
    /// always holds the next 32 bits in its window, so it reads one word past the last bit it
    /// uses; its encoder ends every stream this way and so do we.
    pub fn finish(mut self) -> Vec<u8> {
        if self.pending > 0 {
            self.put(0, 32 - self.pending);
        }
        self.out.extend_from_slice(&[0; 4]);
        self.out
    }
}

/// Reads a QUIC bit stream through a 32-bit window, like spice-common's decoder.
///
/// Reading past the last word yields zero bits and sets [`BitReader::overrun`] rather than
/// failing at once, so the hot loops need no error path; callers check the flag often enough
/// (every row, every run) that a truncated stream costs at most one row of work. The flag is
/// set exactly when spice-common's decoder would run out of words.
pub(super) struct BitReader<'a> {
    words: &'a [u8],
    /// Next unread byte of `words` (always a multiple of 4).
    next: usize,
    /// The unconsumed bits, left aligned; at least 32 of them are valid.
    acc: u64,
    valid: u32,
    overrun: bool,
}

impl<'a> BitReader<'a> {
    /// A reader over the whole words of `data` (a trailing partial word is ignored, as
    /// spice-gtk does). `None` if there is not even one word.
    pub fn new(data: &'a [u8]) -> Option<Self> {
        let words = &data[..data.len() & !3];
        let first = words.get(..4)?;
        let w = u32::from_le_bytes([first[0], first[1], first[2], first[3]]);
        Some(BitReader {
            words,
            next: 4,
            acc: (w as u64) << 32,
            valid: 32,
            overrun: false,
        })
    }

    /// The next 32 bits of the stream, first bit in the most significant position.
    #[inline(always)]
    pub fn peek(&self) -> u32 {
        (self.acc >> 32) as u32
    }

    /// Drops `len` bits (`len <= 32`).
    #[inline(always)]
    pub fn eat(&mut self, len: u32) {
        debug_assert!(len <= 32);
        self.acc <<= len;
        self.valid -= len;
        if self.valid < 32 {
            self.refill();
        }
    }

    #[inline(always)]
    fn refill(&mut self) {
        let w = match self.words.get(self.next..self.next + 4) {
            Some(b) => {
                self.next += 4;
                u32::from_le_bytes([b[0], b[1], b[2], b[3]])
            }
            None => {
                self.overrun = true;
                0
            }
        };
        self.acc |= (w as u64) << (32 - self.valid);
        self.valid += 32;
    }

    /// Reads a 32-bit header field.
    pub fn read_u32(&mut self) -> u32 {
        let v = self.peek();
        self.eat(16);
        self.eat(16);
        v
    }

    /// Whether the decoder has needed bits beyond the end of the input.
    pub fn overrun(&self) -> bool {
        self.overrun
    }

    /// Number of input bits not consumed yet.
    pub fn bits_left(&self) -> u64 {
        (self.words.len() - self.next) as u64 * 8 + self.valid as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_little_endian_msb_first() {
        let mut w = BitWriter::with_capacity(16);
        w.put(0x4349, 16);
        w.put(0x5551, 16);
        w.put(1, 1);
        w.put_ones(3);
        let out = w.finish();
        assert_eq!(&out[..4], b"QUIC");
        assert_eq!(&out[4..8], &0xf000_0000u32.to_le_bytes());
        assert_eq!(&out[8..], &[0; 4]);

        let mut r = BitReader::new(&out).unwrap();
        assert_eq!(r.read_u32(), 0x4349_5551);
        assert_eq!(r.peek() >> 28, 0xf);
        r.eat(4);
        assert!(!r.overrun());
        r.eat(28);
        assert!(!r.overrun());
        r.eat(1);
        assert!(r.overrun());
    }

    #[test]
    fn long_runs_of_ones_are_split() {
        let mut w = BitWriter::with_capacity(16);
        w.put(0, 3);
        w.put_ones(70);
        let out = w.finish();
        let mut r = BitReader::new(&out).unwrap();
        r.eat(3);
        assert_eq!(r.peek(), u32::MAX);
        r.eat(32);
        assert_eq!(r.peek(), u32::MAX);
        r.eat(32);
        assert_eq!(r.peek() >> 25, 0b111_1110);
    }
}
