//! The server's model of one client's pixmap cache (spec §7).
//!
//! Spice clients keep every image sent with CACHE_ME under its id until the server says
//! otherwise; spice-gtk never evicts on its own. So the server decides everything: it keeps
//! the client's budget (DISPLAY_INIT's `pixmap_cache_size`, in pixels), evicts the least
//! recently used images when a new one would not fit, and tells the client (INVAL_LIST)
//! before the new one is sent. Ids are never reused, so an id once invalidated is never
//! referenced again.
//!
//! Linux guests give their images no stable ids, so entries are keyed by content: a 128-bit
//! hash of the size and the pixels. Repeated pictures hit whether or not the guest marked
//! them.

use std::collections::{BTreeMap, HashMap};

/// Most pixels of the client's cache we model: spice-gtk asks 80 MiB of 4-byte pixels; a
/// client asking more gets this much used.
pub const MAX_CACHE_PIXELS: u64 = 1 << 25;

/// Images smaller than this are not cached: a FROM_CACHE saves little on them, and hashing
/// every tiny image costs.
pub const MIN_CACHED_PIXELS: u64 = 32 * 32;

/// Images larger than this are not cached: a whole screen that repeats is caught by the GLZ
/// dictionary, and hashing every full frame would cost more than it saves.
pub const MAX_CACHED_PIXELS: u64 = 512 * 512;

/// A content key: the image's size and a 128-bit hash of its pixels.
pub type Key = (u32, u32, u64, u64);

/// The content key of `width x height` pixels of B, G, R, X (the X byte is ignored).
pub fn content_key(width: u32, height: u32, bgrx: &[u8]) -> Key {
    // Two independent multiply-xorshift lanes over the 8-byte words, X bytes masked: fast
    // (one pass), and 128 bits make an accidental collision out of reach.
    const M1: u64 = 0x9E37_79B9_7F4A_7C15;
    const M2: u64 = 0xC2B2_AE3D_27D4_EB4F;
    let (mut a, mut b) = (u64::from(width) ^ M1, u64::from(height) ^ M2);
    let mut words = bgrx.chunks_exact(8);
    for w in &mut words {
        let v = u64::from_le_bytes([w[0], w[1], w[2], 0, w[4], w[5], w[6], 0]);
        a = (a ^ v).wrapping_mul(M1).rotate_left(29);
        b = (b ^ v.rotate_left(17)).wrapping_mul(M2).rotate_left(31);
    }
    for (i, byte) in words.remainder().iter().enumerate() {
        if i % 4 != 3 {
            a = (a ^ u64::from(*byte)).wrapping_mul(M1);
            b = (b ^ u64::from(*byte)).wrapping_mul(M2);
        }
    }
    let fin = |mut x: u64| {
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^ (x >> 33)
    };
    (width, height, fin(a), fin(b ^ a))
}

struct Entry {
    id: u64,
    pixels: u64,
    last_use: u64,
}

/// What to do with an image, per the cache model.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The client has it under this id: send FROM_CACHE.
    Hit(u64),
    /// Send it with CACHE_ME under `id`, after invalidating `evicted` (if any).
    Insert { id: u64, evicted: Vec<u64> },
    /// Do not cache it (too small, too big, or no cache).
    Skip,
}

/// One client's pixmap cache as the server models it.
pub struct PixmapCache {
    budget: u64,
    used: u64,
    entries: HashMap<Key, Entry>,
    /// last_use → key, oldest first.
    lru: BTreeMap<u64, Key>,
    tick: u64,
    next_id: u64,
    /// Counters: hits, inserts, evictions.
    pub hits: u64,
    pub inserts: u64,
    pub evictions: u64,
}

impl PixmapCache {
    /// A cache of `budget` pixels (the client's, bounded by [`MAX_CACHE_PIXELS`]; 0 or less
    /// = no cache).
    pub fn new(budget: i64) -> PixmapCache {
        let budget = u64::try_from(budget).unwrap_or(0).min(MAX_CACHE_PIXELS);
        if budget == MAX_CACHE_PIXELS {
            tracing::debug!(budget, "client's pixmap cache modelled at our bound");
        }
        PixmapCache {
            budget,
            used: 0,
            entries: HashMap::new(),
            lru: BTreeMap::new(),
            tick: 0,
            next_id: 1,
            hits: 0,
            inserts: 0,
            evictions: 0,
        }
    }

    /// Whether images of `pixels` pixels are worth looking up at all (hashing costs).
    pub fn wants(&self, pixels: u64) -> bool {
        self.budget > 0
            && (MIN_CACHED_PIXELS..=MAX_CACHED_PIXELS).contains(&pixels)
            && pixels <= self.budget
    }

    /// Looks `key` (an image of `pixels` pixels) up; on a miss makes room and reserves an id.
    pub fn lookup(&mut self, key: Key, pixels: u64) -> Lookup {
        if !self.wants(pixels) {
            return Lookup::Skip;
        }
        self.tick += 1;
        if let Some(e) = self.entries.get_mut(&key) {
            self.lru.remove(&e.last_use);
            e.last_use = self.tick;
            self.lru.insert(self.tick, key);
            self.hits += 1;
            return Lookup::Hit(e.id);
        }
        let mut evicted = Vec::new();
        while self.used + pixels > self.budget {
            let Some((_, old)) = self.lru.pop_first() else {
                break;
            };
            if let Some(e) = self.entries.remove(&old) {
                self.used -= e.pixels;
                evicted.push(e.id);
                self.evictions += 1;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        self.entries.insert(
            key,
            Entry {
                id,
                pixels,
                last_use: self.tick,
            },
        );
        self.lru.insert(self.tick, key);
        self.used += pixels;
        self.inserts += 1;
        Lookup::Insert { id, evicted }
    }

    /// The id the client holds `key` under, if it does (a hit, counted as one); unlike
    /// [`PixmapCache::lookup`] a miss reserves nothing.
    pub fn hit(&mut self, key: Key, pixels: u64) -> Option<u64> {
        if !self.wants(pixels) || !self.entries.contains_key(&key) {
            return None;
        }
        match self.lookup(key, pixels) {
            Lookup::Hit(id) => Some(id),
            _ => None,
        }
    }

    /// Forgets everything (the client is told INVAL_ALL_PIXMAPS). Ids go on from where they
    /// were, so none is ever reused.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.lru.clear();
        self.used = 0;
    }

    /// Pixels the client holds, by our model.
    pub fn used(&self) -> u64 {
        self.used
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Key {
        content_key(32, 32, &[n; 32 * 32 * 4])
    }

    #[test]
    fn content_keys_ignore_the_x_byte_and_see_everything_else() {
        let a = vec![7u8; 64];
        let mut b = a.clone();
        b[3] = 99;
        assert_eq!(content_key(4, 4, &a), content_key(4, 4, &b));
        b[2] = 8;
        assert_ne!(content_key(4, 4, &a), content_key(4, 4, &b));
        assert_ne!(content_key(4, 4, &a), content_key(2, 8, &a));
    }

    #[test]
    fn a_repeat_hits_and_eviction_is_lru_and_announced() {
        let mut c = PixmapCache::new(3 * 1024);
        let Lookup::Insert { id: one, evicted } = c.lookup(key(1), 1024) else {
            panic!()
        };
        assert!(evicted.is_empty());
        assert_eq!(c.lookup(key(1), 1024), Lookup::Hit(one));
        let Lookup::Insert { id: two, .. } = c.lookup(key(2), 1024) else {
            panic!()
        };
        let Lookup::Insert { .. } = c.lookup(key(3), 1024) else {
            panic!()
        };
        // 1 was used after 2: 2 is the least recently used.
        assert_eq!(c.lookup(key(1), 1024), Lookup::Hit(one));
        let Lookup::Insert { id: four, evicted } = c.lookup(key(4), 1024) else {
            panic!()
        };
        assert_eq!(evicted, [two]);
        assert!(four > two, "ids are never reused");
        assert_eq!(c.used(), 3 * 1024);
        // 2 comes back under a new id.
        let Lookup::Insert { id, .. } = c.lookup(key(2), 1024) else {
            panic!()
        };
        assert!(id > four);
    }

    #[test]
    fn sizes_outside_the_bounds_and_no_budget_skip() {
        let mut c = PixmapCache::new(1 << 20);
        assert_eq!(c.lookup(key(1), 10), Lookup::Skip);
        assert_eq!(c.lookup(key(1), MAX_CACHED_PIXELS + 1), Lookup::Skip);
        let mut none = PixmapCache::new(0);
        assert_eq!(none.lookup(key(1), 1024), Lookup::Skip);
        let mut negative = PixmapCache::new(-1);
        assert_eq!(negative.lookup(key(1), 1024), Lookup::Skip);
        assert!(!PixmapCache::new(i64::MAX).wants(MAX_CACHE_PIXELS + 1));
    }

    #[test]
    fn clear_forgets_but_never_reuses_ids() {
        let mut c = PixmapCache::new(1 << 20);
        let Lookup::Insert { id, .. } = c.lookup(key(1), 1024) else {
            panic!()
        };
        c.clear();
        assert_eq!(c.used(), 0);
        let Lookup::Insert { id: again, .. } = c.lookup(key(1), 1024) else {
            panic!()
        };
        assert!(again > id);
    }
}
