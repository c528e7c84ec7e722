//! `saffron`: the QXL display device for VMMs.
//!
//! - `saffron run` boots a guest under QEMU with our device attached (the main job);
//! - `saffron device` serves the device alone, for a VMM someone else starts;
//! - `saffron vga-replay` replays a QEMU VGA trace through our VGA model into a PNG.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use saffron_device::QxlConfig;
use saffron_vmm::api::Api;
use saffron_vmm::control::{ControlHandler, ControlSocket};
use saffron_vmm::intx::IrqMode;
use saffron_vmm::qemu::{Accel, Serial, parse_size};
use saffron_vmm::run::{RunOptions, Vm};
use saffron_vmm::signals;
use saffron_vmm::spice::{SpiceOptions, start_server};
use saffron_vmm::vfio_user::{DeviceServer, DeviceServerConfig};
use tracing::info;

#[derive(Parser)]
#[command(
    name = "saffron",
    version,
    about = "QXL display device and Spice server for VMMs"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Boot a guest under QEMU with the QXL device attached over vfio-user.
    Run(RunArgs),
    /// Serve the QXL device over vfio-user for a VMM started by someone else.
    Device(DeviceArgs),
    /// Replay a QEMU VGA trace log through our VGA model and write the final screen as PNG.
    VgaReplay(VgaReplayArgs),
}

#[derive(Args)]
struct VgaReplayArgs {
    /// QEMU log trace (plain or gzip) of `-trace vga_std_read_io -trace vga_std_write_io
    /// -trace vga_vbe_read -trace vga_vbe_write -trace memory_region_ops_read
    /// -trace memory_region_ops_write -D FILE`, replayed from QEMU's reset state.
    #[arg(long, value_name = "FILE")]
    qemu_trace: PathBuf,
    /// Where to write the screen at the end of the trace (PNG, 8-bit RGB).
    #[arg(long, value_name = "PNG")]
    out: PathBuf,
    /// Video memory snapshot (plain or gzip; e.g. QEMU's pmemsave of the VGA's BAR 0)
    /// loaded after the trace: VBE linear-framebuffer and chain-4 writes go to RAM and are
    /// not in QEMU's traces.
    #[arg(long, value_name = "FILE")]
    vram: Option<PathBuf>,
    /// Draw the text cursor in its hidden blink phase.
    #[arg(long)]
    cursor_hidden: bool,
}

#[derive(Args)]
struct QxlArgs {
    /// Size of the QXL RAM BAR (BAR0) in MiB: a power of two.
    #[arg(long, default_value_t = 64)]
    qxl_ram_mb: u64,
    /// Size of the QXL VRAM BAR (BAR1) in MiB: a power of two.
    #[arg(long, default_value_t = 64)]
    qxl_vram_mb: u64,
    /// Size of the optional 64-bit VRAM BAR (BAR4) in MiB, 0 for none: a power of two larger
    /// than --qxl-vram-mb. Its first part is BAR1's memory; Linux keeps its surfaces there.
    #[arg(long, default_value_t = 0, value_name = "MB")]
    qxl_vram64_mb: u64,
    /// Preferred display resolution offered to the guest, e.g. 1280x800.
    #[arg(long, value_parser = parse_resolution)]
    resolution: Option<(u32, u32)>,
    /// Heads (monitors) the device drives, 1 to 64 (QEMU's qxl `max_outputs`): how many heads
    /// of the guest's monitors config are shown to clients, and of a client's layout offered
    /// to the guest. Default 4, the connectors Linux's qxl driver makes.
    #[arg(long, alias = "max-outputs", default_value_t = saffron_device::qxl::DEFAULT_HEADS, value_name = "N")]
    heads: u32,
}

impl QxlArgs {
    fn config(&self) -> Result<QxlConfig, String> {
        let mut cfg = QxlConfig::from_mb(self.qxl_ram_mb, self.qxl_vram_mb, self.qxl_vram64_mb)
            .map_err(|e| e.to_string())?;
        cfg.preferred_resolution = self.resolution;
        cfg.max_heads = self.heads;
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }
}

/// Largest `--resolution` side: the largest surface the device accepts
/// (`saffron_ring::parse::MAX_SURFACE_DIMENSION`, QEMU's and Linux's largest qxl mode).
const MAX_RESOLUTION: u32 = 8192;

/// Parses `WIDTHxHEIGHT`.
fn parse_resolution(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("bad resolution '{s}' (e.g. 1280x800)");
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (w, h): (u32, u32) = (w.parse().map_err(|_| bad())?, h.parse().map_err(|_| bad())?);
    if w == 0 || h == 0 || w > MAX_RESOLUTION || h > MAX_RESOLUTION {
        return Err(format!(
            "resolution {w}x{h} out of range (1..={MAX_RESOLUTION} each)"
        ));
    }
    Ok((w, h))
}

#[derive(Args)]
struct SpiceArgs {
    /// Serve the display over Spice on ADDR:PORT (e.g. 127.0.0.1:5900).
    #[arg(long, value_name = "ADDR:PORT")]
    spice: Option<std::net::SocketAddr>,
    /// File whose first line is the Spice ticket password.
    #[arg(long, value_name = "PATH")]
    spice_password_file: Option<PathBuf>,
    /// Let Spice clients in without a password (loopback only, unless --spice-insecure).
    #[arg(long)]
    disable_ticketing: bool,
    /// Allow --disable-ticketing on a non-loopback address.
    #[arg(long)]
    spice_insecure: bool,
    /// Also serve Spice over TLS on this port (same address as --spice).
    #[arg(long, value_name = "PORT")]
    spice_tls_port: Option<u16>,
    /// Directory holding server-cert.pem and server-key.pem for the TLS port.
    #[arg(long, value_name = "DIR")]
    spice_x509_dir: Option<PathBuf>,
    /// Channels that must use TLS (comma-separated: main,display,inputs,cursor or default).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    spice_secure_channels: Vec<String>,
    /// Record every byte Spice clients send (one file per connection) into DIR, for fuzz
    /// seeds.
    #[arg(long, value_name = "DIR")]
    record_spice: Option<PathBuf>,
    /// How images are compressed for display clients (QEMU's image-compression, plus lz4):
    /// auto_glz, auto_lz, quic, glz, lz, lz4 or off. The auto modes send photographic images
    /// as QUIC and the rest as GLZ (LZ for auto_lz); a client only ever gets formats it
    /// decodes (no GLZ without a dictionary window, no LZ4 without the cap).
    #[arg(long, value_name = "MODE", default_value = "auto_glz")]
    spice_image_compression: saffron_server::Compression,
    /// Wrap GLZ images in zlib (QEMU's zlib-glz-wan-compression): auto, never or always.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    spice_zlib_glz_wan_compression: saffron_server::WanCompression,
    /// Send photographic images as lossy JPEG (QEMU's jpeg-wan-compression): auto (when the
    /// client's estimated link is below 10 Mbit/s), never or always. Lossy areas are sent
    /// again losslessly once the link allows or they have been still for 3 s.
    #[arg(long, value_name = "WHEN", default_value = "auto")]
    spice_jpeg_wan_compression: saffron_server::WanCompression,
    /// Which regions redrawn like video go to clients as MJPEG streams (QEMU's
    /// streaming-video): off, all, or filter (only photographic ones, spice-server's
    /// heuristics). A stream's last frame is sent again losslessly when it goes still.
    #[arg(long, value_name = "MODE", default_value = "filter")]
    spice_streaming_video: saffron_server::StreamingVideo,
    /// The codecs streams may use, best first (QEMU's `-spice video-codec=`, also accepted as
    /// --spice-video-codec; spice-server's video-codecs list: `auto` or `encoder:codec;...`). Built in: `spice:mjpeg` (also `gstreamer:mjpeg`) and
    /// `gstreamer:vp8` (libvpx); a list naming another (gstreamer:h264, ...) is refused.
    /// `auto` is VP8, then MJPEG for clients that do not decode VP8 (spice-html5 gets MJPEG
    /// unless it asks for VP8); a client's PREFERRED_VIDEO_CODEC_TYPE reorders the list.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "auto",
        alias = "spice-video-codec"
    )]
    spice_video_codecs: saffron_server::VideoCodecs,
    /// No clipboard between clients and the guest agent (QEMU's disable-copy-paste): the
    /// agent's clipboard capabilities are hidden and clipboard messages dropped, both ways.
    #[arg(long)]
    spice_disable_copy_paste: bool,
    /// No file transfer to the guest agent (QEMU's disable-agent-file-xfer).
    #[arg(long)]
    spice_disable_agent_file_xfer: bool,
    /// Send the guest's sound as Opus to clients that decode it (QEMU's
    /// playback-compression): on or off (raw PCM to every client).
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    spice_playback_compression: bool,
    /// Serve the web client's files (spice-html5) to browsers on the Spice ports: a plain
    /// GET of http://ADDR:PORT/ gives the client, connected back over WebSocket. Default:
    /// Debian's spice-html5 package (/usr/share/spice-html5) when installed; `none` serves no
    /// files (WebSocket clients can still connect).
    #[arg(long, value_name = "DIR")]
    spice_web_root: Option<PathBuf>,
    /// Client mouse mode through the guest agent when one is connected (QEMU's
    /// agent-mouse): on or off (only through the VM's tablet).
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    spice_agent_mouse: bool,
}

/// QEMU's on/off.
fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("'{other}': on or off")),
    }
}

impl SpiceArgs {
    fn options(&self) -> SpiceOptions {
        SpiceOptions {
            addr: self.spice,
            password_file: self.spice_password_file.clone(),
            disable_ticketing: self.disable_ticketing,
            insecure: self.spice_insecure,
            tls_port: self.spice_tls_port,
            x509_dir: self.spice_x509_dir.clone(),
            secure_channels: self.spice_secure_channels.clone(),
            record_dir: self.record_spice.clone(),
            image_compression: self.spice_image_compression,
            zlib_glz_wan_compression: self.spice_zlib_glz_wan_compression,
            jpeg_wan_compression: self.spice_jpeg_wan_compression,
            streaming_video: self.spice_streaming_video,
            video_codecs: self.spice_video_codecs.clone(),
            disable_copy_paste: self.spice_disable_copy_paste,
            disable_agent_file_xfer: self.spice_disable_agent_file_xfer,
            sound: false,
            playback_compression: self.spice_playback_compression,
            web_root: match &self.spice_web_root {
                Some(dir) if dir.as_os_str() == "none" => None,
                Some(dir) => Some(dir.clone()),
                None => saffron_vmm::spice::default_web_root(),
            },
            agent_mouse: self.spice_agent_mouse,
        }
    }
}

/// Which VMM `saffron run` boots the guest with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum VmmKind {
    /// QEMU, with the device attached over vfio-user.
    Qemu,
    /// Our own minimal KVM VMM with the device in process (legacy VGA included); it boots
    /// freestanding 64-bit flat binaries (--kernel), entered at 1 MiB in long mode.
    Builtin,
}

#[derive(Args)]
struct RunArgs {
    /// Kernel image (bzImage; with --vmm builtin, a flat 64-bit binary).
    #[arg(long)]
    kernel: PathBuf,
    /// The VMM: qemu (default) or builtin.
    #[arg(long, value_enum, default_value = "qemu")]
    vmm: VmmKind,
    /// Initial ramdisk.
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line (console=ttyS0 is added unless a console is given).
    #[arg(long, default_value = "")]
    cmdline: String,
    /// Guest RAM, e.g. 512M or 2G.
    #[arg(long, default_value = "512M", value_parser = parse_size)]
    memory: u64,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    smp: u32,
    /// Where the guest's serial console goes: stdio, a file path, or unix:PATH (a socket QEMU
    /// listens on and waits for a client).
    #[arg(long, default_value = "stdio")]
    serial: Serial,
    /// Control socket (JSON lines).
    #[arg(long)]
    api_socket: Option<PathBuf>,
    /// A QMP socket of QEMU's for you (QEMU's -qmp, a second monitor beside saffron's own).
    #[arg(long, value_name = "PATH")]
    qmp: Option<PathBuf>,
    /// QEMU binary (default: $SAFFRON_QEMU, then target/qemu from ci/qemu, then $PATH).
    #[arg(long)]
    qemu: Option<PathBuf>,
    /// Accelerator: kvm or tcg (default: kvm when the host has hardware virtualization).
    #[arg(long)]
    accel: Option<Accel>,
    /// Interrupt delivery: intx or polled (default: intx with kvm, polled with tcg).
    #[arg(long)]
    irq_mode: Option<IrqMode>,
    #[command(flatten)]
    qxl: QxlArgs,
    #[command(flatten)]
    spice: SpiceArgs,
    /// No Spice guest agent port (by default, with --spice, the guest gets a virtio-serial
    /// port com.redhat.spice.0 for spice-vdagent).
    #[arg(long)]
    no_spice_agent: bool,
    /// Record every ring command and the guest memory it uses into DIR (for fuzz seeds and
    /// replay; format in worker/src/record.rs).
    #[arg(long, value_name = "DIR")]
    record_commands: Option<PathBuf>,
    /// No sound card (by default the guest gets a virtio-sound device, vhost-user-snd-pci,
    /// served by saffron, whose playback goes to Spice clients).
    #[arg(long)]
    no_sound: bool,
}

#[derive(Args)]
struct DeviceArgs {
    /// The vfio-user socket to listen on.
    #[arg(long)]
    socket: PathBuf,
    /// Control socket (JSON lines).
    #[arg(long)]
    api_socket: Option<PathBuf>,
    /// Interrupt delivery: intx (default) or polled.
    #[arg(long, default_value = "intx")]
    irq_mode: IrqMode,
    /// The VMM's QMP socket, for Spice client input (`input-send-event`).
    #[arg(long, value_name = "PATH")]
    qmp: Option<PathBuf>,
    /// Listen on PATH for the guest agent's port: QEMU connects to it with
    /// `-chardev socket,id=agent,path=PATH,server=off,reconnect-ms=1000` behind
    /// `-device virtserialport,chardev=agent,name=com.redhat.spice.0` (needs --spice).
    #[arg(long, value_name = "PATH")]
    agent_socket: Option<PathBuf>,
    #[command(flatten)]
    qxl: QxlArgs,
    #[command(flatten)]
    spice: SpiceArgs,
    /// Record every ring command and the guest memory it uses into DIR (for fuzz seeds and
    /// replay; format in worker/src/record.rs).
    #[arg(long, value_name = "DIR")]
    record_commands: Option<PathBuf>,
    /// Also serve a virtio-sound device over vhost-user on this socket, for the VMM's
    /// `-chardev socket,id=snd,path=PATH -device vhost-user-snd-pci,chardev=snd` (guest RAM
    /// must be shared, e.g. a memory-backend-memfd with share=on).
    #[arg(long, value_name = "PATH")]
    sound_socket: Option<PathBuf>,
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SAFFRON_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr: with --serial stdio, stdout is the guest's console.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn start_control(path: Option<&PathBuf>, api: Arc<Api>) -> Result<Option<ControlSocket>, String> {
    path.map(|p| {
        ControlSocket::start(p, api as Arc<dyn ControlHandler>)
            .map_err(|e| format!("control socket {}: {e}", p.display()))
    })
    .transpose()
}

fn run(args: RunArgs) -> Result<u8, String> {
    let qxl = args.qxl.config()?;
    if args.vmm == VmmKind::Builtin {
        return run_builtin(args, qxl);
    }
    let opts = RunOptions {
        kernel: args.kernel,
        initrd: args.initrd,
        cmdline: args.cmdline,
        memory: args.memory,
        smp: args.smp,
        serial: args.serial,
        api_socket: args.api_socket,
        user_qmp: args.qmp,
        qemu: args.qemu,
        accel: args.accel,
        irq_mode: args.irq_mode,
        qxl,
        spice: args.spice.options(),
        record_commands: args.record_commands,
        agent: !args.no_spice_agent,
        sound: !args.no_sound,
    };
    let mut vm = Vm::launch(&opts).map_err(|e| e.to_string())?;
    let status = loop {
        if signals::requested() {
            // Dropping the Vm removes its runtime directory and sockets.
            info!("interrupted: stopping the guest");
            vm.kill();
            return Ok(130);
        }
        if let Some(status) = vm
            .wait_timeout(Some(Duration::from_millis(100)))
            .map_err(|e| e.to_string())?
        {
            break status;
        }
    };
    if vm.quit_requested() {
        info!("guest stopped on request");
        return Ok(0);
    }
    match status.code() {
        Some(0) => {
            info!("guest powered off");
            Ok(0)
        }
        Some(c) => Err(format!("QEMU exited with status {c}")),
        None => Err(format!("QEMU was killed ({status})")),
    }
}

/// `saffron run --vmm builtin`.
fn run_builtin(args: RunArgs, qxl: QxlConfig) -> Result<u8, String> {
    use saffron_vmm::builtin::{BuiltinOptions, BuiltinVm};
    let serial = match args.serial {
        Serial::Stdio => None,
        Serial::File(p) => Some(p),
        Serial::Socket(_) => return Err("--vmm builtin: --serial is stdio or a file".into()),
    };
    if args.initrd.is_some() || !args.cmdline.is_empty() {
        return Err("--vmm builtin boots flat binaries: no --initrd or --cmdline".into());
    }
    let vm = BuiltinVm::launch(&BuiltinOptions {
        program: args.kernel,
        memory: args.memory,
        qxl,
        serial,
    })
    .map_err(|e| e.to_string())?;
    let quit = Arc::new(AtomicBool::new(false));
    let api = Arc::new(Api::with_parts(
        "run",
        Arc::clone(vm.device()),
        vm.worker().clone(),
        Arc::clone(vm.intx()),
        Arc::clone(&quit),
    ));
    api.set_vmm_pid(std::process::id());
    let _spice = match args.spice.spice {
        None => None,
        Some(addr) => {
            // No input devices in the built-in VMM yet: clients' input is dropped.
            let handle = start_server(
                &args.spice.options(),
                addr,
                vm.worker(),
                Some(Arc::clone(vm.device())),
                None,
            )?;
            api.set_spice(Arc::clone(&handle));
            Some(handle)
        }
    };
    let _control = start_control(args.api_socket.as_ref(), api)?;
    loop {
        if signals::requested() {
            info!("interrupted: stopping the guest");
            return Ok(130);
        }
        if quit.load(Ordering::Acquire) {
            info!("guest stopped on request");
            return Ok(0);
        }
        match vm.finished() {
            Some(Ok(())) => return Ok(0),
            Some(Err(e)) => return Err(e),
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn device(args: DeviceArgs) -> Result<u8, String> {
    let qxl = args.qxl.config()?;
    let server = DeviceServer::start(&DeviceServerConfig {
        socket: args.socket,
        qxl,
        irq_mode: args.irq_mode,
        record_commands: args.record_commands,
    })
    .map_err(|e| e.to_string())?;
    let quit = Arc::new(AtomicBool::new(false));
    let api = Arc::new(Api::new("device", &server, Arc::clone(&quit)));
    let _spice = match args.spice.spice {
        None => None,
        Some(addr) => {
            let qmp = args.qmp.clone().map(|p| (p, false));
            let mut options = args.spice.options();
            options.sound = args.sound_socket.is_some();
            let handle = start_server(
                &options,
                addr,
                server.worker(),
                Some(Arc::clone(server.device())),
                qmp,
            )?;
            api.set_spice(Arc::clone(&handle));
            Some(handle)
        }
    };
    let _agent = match (&args.agent_socket, &_spice) {
        (Some(path), Some(handle)) => Some(
            saffron_vmm::agent::AgentSocket::start(path, Arc::clone(handle))
                .map_err(|e| format!("agent socket {}: {e}", path.display()))?,
        ),
        (Some(_), None) => return Err("--agent-socket needs --spice".into()),
        _ => None,
    };
    let _sound = args
        .sound_socket
        .as_ref()
        .map(|p| saffron_vmm::sound::start(p, _spice.as_deref(), false))
        .transpose()
        .map_err(|e| e.to_string())?;
    let _control = start_control(args.api_socket.as_ref(), api)?;
    while !server.finished() && !quit.load(Ordering::Acquire) && !signals::requested() {
        std::thread::sleep(Duration::from_millis(50));
    }
    info!("device server stopping");
    Ok(0)
}

fn vga_replay(args: VgaReplayArgs) -> Result<u8, String> {
    let summary = saffron_vmm::vga_replay::run(&saffron_vmm::vga_replay::VgaReplayOptions {
        trace: args.qemu_trace,
        vram: args.vram,
        out: args.out.clone(),
        cursor_visible: !args.cursor_hidden,
    })
    .map_err(|e| e.to_string())?;
    let s = summary.stats;
    println!(
        "{} lines, {} VGA events ({} accesses), {} reads differing from QEMU's; {}x{} screen written to {}",
        s.lines,
        s.events,
        s.accesses,
        s.read_mismatches,
        summary.width,
        summary.height,
        args.out.display()
    );
    if let Some((line, m)) = s.first_mismatch {
        println!(
            "first differing read: line {line}: {:?}, ours {:#x}",
            m.event, m.got
        );
    }
    Ok(0)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    if let Err(e) = signals::install() {
        tracing::warn!("cannot handle SIGINT/SIGTERM ({e}): an interrupted run leaves its sockets");
    }
    let result = match cli.command {
        Cmd::Run(a) => run(a),
        Cmd::Device(a) => device(a),
        Cmd::VgaReplay(a) => vga_replay(a),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("saffron: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qxl_config(args: &[&str]) -> Result<QxlConfig, String> {
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        match cli.command {
            Cmd::Run(a) => a.qxl.config(),
            Cmd::Device(a) => a.qxl.config(),
            Cmd::VgaReplay(_) => Err("no QXL options".into()),
        }
    }

    #[test]
    fn sound_options() {
        let run = |extra: &[&str]| {
            let args = [&["saffron", "run", "--kernel", "k"][..], extra].concat();
            match Cli::try_parse_from(args).unwrap().command {
                Cmd::Run(a) => a.no_sound,
                _ => unreachable!(),
            }
        };
        assert!(!run(&[]), "saffron run has sound by default");
        assert!(run(&["--no-sound"]));
        let device = |extra: &[&str]| {
            let args = [&["saffron", "device", "--socket", "s"][..], extra].concat();
            match Cli::try_parse_from(args).unwrap().command {
                Cmd::Device(a) => a.sound_socket,
                _ => unreachable!(),
            }
        };
        assert_eq!(device(&[]), None, "saffron device has none unless asked");
        assert_eq!(
            device(&["--sound-socket", "/tmp/snd.sock"]),
            Some(PathBuf::from("/tmp/snd.sock"))
        );
    }

    /// `--spice-jpeg-wan-compression` reaches the server's configuration on both commands,
    /// `auto` unless given, and refuses what QEMU would.
    #[test]
    fn jpeg_wan_compression_option() {
        use saffron_server::WanCompression;
        let run = [
            "saffron",
            "run",
            "--kernel",
            "k",
            "--spice",
            "127.0.0.1:5930",
        ];
        let device = [
            "saffron",
            "device",
            "--socket",
            "s",
            "--spice",
            "127.0.0.1:5930",
        ];
        for base in [&run[..], &device[..]] {
            let jpeg = |extra: &[&str]| -> Result<WanCompression, String> {
                let cli = Cli::try_parse_from([base, extra].concat()).map_err(|e| e.to_string())?;
                let options = match cli.command {
                    Cmd::Run(a) => a.spice.options(),
                    Cmd::Device(a) => a.spice.options(),
                    Cmd::VgaReplay(_) => unreachable!(),
                };
                let cfg = options.config("127.0.0.1:5930".parse().unwrap(), "vm")?;
                Ok(cfg.jpeg_wan_compression)
            };
            assert_eq!(jpeg(&[]), Ok(WanCompression::Auto), "{base:?}");
            for (arg, want) in [
                ("always", WanCompression::Always),
                ("never", WanCompression::Never),
                ("auto", WanCompression::Auto),
            ] {
                assert_eq!(jpeg(&["--spice-jpeg-wan-compression", arg]), Ok(want));
            }
            assert!(jpeg(&["--spice-jpeg-wan-compression", "sometimes"]).is_err());
        }
    }

    /// QEMU's on/off options take a value (`--spice-agent-mouse off`), on both commands;
    /// `on` unless given; anything else is refused.
    #[test]
    fn on_off_options_take_a_value() {
        let run = ["saffron", "run", "--kernel", "k"];
        let device = ["saffron", "device", "--socket", "s"];
        for base in [&run[..], &device[..]] {
            let opts = |extra: &[&str]| -> Result<(bool, bool), String> {
                let cli = Cli::try_parse_from([base, extra].concat()).map_err(|e| e.to_string())?;
                let o = match cli.command {
                    Cmd::Run(a) => a.spice.options(),
                    Cmd::Device(a) => a.spice.options(),
                    Cmd::VgaReplay(_) => unreachable!(),
                };
                Ok((o.playback_compression, o.agent_mouse))
            };
            assert_eq!(opts(&[]), Ok((true, true)), "{base:?}");
            assert_eq!(
                opts(&["--spice-playback-compression", "off"]),
                Ok((false, true))
            );
            assert_eq!(opts(&["--spice-agent-mouse", "off"]), Ok((true, false)));
            assert_eq!(
                opts(&[
                    "--spice-agent-mouse",
                    "on",
                    "--spice-playback-compression",
                    "on"
                ]),
                Ok((true, true))
            );
            assert!(opts(&["--spice-agent-mouse", "yes"]).is_err());
            assert!(
                opts(&["--spice-playback-compression"]).is_err(),
                "needs a value"
            );
        }
    }

    /// `--spice-video-codecs` takes spice-server's list, also under QEMU's singular name;
    /// a codec that is not built is refused at the command line.
    #[test]
    fn video_codecs_option_takes_qemus_name_too() {
        use saffron_server::stream::VideoCodec;
        let base = ["saffron", "device", "--socket", "s"];
        let order = |extra: &[&str]| -> Result<Vec<VideoCodec>, String> {
            let cli =
                Cli::try_parse_from([&base[..], extra].concat()).map_err(|e| e.to_string())?;
            match cli.command {
                Cmd::Device(a) => Ok(a.spice.options().video_codecs.order().to_vec()),
                _ => unreachable!(),
            }
        };
        assert_eq!(order(&[]), Ok(vec![VideoCodec::Vp8, VideoCodec::Mjpeg]));
        assert_eq!(
            order(&["--spice-video-codecs", "spice:mjpeg"]),
            Ok(vec![VideoCodec::Mjpeg])
        );
        assert_eq!(
            order(&["--spice-video-codec", "gstreamer:vp8;spice:mjpeg"]),
            Ok(vec![VideoCodec::Vp8, VideoCodec::Mjpeg])
        );
        let e = order(&["--spice-video-codecs", "gstreamer:h264"]).unwrap_err();
        assert!(e.contains("not built in"), "{e}");
    }

    #[test]
    fn vram64_option_on_both_commands() {
        let run = ["saffron", "run", "--kernel", "k"];
        let device = ["saffron", "device", "--socket", "s"];
        for base in [&run[..], &device[..]] {
            assert_eq!(qxl_config(base).unwrap().vram64_size, 0, "off by default");
            let with = |extra: &[&str]| qxl_config(&[base, extra].concat());
            let cfg = with(&["--qxl-vram64-mb", "128"]).unwrap();
            assert_eq!(
                (cfg.vram_size, cfg.vram64_size),
                (64 << 20, 128 << 20),
                "{base:?}"
            );
            assert!(
                with(&["--qxl-vram64-mb", "64"]).is_err(),
                "not larger than BAR1"
            );
            assert!(
                with(&["--qxl-vram64-mb", "100"]).is_err(),
                "not a power of two"
            );
            let cfg = with(&["--qxl-vram-mb", "16", "--qxl-vram64-mb", "32"]).unwrap();
            assert_eq!((cfg.vram_size, cfg.vram64_size), (16 << 20, 32 << 20));
        }
    }
}
