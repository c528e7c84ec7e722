//! What the server shows and where client input goes: the traits the VMM implements.

use std::sync::Arc;

/// One picture of the guest's primary surface.
///
/// Pixels are 32-bit xRGB in little-endian byte order (B, G, R, X per pixel), top-down rows,
/// stride exactly `width * 4`. That is the Spice `32BIT` bitmap layout, so the display channel
/// sends rows without converting them. The buffer is shared (`Arc`) so that every client can
/// keep "the last frame I sent" without copying it.
#[derive(Clone, Debug)]
pub struct Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Changes whenever the content may have changed; equal serials mean equal pixels, which
    /// lets the server skip comparing buffers on idle ticks.
    pub serial: u64,
    /// `width * height * 4` bytes, B,G,R,X.
    pub pixels: Arc<Vec<u8>>,
    /// The part of the surface the guest shows on its monitor (head 0 of its monitors
    /// config); `None` for all of it. Clients are told, so they show just that.
    pub head: Option<Head>,
}

/// A rectangle of the surface that one monitor shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Frame {
    /// Whether the buffer really holds `width * height` pixels. Frames that do not are ignored
    /// (a VMM bug must not become an out-of-bounds slice in the server).
    pub fn is_consistent(&self) -> bool {
        (self.width as usize)
            .checked_mul(self.height as usize)
            .and_then(|n| n.checked_mul(4))
            .is_some_and(|n| n == self.pixels.len())
            && self.width > 0
            && self.height > 0
    }

    /// Builds a frame from `0x00RRGGBB` pixels (handy for tests and simple sources).
    pub fn from_xrgb(width: u32, height: u32, serial: u64, xrgb: &[u32]) -> Frame {
        let mut pixels = Vec::with_capacity(xrgb.len() * 4);
        for p in xrgb {
            pixels.extend_from_slice(&p.to_le_bytes());
        }
        Frame {
            width,
            height,
            serial,
            pixels: Arc::new(pixels),
            head: None,
        }
    }
}

/// The guest's screen as the server sees it. The server polls it (about every 33 ms per display
/// client) and sends each client what changed since the last frame that client received.
pub trait DisplaySource: Send + Sync + 'static {
    /// The current primary surface, or `None` while the guest has none (nothing is sent then).
    fn frame(&self) -> Option<Frame>;
}

/// Pixel layouts of cursor shapes the cursor channel forwards (the Spice cursor types the
/// guest drivers use; spice-gtk decodes both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CursorKind {
    /// `width * height` pixels of 32-bit ARGB, little endian (B, G, R, A bytes), straight
    /// alpha: what the Linux qxl driver sends.
    Alpha,
    /// An AND mask then an XOR mask, each `height` rows of `ceil(width / 8)` bytes, most
    /// significant bit first: what Windows drivers send for classic cursors.
    Mono,
}

impl CursorKind {
    /// The Spice `cursor_type` number.
    pub fn spice_type(self) -> u8 {
        match self {
            CursorKind::Alpha => 0,
            CursorKind::Mono => 1,
        }
    }

    /// Bytes a `width x height` shape of this kind holds.
    pub fn data_len(self, width: u16, height: u16) -> usize {
        let (w, h) = (usize::from(width), usize::from(height));
        match self {
            CursorKind::Alpha => w * h * 4,
            CursorKind::Mono => 2 * w.div_ceil(8) * h,
        }
    }
}

/// Largest cursor side the server forwards (the QXL parser's bound too).
pub const MAX_CURSOR_SIDE: u16 = 512;

/// A cursor image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CursorShape {
    pub kind: CursorKind,
    pub width: u16,
    pub height: u16,
    /// The hot spot, in pixels from the top-left corner of the image.
    pub hot_x: u16,
    pub hot_y: u16,
    /// Exactly `kind.data_len(width, height)` bytes.
    pub data: Vec<u8>,
}

impl CursorShape {
    /// Whether the data really is the declared size (and the size sane). Shapes that are not
    /// are sent as "no cursor": a VMM bug must not make a client read past a message.
    pub fn is_consistent(&self) -> bool {
        self.width > 0
            && self.height > 0
            && self.width <= MAX_CURSOR_SIDE
            && self.height <= MAX_CURSOR_SIDE
            && self.data.len() == self.kind.data_len(self.width, self.height)
    }
}

/// The guest's pointer as the cursor channel shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cursor {
    /// Changes whenever anything below may have changed; equal serials mean an equal cursor,
    /// which lets a client's poll stop at one comparison. Serial 0 is `Cursor::default()`
    /// (what a source that returns `None` stands for).
    pub serial: u64,
    /// Changes when the guest's cursor was reset (device reset, primary surface destroyed):
    /// clients are then told RESET and given a fresh INIT, as spice-server does.
    pub resets: u64,
    /// Where the hot spot is, in primary-surface pixels.
    pub x: i32,
    pub y: i32,
    pub visible: bool,
    /// Trail length and frequency (clients draw no trails; forwarded for completeness).
    pub trail: (u16, u16),
    /// Changes when the shape changes (a new SET, even of the same picture).
    pub shape_serial: u64,
    /// The shape; `None` = no cursor image (clients hide the pointer).
    pub shape: Option<Arc<CursorShape>>,
}

/// The guest's cursor as the server sees it. Each cursor client polls it (every
/// `ServerConfig::cursor_poll_interval`) and sends what changed since its last poll.
pub trait CursorSource: Send + Sync + 'static {
    /// The current cursor, or `None` while there is none to show (clients see "no cursor").
    fn cursor(&self) -> Option<Cursor>;
}

/// A cursor source for a display without a pointer: clients see "no cursor".
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCursor;

impl CursorSource for NoCursor {
    fn cursor(&self) -> Option<Cursor> {
        None
    }
}

/// A key press or release, as sent by Spice clients: PC/XT set-1 scancode bytes packed
/// little-endian into a u32 (`0x1E` = 'A' down, `0x9E` = 'A' up, `0x48E0` = Up down).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyEvent {
    /// Packed set-1 scancode bytes, lowest byte first; stops at the first zero byte.
    pub scancode: u32,
    /// True for KEY_DOWN, false for KEY_UP.
    pub pressed: bool,
}

impl KeyEvent {
    /// The scancode bytes to feed to a PS/2 keyboard, in order.
    pub fn bytes(&self) -> impl Iterator<Item = u8> {
        self.scancode
            .to_le_bytes()
            .into_iter()
            .take_while(|b| *b != 0)
    }
}

/// Pointer events from the inputs channel. `buttons` is the Spice button mask
/// (1 left, 2 middle, 4 right, 8 wheel up, 16 wheel down, 32 side, 64 extra).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PointerEvent {
    /// Relative motion (server mouse mode).
    Motion { dx: i32, dy: i32, buttons: u16 },
    /// Absolute position in pixels of display `display` (client mouse mode).
    Position {
        x: u32,
        y: u32,
        buttons: u16,
        display: u8,
    },
    /// A button went down (`button`: 1 left, 2 middle, 3 right, 4/5 wheel, 6 side, 7 extra).
    Press { button: u8, buttons: u16 },
    /// A button went up.
    Release { button: u8, buttons: u16 },
}

/// Where client keyboard and mouse input goes. Every method has a logging default so a VMM
/// without input devices can pass [`NullInput`].
pub trait InputSink: Send + Sync + 'static {
    /// A key went down or up.
    fn key(&self, event: KeyEvent) {
        tracing::debug!(?event, "key (no input sink)");
    }
    /// The client's lock-key state changed (1 scroll, 2 num, 4 caps lock).
    fn modifiers(&self, modifiers: u16) {
        tracing::debug!(modifiers, "keyboard modifiers (no input sink)");
    }
    /// Mouse motion, position or buttons.
    fn pointer(&self, event: PointerEvent) {
        tracing::debug!(?event, "pointer (no input sink)");
    }
    /// Whether the guest has an absolute pointer (a tablet). Only then does the server offer
    /// the CLIENT mouse mode, where the client sends absolute positions.
    fn has_absolute_pointer(&self) -> bool {
        false
    }
    /// The guest's lock-key LEDs, sent to clients when the inputs channel opens.
    fn led_modifiers(&self) -> u16 {
        0
    }
}

/// An input sink that only logs.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullInput;

impl InputSink for NullInput {}
