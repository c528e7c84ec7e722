//! The control-socket commands shared by `saffron run` and `saffron device`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use serde_json::{Value, json};

use crate::control::ControlHandler;
use crate::intx::Intx;
use crate::vfio_user::{DeviceServer, FrontendStats, SharedDevice, lock};

/// What the control socket can see and do.
pub struct Api {
    mode: &'static str,
    device: SharedDevice,
    intx: Arc<Intx>,
    frontend: Arc<FrontendStats>,
    quit: Arc<AtomicBool>,
    vmm_pid: AtomicU32,
}

impl Api {
    /// An API over `server`'s device; `mode` is "run" or "device"; `quit` is set by the
    /// `quit` command and watched by the main loop.
    pub fn new(mode: &'static str, server: &DeviceServer, quit: Arc<AtomicBool>) -> Self {
        Api {
            mode,
            device: Arc::clone(server.device()),
            intx: Arc::clone(server.intx()),
            frontend: Arc::clone(server.stats()),
            quit,
            vmm_pid: AtomicU32::new(0),
        }
    }

    /// Records the pid of the VMM we started (shown by `status`).
    pub fn set_vmm_pid(&self, pid: u32) {
        self.vmm_pid.store(pid, Ordering::Relaxed);
    }

    fn status(&self) -> Value {
        let dev = lock(&self.device);
        let pci = dev.pci();
        let bars: Vec<Value> = (0..4)
            .map(|i| {
                json!({
                    "index": i,
                    "size": dev.bar_size(i),
                    "address": pci.bar_address(i),
                })
            })
            .collect();
        let pid = self.vmm_pid.load(Ordering::Relaxed);
        json!({
            "mode": self.mode,
            "state": "running",
            "vmm_pid": (pid != 0).then_some(pid),
            "device": {
                "vendor_id": saffron_device::qxl::QXL_VENDOR_ID,
                "device_id": saffron_device::qxl::QXL_DEVICE_ID,
                "revision": saffron_device::qxl::QXL_REVISION,
                "bars": bars,
                "irq_mode": format!("{:?}", self.intx.mode()).to_lowercase(),
                "irq_level": dev.irq_level(),
            },
        })
    }

    fn stats(&self) -> Value {
        let dev = lock(&self.device);
        let s = dev.stats();
        let regions: Vec<u64> = self
            .frontend
            .region_messages
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        json!({
            "io_writes": s.io_writes.to_vec(),
            "io_ignored": s.io_ignored,
            "bar_accesses": s.bar_accesses.to_vec(),
            "irq_raised": s.irq_raised,
            "intx_signals": self.intx.signals(),
            "resets": s.resets,
            "region_messages": regions,
            "dma_maps": self.frontend.dma_maps.load(Ordering::Relaxed),
            "last_guest_log": s.last_log,
        })
    }
}

impl ControlHandler for Api {
    fn handle(&self, cmd: &str, _request: &Value) -> Result<Value, String> {
        match cmd {
            "status" => Ok(self.status()),
            "stats" => Ok(self.stats()),
            "quit" => {
                self.quit.store(true, Ordering::Release);
                Ok(json!({}))
            }
            other => Err(format!("unknown command '{other}' (status, stats, quit)")),
        }
    }
}
