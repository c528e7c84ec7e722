//! The vfio-user front end: presents the QXL device to a VMM (QEMU's `vfio-user-pci`,
//! cloud-hypervisor's `--user-device`) over a Unix socket.
//!
//! A thin adapter: vfio-user regions map onto the device's `(region, offset, bytes)` accesses.
//! BAR0, BAR1 and the ROM BAR (BAR2) are memfds handed to the client, which maps them straight
//! into the guest, so the guest writes commands and pixels, and reads the ROM, with no message
//! at all; config space and the I/O ports are trapped and arrive here as messages. The optional BAR4 is the same memfd as
//! BAR1, offered at its full (larger) size: the client maps it twice, BAR1 being the first
//! part of it.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;

use saffron_device::{DeviceMemory, QxlConfig, QxlDevice};
use saffron_worker::red::WorkerControl;
use thiserror::Error;
use tracing::{debug, info, warn};
use vfio_bindings::bindings::vfio::{
    VFIO_IRQ_INFO_AUTOMASKED, VFIO_IRQ_INFO_EVENTFD, VFIO_IRQ_INFO_MASKABLE,
    VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_TYPE_MASK,
    VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
    VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_INTX_IRQ_INDEX,
    VFIO_PCI_NUM_IRQS, VFIO_PCI_NUM_REGIONS, VFIO_PCI_REQ_IRQ_INDEX, VFIO_PCI_ROM_REGION_INDEX,
    VFIO_REGION_INFO_FLAG_MMAP, VFIO_REGION_INFO_FLAG_READ, VFIO_REGION_INFO_FLAG_WRITE,
    vfio_region_info, vfio_region_sparse_mmap_area,
};
use vfio_user::{IrqInfo, Server, ServerBackend, ServerRegion, SparseArea};
use vm_memory::FileOffset;

use crate::intx::{Intx, IntxLine, IrqMode};
use crate::memfd;

/// The device as shared between the front end thread, the control socket and tests.
pub type SharedDevice = Arc<Mutex<QxlDevice>>;

/// Locks the device, tolerating a poisoned lock: device state is plain data and every
/// operation on it leaves it consistent, so a panic elsewhere must not take the device down.
pub fn lock(dev: &SharedDevice) -> MutexGuard<'_, QxlDevice> {
    dev.lock().unwrap_or_else(|e| e.into_inner())
}

/// Failures setting up the front end.
#[derive(Debug, Error)]
pub enum FrontendError {
    /// Something else is listening on the socket path.
    #[error("socket {0} is in use by another process")]
    SocketInUse(PathBuf),
    /// The socket path exists and is not a socket.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// Creating the BAR memory failed.
    #[error("cannot create BAR memory: {0}")]
    Memfd(#[source] io::Error),
    /// Mapping the BAR memory failed.
    #[error("cannot map BAR memory: {0}")]
    Memory(#[from] saffron_device::memory::MemoryError),
    /// The device refused its configuration.
    #[error("{0}")]
    Device(#[from] saffron_device::QxlError),
    /// The vfio-user server could not be created.
    #[error("vfio-user server on {path}: {source}")]
    Server {
        /// Socket path.
        path: PathBuf,
        /// Cause.
        #[source]
        source: vfio_user::Error,
    },
    /// The server thread could not be started.
    #[error("cannot start the vfio-user thread: {0}")]
    Thread(#[source] io::Error),
    /// The command recording could not be created.
    #[error("cannot record commands in {path}: {source}")]
    Record {
        /// The directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: io::Error,
    },
}

/// Counters of the front end itself.
#[derive(Debug, Default)]
pub struct FrontendStats {
    /// REGION_READ/REGION_WRITE messages per region index (0..=8).
    pub region_messages: [AtomicU64; VFIO_PCI_NUM_REGIONS as usize],
    /// DMA_MAP messages (guest RAM the client offered; QXL needs none of it).
    pub dma_maps: AtomicU64,
}

/// The [`ServerBackend`] that forwards to the device.
pub struct Backend {
    device: SharedDevice,
    intx: Arc<Intx>,
    stats: Arc<FrontendStats>,
}

impl Backend {
    fn count(&self, region: u32) {
        if let Some(c) = self.stats.region_messages.get(region as usize) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

impl ServerBackend for Backend {
    fn region_read(&mut self, region: u32, offset: u64, data: &mut [u8]) -> io::Result<()> {
        self.count(region);
        let mut dev = lock(&self.device);
        match region {
            VFIO_PCI_CONFIG_REGION_INDEX => dev.config_read(offset, data),
            r if r <= 5 => dev.bar_read(r as usize, offset, data),
            VFIO_PCI_ROM_REGION_INDEX => data.fill(0xff),
            r => {
                return Err(invalid(format!(
                    "read of region {r}, which the device lacks"
                )));
            }
        }
        Ok(())
    }

    fn region_write(&mut self, region: u32, offset: u64, data: &[u8]) -> io::Result<()> {
        self.count(region);
        let mut dev = lock(&self.device);
        match region {
            VFIO_PCI_CONFIG_REGION_INDEX => dev.config_write(offset, data),
            r if (r as usize) <= 5 => dev.bar_write(r as usize, offset, data),
            VFIO_PCI_ROM_REGION_INDEX => {}
            r => {
                return Err(invalid(format!(
                    "write of region {r}, which the device lacks"
                )));
            }
        }
        Ok(())
    }

    fn dma_map(
        &mut self,
        _flags: vfio_user::DmaMapFlags,
        _offset: u64,
        address: u64,
        size: u64,
        _fd: Option<File>,
    ) -> io::Result<()> {
        // QXL only ever reads its own BARs (memslots point into them), never guest RAM, so
        // the descriptor is closed right away.
        self.stats.dma_maps.fetch_add(1, Ordering::Relaxed);
        debug!(address, size, "DMA map (not needed by QXL)");
        Ok(())
    }

    fn dma_unmap(
        &mut self,
        _flags: vfio_user::DmaUnmapFlags,
        address: u64,
        size: u64,
    ) -> io::Result<()> {
        debug!(address, size, "DMA unmap");
        Ok(())
    }

    fn reset(&mut self) -> io::Result<()> {
        info!("device reset by the VMM");
        self.intx.reset();
        lock(&self.device).reset();
        Ok(())
    }

    fn set_irqs(
        &mut self,
        index: u32,
        flags: u32,
        start: u32,
        count: u32,
        fds: Vec<File>,
    ) -> io::Result<()> {
        if index == VFIO_PCI_ERR_IRQ_INDEX || index == VFIO_PCI_REQ_IRQ_INDEX {
            // The VMM's error and unplug-request notifiers: accepted so that it can arm them
            // (QEMU warns otherwise), never signalled: the device has no such events.
            debug!(index, flags, "notifier eventfd accepted");
            return Ok(());
        }
        if index != VFIO_PCI_INTX_IRQ_INDEX {
            // No MSI or MSI-X (count 0), so nothing else can be set.
            return Err(invalid(format!("interrupt index {index} has no vectors")));
        }
        if start != 0 || count > 1 {
            return Err(invalid(format!(
                "INTx has one vector, got start {start} count {count}"
            )));
        }
        let action = flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
        let eventfd = flags & VFIO_IRQ_SET_DATA_EVENTFD != 0;
        let mut fds = fds.into_iter();
        debug!(flags, count, "SET_IRQS on INTx");
        match action {
            VFIO_IRQ_SET_ACTION_TRIGGER if eventfd => self.intx.set_trigger(fds.next()),
            VFIO_IRQ_SET_ACTION_TRIGGER if count == 0 => self.intx.set_trigger(None),
            VFIO_IRQ_SET_ACTION_TRIGGER if flags & VFIO_IRQ_SET_DATA_NONE != 0 => self.intx.fire(),
            VFIO_IRQ_SET_ACTION_MASK => self.intx.mask(),
            VFIO_IRQ_SET_ACTION_UNMASK if eventfd => self.intx.set_resample(fds.next())?,
            VFIO_IRQ_SET_ACTION_UNMASK => self.intx.unmask(),
            _ => return Err(invalid(format!("unsupported SET_IRQS flags {flags:#x}"))),
        }
        Ok(())
    }
}

/// Settings of a device server.
#[derive(Clone, Debug)]
pub struct DeviceServerConfig {
    /// Where to listen.
    pub socket: PathBuf,
    /// BAR sizes.
    pub qxl: QxlConfig,
    /// How interrupts reach the guest.
    pub irq_mode: IrqMode,
    /// Record every ring command and the guest memory it used into this directory
    /// (`saffron_worker::record`).
    pub record_commands: Option<PathBuf>,
}

/// A running vfio-user server for one QXL device.
pub struct DeviceServer {
    device: SharedDevice,
    worker: WorkerControl,
    intx: Arc<Intx>,
    stats: Arc<FrontendStats>,
    socket: PathBuf,
    thread: Option<thread::JoinHandle<Result<(), vfio_user::Error>>>,
}

impl std::fmt::Debug for DeviceServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceServer")
            .field("socket", &self.socket)
            .finish_non_exhaustive()
    }
}

/// Whether some process has a listening Unix socket bound at `path`. Asked of
/// `/proc/net/unix` rather than by connecting: a vfio-user server takes its first connection
/// as its one client, so a probe would consume the other process's server.
fn socket_is_listening(path: &Path) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let canonical = std::fs::canonicalize(path).ok();
    table.lines().skip(1).any(|line| {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // Num RefCount Protocol Flags Type St Inode Path; St 01 = listening.
        cols.len() >= 8
            && cols[5] == "01"
            && (Path::new(cols[7]) == path || canonical.as_deref() == Some(Path::new(cols[7])))
    })
}

/// Removes a stale socket file left by a dead process; refuses a live one or a non-socket.
fn claim_socket_path(path: &Path) -> Result<(), FrontendError> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(FrontendError::NotASocket(path.to_path_buf()));
    }
    if socket_is_listening(path) {
        return Err(FrontendError::SocketInUse(path.to_path_buf()));
    }
    warn!("removing stale socket {}", path.display());
    let _ = std::fs::remove_file(path);
    Ok(())
}

fn region(index: u32, size: u64, flags: u32, mmap: Option<&File>) -> ServerRegion {
    let mut info = vfio_region_info {
        argsz: std::mem::size_of::<vfio_region_info>() as u32,
        index,
        size,
        flags,
        ..Default::default()
    };
    let mut sparse_areas = Vec::new();
    if mmap.is_some() {
        info.flags |= VFIO_REGION_INFO_FLAG_MMAP;
        // The client only maps a region that lists at least one sparse area.
        sparse_areas.push(SparseArea {
            area: vfio_region_sparse_mmap_area { offset: 0, size },
        });
    }
    ServerRegion {
        region_info: info,
        sparse_areas,
        mmap_fd: mmap.map(|f| f.as_raw_fd()),
    }
}

impl DeviceServer {
    /// Creates the device and its BAR memfds, binds the socket and serves the first client
    /// on a thread of its own. Returns once the socket accepts connections.
    pub fn start(cfg: &DeviceServerConfig) -> Result<Self, FrontendError> {
        claim_socket_path(&cfg.socket)?;
        let ram =
            memfd::create("saffron-qxl-ram", cfg.qxl.ram_size).map_err(FrontendError::Memfd)?;
        // One block of surface memory behind BAR1 and BAR4.
        let surface_size = cfg.qxl.vram_size.max(cfg.qxl.vram64_size);
        let vram = memfd::create("saffron-qxl-vram", surface_size).map_err(FrontendError::Memfd)?;
        let clone = |f: &File| f.try_clone().map_err(FrontendError::Memfd);
        let memory = DeviceMemory::from_files(
            FileOffset::new(clone(&ram)?, 0),
            cfg.qxl.ram_size,
            FileOffset::new(clone(&vram)?, 0),
            cfg.qxl.vram_size,
            cfg.qxl.vram64_size,
        )?;
        let intx = Intx::new(cfg.irq_mode);
        let mut device = QxlDevice::new(cfg.qxl, memory, Box::new(IntxLine(Arc::clone(&intx))))?;
        // The ROM BAR is shared too: the guest's driver reads it for every drawing.
        let rom_size = device.bar_size(2);
        let rom = memfd::create("saffron-qxl-rom", rom_size).map_err(FrontendError::Memfd)?;
        device.share_rom(FileOffset::new(clone(&rom)?, 0))?;
        let recorder = cfg
            .record_commands
            .as_deref()
            .map(|dir| {
                saffron_worker::record::Recorder::create(dir).map_err(|source| {
                    FrontendError::Record {
                        path: dir.to_path_buf(),
                        source,
                    }
                })
            })
            .transpose()?;
        let (dispatcher, worker) =
            saffron_worker::red::spawn_recording(device.interface(), recorder)
                .map_err(FrontendError::Thread)?;
        device.attach_worker(Box::new(dispatcher));
        let rw = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
        let mut regions = Vec::new();
        for index in 0..VFIO_PCI_NUM_REGIONS {
            let r = match index {
                0 => region(index, cfg.qxl.ram_size, rw, Some(&ram)),
                1 => region(index, cfg.qxl.vram_size, rw, Some(&vram)),
                2 => region(index, rom_size, rw, Some(&rom)),
                3 => region(index, device.bar_size(index as usize), rw, None),
                4 if cfg.qxl.vram64_size != 0 => {
                    region(index, cfg.qxl.vram64_size, rw, Some(&vram))
                }
                VFIO_PCI_CONFIG_REGION_INDEX => region(
                    index,
                    saffron_device::pci::CONFIG_SPACE_SIZE as u64,
                    rw,
                    None,
                ),
                _ => region(index, 0, 0, None),
            };
            regions.push(r);
        }
        let irqs = (0..VFIO_PCI_NUM_IRQS)
            .map(|index| IrqInfo {
                index,
                flags: VFIO_IRQ_INFO_EVENTFD
                    | if index == VFIO_PCI_INTX_IRQ_INDEX {
                        VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED
                    } else {
                        0
                    },
                count: u32::from(matches!(
                    index,
                    VFIO_PCI_INTX_IRQ_INDEX | VFIO_PCI_ERR_IRQ_INDEX | VFIO_PCI_REQ_IRQ_INDEX
                )),
            })
            .collect();
        let server = Server::new(&cfg.socket, true, irqs, regions).map_err(|source| {
            FrontendError::Server {
                path: cfg.socket.clone(),
                source,
            }
        })?;
        let device = Arc::new(Mutex::new(device));
        let stats = Arc::new(FrontendStats::default());
        let mut backend = Backend {
            device: Arc::clone(&device),
            intx: Arc::clone(&intx),
            stats: Arc::clone(&stats),
        };
        let socket = cfg.socket.clone();
        let thread = thread::Builder::new()
            .name("saffron-vfio-user".into())
            .spawn(move || {
                // The memfds must stay open while the server hands their numbers to clients.
                let _keep: [OwnedFd; 3] = [ram.into(), vram.into(), rom.into()];
                let result = server.run(&mut backend);
                match &result {
                    Ok(()) => info!("vfio-user client disconnected"),
                    Err(e) => warn!("vfio-user server stopped: {e}"),
                }
                result
            })
            .map_err(FrontendError::Thread)?;
        info!(socket = %socket.display(), irq_mode = ?cfg.irq_mode, "vfio-user device server listening");
        Ok(DeviceServer {
            device,
            worker,
            intx,
            stats,
            socket,
            thread: Some(thread),
        })
    }

    /// The device, for the control socket and tests.
    pub fn device(&self) -> &SharedDevice {
        &self.device
    }

    /// The red worker (screendumps, counters).
    pub fn worker(&self) -> &WorkerControl {
        &self.worker
    }

    /// The INTx line.
    pub fn intx(&self) -> &Arc<Intx> {
        &self.intx
    }

    /// Front-end counters.
    pub fn stats(&self) -> &Arc<FrontendStats> {
        &self.stats
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Whether the client has gone (or the server failed).
    pub fn finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }
}

impl Drop for DeviceServer {
    fn drop(&mut self) {
        self.worker.stop();
        // The server thread may still be waiting in accept(); it owns the listener and removes
        // the socket when it returns. Remove it here too, so no stale path is left behind.
        if self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}
