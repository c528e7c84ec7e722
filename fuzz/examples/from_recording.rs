//! Turns recordings of real traffic into fuzz seeds (`ci/record-seeds` runs it):
//!
//! ```text
//! cargo run --example from_recording -- dump FILE.qxlrec          # what a recording holds
//! cargo run --example from_recording -- seeds NAME RECDIR OUTDIR [qxl|spice]
//!                                               # write OUTDIR/<target>/rec_NAME_*
//! ```
//!
//! QXL recordings (`saffron … --record-commands`, `worker/src/record.rs`) hold each ring
//! command with exactly the guest memory its parse read, at the guest's own addresses (a
//! 64 MiB BAR0, Linux's memslots). The fuzz targets have a 64 KiB slot-1 RAM and a 256 KiB
//! slot-2 VRAM holding a 64 × 64 primary, so every command is *relocated*: the pieces of guest
//! memory it read are packed into the target's RAM and every pointer among them is rewritten.
//! A pointer is recognised as an 8-byte value, in memory read earlier in the parse, equal to
//! the address of memory read later (the parser reads exactly what pointers point at, so
//! every pointer it followed is found this way). Each relocated command is then parsed in the
//! target's memory and must give the same command (addresses aside) as in the guest's
//! memory; one that does not is dropped, so no seed claims to be a command the guest did not
//! send. Only after that check, drawings are moved to the top-left corner of the 64 × 64
//! primary (bbox and clip rectangles shifted together) and surfaces shrunk to fit the VRAM, so
//! the seeds reach the renderer instead of being refused as outside the surface.
//!
//! Spice recordings (`--record-spice`, `server/src/record.rs`) are a client's byte stream; a
//! stream is a `spice_link` seed as it is, and its data stage (after the ticket) is a
//! `spice_channels` seed with the selector byte for its channel and header kind.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use saffron_fuzz::*;
use saffron_ring::abi::*;
use saffron_ring::memslot::{phys_generation, phys_offset, phys_slot_id};
use saffron_ring::parse::{Command, Context, CursorCmdKind, DrawBody, TraceEntry, parse_command};
use saffron_worker::record::{CommandRecord, Record, memslot_table, read_recording};
use vm_memory::{ByteValued, Bytes, GuestAddress, GuestMemoryMmap};

/// RAM bytes a ring_commands seed may use (the rest of the 64 KiB is left zero).
const RAM_BUDGET: usize = RAM_SIZE as usize - 64;
/// VRAM offset where relocated surfaces go (after the 64 × 64 primary).
const SURFACE_VRAM: u64 = 64 << 10;
/// Largest relocated surface side (128 × 128 × 4 = 64 KiB fits the VRAM left).
const SURFACE_SIDE: u32 = 128;

fn usage() -> ! {
    eprintln!(
        "usage: from_recording dump FILE.qxlrec | from_recording seeds NAME RECDIR OUTDIR [qxl|spice]"
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["dump", file] => dump(Path::new(file)),
        ["seeds", name, rec, out] => seeds(name, Path::new(rec), Path::new(out), "all"),
        ["seeds", name, rec, out, which @ ("qxl" | "spice")] => {
            seeds(name, Path::new(rec), Path::new(out), which)
        }
        _ => usage(),
    }
}

// --- Reading recordings ----------------------------------------------------------------------

/// Every command of a QXL recording with the memslot table in force when it was taken.
fn commands(path: &Path) -> Vec<(Vec<saffron_worker::record::SlotRecord>, CommandRecord)> {
    let records = read_recording(path).unwrap_or_else(|e| panic!("{e}"));
    let mut slots = Vec::new();
    let mut out = Vec::new();
    for r in records {
        match r {
            Record::Memslots(s) => slots = s,
            Record::Command(c) => out.push((slots.clone(), c)),
            Record::Primary(_) | Record::Event(_) => {}
        }
    }
    out
}

/// A short description of a command for the dump and the seed names.
fn kind(cmd: &CommandRecord) -> String {
    let first = cmd.memory.iter().find_map(|e| match e {
        TraceEntry::Copied { bytes, .. } if bytes.len() > 8 => Some(bytes.as_slice()),
        _ => None,
    });
    let at = |i: usize| first.and_then(|b| b.get(i).copied()).unwrap_or(0xff);
    match cmd.command.type_ {
        QXL_CMD_DRAW => {
            let t = at(core::mem::offset_of!(QXLDrawable, type_));
            let name = match t {
                QXL_DRAW_FILL => "fill",
                QXL_DRAW_OPAQUE => "opaque",
                QXL_DRAW_COPY => "copy",
                QXL_COPY_BITS => "copybits",
                QXL_DRAW_BLEND => "blend",
                QXL_DRAW_ALPHA_BLEND => "alphablend",
                QXL_DRAW_COMPOSITE => "composite",
                _ => "draw",
            };
            name.to_string()
        }
        QXL_CMD_SURFACE => match at(core::mem::offset_of!(QXLSurfaceCmd, type_)) {
            QXL_SURFACE_CMD_CREATE => "surface_create".into(),
            _ => "surface_destroy".into(),
        },
        QXL_CMD_CURSOR => match at(core::mem::offset_of!(QXLCursorCmd, type_)) {
            QXL_CURSOR_SET => "cursor_set".into(),
            QXL_CURSOR_MOVE => "cursor_move".into(),
            QXL_CURSOR_HIDE => "cursor_hide".into(),
            _ => "cursor".into(),
        },
        QXL_CMD_UPDATE => "update".into(),
        QXL_CMD_MESSAGE => "message".into(),
        t => format!("type{t}"),
    }
}

fn dump(path: &Path) {
    let records = read_recording(path).unwrap_or_else(|e| panic!("{e}"));
    let mut counts: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for r in &records {
        match r {
            Record::Memslots(s) => println!("memslots {s:?}"),
            Record::Primary(p) => println!("primary {p:?}"),
            Record::Event(e) => println!("event {e:?}"),
            Record::Command(c) => {
                let bytes: usize = c
                    .memory
                    .iter()
                    .map(|e| match e {
                        TraceEntry::Copied { bytes, .. } => bytes.len(),
                        TraceEntry::Referenced { .. } => 0,
                    })
                    .sum();
                let e = counts.entry(kind(c)).or_default();
                e.0 += 1;
                e.1 = e.1.max(bytes);
                e.2 += usize::from(!c.parsed);
            }
        }
    }
    for (k, (n, max, bad)) in counts {
        println!("{k:16} {n:6} commands, largest {max} bytes read, {bad} guest bugs");
    }
}

// --- Relocation ------------------------------------------------------------------------------

/// A run of guest memory one command read, contiguous in its slot.
struct Extent {
    key: (u8, u8),
    start: u64,
    bytes: Vec<u8>,
    /// Where it went in the seed's RAM (slot-1 offset).
    placed: u64,
}

/// One command relocated into a seed's RAM image.
struct Relocated {
    data: QXLPHYSICAL,
    type_: u32,
    /// The pointers rewritten: (address of the read holding it, offset in that read).
    pointers: Vec<(QXLPHYSICAL, usize)>,
}

fn key(phys: QXLPHYSICAL) -> (u8, u8) {
    (phys_slot_id(phys), phys_generation(phys))
}

/// Packs what `cmd` read into `img` and rewrites its pointers, except the 8-byte values at
/// `skip` (taken for pointers by coincidence); `None` if `img` would grow past `budget` bytes.
fn relocate(
    img: &mut RamImage,
    cmd: &CommandRecord,
    budget: usize,
    skip: &BTreeSet<(QXLPHYSICAL, usize)>,
) -> Option<Relocated> {
    let copied: Vec<(QXLPHYSICAL, &[u8])> = cmd
        .memory
        .iter()
        .filter_map(|e| match e {
            TraceEntry::Copied { phys, bytes } => Some((*phys, bytes.as_slice())),
            TraceEntry::Referenced { .. } => None,
        })
        .collect();
    // Extents: overlapping or touching reads in the same slot and generation merge.
    let mut sorted = copied.clone();
    sorted.sort_by_key(|(p, b)| (key(*p), phys_offset(*p), b.len()));
    let mut extents: Vec<Extent> = Vec::new();
    for (phys, bytes) in sorted {
        let (k, off) = (key(phys), phys_offset(phys));
        match extents.last_mut() {
            Some(e) if e.key == k && off <= e.start + e.bytes.len() as u64 => {
                let at = (off - e.start) as usize;
                let end = at + bytes.len();
                if end > e.bytes.len() {
                    e.bytes.resize(end, 0);
                }
                e.bytes[at..end].copy_from_slice(bytes);
            }
            _ => extents.push(Extent {
                key: k,
                start: off,
                bytes: bytes.to_vec(),
                placed: 0,
            }),
        }
    }
    let total: usize = extents.iter().map(|e| e.bytes.len() + 8).sum();
    if img.0.len() + total > budget {
        return None;
    }
    for e in &mut extents {
        e.placed = phys_offset(img.bytes(&e.bytes));
    }
    let find = |phys: QXLPHYSICAL| {
        extents.iter().find(|e| {
            e.key == key(phys)
                && phys_offset(phys) >= e.start
                && phys_offset(phys) < e.start + e.bytes.len() as u64
        })
    };
    let map = |phys: QXLPHYSICAL| find(phys).map(|e| p1(e.placed + phys_offset(phys) - e.start));
    // Surface memory stays in the guest: it goes to the seed's VRAM (shrunk later if needed).
    let referenced: BTreeSet<QXLPHYSICAL> = cmd
        .memory
        .iter()
        .filter_map(|e| match e {
            TraceEntry::Referenced { phys, .. } => Some(*phys),
            TraceEntry::Copied { .. } => None,
        })
        .collect();
    // Pointers: 8-byte values in a read equal to the address of a later read.
    let mut pointers = Vec::new();
    for (i, (phys, bytes)) in copied.iter().enumerate() {
        let later: BTreeSet<QXLPHYSICAL> = copied[i + 1..].iter().map(|(p, _)| *p).collect();
        let base = map(*phys)?;
        for k in 0..bytes.len().saturating_sub(7) {
            let v = u64::from_le_bytes(bytes[k..k + 8].try_into().ok()?);
            let new = if later.contains(&v) {
                map(v)?
            } else if referenced.contains(&v) {
                p2(SURFACE_VRAM)
            } else {
                continue;
            };
            if skip.contains(&(*phys, k)) {
                continue;
            }
            pointers.push((*phys, k));
            let at = (phys_offset(base) + k as u64) as usize;
            img.0[at..at + 8].copy_from_slice(&new.to_le_bytes());
        }
    }
    Some(Relocated {
        data: map(cmd.command.data)?,
        type_: cmd.command.type_,
        pointers,
    })
}

/// The guest memory of one command at its own addresses, for the faithfulness check.
fn replay_memory(
    slots: &[saffron_worker::record::SlotRecord],
    cmd: &CommandRecord,
) -> Option<(GuestMemoryMmap, saffron_ring::memslot::MemSlotTable)> {
    let table = memslot_table(slots);
    // One region per distinct slot range (Linux's slots do not overlap).
    let mut ranges: Vec<(u64, u64)> = slots.iter().map(|s| (s.start, s.size)).collect();
    ranges.sort();
    ranges.dedup();
    let regions: Vec<(GuestAddress, usize)> = ranges
        .iter()
        .filter(|(_, size)| *size > 0)
        .map(|(start, size)| (GuestAddress(*start), *size as usize))
        .collect();
    let mem = GuestMemoryMmap::from_ranges(&regions).ok()?;
    for e in &cmd.memory {
        if let TraceEntry::Copied { phys, bytes } = e {
            let addr = table.translate(*phys, bytes.len() as u64).ok()?;
            mem.write_slice(bytes, addr).ok()?;
        }
    }
    Some((mem, table))
}

/// A parsed command's Debug text with guest addresses blanked (they differ by design).
fn fingerprint(c: &Command) -> String {
    let text = format!("{c:?}");
    let mut out = String::with_capacity(text.len());
    let mut rest = text.as_str();
    while let Some(i) = rest.find("GuestAddress(") {
        out.push_str(&rest[..i + 13]);
        rest = &rest[i + 13..];
        let end = rest.find(')').unwrap_or(0);
        out.push('_');
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Parses the relocated command in the seed's memory (RAM image `img`), or in a RAM as large
/// as `img` when it exceeds the seed's (the faithfulness check of a command before cropping).
fn parse_in_seed(img: &[u8], r: &Relocated) -> Option<Command> {
    let (mem, slots) = if img.len() <= RAM_SIZE as usize {
        let mem = memory();
        load_ram(&mem, img);
        (mem, slots())
    } else {
        let size = img.len().next_multiple_of(4096);
        // VRAM above this larger RAM; slot-2 pointers are offsets, so they do not change.
        let vram = GuestAddress(size as u64);
        let mem =
            GuestMemoryMmap::from_ranges(&[(GuestAddress(RAM), size), (vram, VRAM_SIZE as usize)])
                .ok()?;
        mem.write_slice(img, GuestAddress(RAM)).ok()?;
        let mut t = saffron_ring::memslot::MemSlotTable::new();
        let bars = [
            saffron_ring::memslot::BarRange {
                base: GuestAddress(RAM),
                len: size as u64,
            },
            saffron_ring::memslot::BarRange {
                base: vram,
                len: VRAM_SIZE,
            },
        ];
        for (id, bar) in [(1, bars[0]), (2, bars[1])] {
            let range = QXLMemSlot {
                mem_start: bar.base.0,
                mem_end: bar.base.0 + bar.len,
            };
            t.add(id, range, &bars).ok()?;
        }
        (mem, t)
    };
    let ctx = Context::new(&mem, &slots, N_SURFACES);
    parse_command(
        &ctx,
        &QXLCommand {
            data: r.data,
            type_: r.type_,
            padding: 0,
        },
    )
    .ok()
}

fn read_at<T: ByteValued + Default>(img: &[u8], phys: QXLPHYSICAL) -> Option<(usize, T)> {
    let at = usize::try_from(phys_offset(phys)).ok()?;
    let bytes = img.get(at..at + size_of::<T>())?;
    Some((at, union_member(bytes)))
}

fn write_at<T: ByteValued>(img: &mut [u8], at: usize, v: T) {
    img[at..at + size_of::<T>()].copy_from_slice(v.as_slice());
}

fn shift(r: QXLRect, dx: i32, dy: i32) -> QXLRect {
    rect(r.top - dy, r.left - dx, r.bottom - dy, r.right - dx)
}

/// Moves a relocated drawing to the primary's top-left corner; shrinks a surface create to
/// fit the seed's VRAM. Structure-aware, on the seed's own (relocated) bytes.
fn fit_to_seed(img: &mut [u8], r: &Relocated) -> Option<()> {
    match r.type_ {
        QXL_CMD_DRAW => {
            let (at, mut d): (usize, QXLDrawable) = read_at(img, r.data)?;
            let (dx, dy) = (d.bbox.left, d.bbox.top);
            d.bbox = shift(d.bbox, dx, dy);
            let clip = d.clip;
            write_at(img, at, d);
            if clip.type_ == SPICE_CLIP_TYPE_RECTS {
                let (at, rects): (usize, QXLClipRects) = read_at(img, clip.data)?;
                let mut left = rects.num_rects as usize;
                let mut chunk = (rects.chunk, at + size_of::<QXLClipRects>());
                loop {
                    let n = (chunk.0.data_size as usize / 16).min(left);
                    for i in 0..n {
                        let at = chunk.1 + i * 16;
                        let (_, q): (usize, QXLRect) = read_at(img, p1(at as u64))?;
                        write_at(img, at, shift(q, dx, dy));
                    }
                    left -= n;
                    if left == 0 || chunk.0.next_chunk == 0 {
                        break;
                    }
                    let (at, next): (usize, QXLDataChunk) = read_at(img, chunk.0.next_chunk)?;
                    chunk = (next, at + size_of::<QXLDataChunk>());
                }
            }
        }
        QXL_CMD_SURFACE => {
            let (at, mut s): (usize, QXLSurfaceCmd) = read_at(img, r.data)?;
            if s.type_ == QXL_SURFACE_CMD_CREATE {
                let mut c = s.surface_create;
                let bpp = saffron_ring::parse::SurfaceFormat::from_raw(c.format)?.bits_per_pixel();
                c.width = c.width.min(SURFACE_SIDE);
                c.height = c.height.min(SURFACE_SIDE);
                let stride = (c.width * bpp).div_ceil(8).next_multiple_of(4) as i32;
                c.stride = if c.stride < 0 { -stride } else { stride };
                c.data = p2(SURFACE_VRAM);
                s.surface_create = c;
                write_at(img, at, s);
            }
        }
        _ => {}
    }
    Some(())
}

/// Relocates `cmd` into `img` so that it parses to the same command as at the guest's own
/// addresses (addresses aside). A value taken for a pointer by coincidence (e.g. a zero
/// field followed by a 1 that looks like a slot-1 address) breaks that; then each rewrite is
/// left out in turn until one relocation is faithful. Surface creates are checked only to
/// parse, as their pixels move to the seed's VRAM once shrunk. On failure `img` is unchanged.
fn place(
    img: &mut RamImage,
    slots: &[saffron_worker::record::SlotRecord],
    cmd: &CommandRecord,
) -> Option<Relocated> {
    let expected = replay_memory(slots, cmd).and_then(|(mem, table)| {
        parse_command(&Context::new(&mem, &table, 1024), &cmd.command).ok()
    })?;
    let attempt = |skip: &BTreeSet<(QXLPHYSICAL, usize)>| {
        let mut trial = RamImage(img.0.clone());
        let r = relocate(&mut trial, cmd, RAM_BUDGET, skip)?;
        let ok = match parse_in_seed(&trial.0, &r) {
            Some(_) if cmd.command.type_ == QXL_CMD_SURFACE => true,
            Some(got) => fingerprint(&got) == fingerprint(&expected),
            None => false,
        };
        Some((trial, r, ok))
    };
    let (trial, r, ok) = attempt(&BTreeSet::new())?;
    if ok {
        *img = trial;
        return Some(r);
    }
    for p in &r.pointers {
        if let Some((trial, r, true)) = attempt(&BTreeSet::from([*p])) {
            *img = trial;
            return Some(r);
        }
    }
    None
}

/// Crops `cmd` to the seed's screen, relocates it into `img` faithfully, fits it to the seed
/// and checks it still parses and, for a drawing, that the target's renderer draws it onto
/// the target's primary (not refused as outside it). On failure `img` is unchanged.
fn add_command(
    img: &mut RamImage,
    slots: &[saffron_worker::record::SlotRecord],
    cmd: &CommandRecord,
) -> Option<(Relocated, Command)> {
    if !cmd.parsed {
        return None;
    }
    let cmd = crop(cmd)?;
    let before = img.0.len();
    let r = place(img, slots, &cmd)?;
    let parsed = fit_to_seed(&mut img.0, &r)
        .and_then(|()| parse_in_seed(&img.0, &r))
        .filter(|c| match c {
            Command::Draw(d) => {
                let mem = memory();
                load_ram(&mem, &img.0);
                saffron_worker::Renderer::new()
                    .draw(&mem, &surfaces_with_primary(), d)
                    .is_ok()
            }
            _ => true,
        });
    match parsed {
        Some(parsed) => Some((r, parsed)),
        None => {
            img.0.truncate(before);
            None
        }
    }
}

// --- Cropping --------------------------------------------------------------------------------

/// Largest side of a cropped drawing: the seed's primary is 64 × 64.
const CROP: i32 = PRIMARY_W as i32;

fn entry_at(memory: &[TraceEntry], phys: QXLPHYSICAL, len: usize) -> Option<usize> {
    memory.iter().position(
        |e| matches!(e, TraceEntry::Copied { phys: p, bytes } if *p == phys && bytes.len() == len),
    )
}

fn entry_obj<T: ByteValued + Default>(memory: &[TraceEntry], i: usize) -> T {
    match &memory[i] {
        TraceEntry::Copied { bytes, .. } => union_member(bytes),
        TraceEntry::Referenced { .. } => T::default(),
    }
}

fn set_entry(memory: &mut [TraceEntry], i: usize, new: Vec<u8>) {
    if let TraceEntry::Copied { bytes, .. } = &mut memory[i] {
        *bytes = new;
    }
}

/// A COPY of a chunked bitmap (what Linux sends for every damaged framebuffer area, up to a
/// whole 3 MiB frame) cut down to at most 64 × 64 pixels: the window starts at the first clip
/// rectangle, the bitmap keeps exactly those pixels (one chunk, same format and flags), the
/// drawing moves to the origin and the clip rectangles move and are clipped with it. Other
/// commands are returned as they are.
fn crop(cmd: &CommandRecord) -> Option<CommandRecord> {
    let mut out = cmd.clone();
    if cmd.command.type_ != QXL_CMD_DRAW {
        return Some(out);
    }
    let m = &mut out.memory;
    let di = entry_at(m, cmd.command.data, size_of::<QXLDrawable>())?;
    let mut d: QXLDrawable = entry_obj(m, di);
    if d.type_ != QXL_DRAW_COPY {
        return Some(out);
    }
    let mut copy: QXLCopy = union_member(&d.u);
    let ii = entry_at(m, copy.src_bitmap, size_of::<QXLImage>())?;
    let mut image: QXLImage = entry_obj(m, ii);
    let mut b = image.bitmap;
    let bpp = *SPICE_BITMAP_FMT_BPP.get(usize::from(b.format))?;
    let (bbox, src) = (d.bbox, copy.src_area);
    let (bw, bh) = (bbox.right - bbox.left, bbox.bottom - bbox.top);
    if image.descriptor.type_ != SPICE_IMAGE_TYPE_BITMAP
        || b.flags & QXL_BITMAP_DIRECT != 0
        || bpp % 8 != 0
        || (src.right - src.left, src.bottom - src.top) != (bw, bh)
    {
        return None;
    }
    // The window: where the first clip rectangle starts, kept inside the bbox.
    let mut rects: Vec<QXLRect> = Vec::new();
    let mut clip_entries = None;
    if d.clip.type_ == SPICE_CLIP_TYPE_RECTS {
        let ci = entry_at(m, d.clip.data, size_of::<QXLClipRects>())?;
        let c: QXLClipRects = entry_obj(m, ci);
        let n = c.num_rects as usize;
        if c.chunk.next_chunk != 0 {
            return None;
        }
        let ri = entry_at(m, d.clip.data + size_of::<QXLClipRects>() as u64, n * 16)?;
        if let TraceEntry::Copied { bytes, .. } = &m[ri] {
            rects = bytes
                .chunks_exact(16)
                .map(union_member::<QXLRect>)
                .collect();
        }
        clip_entries = Some((ci, ri, c));
    }
    let (w, h) = (bw.min(CROP), bh.min(CROP));
    let (x0, y0) = match rects.first() {
        Some(r) => (
            r.left.clamp(bbox.left, bbox.right - w),
            r.top.clamp(bbox.top, bbox.bottom - h),
        ),
        None => (bbox.left, bbox.top),
    };
    // The pixels of the window, from the (single- or multi-chunk) bitmap data.
    let hi = entry_at(m, b.data, size_of::<QXLDataChunk>())?;
    let mut header: QXLDataChunk = entry_obj(m, hi);
    let mut data = Vec::new();
    let mut chain = vec![hi];
    let mut at = (hi, header);
    loop {
        let header_phys = match &m[at.0] {
            TraceEntry::Copied { phys, .. } => *phys,
            TraceEntry::Referenced { .. } => return None,
        };
        let data_i = entry_at(
            m,
            header_phys + size_of::<QXLDataChunk>() as u64,
            at.1.data_size as usize,
        )?;
        if let TraceEntry::Copied { bytes, .. } = &m[data_i] {
            data.extend_from_slice(bytes);
        }
        chain.push(data_i);
        if at.1.next_chunk == 0 {
            break;
        }
        let next = entry_at(m, at.1.next_chunk, size_of::<QXLDataChunk>())?;
        chain.push(next);
        at = (next, entry_obj(m, next));
    }
    let px = (bpp / 8) as usize;
    let stride = b.stride as usize;
    let new_stride = (w as usize * px).next_multiple_of(4);
    let mut pixels = vec![0u8; new_stride * h as usize];
    for y in 0..h as usize {
        // Source row in image coordinates, then in memory order.
        let sy = (src.top + (y0 - bbox.top)) as usize + y;
        let my = if b.flags & QXL_BITMAP_TOP_DOWN != 0 {
            sy
        } else {
            (b.y as usize).checked_sub(sy + 1)?
        };
        let sx = (src.left + (x0 - bbox.left)) as usize * px;
        let row = data.get(my * stride + sx..my * stride + sx + w as usize * px)?;
        let dy = if b.flags & QXL_BITMAP_TOP_DOWN != 0 {
            y
        } else {
            h as usize - 1 - y
        };
        pixels[dy * new_stride..dy * new_stride + row.len()].copy_from_slice(row);
    }
    // Rewrite the structures.
    d.bbox = rect(0, 0, h, w);
    copy.src_area = rect(0, 0, h, w);
    set_union(&mut d.u, copy);
    image.descriptor.width = w as u32;
    image.descriptor.height = h as u32;
    b.x = w as u32;
    b.y = h as u32;
    b.stride = new_stride as u32;
    image.bitmap = b;
    header.data_size = pixels.len() as u32;
    header.next_chunk = 0;
    if let Some((ci, ri, mut c)) = clip_entries {
        let moved: Vec<QXLRect> = rects
            .iter()
            .map(|r| {
                rect(
                    (r.top - y0).clamp(0, h),
                    (r.left - x0).clamp(0, w),
                    (r.bottom - y0).clamp(0, h),
                    (r.right - x0).clamp(0, w),
                )
            })
            .collect();
        set_entry(
            m,
            ri,
            moved.iter().flat_map(|r| r.as_slice().to_vec()).collect(),
        );
        c.num_rects = moved.len() as u32;
        c.chunk.data_size = (moved.len() * 16) as u32;
        set_entry(m, ci, c.as_slice().to_vec());
    }
    set_entry(m, di, d.as_slice().to_vec());
    set_entry(m, ii, image.as_slice().to_vec());
    set_entry(m, hi, header.as_slice().to_vec());
    let first_data = chain[1];
    set_entry(m, first_data, pixels);
    // Later chunks are gone.
    let dropped: BTreeSet<usize> = chain[2..].iter().copied().collect();
    let mut i = 0;
    m.retain(|_| {
        i += 1;
        !dropped.contains(&(i - 1))
    });
    Some(out)
}

// --- Seeds -----------------------------------------------------------------------------------

struct Out {
    dir: PathBuf,
    name: String,
    written: usize,
    bytes: usize,
    seen: BTreeSet<Vec<u8>>,
}

impl Out {
    /// Writes a seed unless the same bytes were already written; true if written.
    fn save(&mut self, target: &str, what: &str, bytes: &[u8]) -> bool {
        let mut key = target.as_bytes().to_vec();
        key.extend_from_slice(bytes);
        if !self.seen.insert(key) {
            return false;
        }
        let dir = self.dir.join(target);
        std::fs::create_dir_all(&dir).expect("output directory");
        let file = dir.join(format!("rec_{}_{what}", self.name));
        std::fs::write(&file, bytes).expect("seed file");
        self.written += 1;
        self.bytes += bytes.len();
        true
    }
}

/// The ring_commands input: 4 × (data, type) then the RAM image.
fn ring_seed(cmds: &[(QXLPHYSICAL, u32)], img: &RamImage) -> Vec<u8> {
    let mut w = Writer::default();
    for i in 0..4 {
        let (p, t) = cmds.get(i).copied().unwrap_or((0, QXL_CMD_NOP));
        w.u64(p).u32(t);
    }
    w.bytes(&img.0);
    w.0
}

/// A chunk_chains input: the seed's slots (1 = RAM, 2 = first 64 KiB of VRAM), probes at
/// the command's own pointers, and the chain starting at `start`.
fn chain_seed(img: &RamImage, probes: &[(QXLPHYSICAL, u64)], start: ChainAt, cap: u32) -> Vec<u8> {
    let mut w = Writer::default();
    w.u8(0);
    w.u8(1).u32(0).u32(RAM_SIZE as u32);
    w.u8(0x82).u32(0).u32(0x1_0000);
    w.u8(9).u32(0).u32(0);
    for i in 0..4 {
        let (p, s) = probes.get(i).copied().unwrap_or((p1(0), 0));
        w.u64(p).u64(s);
    }
    match start {
        ChainAt::Pointer(p) => {
            w.u64(p).u8(0).bytes(&[0; 20]);
        }
        ChainAt::Inline(header_at, header) => {
            w.u64(header_at).u8(1).bytes(header.as_slice());
        }
    }
    w.u32(cap).u16(u16::MAX);
    w.bytes(&img.0);
    w.0
}

#[derive(Clone, Copy)]
enum ChainAt {
    Pointer(QXLPHYSICAL),
    Inline(QXLPHYSICAL, QXLDataChunk),
}

/// A chunk chain of a relocated command: what it holds, where it starts, its byte cap, and
/// pointers of the command to probe the slots with.
struct Chain {
    what: &'static str,
    at: ChainAt,
    cap: u32,
    probes: Vec<(QXLPHYSICAL, u64)>,
}

/// The chains of a relocated command, read back from the seed image.
fn chains_of(img: &[u8], r: &Relocated) -> Vec<Chain> {
    let mut out = Vec::new();
    match r.type_ {
        QXL_CMD_DRAW => {
            let Some((_, d)) = read_at::<QXLDrawable>(img, r.data) else {
                return out;
            };
            let mut probes = vec![(r.data, size_of::<QXLDrawable>() as u64)];
            if d.clip.type_ == SPICE_CLIP_TYPE_RECTS
                && let Some((_, c)) = read_at::<QXLClipRects>(img, d.clip.data)
            {
                let header_at = d.clip.data + 4;
                probes.push((d.clip.data, size_of::<QXLClipRects>() as u64));
                out.push(Chain {
                    what: "clip",
                    at: ChainAt::Inline(header_at, c.chunk),
                    cap: c.num_rects.saturating_mul(16),
                    probes: probes.clone(),
                });
            }
            if d.type_ == QXL_DRAW_COPY {
                let copy: QXLCopy = union_member(&d.u);
                if let Some((_, image)) = read_at::<QXLImage>(img, copy.src_bitmap)
                    && image.descriptor.type_ == SPICE_IMAGE_TYPE_BITMAP
                    && image.bitmap.flags & QXL_BITMAP_DIRECT == 0
                {
                    let b = image.bitmap;
                    probes.push((copy.src_bitmap, size_of::<QXLImage>() as u64));
                    out.push(Chain {
                        what: "bitmap",
                        at: ChainAt::Pointer(b.data),
                        cap: b.stride.saturating_mul(b.y),
                        probes,
                    });
                }
            }
        }
        QXL_CMD_CURSOR => {
            let Some((_, c)) = read_at::<QXLCursorCmd>(img, r.data) else {
                return out;
            };
            if c.type_ == QXL_CURSOR_SET {
                let set: QXLCursorSet = union_member(&c.u);
                if let Some((_, cursor)) = read_at::<QXLCursor>(img, set.shape) {
                    let header_at = set.shape + (size_of::<QXLCursor>() - 20) as u64;
                    out.push(Chain {
                        what: "cursor",
                        at: ChainAt::Inline(header_at, cursor.chunk),
                        cap: cursor.data_size,
                        probes: vec![
                            (r.data, size_of::<QXLCursorCmd>() as u64),
                            (set.shape, size_of::<QXLCursor>() as u64),
                        ],
                    });
                }
            }
        }
        _ => {}
    }
    out
}

/// A decoders input from a real COPY of a bitmap (its format, flags, size, stride, palette
/// size and pixels; its clip rectangles) and a real cursor's type and size. The target lays
/// out its own pointers, so only these values carry over.
fn decoder_seed(
    img: &[u8],
    r: &Relocated,
    d: &saffron_ring::parse::Drawable,
    cursor: Option<(u16, u16, u16)>,
) -> Option<Vec<u8>> {
    let DrawBody::Copy(body) = &d.body else {
        return None;
    };
    let saffron_ring::parse::Image::Bitmap(bitmap) = body.src.as_ref() else {
        return None;
    };
    let (_, raw) = read_at::<QXLDrawable>(img, r.data)?;
    let copy: QXLCopy = union_member(&raw.u);
    let (_, image) = read_at::<QXLImage>(img, copy.src_bitmap)?;
    let b = image.bitmap;
    let (w, h) = (b.x, b.y);
    if w > 0x1_00ff || h > 255 {
        return None;
    }
    let clips: Vec<saffron_ring::parse::Rect> = match &d.clip {
        saffron_ring::parse::Clip::Rects(r) => r.iter().take(3).copied().collect(),
        saffron_ring::parse::Clip::None => Vec::new(),
    };
    // d is the fitted command: its bbox is at the origin already.
    let b8 = |v: i32| v.clamp(0, 255) as u8;
    let mut wr = Writer::default();
    wr.u8(0).u8(0).u8(b.format).u8(b.flags);
    wr.u8((w & 0xff) as u8).u8(u8::from(w > 0xff)).u8(h as u8);
    let bpp = SPICE_BITMAP_FMT_BPP
        .get(usize::from(b.format))
        .copied()
        .unwrap_or(8);
    let row = (w * bpp).div_ceil(8);
    wr.u16(b.stride.wrapping_sub(row).wrapping_add(2) as u16);
    let n_pal = bitmap
        .palette
        .as_ref()
        .map_or(0, |p| p.entries.len() as u16);
    wr.u16(n_pal).u8(u8::from(n_pal > 0)).u8(1);
    let a = body.src_area;
    wr.u8(b8(a.top))
        .u8(b8(a.left))
        .u8(b8(a.bottom))
        .u8(b8(a.right));
    let bb = d.bbox;
    wr.u8(b8(bb.top))
        .u8(b8(bb.left))
        .u8(b8(bb.bottom))
        .u8(b8(bb.right));
    wr.u8(0).u16(body.rop_descriptor).u8(body.scale_mode);
    wr.u16(0).u8(255).u32(0);
    wr.u8(clips.len() as u8);
    for q in &clips {
        wr.u8(b8(q.top))
            .u8(b8(q.left))
            .u8(b8(q.bottom))
            .u8(b8(q.right));
    }
    let (ct, cw, ch) = cursor.unwrap_or((SPICE_CURSOR_TYPE_ALPHA, 64, 64));
    wr.u8(ct as u8)
        .u8(cw.min(255) as u8)
        .u8(0)
        .u8(ch.min(255) as u8)
        .u16(0);
    wr.bytes(&bitmap.data[..(32 << 10).min(bitmap.data.len())]);
    Some(wr.0)
}

fn seeds(name: &str, rec: &Path, out: &Path, which: &str) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(rec)
        .unwrap_or_else(|e| panic!("{}: {e}", rec.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    let mut o = Out {
        dir: out.to_path_buf(),
        name: name.to_string(),
        written: 0,
        bytes: 0,
        seen: BTreeSet::new(),
    };
    for f in &files {
        match (f.extension().and_then(|e| e.to_str()), which) {
            (Some("qxlrec"), "qxl" | "all") => qxl_seeds(&mut o, f),
            (Some("bin"), "spice" | "all") => spice_seeds(&mut o, f),
            _ => {}
        }
    }
    eprintln!(
        "{}: {} seeds, {} bytes, from {}",
        name,
        o.written,
        o.bytes,
        rec.display()
    );
}

/// Per kind of command, how many single-command ring seeds to keep (the first ones, then
/// evenly spread over the run).
const PER_KIND: usize = 3;

fn qxl_seeds(o: &mut Out, path: &Path) {
    let all = commands(path);
    let mut by_kind: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, (_, c)) in all.iter().enumerate() {
        if c.parsed {
            by_kind.entry(kind(c)).or_default().push(i);
        }
    }
    let mut cursor_shape = None;
    let mut decoder_done = 0;
    let mut chain_done: BTreeMap<&str, usize> = BTreeMap::new();
    for (k, idx) in &by_kind {
        // Spread the picks over the run: early, middle and late commands differ.
        let mut picked = 0;
        let mut tried = BTreeSet::new();
        let n = idx.len();
        let order: Vec<usize> = (0..n)
            .map(|j| idx[(j * 7919) % n])
            .chain(idx.iter().copied())
            .collect();
        for i in order {
            if picked == PER_KIND || !tried.insert(i) {
                continue;
            }
            let (slots, cmd) = &all[i];
            let mut img = RamImage::default();
            let Some((r, parsed)) = add_command(&mut img, slots, cmd) else {
                continue;
            };
            if !o.save(
                "ring_commands",
                &format!("{k}_{}", picked + 1),
                &ring_seed(&[(r.data, r.type_)], &img),
            ) {
                continue;
            }
            picked += 1;
            for c in chains_of(&img.0, &r) {
                let done = chain_done.entry(c.what).or_default();
                if *done < 1
                    && o.save(
                        "chunk_chains",
                        &format!("{}_{}", c.what, *done + 1),
                        &chain_seed(&img, &c.probes, c.at, c.cap),
                    )
                {
                    *done += 1;
                }
            }
            match &parsed {
                Command::Cursor(c) => {
                    if let CursorCmdKind::Set { shape, .. } = &c.kind
                        && let Some((_, cmd)) = read_at::<QXLCursorCmd>(&img.0, r.data)
                        && let Some((_, raw)) =
                            read_at::<QXLCursor>(&img.0, union_member::<QXLCursorSet>(&cmd.u).shape)
                    {
                        cursor_shape = Some((raw.header.type_, shape.width, shape.height));
                    }
                }
                Command::Draw(d) if decoder_done < 2 => {
                    if let Some(seed) = decoder_seed(&img.0, &r, d, cursor_shape)
                        && o.save("decoders", &format!("{k}_{}", decoder_done + 1), &seed)
                    {
                        decoder_done += 1;
                    }
                }
                _ => {}
            }
        }
        eprintln!(
            "{}: {k}: {} commands, {picked} seeds",
            path.display(),
            idx.len()
        );
    }
    // One sequence seed: the first run of 4 consecutive commands that fit together, as the
    // worker took them.
    for start in 0..all.len() {
        let mut img = RamImage::default();
        let mut cmds = Vec::new();
        for (slots, cmd) in all[start..].iter().take(4) {
            if !cmd.parsed {
                break;
            }
            match add_command(&mut img, slots, cmd) {
                Some((r, _)) => cmds.push((r.data, r.type_)),
                None => break,
            }
        }
        if cmds.len() == 4 {
            o.save("ring_commands", "sequence", &ring_seed(&cmds, &img));
            break;
        }
    }
}

fn spice_seeds(o: &mut Out, path: &Path) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let u32_at = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or_default()))
    };
    // SpiceLinkHeader (16) + SpiceLinkMess (size) + caps.
    let (Some(size), Some(ch)) = (u32_at(12), bytes.get(16 + 4).copied()) else {
        return;
    };
    let mess = 16usize;
    let (Some(n_common), Some(offset)) = (u32_at(mess + 6), u32_at(mess + 14)) else {
        return;
    };
    let common = if n_common > 0 {
        u32_at(mess + offset as usize).unwrap_or(0)
    } else {
        0
    };
    let auth_sel = common & (1 << 0) != 0;
    let mini = common & (1 << 3) != 0;
    let data_at = 16 + size as usize + if auth_sel { 4 } else { 0 } + 128;
    let names = ["main", "display", "inputs", "cursor"];
    let Some(chan) = names.get(usize::from(ch.wrapping_sub(1))) else {
        return;
    };
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("x");
    let n = stem.rsplit('-').next().unwrap_or("0");
    // Cap the seeds: a long session is mostly repeated ACKs and PONGs.
    let cap = 16 << 10;
    o.save(
        "spice_link",
        &format!("{chan}_{n}"),
        &bytes[..bytes.len().min(data_at + cap)],
    );
    if let Some(data) = bytes.get(data_at..).filter(|d| !d.is_empty()) {
        let mut seed = vec![(ch - 1) & 3 | if mini { 0 } else { 4 }];
        seed.extend(&data[..data.len().min(cap)]);
        o.save("spice_channels", &format!("{chan}_{n}"), &seed);
    }
}
