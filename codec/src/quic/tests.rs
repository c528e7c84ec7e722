use super::*;

fn rgb32(w: u32, h: u32, f: impl Fn(u32, u32) -> [u8; 4]) -> Vec<u8> {
    let mut v = Vec::new();
    for y in 0..h {
        for x in 0..w {
            v.extend_from_slice(&f(x, y));
        }
    }
    v
}

#[test]
fn round_trip_small() {
    let data = rgb32(7, 5, |x, y| {
        [(x * 31) as u8, (y * 7) as u8, (x ^ y) as u8, 0]
    });
    let img = ImageRef::packed(7, 5, PixelFormat::Rgb32, &data).unwrap();
    let enc = encode(&img).unwrap();
    let dec = decode(&enc, 1 << 20).unwrap();
    assert!(dec.same_picture(&img));
}
