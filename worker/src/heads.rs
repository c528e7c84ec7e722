//! Which parts of the primary surface the guest's monitors show.
//!
//! The guest's driver describes its monitors with MONITORS_CONFIG_ASYNC: one head per CRTC,
//! each a rectangle of the one primary surface (Linux's drm/qxl and xf86-video-qxl put all
//! their heads side by side on it). As spice-server does for one qxl device, the worker keeps
//! at most the device's head count of them (QEMU's `max_outputs`), drops the heads a client
//! could not show (disabled: zero-sized; entirely outside the primary), clips the others to
//! the primary, and announces the rest. The guest controls every field, so each is checked
//! here rather than trusted by the display channel.

use saffron_display::{Head, Monitors};
use saffron_ring::parse::MonitorsConfig;
use tracing::debug;

/// The monitors the guest's `config` shows of a `width` x `height` primary, honouring at most
/// `max_heads` heads (the first ones, as spice-server caps `count` at its max monitors).
///
/// A head is kept when it is enabled (non-zero size), its id is new (a client keys its
/// displays by id, so a repeated id would make two heads fight over one window) and below the
/// announced `max_allowed` (spice-gtk sizes its display list by it), and some of it lies in
/// the primary; it is then clipped to the primary. Without a config, or when no head is
/// left, the monitor shows the whole primary, as spice-server's default for a new primary.
pub fn shown(config: Option<&MonitorsConfig>, max_heads: u32, width: u32, height: u32) -> Monitors {
    let Some(config) = config else {
        return Monitors::whole(width, height);
    };
    let max_heads = max_heads.max(1);
    // The guest's own bound, when it states one, within the device's.
    let max_allowed = match u32::from(config.max_allowed) {
        0 => max_heads,
        guest => guest.min(max_heads),
    };
    let mut heads: Vec<Head> = Vec::new();
    let honoured = usize::try_from(max_heads).unwrap_or(usize::MAX);
    for h in config.heads.iter().take(honoured) {
        if h.width == 0 || h.height == 0 {
            continue;
        }
        if h.id >= max_allowed || heads.iter().any(|k| k.id == h.id) {
            debug!(?h, max_allowed, "guest head with an unusable id: not shown");
            continue;
        }
        match clip(h.x, h.y, h.width, h.height, width, height) {
            Some((w, hgt)) => heads.push(Head {
                id: h.id,
                x: h.x,
                y: h.y,
                width: w,
                height: hgt,
            }),
            None => debug!(
                ?h,
                width, height, "guest head outside the primary: not shown"
            ),
        }
    }
    if heads.is_empty() {
        return Monitors::whole(width, height);
    }
    Monitors { max_allowed, heads }
}

/// The width and height left of the `w` x `h` rectangle at (`x`, `y`) inside a
/// `width` x `height` surface, or `None` when nothing of it is inside.
fn clip(x: u32, y: u32, w: u32, h: u32, width: u32, height: u32) -> Option<(u32, u32)> {
    let right = (u64::from(x) + u64::from(w)).min(u64::from(width));
    let bottom = (u64::from(y) + u64::from(h)).min(u64::from(height));
    let w = u32::try_from(right.checked_sub(u64::from(x))?).ok()?;
    let h = u32::try_from(bottom.checked_sub(u64::from(y))?).ok()?;
    (w > 0 && h > 0).then_some((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;
    use saffron_ring::parse::Head as GuestHead;

    fn guest(id: u32, x: u32, y: u32, width: u32, height: u32) -> GuestHead {
        GuestHead {
            id,
            surface_id: 0,
            width,
            height,
            x,
            y,
            flags: 0,
        }
    }

    fn config(max_allowed: u16, heads: Vec<GuestHead>) -> MonitorsConfig {
        MonitorsConfig { max_allowed, heads }
    }

    fn head(id: u32, x: u32, y: u32, width: u32, height: u32) -> Head {
        Head {
            id,
            x,
            y,
            width,
            height,
        }
    }

    #[test]
    fn no_config_shows_the_whole_primary() {
        assert_eq!(shown(None, 4, 1024, 768), Monitors::whole(1024, 768));
    }

    #[test]
    fn keeps_every_head_up_to_the_device_count() {
        // Linux's drm/qxl: 4 CRTCs, two lit side by side on a 1664x600 primary.
        let cfg = config(
            4,
            vec![
                guest(0, 0, 0, 1024, 600),
                guest(1, 1024, 0, 640, 480),
                guest(2, 0, 0, 0, 0),
                guest(3, 0, 0, 0, 0),
            ],
        );
        let m = shown(Some(&cfg), 4, 1664, 600);
        assert_eq!(m.max_allowed, 4);
        assert_eq!(
            m.heads,
            [head(0, 0, 0, 1024, 600), head(1, 1024, 0, 640, 480)]
        );
        // A one-head card shows head 0 only, and says one is all there is.
        let m = shown(Some(&cfg), 1, 1664, 600);
        assert_eq!(m.max_allowed, 1);
        assert_eq!(m.heads, [head(0, 0, 0, 1024, 600)]);
        // The guest's own smaller bound wins; 0 means none stated.
        assert_eq!(
            shown(Some(&config(2, cfg.heads.clone())), 4, 1664, 600).max_allowed,
            2
        );
        assert_eq!(
            shown(Some(&config(0, cfg.heads.clone())), 3, 1664, 600).max_allowed,
            3
        );
    }

    #[test]
    fn heads_are_clipped_to_the_primary_or_dropped_outside_it() {
        let cfg = config(
            0,
            vec![
                guest(0, 1000, 700, 100, 100),
                guest(1, 1024, 0, 10, 10),
                guest(2, u32::MAX, u32::MAX, u32::MAX, u32::MAX),
                guest(3, 0, 768, 5, 5),
            ],
        );
        let m = shown(Some(&cfg), 4, 1024, 768);
        assert_eq!(m.heads, [head(0, 1000, 700, 24, 68)]);
    }

    #[test]
    fn hostile_configs_stay_bounded() {
        // As many heads as the parser keeps (64), all enabled: only the device's 4 count.
        let many: Vec<_> = (0..64).map(|i| guest(i, i * 10, 0, 10, 10)).collect();
        let m = shown(Some(&config(0, many)), 4, 640, 480);
        assert_eq!(m.heads.len(), 4);
        assert_eq!(m.max_allowed, 4);
        assert!(m.heads.len() as u32 <= m.max_allowed);
        // Zero-sized heads only: the whole primary, as with no config.
        let off = vec![guest(0, 0, 0, 0, 600), guest(1, 0, 0, 800, 0)];
        assert_eq!(
            shown(Some(&config(4, off)), 4, 800, 600),
            Monitors::whole(800, 600)
        );
        // Repeated ids, and ids past max_allowed, are not announced.
        let ids = vec![
            guest(1, 0, 0, 10, 10),
            guest(1, 10, 0, 10, 10),
            guest(u32::MAX, 20, 0, 10, 10),
        ];
        let m = shown(Some(&config(4, ids)), 4, 640, 480);
        assert_eq!(m.heads, [head(1, 0, 0, 10, 10)]);
        // Every head announced is inside the surface and non-empty.
        for h in &m.heads {
            assert!(h.width > 0 && h.height > 0);
            assert!(u64::from(h.x) + u64::from(h.width) <= 640);
            assert!(u64::from(h.y) + u64::from(h.height) <= 480);
        }
    }
}
