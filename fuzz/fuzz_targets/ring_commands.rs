//! Guest memory and ring entries from fuzz bytes, through the command parsers and on into
//! the renderer, surface table and cursor state, as the red worker applies them.
//!
//! Input: 4 ring entries (`data: u64`, `type: u32`, 12 bytes each; type 0 = skip), then the
//! contents of slot 1 (64 KiB of "BAR0"). Slot 2 is 256 KiB of surface memory holding a
//! 64 × 64 xRGB primary. No panic, no hang, no unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use saffron_fuzz::*;
use saffron_ring::abi::{QXL_CMD_NOP, QXLCommand};
use saffron_ring::parse::{Command, Context, CursorCmdKind, SurfaceCmdKind, parse_command};
use saffron_worker::{CursorState, Renderer, Surface, shape_argb};
use std::sync::OnceLock;
use vm_memory::GuestMemoryMmap;

static MEM: OnceLock<GuestMemoryMmap> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let mem = MEM.get_or_init(memory);
    let mut r = Reader::new(data);
    let commands: Vec<QXLCommand> = (0..4)
        .map(|_| QXLCommand {
            data: r.u64(),
            type_: r.u32(),
            padding: 0,
        })
        .collect();
    load_ram(mem, r.rest());
    let slots = slots();
    let ctx = Context::new(mem, &slots, N_SURFACES);
    let mut surfaces = surfaces_with_primary();
    let mut renderer = Renderer::new();
    let mut cursor = CursorState::new();
    for cmd in commands.iter().filter(|c| c.type_ != QXL_CMD_NOP) {
        let Ok(parsed) = parse_command(&ctx, cmd) else {
            continue;
        };
        match &parsed {
            Command::Draw(d) => {
                let _ = renderer.draw(mem, &surfaces, d);
            }
            Command::Surface(s) => match &s.kind {
                SurfaceCmdKind::Create(c) => {
                    if let Ok(surface) = Surface::from_create(c) {
                        let _ = surfaces.create(s.surface_id, surface);
                    }
                }
                SurfaceCmdKind::Destroy => {
                    let _ = surfaces.destroy(s.surface_id);
                }
            },
            Command::Cursor(c) => {
                if let CursorCmdKind::Set { shape, .. } = &c.kind {
                    let _ = shape_argb(shape);
                }
                let _ = cursor.apply(c);
            }
            Command::Update(_) | Command::Message(_) => {}
        }
    }
});
