//! Where the cursor comes from and where client input goes: the traits the VMM implements
//! (the display's, [`saffron_display::DisplaySource`], lives with the display items).

use std::sync::Arc;
use std::time::Duration;

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

/// The guest's cursor as the server sees it. Each cursor client sleeps in
/// [`CursorSource::wait_change`] until the cursor changes, then sends what changed since it
/// last looked: the source pushes, nothing polls.
pub trait CursorSource: Send + Sync + 'static {
    /// The current cursor, or `None` while there is none to show (clients see "no cursor").
    fn cursor(&self) -> Option<Cursor>;

    /// Waits until the cursor's serial is no longer `serial`, or `timeout` has passed, and
    /// returns the current cursor then (which, after a timeout, may be unchanged). Returns at
    /// once when it already differs.
    fn wait_change(&self, serial: u64, timeout: Duration) -> Option<Cursor>;
}

/// A cursor source for a display without a pointer: clients see "no cursor".
#[derive(Clone, Copy, Debug, Default)]
pub struct NoCursor;

impl CursorSource for NoCursor {
    fn cursor(&self) -> Option<Cursor> {
        None
    }

    fn wait_change(&self, _serial: u64, timeout: Duration) -> Option<Cursor> {
        // Nothing ever changes: the whole timeout passes.
        std::thread::sleep(timeout);
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
