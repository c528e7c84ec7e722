//! `input`: what the guest's input devices report, one console line per event.
//!
//! The host drives the guest's keyboard and pointers from outside (a Spice client, through the
//! VMM's input path) and compares what it sent with what the kernel's drivers made of it. So
//! this command names every `/dev/input/event*` device, says it is ready with a
//! `SAFFRON-SYNC`, and then prints each event it reads until the host's end marker (a key's
//! release) has come and the devices have been quiet for a moment.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::args::Options;
use crate::error::{Error, Result};
use crate::evdev::{ABS_X, ABS_Y, EV_ABS, EV_KEY, EV_SYN, EventDevice, InputEvent, SYN_REPORT};

/// Where the kernel's devtmpfs puts event devices.
const INPUT_DIR: &str = "/dev/input";
/// Upper bound for the event devices we watch (a guest has a handful).
const MAX_DEVICES: u64 = 32;
/// Upper bound for any wait, so a typo cannot stall a test run for hours.
const MAX_MS: u64 = 3_600_000;

/// The `eventN` nodes under `dir`, in numeric order.
fn event_nodes(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("readdir", dir, e)),
    };
    let mut nodes: Vec<(u32, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("event")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    nodes.sort();
    Ok(nodes.into_iter().map(|(_, p)| p).collect())
}

/// Makes a device name one `key=value` token: every blank or control character becomes `_`.
fn token(s: &str) -> String {
    let t: String = s
        .chars()
        .map(|c| {
            if c.is_whitespace() || c.is_control() || c == '=' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if t.is_empty() { "-".to_string() } else { t }
}

/// The node's file name (`event3`), the handle the event lines use.
fn node_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The console line for one event, or `None` for the `SYN_REPORT`s between packets.
fn event_line(node: &str, ev: &InputEvent) -> Option<String> {
    if ev.type_ == EV_SYN && ev.code == SYN_REPORT {
        return None;
    }
    Some(format!(
        "SAFFRON-EV node={node} type={} code={} value={} time={}.{:06}",
        ev.type_, ev.code, ev.value, ev.sec, ev.usec
    ))
}

/// The `SAFFRON-INPUTDEV node= name= types=` line for `dev`; a device with absolute axes adds
/// `abs_x_min= abs_x_max= abs_x_value=` and the same for `abs_y` (the value matters: the kernel
/// drops an absolute event that repeats the axis' current value).
fn describe(dev: &EventDevice) -> Result<String> {
    let types = dev.types()?;
    let mut line = format!(
        "SAFFRON-INPUTDEV node={} name={} types={types:#x}",
        node_name(dev.path()),
        token(&dev.name()?)
    );
    if types & (1 << EV_ABS) != 0 {
        for (axis, label) in [(ABS_X, "abs_x"), (ABS_Y, "abs_y")] {
            let info = dev.abs_info(axis)?;
            line.push_str(&format!(
                " {label}_min={} {label}_max={} {label}_value={}",
                info.minimum, info.maximum, info.value
            ));
        }
    }
    Ok(line)
}

/// `input [--devices 1] [--end-key 88] [--wait-ms 20000] [--timeout-ms 120000]
/// [--idle-ms 1000]`: waits (up to `--wait-ms`) for at least `--devices` event devices, prints
/// `SAFFRON-INPUTDEV` for each (see [`describe`]), then `SAFFRON-SYNC id=input label=ready` and waits for the
/// host's `go`; then prints `SAFFRON-EV node= type= code= value= time=` (the kernel's
/// timestamp, seconds) for every event (not the
/// `SYN_REPORT`s) until key `--end-key` (a Linux `KEY_*` code; 88 is F12) has been released and
/// no event came for `--idle-ms`, and ends with `SAFFRON-INPUT end events=N`. Fails when the
/// end key does not come within `--timeout-ms` of the `go`.
pub fn run(mut opts: Options) -> Result<()> {
    let want = opts.u64_or("devices", 1, MAX_DEVICES)?;
    let end_key = opts.u64_or("end-key", 88, u64::from(u16::MAX))? as u16;
    let wait = Duration::from_millis(opts.u64_or("wait-ms", 20_000, MAX_MS)?);
    let timeout = Duration::from_millis(opts.u64_or("timeout-ms", 120_000, MAX_MS)?);
    let idle = Duration::from_millis(opts.u64_or("idle-ms", 1_000, MAX_MS)?);
    opts.finish()?;

    // Drivers bind asynchronously (psmouse probes the AUX port from a kernel thread).
    let dir = Path::new(INPUT_DIR);
    let started = Instant::now();
    let nodes = loop {
        let nodes = event_nodes(dir)?;
        if nodes.len() as u64 >= want {
            break nodes;
        }
        if started.elapsed() > wait {
            return Err(Error::Check(format!(
                "{} event devices under {INPUT_DIR} after {} ms, want {want}",
                nodes.len(),
                wait.as_millis()
            )));
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let devices = nodes
        .iter()
        .map(|p| EventDevice::open(p))
        .collect::<Result<Vec<_>>>()?;
    for dev in &devices {
        println!("{}", describe(dev)?);
    }
    super::sync::hand_over("input", Some("ready"), super::sync::DEFAULT_TIMEOUT_MS)?;

    let names: Vec<String> = devices.iter().map(|d| node_name(d.path())).collect();
    let go = Instant::now();
    let mut ended: Option<Instant> = None;
    let mut last_event = Instant::now();
    let mut count: u64 = 0;
    let mut batch = Vec::new();
    let stdout = std::io::stdout();
    loop {
        let now = Instant::now();
        let left = match ended {
            Some(_) => idle.saturating_sub(now.duration_since(last_event)),
            None => timeout.saturating_sub(now.duration_since(go)),
        };
        if left.is_zero() {
            match ended {
                Some(_) => break,
                None => {
                    return Err(Error::Check(format!(
                        "end key {end_key} not released within {} ms ({count} events)",
                        timeout.as_millis()
                    )));
                }
            }
        }
        let mut fds: Vec<libc::pollfd> = devices
            .iter()
            .map(|d| libc::pollfd {
                fd: d.raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = left.as_millis().saturating_add(1).min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a live array of fds.len() pollfds for the duration of the call.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if rc < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("poll", INPUT_DIR, e));
        }
        let mut out = stdout.lock();
        for ((pfd, dev), node) in fds.iter().zip(&devices).zip(&names) {
            if pfd.revents == 0 {
                continue;
            }
            if pfd.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                return Err(Error::Check(format!(
                    "{node}: device gone (poll {:#x})",
                    pfd.revents
                )));
            }
            batch.clear();
            dev.read_events(&mut batch)?;
            for ev in &batch {
                if let Some(line) = event_line(node, ev) {
                    writeln!(out, "{line}").map_err(|e| Error::io("write", "stdout", e))?;
                    count += 1;
                    last_event = Instant::now();
                }
                if ev.type_ == EV_KEY && ev.code == end_key && ev.value == 0 {
                    ended = Some(Instant::now());
                }
            }
        }
        out.flush().map_err(|e| Error::io("write", "stdout", e))?;
    }
    println!("SAFFRON-INPUT end events={count}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_tokens() {
        assert_eq!(
            token("AT Translated Set 2 keyboard"),
            "AT_Translated_Set_2_keyboard"
        );
        assert_eq!(token("a=b\tc"), "a_b_c");
        assert_eq!(token(""), "-");
    }

    #[test]
    fn event_lines_skip_only_syn_report() {
        let ev = |type_, code, value| InputEvent {
            type_,
            code,
            value,
            ..InputEvent::default()
        };
        assert_eq!(event_line("event1", &ev(EV_SYN, SYN_REPORT, 0)), None);
        assert_eq!(
            event_line("event1", &ev(EV_SYN, 3, 0)).as_deref(),
            Some("SAFFRON-EV node=event1 type=0 code=3 value=0 time=0.000000"),
            "SYN_DROPPED is reported: the host must see lost events"
        );
        assert_eq!(
            event_line("event0", &ev(EV_KEY, 30, 1)).as_deref(),
            Some("SAFFRON-EV node=event0 type=1 code=30 value=1 time=0.000000")
        );
    }

    #[test]
    fn nodes_in_numeric_order() {
        let dir = std::env::temp_dir().join(format!("saffron-evnodes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for n in ["event10", "event2", "mice", "event0"] {
            std::fs::write(dir.join(n), b"").unwrap();
        }
        let got: Vec<String> = event_nodes(&dir)
            .unwrap()
            .iter()
            .map(|p| node_name(p))
            .collect();
        assert_eq!(got, ["event0", "event2", "event10"]);
        assert!(event_nodes(&dir.join("missing")).unwrap().is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
