//! `bar-rw`: read a BAR0 range and write a known pattern into another one.
//!
//! The host test prepares BAR0 contents through the device server, then compares the printed
//! digests with its own: the read digest proves guest reads see the server's bytes, the write
//! digest (plus the server's view of the range afterwards) proves guest writes reach it.

use crate::args::Options;
use crate::error::{Error, Result};
use crate::pattern::pattern;
use crate::qxl::Qxl;

/// Prints two `SAFFRON-BAR-RW` lines (read, then write) and fails if the written range does
/// not read back as written.
pub fn run(mut opts: Options) -> Result<()> {
    let slot = opts.take("slot");
    let read_off = opts.require_u64("read-off")?;
    let read_len = opts.require_u64("read-len")?;
    let write_off = opts.require_u64("write-off")?;
    let write_len = opts.require_u64("write-len")?;
    let seed = opts.require_u64("seed")?;
    opts.finish()?;
    let seed = u32::try_from(seed)
        .map_err(|_| Error::Usage(format!("--seed {seed:#x} does not fit in 32 bits")))?;
    let dev = super::find_device(slot)?;
    let qxl = Qxl::open(&dev)?;
    let bar_size = qxl.ram.len() as u64;
    let len_of = |what: &'static str, off: u64, len: u64| -> Result<usize> {
        match off.checked_add(len) {
            Some(end) if end <= bar_size => Ok(len as usize),
            _ => Err(Error::OutOfRange {
                what,
                offset: off,
                len,
                size: bar_size,
            }),
        }
    };
    let read_len_usize = len_of("bar-rw read range in BAR0", read_off, read_len)?;
    let write_len_usize = len_of("bar-rw write range in BAR0", write_off, write_len)?;

    let mut read_buf = vec![0u8; read_len_usize];
    qxl.ram.read_bytes(read_off, &mut read_buf)?;
    println!(
        "SAFFRON-BAR-RW read_off={read_off:#x} read_len={read_len:#x} read_sha256={}",
        super::sha256_hex(&read_buf)
    );

    let data = pattern(seed, write_len_usize);
    qxl.ram.write_bytes(write_off, &data)?;
    qxl.ram.sync()?;
    let mut back = vec![0u8; write_len_usize];
    qxl.ram.read_bytes(write_off, &mut back)?;
    let readback_ok = back == data;
    println!(
        "SAFFRON-BAR-RW write_off={write_off:#x} write_len={write_len:#x} seed={seed:#x} \
         write_sha256={} readback={}",
        super::sha256_hex(&data),
        if readback_ok { "ok" } else { "mismatch" }
    );
    if !readback_ok {
        let first = back
            .iter()
            .zip(&data)
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        return Err(Error::Check(format!(
            "BAR0 readback differs from what was written, first at offset {:#x}",
            write_off + first as u64
        )));
    }
    Ok(())
}
