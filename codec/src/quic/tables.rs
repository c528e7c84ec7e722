//! The constant tables of the QUIC format.
//!
//! None of this is tuning we are free to change: the decoder re-derives every model decision
//! the encoder made (which Golomb code, when to adapt, how long a run is), so each number has
//! to be the one spice-common's `quic.c` uses, or a real client decodes garbage. Tables that
//! follow from a rule are computed here by `const fn` from that rule; the two that are plain
//! data (the pseudo-random sequence and the adaptation thresholds) are spelled out.

/// Bits per channel. QUIC also has a 5-bit family for RGB16, which we do not implement.
pub(super) const BPC: usize = 8;

/// Longest codeword the code family may produce (`DEFmaxclen` in spice-common).
const MAX_CODEWORD_LEN: u32 = 26;

/// After this many coded pixels the wait mask widens (`DEFwminext`).
pub(super) const WM_NEXT: usize = 2048;

/// The wait mask stops widening at this index (`DEFwmimax`): from then on the model is
/// updated on average once every 32 pixels.
pub(super) const WM_MAX: u32 = 6;

/// Counter total above which a bucket halves its counters, by wait-mask index (spice-common's
/// `besttrigtab` row for model evolution 3, the only evolution it uses).
const WM_TRIGGER: [u32; 11] = [110, 550, 900, 800, 550, 400, 350, 250, 140, 160, 140];

/// The halving threshold for wait-mask index `wmidx`.
pub(super) const fn wm_trigger(wmidx: u32) -> u32 {
    let i = if wmidx > 10 { 10 } else { wmidx as usize };
    WM_TRIGGER[i]
}

/// `n` low bits set.
pub(super) const fn low_mask(n: u32) -> u32 {
    if n >= 32 { u32::MAX } else { (1u32 << n) - 1 }
}

/// Number of run-length coder states (`MELCSTATES`).
pub(super) const MELC_STATES: usize = 32;

/// log2 of the run length one "hit" bit stands for, by run coder state (the `J` table of the
/// MELCODE run coder QUIC borrowed from JPEG-LS).
pub(super) const MELC_LEN: [u32; MELC_STATES] = [
    0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 9, 10, 11, 12, 13,
    14, 15,
];

/// The fixed pseudo-random sequence that spaces model updates (`tabrand_chaos`). Encoder and
/// decoder walk it in lockstep, so it is part of the format.
pub(super) const TABRAND: [u32; 256] = [
    0x02c57542, 0x35427717, 0x2f5a2153, 0x9244f155, 0x7bd26d07, 0x354c6052, 0x57329b28, 0x2993868e,
    0x6cd8808c, 0x147b46e0, 0x99db66af, 0xe32b4cac, 0x1b671264, 0x9d433486, 0x62a4c192, 0x06089a4b,
    0x9e3dce44, 0xdaabee13, 0x222425ea, 0xa46f331d, 0xcd589250, 0x8bb81d7f, 0xc8b736b9, 0x35948d33,
    0xd7ac7fd0, 0x5fbe2803, 0x2cfbc105, 0x013dbc4e, 0x7a37820f, 0x39f88e9e, 0xedd58794, 0xc5076689,
    0xfcada5a4, 0x64c2f46d, 0xb3ba3243, 0x8974b4f9, 0x5a05aebd, 0x20afcd00, 0x39e2b008, 0x88a18a45,
    0x600bde29, 0xf3971ace, 0xf37b0a6b, 0x7041495b, 0x70b707ab, 0x06beffbb, 0x4206051f, 0xe13c4ee3,
    0xc1a78327, 0x91aa067c, 0x8295f72a, 0x732917a6, 0x1d871b4d, 0x4048f136, 0xf1840e7e, 0x6a6048c1,
    0x696cb71a, 0x7ff501c3, 0x0fc6310b, 0x57e0f83d, 0x8cc26e74, 0x11a525a2, 0x946934c7, 0x7cd888f0,
    0x8f9d8604, 0x4f86e73b, 0x04520316, 0xdeeea20c, 0xf1def496, 0x67687288, 0xf540c5b2, 0x22401484,
    0x3478658a, 0xc2385746, 0x01979c2c, 0x5dad73c8, 0x0321f58b, 0xf0fedbee, 0x92826ddf, 0x284bec73,
    0x5b1a1975, 0x03df1e11, 0x20963e01, 0xa17cf12b, 0x740d776e, 0xa7a6bf3c, 0x01b5cce4, 0x1118aa76,
    0xfc6fac0a, 0xce927e9b, 0x00bf2567, 0x806f216c, 0xbca69056, 0x795bd3e9, 0xc9dc4557, 0x8929b6c2,
    0x789d52ec, 0x3f3fbf40, 0xb9197368, 0xa38c15b5, 0xc3b44fa8, 0xca8333b0, 0xb7e8d590, 0xbe807feb,
    0xbf5f8360, 0xd99e2f5c, 0x372928e1, 0x7c757c4c, 0x0db5b154, 0xc01ede02, 0x1fc86e78, 0x1f3985be,
    0xb4805c77, 0x00c880fa, 0x974c1b12, 0x35ab0214, 0xb2dc840d, 0x5b00ae37, 0xd313b026, 0xb260969d,
    0x7f4c8879, 0x1734c4d3, 0x49068631, 0xb9f6a021, 0x6b863e6f, 0xcee5debf, 0x29f8c9fb, 0x53dd6880,
    0x72b61223, 0x1f67a9fd, 0x0a0f6993, 0x13e59119, 0x11cca12e, 0xfe6b6766, 0x16b6effc, 0x97918fc4,
    0xc2b8a563, 0x94f2f741, 0x0bfa8c9a, 0xd1537ae8, 0xc1da349c, 0x873c60ca, 0x95005b85, 0x9b5c080e,
    0xbc8abbd9, 0xe1eab1d2, 0x6dac9070, 0x4ea9ebf1, 0xe0cf30d4, 0x1ef5bd7b, 0xd161043e, 0x5d2fa2e2,
    0xff5d3cae, 0x86ed9f87, 0x2aa1daa1, 0xbd731a34, 0x9e8f4b22, 0xb1c2c67a, 0xc21758c9, 0xa182215d,
    0xccb01948, 0x8d168df7, 0x04238cfe, 0x368c3dbc, 0x0aeadca5, 0xbad21c24, 0x0a71fee5, 0x9fc5d872,
    0x54c152c6, 0xfc329483, 0x6783384a, 0xeddb3e1c, 0x65f90e30, 0x884ad098, 0xce81675a, 0x4b372f7d,
    0x68bf9a39, 0x43445f1e, 0x40f8d8cb, 0x90d5acb6, 0x4cd07282, 0x349eeb06, 0x0c9d5332, 0x520b24ef,
    0x80020447, 0x67976491, 0x2f931ca3, 0xfe9b0535, 0xfcd30220, 0x61a9e6cc, 0xa487d8d7, 0x3f7c5dd1,
    0x7d0127c5, 0x48f51d15, 0x60dea871, 0xc9a91cb7, 0x58b53bb3, 0x9d5e0b2d, 0x624a78b4, 0x30dbee1b,
    0x9bdf22e7, 0x1df5c299, 0x2d5643a7, 0xf4dd35ff, 0x03ca8fd6, 0x53b47ed8, 0x6f2c19aa, 0xfeb0c1f4,
    0x49e54438, 0x2f2577e6, 0xbf876969, 0x72440ea9, 0xfa0bafb8, 0x74f5b3a0, 0x7dd357cd, 0x89ce1358,
    0x6ef2cdda, 0x1e7767f3, 0xa6be9fdb, 0x4f5f88f8, 0xba994a3a, 0x08ca6b65, 0xe0893818, 0x9e00a16a,
    0xf42bfc8f, 0x9972eedc, 0x749c8b51, 0x32c05f5e, 0xd706805f, 0x6bfbb7cf, 0xd9210a10, 0x31a1db97,
    0x923a9559, 0x37a7a1f6, 0x059f8861, 0xca493e62, 0x65157e81, 0x8f6467dd, 0xab85ff9f, 0x9331aff2,
    0x8616b9f5, 0xedbd5695, 0xee7e29b1, 0x313ac44f, 0xb903112f, 0x432ef649, 0xdc0a36c0, 0x61cf2bba,
    0x81474925, 0xa8b6c7ad, 0xee5931de, 0xb2f8158d, 0x59fb7409, 0x2e3dfaed, 0x9af25a3f, 0xe1fed4d5,
];

const fn ceil_log2(v: u32) -> u32 {
    if v <= 1 {
        0
    } else {
        32 - (v - 1).leading_zeros()
    }
}

/// The Golomb-Rice code family with an escape: code `l` sends `n` as `n >> l` zeros, a one and
/// the `l` low bits of `n`, unless that would be too long, in which case it sends a run of
/// `escape_prefix` zeros and `n - gr_limit` in `suffix_len` bits.
pub(super) struct Family {
    /// `[l][n]`: the codeword for `n` under code `l`, packed as `bits << 5 | length`.
    pub code: [[u32; 256]; BPC],
    /// `[l][n]`: the codeword length alone, for the model's cost counters.
    pub len: [[u8; 256]; BPC],
    /// Values below this are sent as plain Golomb-Rice codewords.
    pub gr_limit: [u32; BPC],
    /// Length of an escaped codeword.
    pub escape_len: [u32; BPC],
    /// A 32-bit window at most this large starts with an escape prefix (all its first
    /// `escape_prefix` bits are zero).
    pub escape_window_max: [u32; BPC],
    /// Number of value bits after the escape prefix.
    pub suffix_len: [u32; BPC],
}

const fn build_family() -> Family {
    let mut f = Family {
        code: [[0; 256]; BPC],
        len: [[0; 256]; BPC],
        gr_limit: [0; BPC],
        escape_len: [0; BPC],
        escape_window_max: [0; BPC],
        suffix_len: [0; BPC],
    };
    let bpc = BPC as u32;
    let mut l = 0;
    while l < BPC {
        let lu = l as u32;
        let mut prefix = MAX_CODEWORD_LEN - bpc;
        if prefix > low_mask(bpc - lu) {
            prefix = low_mask(bpc - lu);
        }
        let escaped_values = (1u32 << bpc) - (prefix << lu);
        let suffix = ceil_log2(escaped_values);
        f.gr_limit[l] = prefix << lu;
        f.escape_len[l] = prefix + suffix;
        f.escape_window_max[l] = low_mask(32 - prefix);
        f.suffix_len[l] = suffix;
        let mut n = 0u32;
        while n < 256 {
            let (bits, len) = if n < f.gr_limit[l] {
                ((1 << lu) | (n & low_mask(lu)), (n >> lu) + lu + 1)
            } else {
                (n - f.gr_limit[l], f.escape_len[l])
            };
            f.code[l][n as usize] = (bits << 5) | len;
            f.len[l][n as usize] = len as u8;
            n += 1;
        }
        l += 1;
    }
    f
}

pub(super) static FAMILY: Family = build_family();

/// Number of context buckets of the 8-bit model.
pub(super) const NUM_BUCKETS: usize = 8;

/// Which bucket a context value (the previous pixel's coded residual) falls in. Buckets double
/// in size (1, 2, 4, ... values; spice-common's model evolution 3), the last one taking the
/// remainder when another doubling would not fit.
const fn build_buckets() -> [u8; 256] {
    let levels = 256usize;
    let mut table = [0u8; 256];
    let mut bucket = 0usize;
    let mut end = 0usize;
    let mut size = 1usize;
    let mut repeat = 2usize;
    loop {
        let start = if bucket == 0 { 0 } else { end + 1 };
        repeat -= 1;
        if repeat == 0 {
            repeat = 1;
            size *= 2;
        }
        end = start + size - 1;
        if end + size >= levels {
            end = levels - 1;
        }
        let mut v = start;
        while v <= end {
            table[v] = bucket as u8;
            v += 1;
        }
        bucket += 1;
        if end >= levels - 1 {
            break;
        }
    }
    table
}

pub(super) static BUCKET_OF: [u8; 256] = build_buckets();

/// The context values of each bucket (the inverse of [`BUCKET_OF`]).
pub(super) static BUCKET_RANGE: [std::ops::Range<usize>; NUM_BUCKETS] =
    [0..1, 1..3, 3..7, 7..15, 15..31, 31..63, 63..127, 127..256];

/// Maps a prediction error (mod 256) to a small code number: 0, -1, 1, -2, 2, ... become
/// 0, 1, 2, 3, 4, ... (spice-common's `xlatU2L`).
#[inline(always)]
pub(super) fn fold(err: u8) -> u8 {
    (err << 1) ^ ((err as i8 >> 7) as u8)
}

/// The inverse of [`fold`] (spice-common's `xlatL2U`).
#[inline(always)]
pub(super) fn unfold(v: u8) -> u8 {
    (v >> 1) ^ (0u8.wrapping_sub(v & 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_matches_the_rule_and_unfold_inverts_it() {
        for s in 0..=255u8 {
            let want = if s <= 127 {
                s << 1
            } else {
                ((255 - s) << 1) + 1
            };
            assert_eq!(fold(s), want, "fold({s})");
            assert_eq!(unfold(fold(s)), s);
        }
    }

    #[test]
    fn buckets_double_up_to_the_last() {
        let firsts: Vec<usize> = (0..256)
            .filter(|&v| v == 0 || BUCKET_OF[v] != BUCKET_OF[v - 1])
            .collect();
        assert_eq!(firsts, vec![0, 1, 3, 7, 15, 31, 63, 127]);
        assert_eq!(BUCKET_OF[255] as usize, NUM_BUCKETS - 1);
        for (b, range) in BUCKET_RANGE.iter().enumerate() {
            assert!(range.clone().all(|v| BUCKET_OF[v] as usize == b));
        }
    }

    #[test]
    fn family_codewords_fit_the_limit_and_are_prefix_free() {
        for l in 0..BPC {
            for n in 0..256 {
                let len = FAMILY.code[l][n] & 31;
                assert!((1..=MAX_CODEWORD_LEN).contains(&len));
                assert_eq!(len, FAMILY.len[l][n] as u32);
            }
        }
        // Code 7 is a plain 8-bit code: 1 + 7 bits below 128, 0 + 7 bits above.
        assert_eq!(FAMILY.code[7][5], ((128 | 5) << 5) | 8);
        assert_eq!(FAMILY.code[7][200], ((200 - 128) << 5) | 8);
        // Code 0 is unary up to 18 values, then 18 zeros and 8 bits.
        assert_eq!(FAMILY.code[0][3], (1 << 5) | 4);
        assert_eq!(FAMILY.code[0][18], 26);
    }
}
