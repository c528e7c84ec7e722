//! The device state the worker thread reaches too: the rings in the RAM header, the interrupt
//! line and the async-operation slot. It has its own small locks, never the device's, so a
//! synchronous port (which holds the device while it waits for the worker) cannot deadlock
//! with a worker that releases commands or raises interrupts meanwhile.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use saffron_ring::abi::{QXL_INTERRUPT_ERROR, QXL_INTERRUPT_IO_CMD, QXLCommand};
use saffron_ring::ring::{CommandRing, Idle, Push, ReleaseRing};
use saffron_rom::ram::RamHeader;
use saffron_seam::{QxlInterface, RingFault};
use tracing::{error, warn};
use vm_memory::{GuestAddress, GuestMemoryMmap};

use crate::irq::IrqLine;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data behind every lock: a panic elsewhere leaves it consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The interrupt output: the level computed from int_pending & int_mask, gated by the PCI
/// INTx disable bit.
pub(crate) struct Line {
    pub(crate) level: bool,
    pub(crate) intx_disabled: bool,
    pub(crate) sink: Box<dyn IrqLine>,
}

/// Counters updated from both threads.
#[derive(Debug, Default)]
pub struct SharedStats {
    /// Times the interrupt level went from low to high.
    pub irq_raised: AtomicU64,
    /// Commands popped from the command ring.
    pub commands: AtomicU64,
    /// Commands popped from the cursor ring.
    pub cursor_commands: AtomicU64,
    /// Commands handed back through the release ring.
    pub releases: AtomicU64,
    /// Async operations completed (one IO_CMD each).
    pub async_completions: AtomicU64,
    /// Guest bugs detected.
    pub guest_bugs: AtomicU64,
}

pub(crate) struct Shared {
    pub(crate) mem: GuestMemoryMmap,
    pub(crate) ram: RamHeader,
    cmd_ring: CommandRing,
    cursor_ring: CommandRing,
    release_ring: ReleaseRing,
    pub(crate) n_surfaces: u32,
    /// Heads honoured (`QxlConfig::max_heads`).
    pub(crate) max_heads: u32,
    pub(crate) line: Mutex<Line>,
    /// The port of the async operation in flight, if any (one at a time).
    pub(crate) async_op: Mutex<Option<u8>>,
    pub(crate) guest_bug: AtomicBool,
    pub(crate) last_bug: Mutex<String>,
    pub(crate) stats: SharedStats,
}

impl Shared {
    pub(crate) fn new(
        mem: GuestMemoryMmap,
        ram: RamHeader,
        n_surfaces: u32,
        max_heads: u32,
        sink: Box<dyn IrqLine>,
    ) -> Result<Self, saffron_rom::ram::RamError> {
        Ok(Shared {
            cmd_ring: ram.command_ring()?,
            cursor_ring: ram.cursor_ring()?,
            release_ring: ram.release_ring()?,
            mem,
            ram,
            n_surfaces,
            max_heads,
            line: Mutex::new(Line {
                level: false,
                intx_disabled: false,
                sink,
            }),
            async_op: Mutex::new(None),
            guest_bug: AtomicBool::new(false),
            last_bug: Mutex::new(String::new()),
            stats: SharedStats::default(),
        })
    }

    /// Line = (int_pending & int_mask) != 0, read fresh from the RAM header, then driven.
    pub(crate) fn update_irq(&self) {
        let level = self.ram.irq_level(&self.mem).unwrap_or(false);
        let mut line = lock(&self.line);
        if level && !line.level {
            self.stats.irq_raised.fetch_add(1, Ordering::Relaxed);
        }
        line.level = level;
        line.sink.set_level(level && !line.intx_disabled);
    }

    /// ORs `bits` into int_pending and re-evaluates the line.
    pub(crate) fn raise(&self, bits: u32) {
        if let Err(e) = self.ram.raise(&self.mem, bits) {
            warn!("cannot raise interrupt bits {bits:#x}: {e}");
        }
        self.update_irq();
    }

    pub(crate) fn set_intx_disabled(&self, disabled: bool) {
        let mut line = lock(&self.line);
        line.intx_disabled = disabled;
        let level = line.level;
        line.sink.set_level(level && !disabled);
    }

    pub(crate) fn level(&self) -> bool {
        lock(&self.line).level
    }

    /// Enters the error state: logged, counted, ERROR raised; the device then ignores the
    /// guest until a reset.
    pub(crate) fn set_guest_bug(&self, what: &str) {
        error!(target: "saffron::guest_bug", "guest bug: {what}");
        self.stats.guest_bugs.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_bug) = what.to_string();
        self.guest_bug.store(true, Ordering::Release);
        self.raise(QXL_INTERRUPT_ERROR);
    }

    pub(crate) fn in_guest_bug(&self) -> bool {
        self.guest_bug.load(Ordering::Acquire)
    }

    fn pop(&self, ring: &CommandRing) -> Result<Option<QXLCommand>, RingFault> {
        if self.in_guest_bug() {
            return Ok(None);
        }
        match ring.pop(&self.mem) {
            Ok(Some(popped)) => {
                if let Some(bits) = popped.raise {
                    self.raise(bits);
                }
                Ok(Some(popped.command))
            }
            Ok(None) => Ok(None),
            Err(e) => {
                let msg = format!("ring at {:#x}: {e}", ring.base().0);
                self.set_guest_bug(&msg);
                Err(RingFault(msg))
            }
        }
    }

    fn idle(&self, ring: &CommandRing) -> Result<bool, RingFault> {
        if self.in_guest_bug() {
            return Ok(false);
        }
        match ring.prepare_to_idle(&self.mem) {
            Ok(Idle::Armed) => Ok(false),
            Ok(Idle::MoreWork) => Ok(true),
            Err(e) => {
                let msg = format!("ring at {:#x}: {e}", ring.base().0);
                self.set_guest_bug(&msg);
                Err(RingFault(msg))
            }
        }
    }

    fn push_releases(&self) {
        match self.release_ring.push(&self.mem) {
            Ok(Push::Pushed { raise: Some(bits) }) => self.raise(bits),
            Ok(_) => {}
            Err(e) => self.set_guest_bug(&format!("release ring: {e}")),
        }
    }
}

/// The worker's handle on the device.
#[derive(Clone)]
pub struct DeviceInterface(pub(crate) std::sync::Arc<Shared>);

impl std::fmt::Debug for DeviceInterface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeviceInterface")
    }
}

impl QxlInterface for DeviceInterface {
    fn memory(&self) -> &GuestMemoryMmap {
        &self.0.mem
    }

    fn n_surfaces(&self) -> u32 {
        self.0.n_surfaces
    }

    fn max_heads(&self) -> u32 {
        self.0.max_heads
    }

    fn get_command(&self) -> Result<Option<QXLCommand>, RingFault> {
        let c = self.0.pop(&self.0.cmd_ring)?;
        if c.is_some() {
            self.0.stats.commands.fetch_add(1, Ordering::Relaxed);
        }
        Ok(c)
    }

    fn get_cursor_command(&self) -> Result<Option<QXLCommand>, RingFault> {
        let c = self.0.pop(&self.0.cursor_ring)?;
        if c.is_some() {
            self.0.stats.cursor_commands.fetch_add(1, Ordering::Relaxed);
        }
        Ok(c)
    }

    fn req_cmd_notification(&self) -> Result<bool, RingFault> {
        self.0.idle(&self.0.cmd_ring)
    }

    fn req_cursor_notification(&self) -> Result<bool, RingFault> {
        self.0.idle(&self.0.cursor_ring)
    }

    fn release_resource(&self, info: GuestAddress, id: u64) {
        let s = &self.0;
        // A full batch ring keeps growing the open batch: the guest still frees it all once
        // it is pushed, so nothing is lost by waiting.
        if let Err(e) = s.release_ring.release(&s.mem, info, id) {
            s.set_guest_bug(&format!("cannot release command {id:#x}: {e}"));
            return;
        }
        s.stats.releases.fetch_add(1, Ordering::Relaxed);
    }

    fn flush_resources(&self) {
        self.0.push_releases();
    }

    fn async_complete(&self, _cookie: u64) {
        let s = &self.0;
        *lock(&s.async_op) = None;
        s.stats.async_completions.fetch_add(1, Ordering::Relaxed);
        s.raise(QXL_INTERRUPT_IO_CMD);
    }

    fn guest_bug(&self, what: &str) {
        self.0.set_guest_bug(what);
    }
}
