//! The guest-physical layout of the built-in VMM and BAR assignment.
//!
//! RAM starts at 0 with a hole for the legacy VGA window and the BIOS area (0xa0000-0xfffff,
//! so that window accesses exit to the VMM), and ends below the PCI hole at [`PCI_MMIO_START`].
//! BARs are assigned once, as firmware does before the guest runs: largest first, each
//! naturally aligned, memory BARs in the PCI hole and I/O BARs from [`PCI_IO_START`].

/// End of low RAM: the legacy VGA window starts here.
pub const LOW_RAM_END: u64 = 0xa_0000;
/// Start of high RAM (after the VGA window and the BIOS area).
pub const HIGH_RAM_START: u64 = 0x10_0000;
/// Start of the 32-bit PCI memory hole.
pub const PCI_MMIO_START: u64 = 0xc000_0000;
/// End of the PCI memory hole (the IOAPIC and LAPIC live above).
pub const PCI_MMIO_END: u64 = 0xfec0_0000;
/// First port of the PCI I/O window.
pub const PCI_IO_START: u64 = 0xc000;
/// End of port space.
pub const PCI_IO_END: u64 = 0x1_0000;

/// Errors laying out the guest.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum LayoutError {
    /// RAM must leave room for the PCI hole (no RAM above 4 GiB here).
    #[error("{0:#x} bytes of RAM do not fit below the PCI hole at {PCI_MMIO_START:#x}")]
    TooMuchRam(u64),
    /// RAM must reach past the legacy hole for a program loaded at 1 MiB.
    #[error("{0:#x} bytes of RAM: at least 2 MiB are needed")]
    TooLittleRam(u64),
    /// BAR sizes are powers of two.
    #[error("BAR {index} size {size:#x} is not a power of two")]
    BadBarSize { index: usize, size: u64 },
    /// The BARs do not fit their window.
    #[error("BAR {index} of {size:#x} bytes does not fit the PCI {window} window")]
    NoRoom {
        index: usize,
        size: u64,
        window: &'static str,
    },
}

/// The guest RAM ranges `(start, size)` for `ram_size` bytes of RAM.
pub fn ram_ranges(ram_size: u64) -> Result<Vec<(u64, u64)>, LayoutError> {
    if ram_size > PCI_MMIO_START {
        return Err(LayoutError::TooMuchRam(ram_size));
    }
    if ram_size < 2 << 20 {
        return Err(LayoutError::TooLittleRam(ram_size));
    }
    Ok(vec![
        (0, LOW_RAM_END),
        (HIGH_RAM_START, ram_size - HIGH_RAM_START),
    ])
}

/// A BAR to place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BarRequest {
    /// The BAR number (only reported back).
    pub index: usize,
    /// Its size, a power of two.
    pub size: u64,
    /// An I/O BAR (else memory).
    pub io: bool,
}

/// Places `bars`: returns `(index, address)` in the order given.
pub fn assign_bars(bars: &[BarRequest]) -> Result<Vec<(usize, u64)>, LayoutError> {
    let mut order: Vec<&BarRequest> = bars.iter().collect();
    order.sort_by_key(|b| std::cmp::Reverse(b.size));
    let (mut next_mem, mut next_io) = (PCI_MMIO_START, PCI_IO_START);
    let mut placed = Vec::new();
    for bar in order {
        if !bar.size.is_power_of_two() {
            return Err(LayoutError::BadBarSize {
                index: bar.index,
                size: bar.size,
            });
        }
        let (next, end, window) = if bar.io {
            (&mut next_io, PCI_IO_END, "I/O")
        } else {
            (&mut next_mem, PCI_MMIO_END, "memory")
        };
        let no_room = LayoutError::NoRoom {
            index: bar.index,
            size: bar.size,
            window,
        };
        let addr = next
            .checked_next_multiple_of(bar.size)
            .ok_or(no_room.clone())?;
        let after = addr.checked_add(bar.size).ok_or(no_room.clone())?;
        if after > end {
            return Err(no_room);
        }
        *next = after;
        placed.push((bar.index, addr));
    }
    Ok(bars
        .iter()
        .filter_map(|b| placed.iter().find(|(i, _)| *i == b.index).copied())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_leaves_the_legacy_and_pci_holes() {
        assert_eq!(
            ram_ranges(64 << 20).unwrap(),
            vec![(0, 0xa0000), (0x100000, (64 << 20) - 0x100000)]
        );
        assert!(ram_ranges(4 << 30).is_err());
        assert!(ram_ranges(1 << 20).is_err());
    }

    #[test]
    fn bars_are_aligned_and_disjoint() {
        let bars = [
            BarRequest {
                index: 0,
                size: 64 << 20,
                io: false,
            },
            BarRequest {
                index: 1,
                size: 64 << 20,
                io: false,
            },
            BarRequest {
                index: 2,
                size: 8192,
                io: false,
            },
            BarRequest {
                index: 3,
                size: 32,
                io: true,
            },
        ];
        let placed = assign_bars(&bars).unwrap();
        assert_eq!(
            placed,
            vec![
                (0, 0xc000_0000),
                (1, 0xc400_0000),
                (2, 0xc800_0000),
                (3, 0xc000)
            ]
        );
        let huge = [BarRequest {
            index: 0,
            size: 2 << 30,
            io: false,
        }];
        assert!(matches!(
            assign_bars(&huge),
            Err(LayoutError::NoRoom { .. })
        ));
        let odd = [BarRequest {
            index: 4,
            size: 3000,
            io: false,
        }];
        assert!(matches!(
            assign_bars(&odd),
            Err(LayoutError::BadBarSize { .. })
        ));
    }
}
