//! The link stage (spec §1): parsing SpiceLinkHeader + SpiceLinkMess, and building replies.
//!
//! Every size here is client-controlled and bounded before anything is allocated
//! (the CVE-2016-9578 rules: link size in [18, 4096], each cap count ≤ 1024, caps inside the
//! message, checked arithmetic).

use crate::wire::{
    LINK_HEADER_SIZE, LINK_MAGIC, LINK_MESS_SIZE, LINK_REPLY_SIZE, LinkErr, MAX_CAPS,
    MAX_LINK_SIZE, PUBKEY_BYTES, Reader, VERSION_MAJOR, VERSION_MINOR, Writer, common_cap, has_cap,
};

/// What a client asked for in its SpiceLinkMess.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinkRequest {
    pub connection_id: u32,
    pub channel_type: u8,
    pub channel_id: u8,
    pub common_caps: Vec<u32>,
    pub channel_caps: Vec<u32>,
}

/// Common cap AUTH_SASL (we offer no SASL; spice-gtk built with it announces it).
const COMMON_CAP_AUTH_SASL: u32 = 2;

impl LinkRequest {
    /// Whether the client is spice-html5, which decodes and draws only part of Spice: it
    /// announces auth selection but neither Spice nor SASL auth, which every spice-gtk (and
    /// any client that can take the ticket's reply the usual way) does. The display channel
    /// confirms it by its DISPLAY_INIT (no GLZ dictionary); a client wrongly taken for it gets
    /// less compact, never undecodable, messages.
    pub fn is_html5(&self) -> bool {
        has_cap(&self.common_caps, common_cap::AUTH_SELECTION)
            && !has_cap(&self.common_caps, common_cap::AUTH_SPICE)
            && !has_cap(&self.common_caps, COMMON_CAP_AUTH_SASL)
    }
}

/// Validates a SpiceLinkHeader and returns the size of the SpiceLinkMess that follows.
pub fn parse_header(buf: &[u8; LINK_HEADER_SIZE]) -> Result<u32, LinkErr> {
    let mut r = Reader::new(buf);
    let magic = r.u32().map_err(|_| LinkErr::InvalidData)?;
    let major = r.u32().map_err(|_| LinkErr::InvalidData)?;
    let _minor = r.u32().map_err(|_| LinkErr::InvalidData)?;
    let size = r.u32().map_err(|_| LinkErr::InvalidData)?;
    if magic != LINK_MAGIC {
        return Err(LinkErr::InvalidMagic);
    }
    if major != VERSION_MAJOR {
        return Err(LinkErr::VersionMismatch);
    }
    if !(LINK_MESS_SIZE as u32..=MAX_LINK_SIZE).contains(&size) {
        return Err(LinkErr::InvalidData);
    }
    Ok(size)
}

/// Parses the SpiceLinkMess (`buf` is exactly `size` bytes as announced by the header).
pub fn parse_mess(buf: &[u8]) -> Result<LinkRequest, LinkErr> {
    let bad = |_| LinkErr::InvalidData;
    let mut r = Reader::new(buf);
    let connection_id = r.u32().map_err(bad)?;
    let channel_type = r.u8().map_err(bad)?;
    let channel_id = r.u8().map_err(bad)?;
    let num_common = r.u32().map_err(bad)?;
    let num_channel = r.u32().map_err(bad)?;
    let caps_offset = r.u32().map_err(bad)?;
    if num_common > MAX_CAPS || num_channel > MAX_CAPS || (caps_offset as usize) < LINK_MESS_SIZE {
        return Err(LinkErr::InvalidData);
    }
    // Both counts ≤ 1024, so this cannot overflow; checked anyway so the bound is local.
    let caps_bytes = num_common
        .checked_add(num_channel)
        .and_then(|n| n.checked_mul(4))
        .ok_or(LinkErr::InvalidData)? as usize;
    let caps = (caps_offset as usize)
        .checked_add(caps_bytes)
        .and_then(|end| buf.get(caps_offset as usize..end))
        .ok_or(LinkErr::InvalidData)?;
    let mut r = Reader::new(caps);
    let mut words =
        |n: u32| -> Result<Vec<u32>, LinkErr> { (0..n).map(|_| r.u32().map_err(bad)).collect() };
    let common_caps = words(num_common)?;
    let channel_caps = words(num_channel)?;
    Ok(LinkRequest {
        connection_id,
        channel_type,
        channel_id,
        common_caps,
        channel_caps,
    })
}

/// SpiceLinkHeader + SpiceLinkReply + our capability words.
pub fn reply(
    error: LinkErr,
    pub_key: &[u8; PUBKEY_BYTES],
    common_caps: &[u32],
    channel_caps: &[u32],
) -> Vec<u8> {
    let ncaps = common_caps.len() + channel_caps.len();
    let size = LINK_REPLY_SIZE + 4 * ncaps;
    let mut w = Writer::with_capacity(LINK_HEADER_SIZE + size);
    w.u32(LINK_MAGIC)
        .u32(VERSION_MAJOR)
        .u32(VERSION_MINOR)
        .u32(size as u32)
        .u32(error as u32)
        .bytes(pub_key)
        .u32(common_caps.len() as u32)
        .u32(channel_caps.len() as u32)
        .u32(LINK_REPLY_SIZE as u32);
    for c in common_caps.iter().chain(channel_caps) {
        w.u32(*c);
    }
    w.buf
}

/// The reply for errors found before authentication: a zeroed reply carrying `error`.
pub fn error_reply(error: LinkErr) -> Vec<u8> {
    reply(error, &[0; PUBKEY_BYTES], &[], &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32, major: u32, size: u32) -> [u8; 16] {
        let mut w = Writer::default();
        w.u32(magic).u32(major).u32(2).u32(size);
        w.buf.try_into().unwrap()
    }

    fn mess(ncommon: u32, nchan: u32, offset: u32, words: &[u32]) -> Vec<u8> {
        let mut w = Writer::default();
        w.u32(5).u8(2).u8(0).u32(ncommon).u32(nchan).u32(offset);
        for x in words {
            w.u32(*x);
        }
        w.buf
    }

    #[test]
    fn header_checks() {
        assert_eq!(parse_header(&header(LINK_MAGIC, 2, 26)), Ok(26));
        assert_eq!(parse_header(&header(1, 2, 26)), Err(LinkErr::InvalidMagic));
        assert_eq!(
            parse_header(&header(LINK_MAGIC, 1, 26)),
            Err(LinkErr::VersionMismatch)
        );
        assert_eq!(
            parse_header(&header(LINK_MAGIC, 2, 17)),
            Err(LinkErr::InvalidData)
        );
        assert_eq!(
            parse_header(&header(LINK_MAGIC, 2, 4097)),
            Err(LinkErr::InvalidData)
        );
        assert_eq!(
            parse_header(&header(LINK_MAGIC, 2, u32::MAX)),
            Err(LinkErr::InvalidData)
        );
    }

    #[test]
    fn mess_checks() {
        let ok = parse_mess(&mess(1, 1, 18, &[0x9, 0x2])).unwrap();
        assert_eq!(ok.connection_id, 5);
        assert_eq!(ok.common_caps, vec![0x9]);
        assert_eq!(ok.channel_caps, vec![0x2]);
        assert_eq!(
            parse_mess(&mess(2, 1, 18, &[0x9, 0x2])),
            Err(LinkErr::InvalidData)
        );
        assert_eq!(
            parse_mess(&mess(1025, 0, 18, &[])),
            Err(LinkErr::InvalidData)
        );
        assert_eq!(
            parse_mess(&mess(0, u32::MAX, 18, &[])),
            Err(LinkErr::InvalidData)
        );
        assert_eq!(
            parse_mess(&mess(1, 0, 17, &[0, 0])),
            Err(LinkErr::InvalidData)
        );
        assert_eq!(
            parse_mess(&mess(1, 0, u32::MAX, &[0])),
            Err(LinkErr::InvalidData)
        );
        assert_eq!(parse_mess(&[0; 10]), Err(LinkErr::InvalidData));
        // A larger offset inside the message is fine.
        assert!(parse_mess(&mess(1, 0, 22, &[7, 0x9])).is_ok());
    }

    #[test]
    fn reply_layout() {
        let r = reply(LinkErr::Ok, &[1; 162], &[0xb], &[]);
        assert_eq!(r.len(), 16 + 178 + 4);
        assert_eq!(&r[12..16], &182u32.to_le_bytes());
        assert_eq!(
            &r[16 + 4 + 162 + 8..16 + 4 + 162 + 12],
            &178u32.to_le_bytes()
        );
    }
}
