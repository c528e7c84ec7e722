//! The cursor part of `kms --cursor-sync PREFIX`: sets a known 64x64 ARGB cursor image with a
//! hot spot through `DRM_IOCTL_MODE_CURSOR2` (as X servers and compositors without atomic do),
//! moves it twice and hides it, handing over to the host after each step so that a Spice
//! client can check what arrived.
//!
//! The qxl driver turns these into cursor-ring commands: SET (shape, position, visible), MOVE
//! and HIDE, with positions at the hot spot: the image's top-left corner plus the hot spot.
//! That is the position the Spice client must see, so each step prints it as `pos_x`/`pos_y`.

use crate::drm::{Card, DRM_MODE_CURSOR_BO, DRM_MODE_CURSOR_MOVE, DrmModeCursor2};
use crate::error::{Error, Result};
use crate::map::SharedMapping;

/// The cursor image side: the qxl driver sends 64x64 ALPHA shapes and copies exactly that
/// many pixels from the buffer.
pub const SIDE: u32 = 64;
/// The hot spot, deliberately off the corner and not symmetric.
pub const HOT: (i32, i32) = (5, 9);
/// Where the image's top-left corner goes: the set, then the two moves.
pub const POSITIONS: [(i32, i32); 3] = [(100, 200), (300, 150), (700, 500)];

/// The image: B, G, R, A bytes (ARGB8888 little endian), straight alpha. Colours and alpha
/// vary with x and y so that a swapped channel, a transposed or shifted row, or a dropped
/// alpha changes the digest; corners are fully transparent and the middle fully opaque.
pub fn image() -> Vec<u8> {
    let mut out = Vec::with_capacity((SIDE * SIDE * 4) as usize);
    for y in 0..SIDE {
        for x in 0..SIDE {
            let (dx, dy) = (x.abs_diff(SIDE / 2), y.abs_diff(SIDE / 2));
            let alpha = match dx.max(dy) {
                0..=15 => 255,
                16..=27 => 255 - (dx.max(dy) - 15) * 20,
                _ => 0,
            };
            out.extend([
                (x * 4) as u8,
                (y * 4) as u8,
                ((x * 7) ^ (y * 3)) as u8,
                alpha as u8,
            ]);
        }
    }
    out
}

/// The cursor buffer, destroyed when dropped (after the cursor is hidden, as errors allow).
struct CursorBuffer<'a> {
    card: &'a Card,
    handle: u32,
}

impl Drop for CursorBuffer<'_> {
    fn drop(&mut self) {
        let _ = self.card.destroy_dumb(self.handle);
    }
}

/// Runs the cursor steps on `crtc` (which must be lit): hand-overs at `PREFIX-ready` (nothing
/// set yet), `PREFIX-set`, `PREFIX-move1`, `PREFIX-move2` and `PREFIX-hide`, each after a
/// `SAFFRON-CURSOR op=... ` line.
pub fn exercise(card: &Card, crtc: u32, prefix: &str, timeout_ms: u64) -> Result<()> {
    let step = |name: &str| -> Result<()> {
        super::sync::hand_over(&format!("{prefix}-{name}"), Some("cursor"), timeout_ms)
    };
    step("ready")?;
    let dumb = card.create_dumb(SIDE, SIDE, 32)?;
    let buffer = CursorBuffer {
        card,
        handle: dumb.handle,
    };
    // The legacy cursor framebuffer is made with pitch width * 4.
    if dumb.pitch != SIDE * 4 || dumb.size < u64::from(SIDE * SIDE * 4) {
        return Err(Error::Check(format!(
            "cursor buffer {SIDE}x{SIDE}: pitch {} size {}, want pitch {}",
            dumb.pitch,
            dumb.size,
            SIDE * 4
        )));
    }
    let offset = card.map_dumb(dumb.handle)?;
    let path = std::path::Path::new("cursor-buffer");
    let map = SharedMapping::new(card.file(), offset, (SIDE * SIDE * 4) as usize, path)?;
    let img = image();
    map.write_at(0, &img)?;
    let mut back = vec![0u8; img.len()];
    map.read_at(0, &mut back)?;
    if back != img {
        return Err(Error::Check("cursor buffer reads back differently".into()));
    }
    drop(map);

    let (hot_x, hot_y) = HOT;
    let cursor = |flags, (x, y): (i32, i32), handle| {
        card.cursor2(DrmModeCursor2 {
            flags,
            crtc_id: crtc,
            x,
            y,
            width: if handle == 0 { 0 } else { SIDE },
            height: if handle == 0 { 0 } else { SIDE },
            handle,
            // Given on every call: kernels that keep the hot spot in the plane state take it
            // from each request.
            hot_x,
            hot_y,
        })
    };
    let report = |op: &str, (x, y): (i32, i32)| {
        println!(
            "SAFFRON-CURSOR op={op} x={x} y={y} pos_x={} pos_y={}",
            x + hot_x,
            y + hot_y
        );
    };
    let [set_at, move1, move2] = POSITIONS;
    cursor(
        DRM_MODE_CURSOR_BO | DRM_MODE_CURSOR_MOVE,
        set_at,
        dumb.handle,
    )?;
    println!(
        "SAFFRON-CURSOR op=set x={} y={} pos_x={} pos_y={} width={SIDE} height={SIDE} \
         hot_x={hot_x} hot_y={hot_y} sha256={}",
        set_at.0,
        set_at.1,
        set_at.0 + hot_x,
        set_at.1 + hot_y,
        super::sha256_hex(&back)
    );
    step("set")?;
    cursor(DRM_MODE_CURSOR_MOVE, move1, 0)?;
    report("move", move1);
    step("move1")?;
    cursor(DRM_MODE_CURSOR_MOVE, move2, 0)?;
    report("move", move2);
    step("move2")?;
    cursor(DRM_MODE_CURSOR_BO, move2, 0)?;
    println!("SAFFRON-CURSOR op=hide");
    step("hide")?;
    drop(buffer);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_is_argb_with_transparent_corners_and_an_opaque_middle() {
        let img = image();
        assert_eq!(img.len(), 64 * 64 * 4);
        let alpha = |x: usize, y: usize| img[(y * 64 + x) * 4 + 3];
        assert_eq!(alpha(0, 0), 0);
        assert_eq!(alpha(63, 63), 0);
        assert_eq!(alpha(32, 32), 255);
        assert!((1..255).contains(&alpha(32, 32 - 20)));
        // B follows x, G follows y: a transposed or swapped picture would differ.
        assert_eq!(&img[4..7], &[4, 0, 7]);
        assert_eq!(&img[64 * 4..64 * 4 + 3], &[0, 4, 3]);
    }
}
