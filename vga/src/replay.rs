//! Replaying a QEMU VGA trace ([`crate::trace`]) into a [`Vga`] from QEMU's reset state.
//!
//! Reads are replayed too, because they change state (latches, the attribute flip-flop, the
//! DAC read index, the retrace toggle). Each replayed read is also checked against the value
//! QEMU returned: a mismatch means our register or memory state already differs from QEMU's,
//! which [`ReplayStats`] reports (the picture may still match).

use std::io::BufRead;

use crate::Vga;
use crate::regs::{VBE_DISPI_IOPORT_DATA, VBE_DISPI_IOPORT_INDEX};
use crate::trace::{TraceError, TraceEvent, parse_line};

/// Why a replay stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("trace line {line}: {source}")]
    Trace { line: u64, source: TraceError },
    #[error("reading the trace: {0}")]
    Io(#[from] std::io::Error),
}

/// A read whose value differs from the one QEMU logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReadMismatch {
    pub event: TraceEvent,
    /// What our model returned.
    pub got: u64,
}

/// Counts of a replay.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayStats {
    /// Trace lines seen.
    pub lines: u64,
    /// VGA events applied.
    pub events: u64,
    /// Port and memory accesses those events made (a 2-byte memory access counts 2).
    pub accesses: u64,
    /// Reads whose value differed from QEMU's.
    pub read_mismatches: u64,
    /// The first such read, with its line number.
    pub first_mismatch: Option<(u64, ReadMismatch)>,
}

/// A VGA being driven by a trace.
#[derive(Debug)]
pub struct Replay {
    vga: Vga,
    stats: ReplayStats,
}

impl Default for Replay {
    fn default() -> Self {
        Self::new()
    }
}

impl Replay {
    /// QEMU's `-device VGA` (16 MiB of video memory) at reset.
    pub fn new() -> Self {
        Self::with_vga(Vga::qemu_default())
    }

    /// Replays onto an existing VGA (e.g. a different memory size).
    pub fn with_vga(vga: Vga) -> Self {
        Replay {
            vga,
            stats: ReplayStats::default(),
        }
    }

    pub fn vga(&self) -> &Vga {
        &self.vga
    }

    pub fn into_vga(self) -> Vga {
        self.vga
    }

    pub fn stats(&self) -> &ReplayStats {
        &self.stats
    }

    /// Applies one event; returns the read mismatch if it was a read QEMU answered
    /// differently.
    pub fn apply(&mut self, event: TraceEvent) -> Option<ReadMismatch> {
        self.stats.events += 1;
        let (expected, got) = match event {
            TraceEvent::PortWrite { port, val } => {
                self.stats.accesses += 1;
                self.vga.io_write(port, val);
                return None;
            }
            TraceEvent::PortRead { port, val } => {
                self.stats.accesses += 1;
                (u64::from(val), u64::from(self.vga.io_read(port)))
            }
            TraceEvent::VbeWrite { index, val } => {
                self.stats.accesses += 1;
                self.vga.vbe_io_write(VBE_DISPI_IOPORT_INDEX, index);
                self.vga.vbe_io_write(VBE_DISPI_IOPORT_DATA, val);
                return None;
            }
            TraceEvent::VbeRead { index, val } => {
                self.stats.accesses += 1;
                self.vga.vbe_io_write(VBE_DISPI_IOPORT_INDEX, index);
                (
                    u64::from(val),
                    u64::from(self.vga.vbe_io_read(VBE_DISPI_IOPORT_DATA)),
                )
            }
            TraceEvent::MemWrite { addr, size, val } => {
                for i in 0..size.min(8) {
                    self.stats.accesses += 1;
                    let byte = (val >> (8 * u32::from(i))) as u8;
                    self.vga.window_write(addr.wrapping_add(u64::from(i)), byte);
                }
                return None;
            }
            TraceEvent::MemRead { addr, size, val } => {
                let mut got = 0u64;
                for i in 0..size.min(8) {
                    self.stats.accesses += 1;
                    let byte = self.vga.window_read(addr.wrapping_add(u64::from(i)));
                    got |= u64::from(byte) << (8 * u32::from(i));
                }
                (val, got)
            }
        };
        (expected != got).then_some(ReadMismatch { event, got })
    }

    /// Parses and applies one trace line (lines that are not VGA traffic are counted and
    /// skipped).
    pub fn feed_line(&mut self, line: &str) -> Result<(), ReplayError> {
        self.stats.lines += 1;
        let n = self.stats.lines;
        let event = parse_line(line).map_err(|source| ReplayError::Trace { line: n, source })?;
        if let Some(ev) = event
            && let Some(m) = self.apply(ev)
        {
            self.stats.read_mismatches += 1;
            self.stats.first_mismatch.get_or_insert((n, m));
        }
        Ok(())
    }

    /// Replays a whole trace from a reader. Lines need not be UTF-8: a raw QEMU log can
    /// hold other events' guest strings, and VGA lines are ASCII.
    pub fn feed_reader(&mut self, mut reader: impl BufRead) -> Result<(), ReplayError> {
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            self.feed_line(&String::from_utf8_lossy(&line))?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RenderOptions;

    const MODE3_HELLO: &str = "\
vga_std_write_io addr 0x3c2, val 0x67
vga_std_write_io addr 0x3c4, val 0x2
vga_std_write_io addr 0x3c5, val 0x3
vga_std_write_io addr 0x3c4, val 0x4
vga_std_write_io addr 0x3c5, val 0x2
vga_std_write_io addr 0x3ce, val 0x5
vga_std_write_io addr 0x3cf, val 0x10
vga_std_write_io addr 0x3ce, val 0x6
vga_std_write_io addr 0x3cf, val 0xe
vga_std_write_io addr 0x3ce, val 0x8
vga_std_write_io addr 0x3cf, val 0xff
1@2.5:memory_region_ops_write cpu 0 mr 0x1 addr 0xb8000 value 0x1e48 size 2 name 'vga-lowmem'
memory_region_ops_read cpu 0 mr 0x1 addr 0xb8001 value 0x1e size 1 name 'vga-lowmem'
vga_std_read_io addr 0x3da, val 0x9
vga_std_read_io addr 0x3da, val 0x0
some other line
";

    #[test]
    fn replays_reads_and_writes_and_checks_reads() {
        let mut r = Replay::new();
        r.feed_reader(MODE3_HELLO.as_bytes()).unwrap();
        let s = r.stats();
        assert_eq!(s.lines, 16);
        assert_eq!(s.events, 15);
        assert_eq!(s.accesses, 16);
        assert_eq!(s.read_mismatches, 0, "{:?}", s.first_mismatch);
        assert_eq!(&r.vga().vram()[0..2], &[0x48, 0x1e]);
    }

    #[test]
    fn reports_a_read_qemu_answered_differently() {
        let mut r = Replay::new();
        r.feed_line("vga_std_read_io addr 0x3cc, val 0x67").unwrap();
        assert_eq!(r.stats().read_mismatches, 1);
        let (line, m) = r.stats().first_mismatch.unwrap();
        assert_eq!((line, m.got), (1, 0));
    }

    #[test]
    fn other_lines_need_not_be_utf8() {
        let mut r = Replay::new();
        let log = b"qxl_io_log 0 \xff\xfe\nvga_std_write_io addr 0x3c2, val 0x67\n";
        r.feed_reader(&log[..]).unwrap();
        assert_eq!((r.stats().lines, r.stats().events), (2, 1));
        assert_eq!(r.vga().clone().io_read(crate::regs::MIS_R), 0x67);
    }

    #[test]
    fn bad_line_reports_its_number() {
        let mut r = Replay::new();
        r.feed_line("vga_std_write_io addr 0x3c4, val 0x4").unwrap();
        let e = r.feed_line("vga_std_write_io addr 0x3c4").unwrap_err();
        assert!(e.to_string().starts_with("trace line 2:"), "{e}");
    }

    #[test]
    fn blank_until_the_palette_address_source_is_set() {
        let mut r = Replay::new();
        r.feed_reader(MODE3_HELLO.as_bytes()).unwrap();
        let s = r.vga().screenshot(RenderOptions::default()).unwrap();
        assert_eq!(
            (s.width(), s.height()),
            (0, 0),
            "never displayed: no size yet"
        );
    }
}
