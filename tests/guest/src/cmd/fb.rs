//! `fbhash`: digest of what the framebuffer console shows, so the host can compare it with the
//! surface the Spice client receives.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::args::Options;
use crate::error::{Error, Result};
use crate::pci::{read_attr, read_dec_attr};

/// Geometry and digest of one framebuffer.
#[derive(Debug, PartialEq, Eq)]
struct FbHash {
    width: u64,
    height: u64,
    stride: u64,
    bpp: u64,
    sha256: String,
}

/// Prints `SAFFRON-FB width= height= stride= bpp= sha256=` over the visible bytes of each row.
pub fn run(mut opts: Options) -> Result<()> {
    let name = opts.take("fb").unwrap_or_else(|| "fb0".to_string());
    opts.finish()?;
    let fb = hash_framebuffer(
        &Path::new("/sys/class/graphics").join(&name),
        &Path::new("/dev").join(&name),
    )?;
    println!(
        "SAFFRON-FB width={} height={} stride={} bpp={} sha256={}",
        fb.width, fb.height, fb.stride, fb.bpp, fb.sha256
    );
    Ok(())
}

/// Reads the geometry from the sysfs directory `sys` and hashes `width * bpp / 8` bytes of each
/// of the `height` rows of `dev`, skipping the padding up to `stride`: the padding is not part of
/// the picture and its content differs between drivers.
fn hash_framebuffer(sys: &Path, dev: &Path) -> Result<FbHash> {
    let size_path = sys.join("virtual_size");
    let size = read_attr(&size_path)?;
    let (width, height) = size
        .split_once(',')
        .and_then(|(w, h)| Some((w.parse::<u64>().ok()?, h.parse::<u64>().ok()?)))
        .ok_or_else(|| Error::Sysfs {
            path: size_path.clone(),
            content: size.clone(),
        })?;
    let stride = read_dec_attr(&sys.join("stride"))?;
    let bpp = read_dec_attr(&sys.join("bits_per_pixel"))?;
    if bpp == 0 || !bpp.is_multiple_of(8) {
        return Err(Error::Check(format!(
            "{}: unsupported bits_per_pixel {bpp}",
            sys.display()
        )));
    }
    let row_len = width
        .checked_mul(bpp / 8)
        .filter(|&r| r <= stride && r > 0)
        .and_then(|r| usize::try_from(r).ok())
        .ok_or_else(|| {
            Error::Check(format!(
                "{}: width {width} x {bpp} bpp does not fit stride {stride}",
                sys.display()
            ))
        })?;

    let file = File::open(dev).map_err(|e| Error::io("open", dev, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; row_len];
    for y in 0..height {
        let offset = y
            .checked_mul(stride)
            .ok_or_else(|| Error::Check(format!("row {y} offset overflows")))?;
        file.read_exact_at(&mut buf, offset)
            .map_err(|e| Error::io("read", dev, e))?;
        hasher.update(&buf);
    }
    Ok(FbHash {
        width,
        height,
        stride,
        bpp,
        sha256: super::hex(&hasher.finalize()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_visible_bytes_only() {
        let dir = std::env::temp_dir().join(format!("saffron-guest-fb-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("virtual_size"), "3,2\n").unwrap();
        std::fs::write(dir.join("stride"), "16\n").unwrap();
        std::fs::write(dir.join("bits_per_pixel"), "32\n").unwrap();
        // Two rows of 12 visible bytes, each followed by 4 bytes of padding.
        let mut fb = Vec::new();
        fb.extend_from_slice(b"ABCDEFGHIJKLpadd");
        fb.extend_from_slice(b"MNOPQRSTUVWXpadd");
        let dev = dir.join("fb");
        std::fs::write(&dev, &fb).unwrap();

        let got = hash_framebuffer(&dir, &dev);
        std::fs::write(dir.join("bits_per_pixel"), "12\n").unwrap();
        let bad_bpp = hash_framebuffer(&dir, &dev);
        std::fs::remove_dir_all(&dir).unwrap();

        assert_eq!(
            got.unwrap(),
            FbHash {
                width: 3,
                height: 2,
                stride: 16,
                bpp: 32,
                sha256: super::super::sha256_hex(b"ABCDEFGHIJKLMNOPQRSTUVWX"),
            }
        );
        assert!(matches!(bad_bpp, Err(Error::Check(_))));
    }
}
