//! G.711 mu-law (PCMU). OWNER: codec helper. Placeholder bodies until the bit-exact version lands.

/// The mu-law code for silence (decodes to 0).
pub const SILENCE: u8 = 0xFF;

/// Decodes one mu-law byte to 16-bit linear PCM.
pub fn decode(byte: u8) -> i16 {
    let u = !byte;
    let t = ((((u & 0x0F) as i32) << 3) + 0x84) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { 0x84 - t } else { t - 0x84 }) as i16
}

/// Encodes one 16-bit linear sample to mu-law.
pub fn encode(sample: i16) -> u8 {
    let sign = if sample < 0 { 0x80u8 } else { 0 };
    let mag = (sample as i32).unsigned_abs().min(32635) as i32 + 0x84;
    let seg = (31 - (mag as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mant = ((mag >> (seg + 3)) & 0x0F) as u8;
    !(sign | ((seg as u8) << 4) | mant)
}

/// Decodes `src` into the first `src.len()` samples of `dst`.
pub fn decode_into(src: &[u8], dst: &mut [i16]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = decode(*s);
    }
}

/// Encodes `src` into the first `src.len()` bytes of `dst`.
pub fn encode_into(src: &[i16], dst: &mut [u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = encode(*s);
    }
}
