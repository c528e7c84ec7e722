//! The vfio-user front end against an in-process vfio-user client (the `vfio_user` crate's
//! own): what a VMM sees before any guest runs.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use saffron_device::QxlConfig;
use saffron_vmm::intx::IrqMode;
use saffron_vmm::vfio_user::{DeviceServer, DeviceServerConfig, lock};
use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_EVENTFD,
    VFIO_IRQ_SET_DATA_NONE, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_REGION_INFO_FLAG_MMAP,
};
use vfio_user::Client;
use vm_memory::{Bytes, GuestAddress, GuestRegionMmap, MemoryRegionAddress, mmap::MmapRegion};
use vmm_sys_util::eventfd::EventFd;

const SMALL: QxlConfig = QxlConfig {
    ram_size: 1 << 20,
    vram_size: 1 << 16,
    vram64_size: 0,
    preferred_resolution: None,
    max_heads: 1,
};
const RAM_HEADER: u64 = (1 << 20) - 8192;

fn socket_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("saffron-fe-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("qxl.sock")
}

fn start(name: &str, irq_mode: IrqMode) -> (DeviceServer, Client) {
    let server = DeviceServer::start(&DeviceServerConfig {
        socket: socket_path(name),
        qxl: SMALL,
        irq_mode,
        record_commands: None,
    })
    .unwrap();
    let client = Client::new(server.socket()).unwrap();
    (server, client)
}

/// The client's own mapping of BAR0, as a VMM would map it into the guest.
fn client_map(fo: vm_memory::FileOffset) -> GuestRegionMmap<()> {
    let map = MmapRegion::<()>::from_file(fo, SMALL.ram_size as usize).unwrap();
    GuestRegionMmap::new(map, GuestAddress(0)).unwrap()
}

fn read_u32(client: &mut Client, region: u32, offset: u64) -> u32 {
    let mut b = [0u8; 4];
    client.region_read(region, offset, &mut b).unwrap();
    u32::from_le_bytes(b)
}

#[test]
fn identity_and_regions() {
    let (_server, mut client) = start("identity", IrqMode::Intx);
    assert_eq!(
        read_u32(&mut client, VFIO_PCI_CONFIG_REGION_INDEX, 0),
        0x0100_1b36
    );
    assert_eq!(
        read_u32(&mut client, VFIO_PCI_CONFIG_REGION_INDEX, 8),
        0x0300_0005
    );
    for (index, size, mapped) in [
        (0u32, SMALL.ram_size, true),
        (1, SMALL.vram_size, true),
        (2, 8192, true),
        (3, 32, false),
        (4, 0, false),
        (6, 0, false),
        (7, 256, false),
    ] {
        let r = client.region(index).unwrap();
        assert_eq!(r.size, size, "region {index}");
        assert_eq!(
            r.flags & VFIO_REGION_INFO_FLAG_MMAP != 0,
            mapped,
            "region {index}"
        );
        assert_eq!(r.file_offset.is_some(), mapped, "region {index} fd");
        if mapped {
            assert_eq!(r.sparse_areas.len(), 1, "one area covering the BAR");
        }
    }
    // BAR sizing through config space, as cloud-hypervisor does it.
    client
        .region_write(VFIO_PCI_CONFIG_REGION_INDEX, 0x10, &u32::MAX.to_le_bytes())
        .unwrap();
    assert_eq!(
        read_u32(&mut client, VFIO_PCI_CONFIG_REGION_INDEX, 0x10),
        !((SMALL.ram_size as u32) - 1)
    );
    client
        .region_write(VFIO_PCI_CONFIG_REGION_INDEX, 0x1c, &u32::MAX.to_le_bytes())
        .unwrap();
    assert_eq!(
        read_u32(&mut client, VFIO_PCI_CONFIG_REGION_INDEX, 0x1c),
        !31u32 | 1
    );
}

#[test]
fn mapped_bar_is_the_device_memory() {
    let (server, client) = start("mapped", IrqMode::Intx);
    let region = client.region(0).unwrap();
    let fo = region.file_offset.clone().unwrap();
    let map = client_map(fo);
    map.write_slice(b"from the client", MemoryRegionAddress(0x1000))
        .unwrap();
    let mut seen = [0u8; 15];
    lock(server.device())
        .memory()
        .read(saffron_device::memory::MemoryBar::Ram, 0x1000, &mut seen)
        .unwrap();
    assert_eq!(&seen, b"from the client");
    // The RAM header the device wrote at reset is visible through the client's mapping.
    let magic: u32 = map.read_obj(MemoryRegionAddress(RAM_HEADER)).unwrap();
    assert_eq!(magic, 0x4152_5851);
}

/// The ROM BAR is mapped too (the Linux driver reads its `mm_clock` for every drawing): the
/// client's mapping shows the ROM image, and what a guest writes there is only its own
/// business — the device's copy stays, and the next ROM change (a reset here) rewrites it.
#[test]
fn rom_bar_is_mapped_and_rewritten_on_change() {
    let (server, mut client) = start("rom", IrqMode::Intx);
    let region = client.region(2).unwrap();
    let fo = region.file_offset.clone().unwrap();
    let map = GuestRegionMmap::new(
        MmapRegion::<()>::from_file(fo, region.size as usize).unwrap(),
        GuestAddress(0),
    )
    .unwrap();
    let magic: u32 = map.read_obj(MemoryRegionAddress(0)).unwrap();
    assert_eq!(magic, 0x4f52_5851, "QXRO");
    let mut image = vec![0u8; 256];
    map.read_slice(&mut image, MemoryRegionAddress(0)).unwrap();
    let mut trapped = vec![0u8; 256];
    client.region_read(2, 0, &mut trapped).unwrap();
    assert_eq!(image, trapped, "the mapping is the ROM the device serves");

    // A guest scribbles over the magic; the device still serves its own copy.
    map.write_obj(0xdead_beef_u32, MemoryRegionAddress(0))
        .unwrap();
    assert_eq!(read_u32(&mut client, 2, 0), 0x4f52_5851);
    // QXL_IO_RESET (port 5) resets the ROM, which rewrites the shared pages.
    client.region_write(3, 5, &[0]).unwrap();
    let magic: u32 = map.read_obj(MemoryRegionAddress(0)).unwrap();
    assert_eq!(magic, 0x4f52_5851, "the reset rewrote the guest's view");
    drop(server);
}

/// With `vram64_size`, region 4 is offered mapped, at BAR4's size, and the client's mappings
/// of BAR1 and BAR4 are the same memory as the device's surface memory.
#[test]
fn bar4_maps_the_memory_behind_bar1_and_more() {
    let cfg = QxlConfig {
        vram64_size: 1 << 18,
        ..SMALL
    };
    let server = DeviceServer::start(&DeviceServerConfig {
        socket: socket_path("bar4"),
        qxl: cfg,
        irq_mode: IrqMode::Intx,
        record_commands: None,
    })
    .unwrap();
    let mut client = Client::new(server.socket()).unwrap();
    let region = |client: &Client, index| {
        let r = client.region(index).unwrap();
        assert_ne!(r.flags & VFIO_REGION_INFO_FLAG_MMAP, 0, "region {index}");
        assert_eq!(r.sparse_areas.len(), 1, "region {index}");
        (r.size, r.file_offset.clone().unwrap())
    };
    let (bar1_size, bar1_fd) = region(&client, 1);
    let (bar4_size, bar4_fd) = region(&client, 4);
    assert_eq!((bar1_size, bar4_size), (cfg.vram_size, cfg.vram64_size));
    // 64-bit prefetchable memory BAR in config space, sized over registers 4 and 5.
    assert_eq!(
        read_u32(&mut client, VFIO_PCI_CONFIG_REGION_INDEX, 0x20),
        0x0c
    );
    client
        .region_write(VFIO_PCI_CONFIG_REGION_INDEX, 0x20, &u64::MAX.to_le_bytes())
        .unwrap();
    let mut b = [0u8; 8];
    client
        .region_read(VFIO_PCI_CONFIG_REGION_INDEX, 0x20, &mut b)
        .unwrap();
    assert_eq!(u64::from_le_bytes(b), !(cfg.vram64_size - 1) | 0x0c);
    let map = |fo: vm_memory::FileOffset, size: u64| {
        let m = MmapRegion::<()>::from_file(fo, size as usize).unwrap();
        GuestRegionMmap::new(m, GuestAddress(0)).unwrap()
    };
    let m1 = map(bar1_fd, bar1_size);
    let m4 = map(bar4_fd, bar4_size);
    m1.write_slice(b"bar1", MemoryRegionAddress(0x100)).unwrap();
    let mut seen = [0u8; 4];
    m4.read_slice(&mut seen, MemoryRegionAddress(0x100))
        .unwrap();
    assert_eq!(&seen, b"bar1", "BAR4 starts with BAR1's memory");
    m4.write_slice(b"bar4", MemoryRegionAddress(cfg.vram64_size - 4))
        .unwrap();
    lock(server.device())
        .memory()
        .read(
            saffron_device::memory::MemoryBar::Vram64,
            cfg.vram64_size - 4,
            &mut seen,
        )
        .unwrap();
    assert_eq!(&seen, b"bar4", "the device sees BAR4's last bytes");
}

fn raise_via_ports(client: &mut Client, map: &GuestRegionMmap<()>, pending: u32) {
    map.write_obj(1u32, MemoryRegionAddress(RAM_HEADER + 8))
        .unwrap();
    map.write_obj(pending, MemoryRegionAddress(RAM_HEADER + 4))
        .unwrap();
    client.region_write(3, 3, &[0]).unwrap(); // UPDATE_IRQ
}

#[test]
fn intx_eventfd_follows_the_level() {
    let (server, mut client) = start("intx", IrqMode::Intx);
    let map = client_map(client.region(0).unwrap().file_offset.clone().unwrap());
    let efd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    client
        .set_irqs(
            VFIO_PCI_INTX_IRQ_INDEX,
            VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            0,
            1,
            &[efd.as_raw_fd()],
        )
        .unwrap();
    raise_via_ports(&mut client, &map, 1);
    assert_eq!(efd.read().unwrap(), 1, "rising level signals the eventfd");
    let status = read_u32(&mut client, VFIO_PCI_CONFIG_REGION_INDEX, 4) >> 16;
    assert_eq!(status & 0x8, 0x8, "status bit 3 mirrors the level");
    // Still high at the end of interrupt: the unmask re-delivers it.
    client
        .set_irqs(
            VFIO_PCI_INTX_IRQ_INDEX,
            VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
            0,
            1,
            &[],
        )
        .unwrap();
    assert_eq!(efd.read().unwrap(), 1);
    // Acked: pending cleared, UPDATE_IRQ lowers the line; an unmask then delivers nothing.
    raise_via_ports(&mut client, &map, 0);
    client
        .set_irqs(
            VFIO_PCI_INTX_IRQ_INDEX,
            VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK,
            0,
            1,
            &[],
        )
        .unwrap();
    assert!(efd.read().is_err(), "no signal for a low line");
    let status = read_u32(&mut client, VFIO_PCI_CONFIG_REGION_INDEX, 4) >> 16;
    assert_eq!(status & 0x8, 0);
    assert_eq!(server.intx().signals(), 2);
}

#[test]
fn polled_mode_shows_the_level_but_never_signals() {
    let (server, mut client) = start("polled", IrqMode::Polled);
    let map = client_map(client.region(0).unwrap().file_offset.clone().unwrap());
    let efd = EventFd::new(libc::EFD_NONBLOCK).unwrap();
    client
        .set_irqs(
            VFIO_PCI_INTX_IRQ_INDEX,
            VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER,
            0,
            1,
            &[efd.as_raw_fd()],
        )
        .unwrap();
    raise_via_ports(&mut client, &map, 1);
    assert!(efd.read().is_err());
    let status = read_u32(&mut client, VFIO_PCI_CONFIG_REGION_INDEX, 4) >> 16;
    assert_eq!(status & 0x8, 0x8);
    assert_eq!(server.intx().signals(), 0);
}

/// Sends one raw vfio-user message and returns the reply header's flags and the payload.
/// (The crate's client cannot read error replies, so this speaks the wire format itself.)
fn raw_request(stream: &mut UnixStream, id: u16, command: u16, payload: &[u8]) -> (u32, Vec<u8>) {
    let size = (16 + payload.len()) as u32;
    let mut msg = Vec::new();
    msg.extend_from_slice(&id.to_le_bytes());
    msg.extend_from_slice(&command.to_le_bytes());
    msg.extend_from_slice(&size.to_le_bytes());
    msg.extend_from_slice(&0u32.to_le_bytes());
    msg.extend_from_slice(&0u32.to_le_bytes());
    msg.extend_from_slice(payload);
    stream.write_all(&msg).unwrap();
    let mut hdr = [0u8; 16];
    stream.read_exact(&mut hdr).unwrap();
    assert_eq!(
        u16::from_le_bytes([hdr[0], hdr[1]]),
        id,
        "reply to our message"
    );
    let size = u32::from_le_bytes(hdr[4..8].try_into().unwrap()) as usize;
    let flags = u32::from_le_bytes(hdr[8..12].try_into().unwrap());
    let mut rest = vec![0u8; size - 16];
    stream.read_exact(&mut rest).unwrap();
    (flags, rest)
}

fn region_access(region: u32, offset: u64, count: u32) -> Vec<u8> {
    let mut p = Vec::new();
    p.extend_from_slice(&offset.to_le_bytes());
    p.extend_from_slice(&region.to_le_bytes());
    p.extend_from_slice(&count.to_le_bytes());
    p
}

const REGION_READ: u16 = 9;
const REGION_WRITE: u16 = 10;
const SET_IRQS: u16 = 8;
const REPLY_ERROR: u32 = 1 << 5;

#[test]
fn bad_requests_get_errors_not_a_dead_server() {
    let server = DeviceServer::start(&DeviceServerConfig {
        socket: socket_path("bad"),
        qxl: SMALL,
        irq_mode: IrqMode::Intx,
        record_commands: None,
    })
    .unwrap();
    let mut s = UnixStream::connect(server.socket()).unwrap();
    // A region the device lacks (VGA, index 8): error reply.
    let (flags, _) = raw_request(&mut s, 1, REGION_READ, &region_access(8, 0, 4));
    assert_ne!(flags & REPLY_ERROR, 0);
    // MSI (index 1) has no vectors: error reply.
    let mut irqs = Vec::new();
    for v in [
        20u32,
        VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER,
        1,
        0,
        1,
    ] {
        irqs.extend_from_slice(&v.to_le_bytes());
    }
    let (flags, _) = raw_request(&mut s, 2, SET_IRQS, &irqs);
    assert_ne!(flags & REPLY_ERROR, 0);
    // Accesses outside a BAR or of the wrong width are absorbed by the device.
    let mut w = region_access(0, SMALL.ram_size - 2, 4);
    w.extend_from_slice(&[1, 2, 3, 4]);
    let (flags, _) = raw_request(&mut s, 3, REGION_WRITE, &w);
    assert_eq!(flags & REPLY_ERROR, 0);
    let mut w = region_access(3, 31, 2);
    w.extend_from_slice(&[0, 0]);
    raw_request(&mut s, 4, REGION_WRITE, &w);
    // The server still answers, with the right data.
    let (flags, data) = raw_request(&mut s, 5, REGION_READ, &region_access(7, 0, 4));
    assert_eq!(flags & REPLY_ERROR, 0);
    assert_eq!(&data[16..], &[0x36, 0x1b, 0x00, 0x01]);
    assert_eq!(lock(server.device()).stats().io_ignored, 1);
}

/// One request on the control socket at `path`, one reply.
fn control(path: &std::path::Path, request: &serde_json::Value) -> serde_json::Value {
    use std::io::BufRead;
    let mut s = UnixStream::connect(path).unwrap();
    writeln!(s, "{request}").unwrap();
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

/// `client_info` on the control socket, as `saffron device --spice` wires it: the Spice client
/// linked to the device's server is listed with its session, channels and bytes, and the
/// command fails cleanly without a Spice server.
#[test]
fn control_socket_client_info_lists_spice_clients() {
    use saffron_server::client::Session;
    use saffron_vmm::api::Api;
    use saffron_vmm::control::{ControlHandler, ControlSocket};
    use saffron_vmm::spice::{SpiceOptions, start_server};
    use serde_json::json;
    use std::sync::Arc;
    use std::sync::atomic::AtomicBool;

    let (server, _client) = start("client-info", IrqMode::Polled);
    let api = Arc::new(Api::new(
        "device",
        &server,
        Arc::new(AtomicBool::new(false)),
    ));
    let sock = socket_path("client-info-api").with_file_name("api.sock");
    let _control = ControlSocket::start(&sock, api.clone() as Arc<dyn ControlHandler>).unwrap();
    let none = control(&sock, &json!({"cmd": "client_info"}));
    assert_eq!(none["ok"], json!(false), "{none}");

    let addr = "127.0.0.1:0".parse().unwrap();
    let options = SpiceOptions {
        addr: Some(addr),
        disable_ticketing: true,
        ..SpiceOptions::default()
    };
    let spice = start_server(&options, addr, server.worker(), None, None).unwrap();
    api.set_spice(spice.clone());
    let empty = control(&sock, &json!({"cmd": "client_info"}));
    assert_eq!(empty["ok"], json!(true), "{empty}");
    assert_eq!(empty["clients"], json!([]), "{empty}");
    assert_eq!(empty["image_compression"], json!("auto_glz"), "{empty}");
    assert_eq!(empty["images"]["raw"], json!(0), "{empty}");
    assert_eq!(empty["agent"]["connected"], json!(false), "{empty}");
    assert_eq!(empty["agent"]["links"], json!(0), "{empty}");
    // The image compression for the next display clients changes at run time.
    let set = control(
        &sock,
        &json!({"cmd": "set_image_compression", "mode": "lz4"}),
    );
    assert_eq!(set, json!({"ok": true, "mode": "lz4"}));
    let bad = control(
        &sock,
        &json!({"cmd": "set_image_compression", "mode": "png"}),
    );
    assert_eq!(bad["ok"], json!(false), "{bad}");
    assert_eq!(
        control(&sock, &json!({"cmd": "client_info"}))["image_compression"],
        json!("lz4")
    );

    let mut session = Session::connect(spice.local_addr(), "").unwrap();
    // Reading the first PING answers it: the server then has a round trip.
    while session.main.read().unwrap().0 != saffron_server::wire::msg::PING {}
    let mut cursor = session.cursor().unwrap();
    let _init = cursor.read().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let info = loop {
        let info = control(&sock, &json!({"cmd": "client_info"}));
        let c = &info["clients"][0];
        let ready =
            c["rtt_ms"].is_number() && c["channels"].as_array().is_some_and(|a| a.len() == 2);
        if ready || std::time::Instant::now() > deadline {
            break info;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(info["ok"], json!(true), "{info}");
    let clients = info["clients"].as_array().unwrap();
    assert_eq!(clients.len(), 1, "{info}");
    let c = &clients[0];
    assert_eq!(c["session_id"], json!(session.id));
    assert_eq!(
        c["peer"],
        json!(session.main.stream.local_addr().unwrap().to_string())
    );
    assert_eq!(c["mouse_mode"], json!("server"), "no tablet: server mode");
    assert!(c["rtt_ms"].as_f64().is_some_and(|r| r >= 0.0), "{c}");
    let channels = c["channels"].as_array().unwrap();
    let kinds: Vec<(&str, u64, bool)> = channels
        .iter()
        .map(|ch| {
            (
                ch["type"].as_str().unwrap(),
                ch["id"].as_u64().unwrap(),
                ch["tls"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(kinds, [("main", 0, false), ("cursor", 0, false)]);
    for ch in channels {
        assert!(ch["bytes_sent"].as_u64().unwrap() > 0, "{ch}");
    }
    assert!(
        channels[0]["bytes_received"].as_u64().unwrap() > 0,
        "the PONG"
    );
    let total: u64 = channels
        .iter()
        .map(|ch| ch["bytes_sent"].as_u64().unwrap())
        .sum();
    assert_eq!(c["bytes_sent"], json!(total));
}
