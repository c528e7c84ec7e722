//! A PCI host bridge with configuration mechanism #1: the guest writes
//! `0x8000_0000 | bus << 16 | device << 11 | function << 8 | register` to 0xcf8, then reads or
//! writes up to four bytes at 0xcfc-0xcff. Bus 0 only; device 0 is the host bridge itself, the
//! other slots hold whatever [`PciFunction`]s the VMM plugged in. Absent functions read as all
//! ones, the way a real bus answers a master abort.

use std::collections::BTreeMap;

use tracing::debug;

/// The configuration address port.
pub const CONFIG_ADDRESS: u16 = 0xcf8;
/// The first configuration data port (0xcfc-0xcff).
pub const CONFIG_DATA: u16 = 0xcfc;
/// Bytes of configuration space of a conventional PCI function.
pub const CONFIG_SPACE_SIZE: u64 = 256;
const ENABLE: u32 = 0x8000_0000;

/// A function on the bus, as the host bridge reaches it.
pub trait PciFunction: Send {
    /// A read of `data.len()` (1, 2 or 4) bytes at `offset` of its configuration space.
    fn config_read(&mut self, offset: u64, data: &mut [u8]);
    /// A write at `offset` of its configuration space.
    fn config_write(&mut self, offset: u64, data: &[u8]);
}

/// Errors plugging functions in.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciError {
    /// Device numbers are 5 bits; 0 is the host bridge.
    #[error("PCI slot {0} is not in 1..=31")]
    BadSlot(u8),
    /// Two functions in one slot.
    #[error("PCI slot {0} is taken")]
    SlotTaken(u8),
}

/// The host bridge's own configuration space: an i440FX-like host bridge (class 06.00.00),
/// read-only.
fn host_bridge_config() -> [u8; CONFIG_SPACE_SIZE as usize] {
    let mut c = [0u8; CONFIG_SPACE_SIZE as usize];
    c[0..2].copy_from_slice(&0x8086u16.to_le_bytes());
    c[2..4].copy_from_slice(&0x1237u16.to_le_bytes());
    c[0x0b] = 0x06; // bridge
    c[0x0a] = 0x00; // host bridge
    c
}

/// Bus 0 behind configuration mechanism #1.
pub struct PciHostBridge {
    address: u32,
    host: [u8; CONFIG_SPACE_SIZE as usize],
    slots: BTreeMap<u8, Box<dyn PciFunction>>,
}

impl Default for PciHostBridge {
    fn default() -> Self {
        PciHostBridge {
            address: 0,
            host: host_bridge_config(),
            slots: BTreeMap::new(),
        }
    }
}

impl PciHostBridge {
    /// Plugs `function` into `slot` (function 0 of that device).
    pub fn plug(&mut self, slot: u8, function: Box<dyn PciFunction>) -> Result<(), PciError> {
        if !(1..32).contains(&slot) {
            return Err(PciError::BadSlot(slot));
        }
        if self.slots.contains_key(&slot) {
            return Err(PciError::SlotTaken(slot));
        }
        self.slots.insert(slot, function);
        Ok(())
    }

    /// Whether `port` is one of the bridge's ports.
    pub fn claims(port: u16) -> bool {
        (CONFIG_ADDRESS..CONFIG_DATA + 4).contains(&port)
    }

    /// The (slot, register offset) the data port at `port` reaches now, if enabled, on bus 0,
    /// function 0 and inside configuration space.
    fn target(&self, port: u16, len: usize) -> Option<(u8, u64)> {
        if self.address & ENABLE == 0 {
            return None;
        }
        let bus = (self.address >> 16) & 0xff;
        let slot = ((self.address >> 11) & 0x1f) as u8;
        let function = (self.address >> 8) & 0x7;
        if bus != 0 || function != 0 {
            return None;
        }
        let offset = u64::from(self.address & 0xfc) + u64::from(port.checked_sub(CONFIG_DATA)?);
        (offset + len as u64 <= CONFIG_SPACE_SIZE).then_some((slot, offset))
    }

    /// A port read at `port` (0xcf8 needs 32 bits; 0xcfc-0xcff any width inside them).
    pub fn pio_read(&mut self, port: u16, data: &mut [u8]) {
        data.fill(0xff);
        if port == CONFIG_ADDRESS {
            if let Ok(out) = <&mut [u8; 4]>::try_from(&mut *data) {
                *out = self.address.to_le_bytes();
            }
            return;
        }
        let Some((slot, offset)) = self.target(port, data.len()) else {
            return;
        };
        if slot == 0 {
            let o = offset as usize; // < 256
            data.copy_from_slice(&self.host[o..o + data.len()]);
        } else if let Some(f) = self.slots.get_mut(&slot) {
            f.config_read(offset, data);
        }
    }

    /// A port write (see [`PciHostBridge::pio_read`]).
    pub fn pio_write(&mut self, port: u16, data: &[u8]) {
        if port == CONFIG_ADDRESS {
            match <[u8; 4]>::try_from(data) {
                Ok(b) => self.address = u32::from_le_bytes(b),
                Err(_) => debug!(len = data.len(), "narrow write to 0xcf8 ignored"),
            }
            return;
        }
        let Some((slot, offset)) = self.target(port, data.len()) else {
            return;
        };
        if let Some(f) = self.slots.get_mut(&slot) {
            f.config_write(offset, data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Config writes seen: (offset, bytes).
    type Writes = Vec<(u64, Vec<u8>)>;

    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Writes>>);

    impl PciFunction for Recorder {
        fn config_read(&mut self, offset: u64, data: &mut [u8]) {
            for (i, b) in data.iter_mut().enumerate() {
                *b = (offset as u8).wrapping_add(i as u8);
            }
        }
        fn config_write(&mut self, offset: u64, data: &[u8]) {
            self.0.lock().unwrap().push((offset, data.to_vec()));
        }
    }

    fn select(bridge: &mut PciHostBridge, slot: u32, reg: u32) {
        bridge.pio_write(CONFIG_ADDRESS, &(ENABLE | slot << 11 | reg).to_le_bytes());
    }

    #[test]
    fn mechanism_one_reaches_the_right_function_and_offset() {
        let mut bridge = PciHostBridge::default();
        let rec = Recorder::default();
        bridge.plug(2, Box::new(rec.clone())).unwrap();
        assert_eq!(
            bridge.plug(2, Box::new(Recorder::default())),
            Err(PciError::SlotTaken(2))
        );
        assert_eq!(
            bridge.plug(0, Box::new(Recorder::default())),
            Err(PciError::BadSlot(0))
        );
        let mut id = [0u8; 4];
        select(&mut bridge, 0, 0);
        bridge.pio_read(CONFIG_DATA, &mut id);
        assert_eq!(id, [0x86, 0x80, 0x37, 0x12], "host bridge");
        select(&mut bridge, 2, 0x10);
        let mut b = [0u8; 2];
        bridge.pio_read(CONFIG_DATA + 2, &mut b);
        assert_eq!(b, [0x12, 0x13]);
        bridge.pio_write(CONFIG_DATA + 1, &[7]);
        assert_eq!(rec.0.lock().unwrap()[0], (0x11, vec![7]));
        let mut a = [0u8; 4];
        bridge.pio_read(CONFIG_ADDRESS, &mut a);
        assert_eq!(u32::from_le_bytes(a), ENABLE | 2 << 11 | 0x10);
    }

    #[test]
    fn absent_disabled_and_odd_accesses_read_all_ones() {
        let mut bridge = PciHostBridge::default();
        let mut b = [0u8; 4];
        select(&mut bridge, 5, 0);
        bridge.pio_read(CONFIG_DATA, &mut b);
        assert_eq!(b, [0xff; 4], "empty slot");
        bridge.pio_write(CONFIG_ADDRESS, &0u32.to_le_bytes());
        bridge.pio_read(CONFIG_DATA, &mut b);
        assert_eq!(b, [0xff; 4], "disabled");
        bridge.pio_write(CONFIG_ADDRESS, &(ENABLE | 1 << 16).to_le_bytes());
        bridge.pio_read(CONFIG_DATA, &mut b);
        assert_eq!(b, [0xff; 4], "bus 1");
        // 0xcff with 4 bytes would pass the end of the dword: dropped.
        select(&mut bridge, 0, 0xfc);
        bridge.pio_read(CONFIG_DATA + 3, &mut b);
        assert_eq!(b, [0xff; 4]);
        bridge.pio_write(CONFIG_ADDRESS, &[1, 2]);
        bridge.pio_write(CONFIG_DATA + 3, &[0; 4]);
    }
}
