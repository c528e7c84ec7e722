//! A parser for QEMU's log-trace lines of VGA traffic (`-trace vga_std_*`, `vga_vbe_*`,
//! `memory_region_ops_*` with `-D FILE`), the outside input of `saffron vga-replay`.
//!
//! The formats, from QEMU's `hw/display/trace-events` and `system/trace-events`:
//! ```text
//! vga_std_read_io addr 0x3da, val 0x9
//! vga_std_write_io addr 0x3c4, val 0x4
//! vga_vbe_read index 0x4, val 0x41
//! vga_vbe_write index 0x4, val 0x41
//! memory_region_ops_write cpu 0 mr 0x5555... addr 0xb8000 value 0x20 size 1 name 'vga-lowmem'
//! ```
//! A line may start with the log backend's `PID@SECONDS.MICROS:` prefix. Lines of other
//! events, and `memory_region_ops_*` lines of other regions, are not VGA traffic:
//! [`parse_line`] returns `Ok(None)` for them. A line of a known event with bad fields is an
//! error: replaying past it would silently give a different picture.

/// One VGA access from a trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// An 8-bit VGA port read and the value QEMU returned.
    PortRead {
        port: u16,
        val: u8,
    },
    PortWrite {
        port: u16,
        val: u8,
    },
    /// A DISPI data-port read of register `index` and the value QEMU returned.
    VbeRead {
        index: u16,
        val: u16,
    },
    /// A DISPI data-port write to register `index` (QEMU logs the index it had selected).
    VbeWrite {
        index: u16,
        val: u16,
    },
    /// A legacy window read (guest-physical address, access size 1-8, value returned).
    MemRead {
        addr: u64,
        size: u8,
        val: u64,
    },
    MemWrite {
        addr: u64,
        size: u8,
        val: u64,
    },
}

/// What was wrong with a line of a known event.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TraceError {
    #[error("{event}: missing field '{field}'")]
    MissingField {
        event: &'static str,
        field: &'static str,
    },
    #[error("{event}: field '{field}' is not a number: '{text}'")]
    BadNumber {
        event: &'static str,
        field: &'static str,
        text: String,
    },
    #[error("{event}: {field} {value:#x} out of range")]
    OutOfRange {
        event: &'static str,
        field: &'static str,
        value: u64,
    },
}

/// The memory region QEMU names the 0xa0000-0xbffff window.
const LOWMEM_REGION: &str = "'vga-lowmem'";

/// Parses one line; `Ok(None)` for lines that are not VGA traffic.
pub fn parse_line(line: &str) -> Result<Option<TraceEvent>, TraceError> {
    let line = strip_prefix(line.trim());
    let (event, rest) = line.split_once(' ').unwrap_or((line, ""));
    let ev = match event {
        "vga_std_read_io" | "vga_std_write_io" => {
            let name = static_name(event);
            let port = narrow(name, "addr", field(name, rest, "addr")?, 0xffff)? as u16;
            let val = narrow(name, "val", field(name, rest, "val")?, 0xff)? as u8;
            if event == "vga_std_read_io" {
                TraceEvent::PortRead { port, val }
            } else {
                TraceEvent::PortWrite { port, val }
            }
        }
        "vga_vbe_read" | "vga_vbe_write" => {
            let name = static_name(event);
            let index = narrow(name, "index", field(name, rest, "index")?, 0xffff)? as u16;
            let val = narrow(name, "val", field(name, rest, "val")?, 0xffff)? as u16;
            if event == "vga_vbe_read" {
                TraceEvent::VbeRead { index, val }
            } else {
                TraceEvent::VbeWrite { index, val }
            }
        }
        "memory_region_ops_read" | "memory_region_ops_write" => {
            if !rest.trim_end().ends_with(LOWMEM_REGION) {
                return Ok(None);
            }
            let name = static_name(event);
            let addr = field(name, rest, "addr")?;
            let val = field(name, rest, "value")?;
            let size = field(name, rest, "size")?;
            if !(1..=8).contains(&size) {
                return Err(TraceError::OutOfRange {
                    event: name,
                    field: "size",
                    value: size,
                });
            }
            let size = size as u8;
            if event == "memory_region_ops_read" {
                TraceEvent::MemRead { addr, size, val }
            } else {
                TraceEvent::MemWrite { addr, size, val }
            }
        }
        _ => return Ok(None),
    };
    Ok(Some(ev))
}

/// Drops the log backend's optional `PID@SECONDS.MICROS:` prefix.
fn strip_prefix(line: &str) -> &str {
    if let Some((head, tail)) = line.split_once(':') {
        let is_stamp = head.split_once('@').is_some_and(|(pid, time)| {
            !pid.is_empty()
                && pid.bytes().all(|b| b.is_ascii_digit())
                && !time.is_empty()
                && time.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        });
        if is_stamp {
            return tail.trim_start();
        }
    }
    line
}

fn static_name(event: &str) -> &'static str {
    match event {
        "vga_std_read_io" => "vga_std_read_io",
        "vga_std_write_io" => "vga_std_write_io",
        "vga_vbe_read" => "vga_vbe_read",
        "vga_vbe_write" => "vga_vbe_write",
        "memory_region_ops_read" => "memory_region_ops_read",
        _ => "memory_region_ops_write",
    }
}

/// The number after `name` in a `name VALUE` or `name VALUE,` sequence of words.
fn field(event: &'static str, rest: &str, name: &'static str) -> Result<u64, TraceError> {
    let mut words = rest.split_whitespace();
    while let Some(w) = words.next() {
        if w == name {
            let text = words
                .next()
                .ok_or(TraceError::MissingField { event, field: name })?;
            return number(text.trim_end_matches(',')).ok_or_else(|| TraceError::BadNumber {
                event,
                field: name,
                text: text.to_string(),
            });
        }
    }
    Err(TraceError::MissingField { event, field: name })
}

fn narrow(event: &'static str, field: &'static str, v: u64, max: u64) -> Result<u64, TraceError> {
    if v > max {
        return Err(TraceError::OutOfRange {
            event,
            field,
            value: v,
        });
    }
    Ok(v)
}

/// `0x`-prefixed hex (what QEMU prints) or decimal.
fn number(text: &str) -> Option<u64> {
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_event() {
        assert_eq!(
            parse_line("vga_std_write_io addr 0x3c4, val 0x4"),
            Ok(Some(TraceEvent::PortWrite {
                port: 0x3c4,
                val: 4
            }))
        );
        assert_eq!(
            parse_line("vga_std_read_io addr 0x3da, val 0x9\n"),
            Ok(Some(TraceEvent::PortRead {
                port: 0x3da,
                val: 9
            }))
        );
        assert_eq!(
            parse_line("vga_vbe_write index 0x4, val 0x41"),
            Ok(Some(TraceEvent::VbeWrite {
                index: 4,
                val: 0x41
            }))
        );
        assert_eq!(
            parse_line("vga_vbe_read index 0x1, val 0x3e80"),
            Ok(Some(TraceEvent::VbeRead {
                index: 1,
                val: 16000
            }))
        );
        assert_eq!(
            parse_line(
                "memory_region_ops_write cpu 0 mr 0x55555a3cd920 addr 0xb8000 value 0x20 size 1 name 'vga-lowmem'"
            ),
            Ok(Some(TraceEvent::MemWrite {
                addr: 0xb8000,
                size: 1,
                val: 0x20
            }))
        );
        assert_eq!(
            parse_line(
                "memory_region_ops_read cpu -1 mr 0x1 addr 0xa0002 value 0xffff size 2 name 'vga-lowmem'"
            ),
            Ok(Some(TraceEvent::MemRead {
                addr: 0xa0002,
                size: 2,
                val: 0xffff
            }))
        );
    }

    #[test]
    fn accepts_the_pid_time_prefix() {
        assert_eq!(
            parse_line("12345@1712345678.123456:vga_std_write_io addr 0x3c5, val 0x2"),
            Ok(Some(TraceEvent::PortWrite {
                port: 0x3c5,
                val: 2
            }))
        );
    }

    #[test]
    fn ignores_other_lines() {
        for line in [
            "",
            "memory_region_ops_write cpu 0 mr 0x1 addr 0x70 value 0x8f size 1 name 'rtc-index'",
            "memory_region_ops_write cpu 0 mr 0x1 addr 0x3c4 value 0x204 size 2 name 'vga'",
            "vga_cirrus_write_io addr 0x3c4, val 0x4",
            "qemu-system-x86_64: terminating on signal 15",
            "1@2:something else",
        ] {
            assert_eq!(parse_line(line), Ok(None), "{line}");
        }
    }

    #[test]
    fn rejects_bad_fields_of_known_events() {
        assert_eq!(
            parse_line("vga_std_write_io addr 0x3c4, val 0x104"),
            Err(TraceError::OutOfRange {
                event: "vga_std_write_io",
                field: "val",
                value: 0x104
            })
        );
        assert!(matches!(
            parse_line("vga_std_write_io addr 0x3zz, val 1"),
            Err(TraceError::BadNumber { field: "addr", .. })
        ));
        assert!(matches!(
            parse_line("vga_vbe_write index 0x4,"),
            Err(TraceError::MissingField { field: "val", .. })
        ));
        assert!(matches!(
            parse_line(
                "memory_region_ops_write cpu 0 addr 0xa0000 value 1 size 9 name 'vga-lowmem'"
            ),
            Err(TraceError::OutOfRange { field: "size", .. })
        ));
    }
}
