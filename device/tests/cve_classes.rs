//! Device-level regression tests, one per CVE class of qxl-device.md §12.3 that the device
//! itself (not the parsers) must catch: the primary-surface parameters of CVE-2016-2150, a
//! primary outside its memory, missing index checks on ports and rings.

use std::mem::offset_of;

use saffron_device::qxl::bar;
use saffron_device::{DeviceMemory, IrqLine, QxlConfig, QxlDevice};
use saffron_ring::abi::*;
use saffron_ring::memslot::make_phys;
use vm_memory::ByteValued;

const CFG: QxlConfig = QxlConfig {
    ram_size: 1 << 20,
    vram_size: 256 << 10,
    vram64_size: 0,
    preferred_resolution: None,
    max_heads: 1,
};
const BAR0: u64 = 0xf400_0000;
const BAR1: u64 = 0xf800_0000;

struct NoIrq;
impl IrqLine for NoIrq {
    fn set_level(&self, _: bool) {}
}

fn device() -> QxlDevice {
    let mem = DeviceMemory::anonymous(CFG.ram_size, CFG.vram_size, CFG.vram64_size).unwrap();
    let mut dev = QxlDevice::new(CFG, mem, Box::new(NoIrq)).unwrap();
    dev.config_write(0x10, &(BAR0 as u32).to_le_bytes());
    dev.config_write(0x14, &(BAR1 as u32).to_le_bytes());
    dev.config_write(0x04, &0x0007u16.to_le_bytes());
    dev.bar_write(bar::IO, u64::from(QXL_IO_RESET), &[0]);
    let header = CFG.ram_size - 8192;
    for (id, start, end) in [(1u8, BAR0, BAR0 + header), (2, BAR1, BAR1 + CFG.vram_size)] {
        put(
            &mut dev,
            offset_of!(QXLRam, mem_slot),
            QXLMemSlot {
                mem_start: start,
                mem_end: end,
            },
        );
        dev.bar_write(bar::IO, u64::from(QXL_IO_MEMSLOT_ADD), &[id]);
    }
    assert!(!dev.in_guest_bug());
    dev
}

fn put<T: ByteValued>(dev: &mut QxlDevice, field: usize, v: T) {
    dev.bar_write(bar::RAM, CFG.ram_size - 8192 + field as u64, v.as_slice());
}

fn create_primary(dev: &mut QxlDevice, width: u32, height: u32, stride: i32, offset: u64) {
    put(
        dev,
        offset_of!(QXLRam, create_surface),
        QXLSurfaceCreate {
            width,
            height,
            stride,
            format: SPICE_SURFACE_FMT_32_xRGB,
            position: 0,
            mouse_mode: 0,
            flags: 0,
            type_: QXL_SURF_TYPE_PRIMARY,
            mem: make_phys(2, 0, offset).unwrap(),
        },
    );
    dev.bar_write(bar::IO, u64::from(QXL_IO_CREATE_PRIMARY), &[0]);
}

/// CVE-2016-2150 class: stride INT32_MIN, |stride| · height overflowing 32 bits, width
/// beyond stride: each is a guest bug, the device keeps no primary.
#[test]
fn integer_overflow_primary_stride_and_height() {
    for (w, h, stride) in [
        (64, 64, i32::MIN),
        (64, 0x10_0000, -256),
        (0x4000_0000, 2, 256),
        (u32::MAX, u32::MAX, i32::MAX & !3),
        (64, 64, 252),
    ] {
        let mut dev = device();
        create_primary(&mut dev, w, h, stride, 0);
        assert!(dev.in_guest_bug(), "{w}x{h} stride {stride}");
        assert!(dev.primary().is_none());
    }
    let mut dev = device();
    create_primary(&mut dev, 64, 64, -256, 0);
    assert!(!dev.in_guest_bug(), "bottom-up primary is fine");
}

/// Surface outside its memory (CVE-2022-4144 / CVE-2014-3615 class): a primary whose
/// pixels start inside the slot but end past it is a guest bug.
#[test]
fn surface_outside_its_memory_primary_past_slot_end() {
    let mut dev = device();
    // 64 rows of 256 bytes = 16 KiB starting 8 KiB before the end of the 256 KiB slot.
    create_primary(&mut dev, 64, 64, 256, CFG.vram_size - 0x2000);
    assert!(dev.in_guest_bug());
    let mut dev = device();
    create_primary(&mut dev, 64, 64, 256, CFG.vram_size - 0x4000);
    assert!(!dev.in_guest_bug(), "exactly at the end fits");
}

/// Missing index check class on the port space: multi-byte port writes and offsets past
/// the I/O BAR are dropped (counted), ports 25..31 are guest bugs, none of it panics.
#[test]
fn missing_index_check_port_accesses() {
    let mut dev = device();
    let before = dev.stats().io_ignored;
    dev.bar_write(bar::IO, u64::from(QXL_IO_RESET), &[0, 0]);
    dev.bar_write(bar::IO, 32, &[0]);
    dev.bar_write(bar::IO, u64::MAX, &[0]);
    dev.bar_write(bar::IO, 0x1_0000, &[0, 0, 0, 0]);
    assert_eq!(dev.stats().io_ignored, before + 4);
    assert!(!dev.in_guest_bug());
    dev.bar_write(bar::IO, 25, &[0]);
    assert!(dev.in_guest_bug());
    // BAR accesses past the end or of BARs that do not exist answer 0xff and drop writes.
    let mut b = [0u8; 8];
    dev.bar_read(bar::RAM, CFG.ram_size - 4, &mut b);
    assert_eq!(b, [0xff; 8]);
    dev.bar_read(7, 0, &mut b);
    dev.bar_write(bar::VRAM, u64::MAX - 2, &[1, 2, 3, 4]);
    dev.bar_write(bar::ROM, 0, &[0; 4]);
    let mut magic = [0u8; 4];
    dev.bar_read(bar::ROM, 0, &mut magic);
    assert_eq!(u32::from_le_bytes(magic), QXL_ROM_MAGIC);
}

/// Memslot index off-by-one (CVE-2019-3813) at the port: MEMSLOT_ADD / DEL with id 8 and
/// 255 are guest bugs, id 7 is fine.
#[test]
fn missing_index_check_memslot_ids_at_the_port() {
    for id in [8u8, 255] {
        for port in [QXL_IO_MEMSLOT_ADD, QXL_IO_MEMSLOT_DEL] {
            let mut dev = device();
            put(
                &mut dev,
                offset_of!(QXLRam, mem_slot),
                QXLMemSlot {
                    mem_start: BAR1,
                    mem_end: BAR1 + 4096,
                },
            );
            dev.bar_write(bar::IO, u64::from(port), &[id]);
            assert!(dev.in_guest_bug(), "port {port} id {id}");
        }
    }
    let mut dev = device();
    put(
        &mut dev,
        offset_of!(QXLRam, mem_slot),
        QXLMemSlot {
            mem_start: BAR1,
            mem_end: BAR1 + 4096,
        },
    );
    dev.bar_write(bar::IO, u64::from(QXL_IO_MEMSLOT_ADD), &[7]);
    assert!(!dev.in_guest_bug());
}
