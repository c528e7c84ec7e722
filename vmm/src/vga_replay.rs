//! `saffron vga-replay`: replays a QEMU VGA trace (plain or gzip) through the `saffron-vga`
//! model from QEMU's reset state and writes the screen at the end of the trace as a PNG.
//! Parsing and replay live in `saffron_vga::{trace, replay}`; this is the file handling.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use saffron_vga::RenderOptions;
use saffron_vga::replay::{Replay, ReplayError, ReplayStats};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum VgaReplayError {
    #[error("opening {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Replay { path: PathBuf, source: ReplayError },
    #[error("reading the video memory snapshot {path}: {source}")]
    Snapshot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("video memory snapshot {path}: {source}")]
    SnapshotSize {
        path: PathBuf,
        source: saffron_vga::VgaError,
    },
    #[error("rendering: {0}")]
    Render(#[from] saffron_vga::RenderError),
    #[error("the display is not showing anything yet (no mode drawn by the end of the trace)")]
    NoPicture,
    #[error("encoding the PNG: {0}")]
    Png(#[from] saffron_worker::ScreendumpError),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to replay and where the picture goes.
#[derive(Clone, Debug)]
pub struct VgaReplayOptions {
    /// QEMU log trace (`-trace vga_* -trace memory_region_ops_* -D FILE`), gzip or not.
    pub trace: PathBuf,
    /// Video memory snapshot (e.g. QEMU's `pmemsave` of the VGA's BAR 0), gzip or not,
    /// loaded at offset 0 after the trace: what went to RAM and so is not in the trace.
    pub vram: Option<PathBuf>,
    pub out: PathBuf,
    /// Text cursor blink phase.
    pub cursor_visible: bool,
}

/// What a replay did.
#[derive(Clone, Copy, Debug)]
pub struct VgaReplaySummary {
    pub stats: ReplayStats,
    pub width: u32,
    pub height: u32,
}

/// A reader of `path`, through gzip if it starts with gzip's magic bytes.
fn open_maybe_gz(path: &Path) -> std::io::Result<Box<dyn BufRead>> {
    let mut file = BufReader::new(File::open(path)?);
    let gz = file.fill_buf()?.starts_with(&[0x1f, 0x8b]);
    Ok(if gz {
        Box::new(BufReader::new(MultiGzDecoder::new(file)))
    } else {
        Box::new(file)
    })
}

pub fn run(opts: &VgaReplayOptions) -> Result<VgaReplaySummary, VgaReplayError> {
    let reader = open_maybe_gz(&opts.trace).map_err(|source| VgaReplayError::Open {
        path: opts.trace.clone(),
        source,
    })?;
    let mut replay = Replay::new();
    replay
        .feed_reader(reader)
        .map_err(|source| VgaReplayError::Replay {
            path: opts.trace.clone(),
            source,
        })?;
    let stats = *replay.stats();
    let mut vga = replay.into_vga();
    if let Some(path) = &opts.vram {
        let snapshot = |source| VgaReplayError::Snapshot {
            path: path.clone(),
            source,
        };
        let mut data = Vec::new();
        open_maybe_gz(path)
            .map_err(snapshot)?
            // One byte more than video memory: enough to tell a too-large snapshot.
            .take(vga.vram_size() as u64 + 1)
            .read_to_end(&mut data)
            .map_err(snapshot)?;
        vga.load_vram(0, &data)
            .map_err(|source| VgaReplayError::SnapshotSize {
                path: path.clone(),
                source,
            })?;
    }
    let surface = vga.screenshot(RenderOptions {
        cursor_visible: opts.cursor_visible,
    })?;
    if surface.width() == 0 || surface.height() == 0 {
        return Err(VgaReplayError::NoPicture);
    }
    let png = saffron_worker::encode_png(surface.width(), surface.height(), &surface.to_rgb())?;
    std::fs::write(&opts.out, png).map_err(|source| VgaReplayError::Write {
        path: opts.out.clone(),
        source,
    })?;
    Ok(VgaReplaySummary {
        stats,
        width: surface.width(),
        height: surface.height(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("saffron-vga-replay-{}-{name}", std::process::id()))
    }

    const TRACE: &str = "\
vga_std_write_io addr 0x3c2, val 0x67
vga_std_write_io addr 0x3d4, val 0x1
vga_std_write_io addr 0x3d5, val 0x4f
vga_std_write_io addr 0x3d4, val 0x9
vga_std_write_io addr 0x3d5, val 0xf
vga_std_write_io addr 0x3d4, val 0x12
vga_std_write_io addr 0x3d5, val 0x8f
vga_std_write_io addr 0x3d4, val 0x7
vga_std_write_io addr 0x3d5, val 0x1f
vga_std_read_io addr 0x3da, val 0x9
vga_std_write_io addr 0x3c0, val 0x20
";

    #[test]
    fn replays_plain_and_gzip_traces_to_a_png() {
        let plain = tmp("plain.log");
        std::fs::write(&plain, TRACE).unwrap();
        let gz = tmp("trace.gz");
        let mut enc =
            flate2::write::GzEncoder::new(File::create(&gz).unwrap(), flate2::Compression::fast());
        enc.write_all(TRACE.as_bytes()).unwrap();
        enc.finish().unwrap();
        for trace in [&plain, &gz] {
            let out = tmp("out.png");
            let summary = run(&VgaReplayOptions {
                trace: trace.clone(),
                vram: None,
                out: out.clone(),
                cursor_visible: true,
            })
            .unwrap();
            assert_eq!((summary.width, summary.height), (720, 400));
            assert_eq!(summary.stats.events, 11);
            assert_eq!(summary.stats.read_mismatches, 0);
            let png = std::fs::read(&out).unwrap();
            assert!(png.starts_with(b"\x89PNG"));
            std::fs::remove_file(out).unwrap();
        }
        // A snapshot larger than video memory is refused.
        let big = tmp("big.vram");
        std::fs::write(&big, vec![0u8; (16 << 20) + 1]).unwrap();
        let err = run(&VgaReplayOptions {
            trace: plain.clone(),
            vram: Some(big.clone()),
            out: tmp("never.png"),
            cursor_visible: true,
        })
        .unwrap_err();
        assert!(matches!(err, VgaReplayError::SnapshotSize { .. }), "{err}");
        for p in [plain, gz, big] {
            std::fs::remove_file(p).unwrap();
        }
    }

    #[test]
    fn a_trace_that_never_displays_is_an_error() {
        let t = tmp("blank.log");
        std::fs::write(&t, "vga_std_write_io addr 0x3c2, val 0x67\n").unwrap();
        let err = run(&VgaReplayOptions {
            trace: t.clone(),
            vram: None,
            out: tmp("blank.png"),
            cursor_visible: true,
        })
        .unwrap_err();
        assert!(matches!(err, VgaReplayError::NoPicture), "{err}");
        std::fs::remove_file(t).unwrap();
    }
}
