//! `xwd`: the hash of an X window dump (what `xwd -root` wrote), in the form the host compares
//! with its screendump: packed R,G,B bytes, row by row, of the dumped pixels.
//!
//! The XWD format (X11's `XWDFile.h`, file version 7): a header of 25 big-endian 32-bit fields
//! (`header_size` bytes in all, the window name after the 100 fixed bytes), `ncolors` colour
//! entries of 12 bytes, then the image as `XGetImage` returned it: `height` rows of
//! `bytes_per_line` bytes, each pixel `bits_per_pixel` wide in `byte_order`, its channels found
//! with the red, green and blue masks (TrueColor / DirectColor visuals).

use crate::args::Options;
use crate::error::{Error, Result};

/// XWD file version written by every xwd since X11R4.
const XWD_FILE_VERSION: u32 = 7;
/// Size of the fixed part of the header.
const HEADER_FIXED: usize = 25 * 4;
/// Size of one colour map entry (`XWDColor`).
const COLOR_SIZE: usize = 12;
/// `ZPixmap`.
const Z_PIXMAP: u32 = 2;
/// `TrueColor` and `DirectColor`: pixels carry their channels in the masks' bits.
const TRUE_COLOR: u32 = 4;
const DIRECT_COLOR: u32 = 5;
/// Largest side accepted (far above any X screen the tests use).
const MAX_SIDE: u32 = 16384;

/// What the header says about the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XwdInfo {
    /// Image width in pixels.
    pub width: u32,
    /// Image height in pixels.
    pub height: u32,
    /// Depth of the dumped window.
    pub depth: u32,
    /// Bits per pixel in the image data (24 or 32).
    pub bpp: u32,
    /// Bytes per image row.
    pub stride: usize,
    /// `MSBFirst` pixels.
    pub msb_first: bool,
    /// The window's name.
    pub name: String,
    /// Where the image data starts.
    data_offset: usize,
    /// Bit offset of the red, green and blue channels (each 8 bits wide).
    shifts: [u32; 3],
}

fn be32(data: &[u8], field: usize) -> u32 {
    let o = field * 4;
    u32::from_be_bytes([data[o], data[o + 1], data[o + 2], data[o + 3]])
}

/// The bit offset of an 8-bit channel mask.
fn channel_shift(mask: u32, name: &str) -> Result<u32> {
    let shift = mask.trailing_zeros();
    if shift <= 24 && mask == 0xff << shift {
        Ok(shift)
    } else {
        Err(Error::Check(format!(
            "XWD {name} mask {mask:#x} is not 8 contiguous bits"
        )))
    }
}

/// Parses and checks the header of an XWD file.
pub fn parse(data: &[u8]) -> Result<XwdInfo> {
    let bad = |msg: String| Err(Error::Check(format!("XWD: {msg}")));
    if data.len() < HEADER_FIXED {
        return bad(format!("{} bytes, shorter than a header", data.len()));
    }
    let header_size = be32(data, 0) as usize;
    let version = be32(data, 1);
    if version != XWD_FILE_VERSION {
        return bad(format!(
            "file version {version}, not {XWD_FILE_VERSION} (or not an XWD file)"
        ));
    }
    if !(HEADER_FIXED..=data.len()).contains(&header_size) {
        return bad(format!("header size {header_size}"));
    }
    let format = be32(data, 2);
    let depth = be32(data, 3);
    let (width, height) = (be32(data, 4), be32(data, 5));
    let msb_first = match be32(data, 7) {
        0 => false,
        1 => true,
        o => return bad(format!("byte order {o}")),
    };
    let bpp = be32(data, 11);
    let stride = be32(data, 12) as usize;
    let class = be32(data, 13);
    let masks = [be32(data, 14), be32(data, 15), be32(data, 16)];
    let ncolors = be32(data, 19) as usize;
    if format != Z_PIXMAP {
        return bad(format!("pixmap format {format}, not ZPixmap"));
    }
    if !(depth == 24 || depth == 32) || !(bpp == 24 || bpp == 32) {
        return bad(format!("depth {depth} at {bpp} bpp (24/32 only)"));
    }
    if class != TRUE_COLOR && class != DIRECT_COLOR {
        return bad(format!("visual class {class}, not TrueColor"));
    }
    if width == 0 || height == 0 || width > MAX_SIDE || height > MAX_SIDE {
        return bad(format!("size {width}x{height}"));
    }
    if stride < (width as usize) * (bpp as usize / 8) {
        return bad(format!(
            "{stride} bytes per line for {width} pixels at {bpp} bpp"
        ));
    }
    let shifts = [
        channel_shift(masks[0], "red")?,
        channel_shift(masks[1], "green")?,
        channel_shift(masks[2], "blue")?,
    ];
    if shifts.iter().any(|s| s + 8 > bpp) {
        return bad(format!("masks {masks:x?} outside a {bpp}-bit pixel"));
    }
    let data_offset = header_size + ncolors * COLOR_SIZE;
    let need = data_offset + stride * height as usize;
    if data.len() < need {
        return bad(format!("{} bytes, the header describes {need}", data.len()));
    }
    let name_bytes = &data[HEADER_FIXED..header_size];
    let name_end = name_bytes
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(name_bytes.len());
    Ok(XwdInfo {
        width,
        height,
        depth,
        bpp,
        stride,
        msb_first,
        name: String::from_utf8_lossy(&name_bytes[..name_end]).into_owned(),
        data_offset,
        shifts,
    })
}

/// The dumped pixels as packed R,G,B bytes.
pub fn to_rgb(data: &[u8], info: &XwdInfo) -> Vec<u8> {
    let bytes = info.bpp as usize / 8;
    let mut out = Vec::with_capacity(info.width as usize * info.height as usize * 3);
    for y in 0..info.height as usize {
        let row = &data[info.data_offset + y * info.stride..][..info.width as usize * bytes];
        for px in row.chunks_exact(bytes) {
            let value = px.iter().enumerate().fold(0u32, |v, (i, &b)| {
                let pos = if info.msb_first { bytes - 1 - i } else { i };
                v | u32::from(b) << (8 * pos)
            });
            out.extend(info.shifts.iter().map(|s| (value >> s) as u8));
        }
    }
    out
}

/// `xwd --file PATH [--bands N]`: prints
/// `SAFFRON-XWD width= height= depth= bpp= order=lsb|msb sha256=` over the dump's pixels as
/// packed R,G,B. With `--bands N` (rows), first one `SAFFRON-XWDBAND y= rows= sha256=` per band
/// of N rows, so that a host whose picture differs can tell where.
pub fn run(mut opts: Options) -> Result<()> {
    let path = opts
        .take("file")
        .ok_or_else(|| Error::Usage("--file is required".to_string()))?;
    let bands = opts.u64_or("bands", 0, u64::from(MAX_SIDE))? as usize;
    opts.finish()?;
    let data = std::fs::read(&path).map_err(|e| Error::io("read", &path, e))?;
    let info = parse(&data)?;
    let rgb = to_rgb(&data, &info);
    if bands > 0 {
        let row = info.width as usize * 3;
        for (i, band) in rgb.chunks(row * bands).enumerate() {
            println!(
                "SAFFRON-XWDBAND y={} rows={} sha256={}",
                i * bands,
                band.len() / row,
                super::sha256_hex(band)
            );
        }
    }
    let sha = super::sha256_hex(&rgb);
    println!(
        "SAFFRON-XWD width={} height={} depth={} bpp={} order={} sha256={sha}",
        info.width,
        info.height,
        info.depth,
        info.bpp,
        if info.msb_first { "msb" } else { "lsb" }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An XWD file as xwd writes one: `pixels` are 32-bit values, stored in `msb` order.
    fn file(width: u32, height: u32, bpp: u32, msb: bool, pixels: &[u32]) -> Vec<u8> {
        let name = b"root\0";
        let header_size = (HEADER_FIXED + name.len()) as u32;
        let bytes = bpp / 8;
        let stride = (width * bytes).next_multiple_of(4);
        let fields: [u32; 25] = [
            header_size,
            7,
            2,
            24,
            width,
            height,
            0,
            u32::from(msb),
            32,
            u32::from(msb),
            32,
            bpp,
            stride,
            4,
            0xff_0000,
            0xff00,
            0xff,
            8,
            256,
            1,
            width,
            height,
            0,
            0,
            0,
        ];
        let mut out: Vec<u8> = fields.iter().flat_map(|f| f.to_be_bytes()).collect();
        out.extend_from_slice(name);
        out.extend_from_slice(&[0; COLOR_SIZE]);
        for y in 0..height {
            let mut row = Vec::new();
            for x in 0..width {
                let v = pixels[(y * width + x) as usize];
                let le = v.to_le_bytes();
                let px = &le[..bytes as usize];
                if msb {
                    row.extend(px.iter().rev());
                } else {
                    row.extend_from_slice(px);
                }
            }
            row.resize(stride as usize, 0xee);
            out.extend_from_slice(&row);
        }
        out
    }

    #[test]
    fn pixels_become_packed_rgb_in_every_layout() {
        let pixels = [
            0x00ff_0000,
            0x0000_ff00,
            0x0000_00ff,
            0x0012_3456,
            0,
            0xffff_ffff,
        ];
        let want = [
            255, 0, 0, 0, 255, 0, 0, 0, 255, 0x12, 0x34, 0x56, 0, 0, 0, 255, 255, 255,
        ];
        for bpp in [24, 32] {
            for msb in [false, true] {
                let data = file(3, 2, bpp, msb, &pixels);
                let info = parse(&data).unwrap();
                assert_eq!((info.width, info.height, info.bpp), (3, 2, bpp));
                assert_eq!(info.name, "root");
                assert_eq!(info.msb_first, msb);
                assert_eq!(to_rgb(&data, &info), want, "bpp {bpp} msb {msb}");
            }
        }
    }

    #[test]
    fn malformed_files_are_refused() {
        let good = file(2, 2, 32, false, &[0; 4]);
        assert!(parse(&good).is_ok());
        assert!(parse(&good[..50]).is_err(), "short header");
        assert!(parse(&good[..good.len() - 1]).is_err(), "short image");
        let mut v = good.clone();
        v[7] = 6;
        assert!(parse(&v).is_err(), "version");
        let mut f = good.clone();
        f[11] = 1;
        assert!(parse(&f).is_err(), "XY pixmap");
        let mut m = good.clone();
        m[14 * 4 + 1] = 0xf0;
        assert!(parse(&m).is_err(), "red mask not 8 bits");
        let mut c = good;
        c[13 * 4 + 3] = 3;
        assert!(parse(&c).is_err(), "PseudoColor");
        let opts = Options::parse(["--file", "/nonexistent/x.xwd"]).unwrap();
        assert!(run(opts).is_err());
        assert!(matches!(run(Options::default()), Err(Error::Usage(_))));
    }
}
