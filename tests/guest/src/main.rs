//! `saffron-guest`: a static probe that runs inside the test VM.
//!
//! It reaches the QXL device either directly through sysfs (no driver bound, or
//! `uio_pci_generic`) or, once the kernel's qxl driver owns it, as a client of that driver
//! (`/dev/fb0`, `/dev/dri/card0`), and reports on stdout, which the test VM wires to its serial console. The host-side test greps
//! for lines starting with `SAFFRON-`, each made of `key=value` fields separated by spaces.
//! Failures print `SAFFRON-ERROR cmd=<subcommand> msg=<text>` (msg is last and runs to the end
//! of the line) and exit non-zero, so a broken step can never be mistaken for a silent success.

mod alsa;
mod args;
mod chirp;
mod cmd;
mod console;
mod drm;
mod error;
mod evdev;
mod fbdev;
mod image;
mod map;
mod mmio;
mod pattern;
mod pci;
mod qxl;
mod qxl_drm;

use std::process::ExitCode;

use args::Options;
use error::{Error, Result};

const USAGE: &str = "saffron-guest <agent-stub|find|bar-rw|log|irq|bench-memcpy|bench-ioport|fbhash|fbfill|\
                     fbbench|fbcon-off|scroll|settle|sync|kms|heads|qxl-surface|input|xwd|sound-play|sound-capture> \
                     [--option value]...";

/// Exit status for a failed probe.
const EXIT_FAILED: u8 = 1;
/// Exit status for a malformed command line.
const EXIT_USAGE: u8 = 2;

fn dispatch(sub: &str, opts: Options) -> Result<()> {
    match sub {
        "agent-stub" => cmd::agent_stub::run(opts),
        "find" => cmd::find::run(opts),
        "bar-rw" => cmd::bar_rw::run(opts),
        "log" => cmd::log::run(opts),
        "irq" => cmd::irq::run(opts),
        "bench-memcpy" => cmd::bench::memcpy(opts),
        "bench-ioport" => cmd::bench::ioport(opts),
        "fbhash" => cmd::fb::hash(opts),
        "fbfill" => cmd::fb::fill(opts),
        "fbbench" => cmd::fbbench::run(opts),
        "fbcon-off" => cmd::fb::console_off(opts),
        "scroll" => cmd::scroll::run(opts),
        "settle" => cmd::fb::settle(opts),
        "sync" => cmd::sync::run(opts),
        "kms" => cmd::kms::run(opts),
        "heads" => cmd::heads::run(opts),
        "qxl-surface" => cmd::qxl_surface::run(opts),
        "hostile" => cmd::hostile::run(opts),
        "input" => cmd::input::run(opts),
        "xwd" => cmd::xwd::run(opts),
        "sound-play" => cmd::sound::play(opts),
        "sound-capture" => cmd::sound::capture(opts),
        _ => Err(Error::Usage(format!("unknown subcommand {sub:?}; {USAGE}"))),
    }
}

/// Keeps the error on one console line: the host parser reads line by line.
fn one_line(msg: &str) -> String {
    msg.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let sub = argv.next().unwrap_or_default();
    let result = if sub.is_empty() {
        Err(Error::Usage(USAGE.to_string()))
    } else {
        Options::parse(argv).and_then(|opts| dispatch(&sub, opts))
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let cmd = if sub.is_empty() { "none" } else { sub.as_str() };
            println!(
                "SAFFRON-ERROR cmd={} msg={}",
                one_line(cmd).replace(' ', "_"),
                one_line(&e.to_string())
            );
            match e {
                Error::Usage(_) => ExitCode::from(EXIT_USAGE),
                _ => ExitCode::from(EXIT_FAILED),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_stay_on_one_line() {
        assert_eq!(one_line("a\nb\tc\r"), "a b c ");
    }

    #[test]
    fn unknown_subcommand_is_a_usage_error() {
        let e = dispatch("frobnicate", Options::default()).unwrap_err();
        assert!(matches!(e, Error::Usage(_)));
    }
}
