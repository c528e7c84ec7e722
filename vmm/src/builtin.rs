//! `saffron run --vmm builtin`: a minimal KVM VMM with the QXL device in process.
//!
//! One vCPU entered in 64-bit mode at a flat binary (`saffron_firmware::entry`), RAM with the
//! legacy holes, a PCI host bridge on 0xcf8/0xcfc with the QXL device in slot 1 and its BARs
//! assigned; BAR0 and BAR1 are KVM memory slots over the same memfds the device reads, so
//! the guest's drawing costs no exit. The device is reached through the bus traits
//! (`saffron_device::bus`) with its legacy VGA ranges, which is what lets the BIOS-less guest
//! draw VGA text. COM1 is a vm-superio 8250; INTx goes through KVM's in-kernel irqchip with an
//! irqfd and its resample eventfd (the same [`Intx`] the vfio-user front end drives). Spice,
//! the control socket and screendump work as under QEMU. A write to [`POWER_OFF_PORT`] ends
//! the guest.
//!
//! A guest cannot crash this process: every exit is decoded into a checked device access, and
//! a vCPU that fails (triple fault, bad entry) ends the run with an error.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvm_bindings::{
    KVM_MAX_CPUID_ENTRIES, KVM_MEM_LOG_DIRTY_PAGES, kvm_regs, kvm_segment,
    kvm_userspace_memory_region,
};
use kvm_ioctls::{Kvm, VcpuExit, VcpuFd, VmFd};
use saffron_device::bus::{MmioAddress, MutDeviceMmio, MutDevicePio, PioAddress};
use saffron_device::qxl::bar;
use saffron_device::{DeviceMemory, QxlConfig, QxlDevice};
use saffron_firmware::entry::{self, EntryState};
use saffron_firmware::layout::{self, BarRequest};
use saffron_firmware::pci::{PciFunction, PciHostBridge};
use saffron_vga::RenderOptions;
use saffron_worker::red::WorkerControl;
use thiserror::Error;
use tracing::{debug, info, warn};
use vm_memory::{
    Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion,
    MmapRegion,
};
use vmm_sys_util::eventfd::EventFd;

use crate::intx::{Intx, IntxLine, IrqMode};
use crate::memfd;
use crate::vfio_user::{SharedDevice, lock};

/// A write of any value here powers the guest off (QEMU's q35 ACPI PM1a control port, which
/// guests of QEMU already use to power off).
pub const POWER_OFF_PORT: u16 = 0x604;
/// COM1.
const COM1: std::ops::Range<u16> = 0x3f8..0x400;
/// The PCI slot of the QXL device.
pub const QXL_SLOT: u8 = 1;
/// The GSI its INTx is routed to (PCI interrupt line register).
pub const QXL_GSI: u32 = 11;
/// QEMU refreshes a VGA display every 30 ms and blinks the text cursor every 266 ms.
const VGA_REFRESH: Duration = Duration::from_millis(30);
const CURSOR_BLINK: Duration = Duration::from_millis(266);
/// Where the TSS goes (KVM on Intel needs three pages of guest-physical space for it).
const TSS_ADDR: usize = 0xfffb_d000;

/// Why the built-in VMM could not run.
#[derive(Debug, Error)]
pub enum BuiltinError {
    /// No usable /dev/kvm.
    #[error("cannot open /dev/kvm ({0}): the built-in VMM needs KVM")]
    NoKvm(#[source] kvm_ioctls::Error),
    /// A KVM ioctl failed.
    #[error("KVM {what}: {source}")]
    Kvm {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    /// The guest program could not be read or does not fit.
    #[error("guest program {path}: {what}")]
    Program { path: PathBuf, what: String },
    /// Layout problems (RAM size, BARs).
    #[error(transparent)]
    Layout(#[from] saffron_firmware::layout::LayoutError),
    /// Guest memory could not be set up.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The device could not be built.
    #[error("QXL device: {0}")]
    Device(#[from] saffron_device::QxlError),
    /// Host resources (memfds, eventfds, threads).
    #[error("{0}: {1}")]
    Io(&'static str, #[source] std::io::Error),
    /// The vCPU stopped on something the guest did.
    #[error("the guest stopped: {0}")]
    Guest(String),
}

fn kvm_err(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> BuiltinError {
    move |source| BuiltinError::Kvm { what, source }
}

/// What to boot.
#[derive(Clone, Debug)]
pub struct BuiltinOptions {
    /// A flat 64-bit binary, loaded and entered at `saffron_firmware::entry::LOAD_ADDR`.
    pub program: PathBuf,
    /// Guest RAM in bytes.
    pub memory: u64,
    /// BAR sizes.
    pub qxl: QxlConfig,
    /// Where COM1's output goes (`None`: our stdout).
    pub serial: Option<PathBuf>,
}

/// The QXL device as the host bridge reaches it.
struct QxlFunction(SharedDevice);

impl PciFunction for QxlFunction {
    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        lock(&self.0).config_read(offset, data);
    }
    fn config_write(&mut self, offset: u64, data: &[u8]) {
        lock(&self.0).config_write(offset, data);
    }
}

/// A COM1 interrupt that goes nowhere: the guest polls the line status register.
struct NoInterrupt;

impl vm_superio::Trigger for NoInterrupt {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        Ok(())
    }
}

type Serial = vm_superio::Serial<NoInterrupt, vm_superio::serial::NoEvents, Box<dyn Write + Send>>;

/// A running built-in VM.
pub struct BuiltinVm {
    device: SharedDevice,
    worker: WorkerControl,
    intx: Arc<Intx>,
    /// Set when the vCPU thread ended, with how.
    done: Arc<Mutex<Option<Result<(), String>>>>,
    stop: Arc<AtomicBool>,
    started: Instant,
    _mappings: Vec<MmapRegion>,
}

impl BuiltinVm {
    /// Builds the VM and starts its vCPU and display-refresh threads.
    pub fn launch(opts: &BuiltinOptions) -> Result<BuiltinVm, BuiltinError> {
        let started = Instant::now();
        let program = std::fs::read(&opts.program).map_err(|e| BuiltinError::Program {
            path: opts.program.clone(),
            what: e.to_string(),
        })?;
        let kvm = Kvm::new().map_err(BuiltinError::NoKvm)?;
        let vm = Arc::new(kvm.create_vm().map_err(kvm_err("create VM"))?);
        vm.set_tss_address(TSS_ADDR).map_err(kvm_err("set TSS"))?;
        vm.create_irq_chip().map_err(kvm_err("create irqchip"))?;

        // Guest RAM.
        let ranges: Vec<(GuestAddress, usize)> = layout::ram_ranges(opts.memory)?
            .into_iter()
            .map(|(start, size)| (GuestAddress(start), size as usize))
            .collect();
        let ram = GuestMemoryMmap::<()>::from_ranges(&ranges)
            .map_err(|e| BuiltinError::Memory(e.to_string()))?;
        let mut slot = 0u32;
        for region in ram.iter() {
            // SAFETY: the region is a live mapping owned by `ram`, which the vCPU thread keeps
            // alive as long as the VM runs; its host address and size describe exactly it.
            unsafe {
                add_slot(
                    &vm,
                    slot,
                    region.start_addr().0,
                    region.len() as usize,
                    region.as_ptr() as u64,
                    0,
                )?;
            }
            slot += 1;
        }
        let end = ram_end(&ranges);
        let load_end = entry::LOAD_ADDR + program.len() as u64;
        if load_end > end {
            return Err(BuiltinError::Program {
                path: opts.program.clone(),
                what: format!("{} bytes do not fit in guest RAM", program.len()),
            });
        }
        ram.write_slice(&program, GuestAddress(entry::LOAD_ADDR))
            .map_err(|e| BuiltinError::Memory(e.to_string()))?;
        entry::write_tables(&ram).map_err(|e| BuiltinError::Memory(e.to_string()))?;

        // The device over memfds, which we also map for KVM.
        let cfg = opts.qxl;
        let ram_fd = memfd::create("saffron-qxl-ram", cfg.ram_size)
            .map_err(|e| BuiltinError::Io("QXL RAM memfd", e))?;
        let surface_size = cfg.vram_size.max(cfg.vram64_size);
        let vram_fd = memfd::create("saffron-qxl-vram", surface_size)
            .map_err(|e| BuiltinError::Io("QXL VRAM memfd", e))?;
        let clone = |f: &File| f.try_clone().map_err(|e| BuiltinError::Io("memfd", e));
        let memory = DeviceMemory::from_files(
            FileOffset::new(clone(&ram_fd)?, 0),
            cfg.ram_size,
            FileOffset::new(clone(&vram_fd)?, 0),
            cfg.vram_size,
            cfg.vram64_size,
        )
        .map_err(|e| BuiltinError::Memory(e.to_string()))?;
        let intx = Intx::new(IrqMode::Intx);
        let mut dev = QxlDevice::new(cfg, memory, Box::new(IntxLine(Arc::clone(&intx))))?;
        dev.enable_vga()?;
        let (dispatcher, worker) = saffron_worker::red::spawn(dev.interface())
            .map_err(|e| BuiltinError::Io("worker thread", e))?;
        dev.attach_worker(Box::new(dispatcher));

        // Firmware: BARs, command register, interrupt line.
        let mut requests = vec![
            BarRequest {
                index: bar::RAM,
                size: cfg.ram_size,
                io: false,
            },
            BarRequest {
                index: bar::VRAM,
                size: cfg.vram_size,
                io: false,
            },
            BarRequest {
                index: bar::ROM,
                size: dev.bar_size(bar::ROM),
                io: false,
            },
            BarRequest {
                index: bar::IO,
                size: dev.bar_size(bar::IO),
                io: true,
            },
        ];
        if cfg.vram64_size != 0 {
            requests.push(BarRequest {
                index: bar::VRAM64,
                size: cfg.vram64_size,
                io: false,
            });
        }
        let placed = layout::assign_bars(&requests)?;
        for (index, addr) in &placed {
            let reg = 0x10 + 4 * *index as u64;
            if *index == bar::VRAM64 {
                dev.config_write(reg, &addr.to_le_bytes());
            } else {
                // Memory BARs 0-2 are below 4 GiB and I/O BARs below 64 KiB.
                dev.config_write(reg, &(*addr as u32).to_le_bytes());
            }
        }
        dev.config_write(0x3c, &[QXL_GSI as u8, 1]);
        dev.config_write(0x04, &0x0007u16.to_le_bytes());
        let mut mappings = Vec::new();
        // BAR0's slot and size when KVM keeps a dirty log of it (the VBE framebuffer).
        let mut lfb_log = None;
        for (index, file, size) in [
            (bar::RAM, &ram_fd, cfg.ram_size),
            (bar::VRAM, &vram_fd, cfg.vram_size),
        ] {
            let Some(addr) = dev.pci().bar_address(index) else {
                continue;
            };
            let map = MmapRegion::<()>::from_file(FileOffset::new(clone(file)?, 0), size as usize)
                .map_err(|e| BuiltinError::Memory(e.to_string()))?;
            let host = map.as_ptr() as u64;
            // A dirty log of BAR0 tells the VGA refresh whether a VBE framebuffer changed
            // (guest writes to it are plain memory writes nobody traps). Without one, every
            // refresh looks at the framebuffer.
            let log = index == bar::RAM;
            let flags = if log { KVM_MEM_LOG_DIRTY_PAGES } else { 0 };
            // SAFETY: `map` is a live shared mapping of `size` bytes kept in `mappings` for as
            // long as the VM exists; KVM maps exactly it at the BAR's address.
            match unsafe { add_slot(&vm, slot, addr, size as usize, host, flags) } {
                Ok(()) if log => lfb_log = Some((slot, size as usize)),
                Ok(()) => {}
                Err(e) if log => {
                    warn!("no dirty log of BAR0 ({e}): the VGA refresh reads it every tick");
                    // SAFETY: as above.
                    unsafe { add_slot(&vm, slot, addr, size as usize, host, 0)? };
                }
                Err(e) => return Err(e),
            }
            info!(
                bar = index,
                addr = format_args!("{addr:#x}"),
                size,
                "BAR mapped"
            );
            slot += 1;
            mappings.push(map);
        }

        // INTx through the in-kernel irqchip: irqfd with a resample eventfd.
        let trigger =
            EventFd::new(libc::EFD_CLOEXEC).map_err(|e| BuiltinError::Io("eventfd", e))?;
        let resample =
            EventFd::new(libc::EFD_CLOEXEC).map_err(|e| BuiltinError::Io("eventfd", e))?;
        vm.register_irqfd_with_resample(&trigger, &resample, QXL_GSI)
            .map_err(kvm_err("register irqfd"))?;
        intx.set_trigger(Some(eventfd_file(&trigger)?));
        intx.set_resample(Some(eventfd_file(&resample)?))
            .map_err(|e| BuiltinError::Io("INTx resample", e))?;

        let device: SharedDevice = Arc::new(Mutex::new(dev));
        let mut bridge = PciHostBridge::default();
        bridge
            .plug(QXL_SLOT, Box::new(QxlFunction(Arc::clone(&device))))
            .map_err(|e| BuiltinError::Memory(e.to_string()))?;

        let out: Box<dyn Write + Send> = match &opts.serial {
            Some(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| BuiltinError::Io("serial file", e))?,
            ),
            None => Box::new(std::io::stdout()),
        };
        let serial = Serial::new(NoInterrupt, out);

        let mut vcpu = vm.create_vcpu(0).map_err(kvm_err("create vCPU"))?;
        let cpuid = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(kvm_err("get CPUID"))?;
        vcpu.set_cpuid2(&cpuid).map_err(kvm_err("set CPUID"))?;
        set_entry_state(&mut vcpu, &entry::entry_state(entry::LOAD_ADDR))?;

        let done = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let mut exits = Exits {
            device: Arc::clone(&device),
            bridge,
            serial,
        };
        let done2 = Arc::clone(&done);
        let stop2 = Arc::clone(&stop);
        let vm_keep = Arc::clone(&vm);
        std::thread::Builder::new()
            .name("saffron-vcpu0".into())
            .spawn(move || {
                // The VM and its RAM live as long as the vCPU runs.
                let _keep = (vm_keep, ram, trigger, resample);
                let result = exits.run(&mut vcpu, &stop2, started);
                match &result {
                    Ok(()) => info!("guest powered off"),
                    Err(e) => warn!("guest stopped: {e}"),
                }
                *done2.lock().unwrap_or_else(|e| e.into_inner()) = Some(result);
            })
            .map_err(|e| BuiltinError::Io("vCPU thread", e))?;

        let refresh_dev = Arc::clone(&device);
        let stop3 = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("saffron-vga".into())
            .spawn(move || {
                let t0 = Instant::now();
                while !stop3.load(Ordering::Acquire) {
                    let phase =
                        (t0.elapsed().as_millis() / CURSOR_BLINK.as_millis()).is_multiple_of(2);
                    let bar0_written = match lfb_log {
                        None => true,
                        // Reading the log also clears it: each tick sees the pages written since
                        // the one before.
                        Some((slot, size)) => match vm.get_dirty_log(slot, size) {
                            Ok(bitmap) => bitmap.iter().any(|w| *w != 0),
                            Err(e) => {
                                warn!("BAR0's dirty log failed ({e}): reading it every tick");
                                lfb_log = None;
                                true
                            }
                        },
                    };
                    lock(&refresh_dev).vga_refresh(
                        RenderOptions {
                            cursor_visible: phase,
                        },
                        bar0_written,
                    );
                    std::thread::sleep(VGA_REFRESH);
                }
            })
            .map_err(|e| BuiltinError::Io("VGA refresh thread", e))?;

        Ok(BuiltinVm {
            device,
            worker,
            intx,
            done,
            stop,
            started,
            _mappings: mappings,
        })
    }

    /// The device.
    pub fn device(&self) -> &SharedDevice {
        &self.device
    }

    /// The worker's control handle (screendump, display clients).
    pub fn worker(&self) -> &WorkerControl {
        &self.worker
    }

    /// The interrupt line.
    pub fn intx(&self) -> &Arc<Intx> {
        &self.intx
    }

    /// Time since launch.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// How the guest ended, once it has.
    pub fn finished(&self) -> Option<Result<(), String>> {
        self.done.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Stops the refresh thread and asks the vCPU to stop at its next exit.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }
}

impl Drop for BuiltinVm {
    fn drop(&mut self) {
        self.stop();
        self.worker.stop();
    }
}

/// The end of guest RAM (the last range's end).
fn ram_end(ranges: &[(GuestAddress, usize)]) -> u64 {
    ranges
        .last()
        .map_or(0, |(start, size)| start.0 + *size as u64)
}

/// # Safety
/// `host` must point to a mapping of at least `size` bytes that outlives the VM.
unsafe fn add_slot(
    vm: &VmFd,
    slot: u32,
    guest: u64,
    size: usize,
    host: u64,
    flags: u32,
) -> Result<(), BuiltinError> {
    let region = kvm_userspace_memory_region {
        slot,
        guest_phys_addr: guest,
        memory_size: size as u64,
        userspace_addr: host,
        flags,
    };
    // SAFETY: the caller guarantees the host range is a live mapping that outlives the VM.
    unsafe { vm.set_user_memory_region(region) }.map_err(kvm_err("set memory region"))
}

/// A `File` on a duplicate of `fd`'s descriptor (the [`Intx`] takes files).
fn eventfd_file(fd: &EventFd) -> Result<File, BuiltinError> {
    // SAFETY: dup of a descriptor we own; the result is checked before use.
    let dup = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) };
    if dup < 0 {
        return Err(BuiltinError::Io(
            "dup eventfd",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: `dup` is a fresh descriptor owned by nobody else.
    Ok(unsafe { File::from_raw_fd(dup) })
}

fn set_entry_state(vcpu: &mut VcpuFd, e: &EntryState) -> Result<(), BuiltinError> {
    let mut sregs = vcpu.get_sregs().map_err(kvm_err("get sregs"))?;
    let code = kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: e.code_selector,
        type_: 0xb,
        present: 1,
        dpl: 0,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    let data = kvm_segment {
        selector: e.data_selector,
        type_: 0x3,
        l: 0,
        db: 1,
        ..code
    };
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.gdt.base = e.gdt_base;
    sregs.gdt.limit = e.gdt_limit;
    sregs.cr0 = e.cr0;
    sregs.cr3 = e.cr3;
    sregs.cr4 = e.cr4;
    sregs.efer = e.efer;
    vcpu.set_sregs(&sregs).map_err(kvm_err("set sregs"))?;
    let regs = kvm_regs {
        rip: e.rip,
        rsp: e.rsp,
        rbp: e.rsp,
        rflags: 0x2,
        ..Default::default()
    };
    vcpu.set_regs(&regs).map_err(kvm_err("set regs"))
}

/// What the vCPU's exits reach.
struct Exits {
    device: SharedDevice,
    bridge: PciHostBridge,
    serial: Serial,
}

impl Exits {
    fn run(
        &mut self,
        vcpu: &mut VcpuFd,
        stop: &AtomicBool,
        started: Instant,
    ) -> Result<(), String> {
        let mut first_serial = true;
        loop {
            if stop.load(Ordering::Acquire) {
                return Ok(());
            }
            let exit = match vcpu.run() {
                Ok(exit) => exit,
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => continue,
                Err(e) => return Err(format!("KVM_RUN: {e}")),
            };
            match exit {
                VcpuExit::IoOut(port, data) => {
                    if port == POWER_OFF_PORT {
                        return Ok(());
                    }
                    if COM1.contains(&port) {
                        if first_serial {
                            first_serial = false;
                            info!(
                                after_ms = started.elapsed().as_millis() as u64,
                                "first serial output"
                            );
                        }
                        for b in data {
                            if let Err(e) = self.serial.write((port - COM1.start) as u8, *b) {
                                debug!("serial write: {e:?}");
                            }
                        }
                        let _ = self.serial.writer_mut().flush();
                    } else if PciHostBridge::claims(port) {
                        self.bridge.pio_write(port, data);
                    } else {
                        lock(&self.device).pio_write(PioAddress(port), 0, data);
                    }
                }
                VcpuExit::IoIn(port, data) => {
                    if COM1.contains(&port) {
                        let v = self.serial.read((port - COM1.start) as u8);
                        data.fill(v);
                    } else if PciHostBridge::claims(port) {
                        self.bridge.pio_read(port, data);
                    } else {
                        lock(&self.device).pio_read(PioAddress(port), 0, data);
                    }
                }
                VcpuExit::MmioRead(addr, data) => {
                    lock(&self.device).mmio_read(MmioAddress(addr), 0, data)
                }
                VcpuExit::MmioWrite(addr, data) => {
                    lock(&self.device).mmio_write(MmioAddress(addr), 0, data)
                }
                VcpuExit::Hlt => return Ok(()),
                VcpuExit::Shutdown => return Err("triple fault (KVM_EXIT_SHUTDOWN)".into()),
                VcpuExit::FailEntry(reason, _) => {
                    return Err(format!("VM entry failed (reason {reason:#x})"));
                }
                VcpuExit::InternalError => return Err("KVM internal error".into()),
                VcpuExit::Intr => {}
                other => debug!("unhandled exit {other:?}"),
            }
        }
    }
}
