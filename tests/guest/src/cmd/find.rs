//! `find`: where the device is and how the kernel laid out its BARs.

use crate::args::Options;
use crate::error::Result;
use crate::pci::cfg;

/// Number of BAR lines at the top of the sysfs `resource` file.
const NUM_BARS: usize = 6;
/// Line of the `resource` file that describes the expansion ROM.
const EXPANSION_ROM_LINE: usize = 6;

/// Prints `SAFFRON-PCI` and one `SAFFRON-BAR` per present BAR; an expansion ROM is reported as
/// `SAFFRON-BAR index=6 kind=rom`, so a host check "no BAR index above 3" also catches one.
pub fn run(mut opts: Options) -> Result<()> {
    let slot = opts.take("slot");
    opts.finish()?;
    let dev = super::find_device(slot)?;
    let config = dev.config()?;
    let vendor = config.read_u16(0)?;
    let device = config.read_u16(2)?;
    let command = config.read_u16(cfg::COMMAND)?;
    let status = config.read_u16(cfg::STATUS)?;
    let revision = config.read_u8(cfg::REVISION)?;
    let class = config.read_class()?;
    let subsys_vendor = config.read_u16(cfg::SUBSYS_VENDOR)?;
    let subsys_device = config.read_u16(cfg::SUBSYS_DEVICE)?;
    let pin = config.read_u8(cfg::INTERRUPT_PIN)?;
    let irq = dev.irq()?;
    // Which driver holds the device matters for every later step: the qxl DRM driver would
    // fight the probe over the device, and `irq` needs uio_pci_generic.
    let driver = dev.driver().unwrap_or_else(|| "none".to_string());
    println!(
        "SAFFRON-PCI slot={} vendor={vendor:#06x} device={device:#06x} class={class:#08x} \
         revision={revision:#04x} subsys_vendor={subsys_vendor:#06x} \
         subsys_device={subsys_device:#06x} irq={irq} pin={pin} command={command:#06x} \
         status={status:#06x} driver={driver}",
        dev.slot()
    );
    let resources = dev.resources()?;
    for (index, r) in resources.iter().take(NUM_BARS).enumerate() {
        if !r.is_present() {
            continue;
        }
        println!(
            "SAFFRON-BAR index={index} kind={} size={} prefetch={} start={:#x}",
            r.kind(),
            r.size(),
            u8::from(r.prefetchable()),
            r.start
        );
    }
    if let Some(rom) = resources.get(EXPANSION_ROM_LINE).filter(|r| r.is_present()) {
        println!(
            "SAFFRON-BAR index={EXPANSION_ROM_LINE} kind=rom size={} prefetch={} start={:#x}",
            rom.size(),
            u8::from(rom.prefetchable()),
            rom.start
        );
    }
    Ok(())
}
