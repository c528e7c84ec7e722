//! The command recorder: an opt-in log of every command the worker takes from the command and
//! cursor rings, with exactly the guest memory its parse read, so a real guest's traffic can
//! become fuzz seeds (`fuzz/examples/from_recording.rs`, `ci/record-seeds`) and later a replay
//! benchmark. Turned on with `saffron run|device --record-commands DIR`.
//!
//! # File format (`DIR/qxl-<pid>-<n>.qxlrec`, all integers little endian)
//!
//! ```text
//! file    = "SAFFRQXL" version:u32(=1) record*
//! record  = tag:u8 len:u32 payload[len]
//! tag 1 MEMSLOTS   count:u32 { id:u8 generation:u8 start:u64 size:u64 }*count
//!                  the table the worker translates with from now on (start = device
//!                  address: BAR0 at 0, BAR1 at 1 << 40, as `QxlInterface::memory`)
//! tag 2 PRIMARY    format:u32 width:u32 height:u32 stride:i32 addr:u64 len:u64
//!                  CREATE_PRIMARY as validated (addr = device address of the pixels)
//! tag 3 COMMAND    ring:u8 (0 command, 1 cursor) data:u64 type:u32 parsed:u8 (1 ok, 0 guest
//!                  bug) count:u32 { entry }*count
//!         entry  = kind:u8 phys:u64 len:u64 bytes[len if kind = 0]
//!                  kind 0: `len` bytes copied from the guest at QXLPHYSICAL `phys`
//!                  kind 1: `len` bytes at `phys` validated but left in the guest (surfaces)
//!                  in the order the parser touched them: the command structure first, then
//!                  what it points at (images, palettes, chunk headers, chunk data, ...)
//! tag 4 EVENT      code:u8 arg:u32: 1 reset, 2 destroy primary, 3 destroy surface `arg`,
//!                  4 destroy all surfaces
//! ```
//!
//! A reader skips records with tags it does not know (their length is given).

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use saffron_ring::abi::{QXL_NUM_MEMSLOTS, QXLCommand, QXLMemSlot};
use saffron_ring::memslot::{BarRange, MemSlotTable};
use saffron_ring::parse::{PrimarySurface, TraceEntry};
use thiserror::Error;
use vm_memory::GuestAddress;

/// First bytes of a recording.
pub const MAGIC: &[u8; 8] = b"SAFFRQXL";
/// The format version this module writes and reads.
pub const VERSION: u32 = 1;

const TAG_MEMSLOTS: u8 = 1;
const TAG_PRIMARY: u8 = 2;
const TAG_COMMAND: u8 = 3;
const TAG_EVENT: u8 = 4;

/// Which ring a command came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ring {
    Command,
    Cursor,
}

/// Worker events that change state a replay must know about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Reset,
    DestroyPrimary,
    DestroySurface(u32),
    DestroyAllSurfaces,
}

/// One memslot as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotRecord {
    pub id: u8,
    pub generation: u8,
    /// Device address of offset 0 of the slot.
    pub start: u64,
    pub size: u64,
}

/// A CREATE_PRIMARY as recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrimaryRecord {
    pub format: u32,
    pub width: u32,
    pub height: u32,
    pub stride: i32,
    pub addr: u64,
    pub len: u64,
}

/// One ring entry and the guest memory its parse used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandRecord {
    pub ring: Ring,
    pub command: QXLCommand,
    /// Whether it parsed (false: the worker reported a guest bug).
    pub parsed: bool,
    pub memory: Vec<TraceEntry>,
}

/// A record of a recording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Memslots(Vec<SlotRecord>),
    Primary(PrimaryRecord),
    Command(CommandRecord),
    Event(Event),
}

/// Errors reading a recording.
#[derive(Debug, Error)]
pub enum RecordingError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a command recording (bad magic or version {version})")]
    NotARecording { path: PathBuf, version: u32 },
    #[error("{path}: record {index} is truncated or malformed")]
    Malformed { path: PathBuf, index: usize },
}

/// Writes a recording; owned by the worker thread.
pub struct Recorder {
    out: Option<BufWriter<File>>,
    path: PathBuf,
}

impl Recorder {
    /// Creates `dir` if needed and a fresh recording file in it.
    pub fn create(dir: &Path) -> io::Result<Recorder> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        std::fs::create_dir_all(dir)?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("qxl-{}-{n}.qxlrec", std::process::id()));
        let mut out = BufWriter::new(File::create(&path)?);
        out.write_all(MAGIC)?;
        out.write_all(&VERSION.to_le_bytes())?;
        tracing::info!(path = %path.display(), "recording QXL commands");
        Ok(Recorder {
            out: Some(out),
            path,
        })
    }

    /// Where the recording goes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn write(&mut self, tag: u8, payload: &[u8]) {
        let Some(out) = self.out.as_mut() else { return };
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        let result = out
            .write_all(&[tag])
            .and_then(|()| out.write_all(&len.to_le_bytes()))
            .and_then(|()| out.write_all(payload));
        if let Err(e) = result {
            tracing::warn!(path = %self.path.display(), "command recording stopped: {e}");
            self.out = None;
        }
    }

    /// Pushes buffered records to the file (the worker does so after every request).
    pub fn flush(&mut self) {
        if let Some(out) = self.out.as_mut()
            && let Err(e) = out.flush()
        {
            tracing::warn!(path = %self.path.display(), "command recording stopped: {e}");
            self.out = None;
        }
    }

    /// The memslot table changed.
    pub fn memslots(&mut self, table: &MemSlotTable) {
        let slots: Vec<(u8, _)> = (0..QXL_NUM_MEMSLOTS)
            .filter_map(|id| table.get(u32::from(id)).map(|s| (id, *s)))
            .collect();
        let mut p = Vec::with_capacity(4 + slots.len() * 18);
        p.extend((slots.len() as u32).to_le_bytes());
        for (id, s) in slots {
            p.push(id);
            p.push(s.generation);
            p.extend(s.start.0.to_le_bytes());
            p.extend(s.size.to_le_bytes());
        }
        self.write(TAG_MEMSLOTS, &p);
    }

    /// CREATE_PRIMARY was accepted.
    pub fn primary(&mut self, primary: &PrimarySurface) {
        let c = &primary.create;
        let mut p = Vec::with_capacity(32);
        p.extend(c.format.to_raw().to_le_bytes());
        p.extend(c.width.to_le_bytes());
        p.extend(c.height.to_le_bytes());
        p.extend(c.stride.to_le_bytes());
        p.extend(c.memory.addr.0.to_le_bytes());
        p.extend(c.memory.len.to_le_bytes());
        self.write(TAG_PRIMARY, &p);
    }

    /// A ring entry and what its parse read.
    pub fn command(
        &mut self,
        ring: Ring,
        command: &QXLCommand,
        parsed: bool,
        memory: &[TraceEntry],
    ) {
        let mut p = Vec::new();
        p.push(match ring {
            Ring::Command => 0,
            Ring::Cursor => 1,
        });
        p.extend(command.data.to_le_bytes());
        p.extend(command.type_.to_le_bytes());
        p.push(u8::from(parsed));
        p.extend((memory.len() as u32).to_le_bytes());
        for e in memory {
            match e {
                TraceEntry::Copied { phys, bytes } => {
                    p.push(0);
                    p.extend(phys.to_le_bytes());
                    p.extend((bytes.len() as u64).to_le_bytes());
                    p.extend(bytes);
                }
                TraceEntry::Referenced { phys, len } => {
                    p.push(1);
                    p.extend(phys.to_le_bytes());
                    p.extend(len.to_le_bytes());
                }
            }
        }
        self.write(TAG_COMMAND, &p);
    }

    /// A state change outside the rings.
    pub fn event(&mut self, event: Event) {
        let (code, arg) = match event {
            Event::Reset => (1u8, 0u32),
            Event::DestroyPrimary => (2, 0),
            Event::DestroySurface(id) => (3, id),
            Event::DestroyAllSurfaces => (4, 0),
        };
        let mut p = vec![code];
        p.extend(arg.to_le_bytes());
        self.write(TAG_EVENT, &p);
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.flush();
    }
}

/// Sequential little-endian reads of a record payload.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, tail) = self.0.split_at_checked(n)?;
        self.0 = tail;
        Some(head)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.array::<1>()?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.array()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.array()?))
    }
}

fn parse_record(tag: u8, payload: &[u8]) -> Option<Option<Record>> {
    let mut c = Cursor(payload);
    Some(Some(match tag {
        TAG_MEMSLOTS => {
            let n = c.u32()?;
            let mut slots = Vec::new();
            for _ in 0..n {
                slots.push(SlotRecord {
                    id: c.u8()?,
                    generation: c.u8()?,
                    start: c.u64()?,
                    size: c.u64()?,
                });
            }
            Record::Memslots(slots)
        }
        TAG_PRIMARY => Record::Primary(PrimaryRecord {
            format: c.u32()?,
            width: c.u32()?,
            height: c.u32()?,
            stride: c.u32()? as i32,
            addr: c.u64()?,
            len: c.u64()?,
        }),
        TAG_COMMAND => {
            let ring = match c.u8()? {
                0 => Ring::Command,
                1 => Ring::Cursor,
                _ => return None,
            };
            let data = c.u64()?;
            let type_ = c.u32()?;
            let parsed = c.u8()? == 1;
            let n = c.u32()?;
            let mut memory = Vec::new();
            for _ in 0..n {
                let kind = c.u8()?;
                let phys = c.u64()?;
                let len = c.u64()?;
                memory.push(match kind {
                    0 => TraceEntry::Copied {
                        phys,
                        bytes: c.take(usize::try_from(len).ok()?)?.to_vec(),
                    },
                    1 => TraceEntry::Referenced { phys, len },
                    _ => return None,
                });
            }
            Record::Command(CommandRecord {
                ring,
                command: QXLCommand {
                    data,
                    type_,
                    padding: 0,
                },
                parsed,
                memory,
            })
        }
        TAG_EVENT => {
            let code = c.u8()?;
            let arg = c.u32()?;
            Record::Event(match code {
                1 => Event::Reset,
                2 => Event::DestroyPrimary,
                3 => Event::DestroySurface(arg),
                4 => Event::DestroyAllSurfaces,
                _ => return Some(None),
            })
        }
        _ => return Some(None),
    }))
}

/// Reads a whole recording.
pub fn read_recording(path: &Path) -> Result<Vec<Record>, RecordingError> {
    let bytes = std::fs::read(path).map_err(|source| RecordingError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut c = Cursor(&bytes);
    match (c.take(MAGIC.len()), c.u32()) {
        (Some(m), Some(v)) if m == MAGIC && v == VERSION => {}
        (_, v) => {
            return Err(RecordingError::NotARecording {
                path: path.to_owned(),
                version: v.unwrap_or(0),
            });
        }
    }
    let mut records = Vec::new();
    let mut index = 0;
    while !c.0.is_empty() {
        let malformed = || RecordingError::Malformed {
            path: path.to_owned(),
            index,
        };
        let tag = c.u8().ok_or_else(malformed)?;
        let len = c.u32().ok_or_else(malformed)?;
        let payload = c.take(len as usize).ok_or_else(malformed)?;
        if let Some(r) = parse_record(tag, payload).ok_or_else(malformed)? {
            records.push(r);
        }
        index += 1;
    }
    Ok(records)
}

/// Rebuilds a memslot table from a MEMSLOTS record (each slot its own "BAR").
pub fn memslot_table(slots: &[SlotRecord]) -> MemSlotTable {
    let mut table = MemSlotTable::new();
    for s in slots {
        table.set_generation(s.generation);
        let range = QXLMemSlot {
            mem_start: s.start,
            mem_end: s.start.saturating_add(s.size),
        };
        let bar = BarRange {
            base: GuestAddress(s.start),
            len: s.size,
        };
        let _ = table.add(u32::from(s.id), range, &[bar]);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use saffron_ring::parse::{SurfaceCreate, SurfaceFormat, SurfaceMemory};

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("saffron-rec-test-{}", std::process::id()));
        let mut table = MemSlotTable::new();
        let bar = BarRange {
            base: GuestAddress(0x1000),
            len: 0x10000,
        };
        table.set_generation(3);
        table
            .add(
                1,
                QXLMemSlot {
                    mem_start: 0x1000,
                    mem_end: 0x9000,
                },
                &[bar],
            )
            .unwrap();
        let primary = PrimarySurface {
            create: SurfaceCreate {
                format: SurfaceFormat::Xrgb8888,
                width: 64,
                height: 32,
                stride: -256,
                memory: SurfaceMemory {
                    addr: GuestAddress(1 << 40),
                    len: 8192,
                },
                keep_data: false,
            },
            position: 0,
            mouse_mode: 0,
            type_: 0,
            flags: 0,
        };
        let cmd = QXLCommand {
            data: 0x0103_0000_0000_0040,
            type_: 1,
            padding: 0,
        };
        let memory = vec![
            TraceEntry::Copied {
                phys: cmd.data,
                bytes: vec![1, 2, 3],
            },
            TraceEntry::Referenced {
                phys: 0x0203_0000_0000_0000,
                len: 4096,
            },
        ];
        let path = {
            let mut r = Recorder::create(&dir).unwrap();
            r.memslots(&table);
            r.primary(&primary);
            r.command(Ring::Cursor, &cmd, true, &memory);
            r.event(Event::DestroySurface(7));
            r.path().to_owned()
        };
        let records = read_recording(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let slots = vec![SlotRecord {
            id: 1,
            generation: 3,
            start: 0x1000,
            size: 0x8000,
        }];
        assert_eq!(memslot_table(&slots), table);
        assert_eq!(
            records,
            vec![
                Record::Memslots(slots),
                Record::Primary(PrimaryRecord {
                    format: 32,
                    width: 64,
                    height: 32,
                    stride: -256,
                    addr: 1 << 40,
                    len: 8192
                }),
                Record::Command(CommandRecord {
                    ring: Ring::Cursor,
                    command: cmd,
                    parsed: true,
                    memory
                }),
                Record::Event(Event::DestroySurface(7)),
            ]
        );
    }

    #[test]
    fn truncated_recordings_are_errors() {
        let dir = std::env::temp_dir().join(format!("saffron-rec-trunc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.qxlrec");
        let mut bytes = MAGIC.to_vec();
        bytes.extend(VERSION.to_le_bytes());
        bytes.extend([TAG_COMMAND, 200, 0, 0, 0, 0]);
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            read_recording(&path),
            Err(RecordingError::Malformed { index: 0, .. })
        ));
        std::fs::write(&path, b"nonsense").unwrap();
        assert!(matches!(
            read_recording(&path),
            Err(RecordingError::NotARecording { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
