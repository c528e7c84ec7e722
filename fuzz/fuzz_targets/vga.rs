//! The VGA model under a hostile guest, and the QEMU trace parser under hostile text.
//!
//! First byte even: 6-byte operations (`saffron_fuzz::vga::Op`: VGA port reads/writes, DISPI
//! reads/writes, legacy window and linear framebuffer accesses, renders) on a VGA with
//! 256 KiB of video memory, ending with a render. Nothing may panic (every vram access is
//! bounds-checked: an out-of-range one would panic), video memory keeps its size.
//! First byte odd: the rest is replayed as a QEMU trace log; lines may be rejected, never
//! crash the parser or the replay.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron_fuzz::vga::{OP_SIZE, Op, VRAM_SIZE};
use saffron_vga::replay::Replay;
use saffron_vga::{RenderOptions, Vga};

fuzz_target!(|data: &[u8]| {
    let Some((first, rest)) = data.split_first() else {
        return;
    };
    if first & 1 == 0 {
        let mut vga = Vga::new(VRAM_SIZE).expect("valid size");
        // A render can be millions of pixels: a few per input keep the target fast.
        let mut renders = 0;
        for chunk in rest.chunks_exact(OP_SIZE).take(4096) {
            let mut b = [0; OP_SIZE];
            b.copy_from_slice(chunk);
            let op = Op::decode(b);
            if let Op::Render { .. } = op {
                renders += 1;
                if renders > 3 {
                    continue;
                }
            }
            op.apply(&mut vga);
        }
        Op::Render {
            cursor_visible: true,
        }
        .apply(&mut vga);
        assert_eq!(vga.vram_size(), VRAM_SIZE);
    } else {
        let text = String::from_utf8_lossy(rest);
        let mut replay = Replay::with_vga(Vga::new(VRAM_SIZE).expect("valid size"));
        for line in text.lines().take(20_000) {
            // A rejected line is skipped; the replay goes on with the next.
            let _ = replay.feed_line(line);
        }
        let _ = replay.vga().screenshot(RenderOptions::default());
    }
});
