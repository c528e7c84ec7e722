//! The virtio-sound ABI (virtio spec 1.2, §5.14), as much of it as this device uses: request
//! and event codes, status codes, stream formats and rates, and the byte sizes of the
//! structures. All fields are little endian; structures are read and written field by field
//! from byte slices (see `request.rs`), so nothing here is ever cast from guest bytes.

/// Virtqueue indices (§5.14.2).
pub mod queue {
    /// Control requests.
    pub const CONTROL: u16 = 0;
    /// Device → driver notifications (jacks, period elapsed, xrun): never used here.
    pub const EVENT: u16 = 1;
    /// Playback I/O messages.
    pub const TX: u16 = 2;
    /// Capture I/O messages.
    pub const RX: u16 = 3;
    /// How many.
    pub const COUNT: usize = 4;
}

/// Request codes (`enum virtio_snd_*` in §5.14.6).
pub mod code {
    pub const JACK_INFO: u32 = 1;
    pub const JACK_REMAP: u32 = 2;
    pub const PCM_INFO: u32 = 0x0100;
    pub const PCM_SET_PARAMS: u32 = 0x0101;
    pub const PCM_PREPARE: u32 = 0x0102;
    pub const PCM_RELEASE: u32 = 0x0103;
    pub const PCM_START: u32 = 0x0104;
    pub const PCM_STOP: u32 = 0x0105;
    pub const CHMAP_INFO: u32 = 0x0200;
}

/// Status codes (`VIRTIO_SND_S_*`).
pub mod status {
    pub const OK: u32 = 0x8000;
    pub const BAD_MSG: u32 = 0x8001;
    pub const NOT_SUPP: u32 = 0x8002;
    pub const IO_ERR: u32 = 0x8003;
}

/// Stream directions (`VIRTIO_SND_D_*`).
pub const DIRECTION_OUTPUT: u8 = 0;
pub const DIRECTION_INPUT: u8 = 1;

/// `VIRTIO_SND_PCM_FMT_S16`: the only format offered.
pub const PCM_FMT_S16: u8 = 5;
/// `VIRTIO_SND_PCM_RATE_48000`: the only rate offered.
pub const PCM_RATE_48000: u8 = 7;

/// `struct virtio_snd_config`: jacks, streams, chmaps (u32 each).
pub const CONFIG_SIZE: usize = 12;
/// `struct virtio_snd_hdr`: code u32.
pub const HDR_SIZE: usize = 4;
/// `struct virtio_snd_query_info`: hdr, start_id, count, size.
pub const QUERY_INFO_SIZE: usize = 16;
/// `struct virtio_snd_pcm_hdr`: hdr, stream_id.
pub const PCM_HDR_SIZE: usize = 8;
/// `struct virtio_snd_pcm_set_params`: pcm_hdr, buffer_bytes, period_bytes, features u32,
/// channels, format, rate, padding u8.
pub const PCM_SET_PARAMS_SIZE: usize = 24;
/// `struct virtio_snd_pcm_info`: hdr (hda_fn_nid u32), features u32, formats u64, rates u64,
/// direction, channels_min, channels_max u8, padding [u8; 5].
pub const PCM_INFO_SIZE: usize = 32;
/// `struct virtio_snd_pcm_xfer`: stream_id u32 (the head of every I/O message).
pub const PCM_XFER_SIZE: usize = 4;
/// `struct virtio_snd_pcm_status`: status u32, latency_bytes u32 (the tail of every I/O
/// message).
pub const PCM_STATUS_SIZE: usize = 8;

/// The configuration space: no jacks, two streams (0 output, 1 input), no channel maps.
/// QEMU's vhost-user-snd reads it from the backend (VHOST_USER_PROTOCOL_F_CONFIG).
pub fn config_bytes() -> [u8; CONFIG_SIZE] {
    let mut c = [0u8; CONFIG_SIZE];
    c[4..8].copy_from_slice(&2u32.to_le_bytes());
    c
}
