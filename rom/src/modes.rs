//! The compat-mode table that follows QXLRom.
//!
//! Only qxl-1 (compat) drivers and QXL_IO_SET_MODE use it; current Linux ignores it. We offer
//! the same resolutions as QEMU so compat guests see the same choices.

use saffron_ring::abi::QXLMode;

/// Resolutions offered, smallest first. Each yields four modes: {16, 32} bpp × orientation
/// {0, 1}.
const RESOLUTIONS: [(u32, u32); 37] = [
    (640, 480),
    (800, 480),
    (800, 600),
    (832, 624),
    (960, 640),
    (1024, 600),
    (1024, 768),
    (1152, 864),
    (1152, 870),
    (1280, 720),
    (1280, 760),
    (1280, 768),
    (1280, 800),
    (1280, 960),
    (1280, 1024),
    (1360, 768),
    (1366, 768),
    (1400, 1050),
    (1440, 900),
    (1600, 900),
    (1600, 1200),
    (1680, 1050),
    (1920, 1080),
    (1920, 1200),
    (1920, 1440),
    (2000, 2000),
    (2048, 1536),
    (2048, 2048),
    (2560, 1440),
    (2560, 1600),
    (2560, 2048),
    (2800, 2100),
    (3200, 2400),
    (3840, 2160),
    (4096, 2160),
    (7680, 4320),
    (8192, 4320),
];

/// Modes in the unfiltered table.
pub const MODE_COUNT: usize = RESOLUTIONS.len() * 4;

/// Physical size of a pixel, in units of 10^-7 mm: a 1280x1024 screen is then 14.8" × 11.9",
/// the value QEMU reports.
const PIXEL_SIZE_E7_MM: u64 = 2_936_875;

/// Millimetres covered by `pixels` pixels.
fn millimetres(pixels: u32) -> u32 {
    // 8192 × 2 936 875 fits easily in u64, and the result in u32.
    u32::try_from(u64::from(pixels) * PIXEL_SIZE_E7_MM / 10_000_000).unwrap_or(u32::MAX)
}

/// Every mode of the unfiltered table, in table order (the `id` of each mode is its index).
pub fn all_modes() -> impl Iterator<Item = QXLMode> {
    RESOLUTIONS
        .iter()
        .flat_map(|&(x, y)| {
            [(16, 0), (32, 0), (16, 1), (32, 1)].map(|(bits, orientation)| QXLMode {
                id: 0,
                x_res: x,
                y_res: y,
                bits,
                stride: x * bits / 8,
                x_mili: millimetres(x),
                y_mili: millimetres(y),
                orientation,
            })
        })
        .zip(0u32..)
        .map(|(mode, id)| QXLMode { id, ..mode })
}

/// The modes whose framebuffer (`y_res × stride`) fits in `surface0_area_size` bytes.
///
/// Each mode keeps the id of its place in the unfiltered table, while QXL_IO_SET_MODE indexes
/// this filtered list; both as QEMU does.
pub fn mode_table(surface0_area_size: u32) -> Vec<QXLMode> {
    all_modes()
        .filter(|m| u64::from(m.y_res) * u64::from(m.stride) <= u64::from(surface0_area_size))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unfiltered_table_has_four_modes_per_resolution() {
        let modes: Vec<_> = all_modes().collect();
        assert_eq!(modes.len(), MODE_COUNT);
        assert_eq!(MODE_COUNT, 148);
        let m = modes[5];
        assert_eq!(
            (m.id, m.x_res, m.y_res, m.bits, m.stride, m.orientation),
            (5, 800, 480, 32, 3200, 0)
        );
        let m = modes[0];
        assert_eq!((m.x_mili, m.y_mili), (187, 140));
        let m = modes[14 * 4];
        assert_eq!(
            (m.x_res, m.y_res, m.x_mili, m.y_mili),
            (1280, 1024, 375, 300)
        );
    }

    #[test]
    fn filter_keeps_modes_that_fit() {
        // 16 MiB: 2048x2048x4 fits exactly, 2560x2048x4 does not.
        let modes = mode_table(16 << 20);
        assert!(modes.iter().all(|m| m.y_res * m.stride <= 16 << 20));
        let largest = modes
            .iter()
            .filter(|m| m.bits == 32)
            .map(|m| m.x_res * m.y_res)
            .max();
        assert_eq!(largest, Some(2048 * 2048));
        assert!(
            modes
                .iter()
                .any(|m| m.x_res == 2560 && m.y_res == 2048 && m.bits == 16)
        );
        assert!(mode_table(0).is_empty());
    }
}
