//! The QXL PCI device driven by a stream of guest operations — configuration-space and BAR
//! accesses, RAM-header fields, I/O ports, ring pushes, resets — with the real red worker
//! thread attached (so ring entries are parsed, rendered and released as in a VM). The device
//! must never panic and must still answer a configuration read afterwards.
//!
//! The worker runs on its own thread, so the interleaving of async completions with later
//! operations is not fully deterministic; every assertion here holds for any interleaving.
//! Ops are decoded with `arbitrary` one at a time until the input runs out (≤ 64 ops).
#![no_main]

use std::mem::offset_of;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use saffron_device::qxl::bar;
use saffron_device::{IrqLine, QxlConfig, QxlDevice};
use saffron_fuzz::device::*;
use saffron_ring::abi::*;

struct NoIrq;
impl IrqLine for NoIrq {
    fn set_level(&self, _asserted: bool) {}
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    // With a BAR4 (twice BAR1), so BAR4 accesses and memslots in it are exercised too.
    let cfg = QxlConfig {
        ram_size: RAM_SIZE,
        vram_size: VRAM_SIZE,
        vram64_size: 2 * VRAM_SIZE,
        preferred_resolution: None,
        max_heads: 1,
    };
    let mem = saffron_device::DeviceMemory::anonymous(RAM_SIZE, VRAM_SIZE, 2 * VRAM_SIZE)
        .expect("memory");
    let mut dev = QxlDevice::new(cfg, mem, Box::new(NoIrq)).expect("device");
    let (dispatcher, control) = saffron_worker::red::spawn(dev.interface()).expect("thread");
    dev.attach_worker(Box::new(dispatcher));
    let header = RAM_SIZE - RAM_HEADER;
    for _ in 0..64 {
        let Ok(op) = Op::arbitrary(&mut u) else { break };
        match op {
            Op::ConfigWrite {
                offset,
                value,
                width,
            } => {
                let b = u64::from(value).to_le_bytes();
                dev.config_write(u64::from(offset), &b[..width.bytes()]);
            }
            Op::BarWrite {
                bar,
                offset,
                value,
                width,
            } => {
                let b = value.to_le_bytes();
                dev.bar_write(usize::from(bar % 5), u64::from(offset), &b[..width.bytes()]);
            }
            Op::BarRead { bar, offset, width } => {
                let mut b = [0u8; 8];
                dev.bar_read(
                    usize::from(bar % 5),
                    u64::from(offset),
                    &mut b[..width.bytes()],
                );
            }
            Op::RamField { field, value } => {
                let (at, len) = field.place();
                dev.bar_write(bar::RAM, header + at, &value.to_le_bytes()[..len]);
            }
            Op::Io { port, value } => dev.bar_write(bar::IO, u64::from(port % 32), &[value]),
            Op::Push {
                cursor,
                object,
                offset,
                type_,
            } => {
                let (data, type_) = match object {
                    Some(o) => {
                        let (image, phys, t) = o.build();
                        dev.bar_write(bar::RAM, u64::from(offset % 4) * 0x4000, &image);
                        (phys + u64::from(offset % 4) * 0x4000, t)
                    }
                    None => (make_phys_slot1(u64::from(offset)), u32::from(type_)),
                };
                let ring = if cursor {
                    offset_of!(QXLRam, cursor_ring)
                } else {
                    offset_of!(QXLRam, cmd_ring)
                } as u64;
                let mut prod = [0u8; 4];
                let prod_at = header + ring + offset_of!(QXLRingHeader, prod) as u64;
                dev.bar_read(bar::RAM, prod_at, &mut prod);
                let prod = u32::from_le_bytes(prod);
                let size = if cursor {
                    QXL_CURSOR_RING_SIZE
                } else {
                    QXL_COMMAND_RING_SIZE
                };
                let item = QXLCommand {
                    data,
                    type_,
                    padding: 0,
                };
                let item_at =
                    header + ring + size_of::<QXLRingHeader>() as u64 + u64::from(prod % size) * 16;
                dev.bar_write(bar::RAM, item_at, vm_memory::ByteValued::as_slice(&item));
                dev.bar_write(bar::RAM, prod_at, &prod.wrapping_add(1).to_le_bytes());
                let port = if cursor {
                    QXL_IO_NOTIFY_CURSOR
                } else {
                    QXL_IO_NOTIFY_CMD
                };
                dev.bar_write(bar::IO, u64::from(port), &[0]);
            }
            Op::BringUp => bring_up(&mut dev),
            Op::Reset => dev.reset(),
        }
    }
    let mut vendor = [0u8; 2];
    dev.config_read(0, &mut vendor);
    assert_eq!(
        u16::from_le_bytes(vendor),
        saffron_device::qxl::QXL_VENDOR_ID
    );
    control.stop();
});
