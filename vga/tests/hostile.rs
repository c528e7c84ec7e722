//! A hostile guest: random VGA port, DISPI, legacy-window and framebuffer accesses in random
//! order. Nothing panics (every video-memory access is bounds-checked), renders succeed or
//! refuse an oversized picture, and each access changes only the memory it may: a window
//! write at most one dword (the four planes of one address), a framebuffer write at most its
//! byte, reads and register writes nothing (except a DISPI enable, which clears the screen).

use proptest::prelude::*;
use saffron_vga::regs::{VBE_DISPI_INDEX_ENABLE, VBE_DISPI_IOPORT_DATA, VBE_DISPI_IOPORT_INDEX};
use saffron_vga::{RenderError, RenderOptions, Vga};

const VRAM: usize = 256 << 10;

#[derive(Clone, Debug)]
enum Op {
    PortWrite(u16, u8),
    PortRead(u16),
    VbeIndex(u16),
    VbeData(u16),
    VbeRead(u16),
    WindowWrite(u64, u8),
    WindowRead(u64),
    LfbWrite(u64, u8),
    LfbRead(u64),
    Render(bool),
}

fn port() -> impl Strategy<Value = u16> {
    prop_oneof![8 => 0x3b0u16..0x3e0, 1 => any::<u16>()]
}

fn window() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0xa0000u64..0xc0000, 1 => any::<u64>()]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (port(), any::<u8>()).prop_map(|(p, v)| Op::PortWrite(p, v)),
        2 => port().prop_map(Op::PortRead),
        2 => prop_oneof![0u16..12, any::<u16>()].prop_map(Op::VbeIndex),
        2 => any::<u16>().prop_map(Op::VbeData),
        1 => any::<u16>().prop_map(Op::VbeRead),
        6 => (window(), any::<u8>()).prop_map(|(a, v)| Op::WindowWrite(a, v)),
        3 => window().prop_map(Op::WindowRead),
        1 => (prop_oneof![0u64..VRAM as u64 + 16, any::<u64>()], any::<u8>())
            .prop_map(|(o, v)| Op::LfbWrite(o, v)),
        1 => any::<u64>().prop_map(Op::LfbRead),
        1 => any::<bool>().prop_map(Op::Render),
    ]
}

/// Offsets where two memories differ.
fn changed(a: &[u8], b: &[u8]) -> Vec<usize> {
    a.iter()
        .zip(b)
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i)
        .collect()
}

fn render_ok(vga: &Vga, cursor_visible: bool) {
    match vga.screenshot(RenderOptions { cursor_visible }) {
        Ok(_) | Err(RenderError::TooLarge { .. }) => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_accesses_stay_in_bounds(ops in prop::collection::vec(op(), 1..80)) {
        let mut vga = Vga::new(VRAM).unwrap();
        let mut vbe_index = 0u16;
        for op in ops {
            let before = vga.vram().to_vec();
            match &op {
                Op::PortWrite(p, v) => vga.io_write(*p, *v),
                Op::PortRead(p) => { vga.io_read(*p); }
                Op::VbeIndex(i) => {
                    vbe_index = *i;
                    vga.vbe_io_write(VBE_DISPI_IOPORT_INDEX, *i);
                }
                Op::VbeData(v) => vga.vbe_io_write(VBE_DISPI_IOPORT_DATA, *v),
                Op::VbeRead(p) => { vga.vbe_io_read(*p); }
                Op::WindowWrite(a, v) => vga.window_write(*a, *v),
                Op::WindowRead(a) => { vga.window_read(*a); }
                Op::LfbWrite(o, v) => vga.lfb_write(*o, *v),
                Op::LfbRead(o) => { vga.lfb_read(*o); }
                Op::Render(c) => render_ok(&vga, *c),
            }
            prop_assert_eq!(vga.vram_size(), VRAM);
            let diff = changed(&before, vga.vram());
            match op {
                Op::WindowWrite(..) => {
                    if let (Some(first), Some(last)) = (diff.first(), diff.last()) {
                        prop_assert_eq!(first / 4, last / 4, "one dword per write: {:?}", diff);
                    }
                }
                Op::LfbWrite(o, _) => {
                    prop_assert!(diff.iter().all(|i| *i as u64 == o), "{:?}", diff);
                }
                Op::VbeData(_) if vbe_index == VBE_DISPI_INDEX_ENABLE => {}
                _ => prop_assert!(diff.is_empty(), "{:?} changed {:?}", op, &diff[..diff.len().min(8)]),
            }
        }
        render_ok(&vga, true);
        render_ok(&vga, false);
    }
}
