//! G.711 mu-law (PCMU), bit-exact with the ITU-T G.191 STL reference (`ulaw_compress` /
//! `ulaw_expand` in `openitu/STL src/g711/g711.c`).
//!
//! Encoders in the wild disagree by one code on some negative inputs (Sun `g711.c` and the
//! BIAS/CLIP-32635 16-bit form each differ from the STL); we follow the STL because it is the
//! normative reference and ships official test vectors. Decoders all agree, and ours is a table.
//!
//! Everything here is allocation-free and panic-free for every input.

/// The mu-law code for silence (decodes to 0).
pub const SILENCE: u8 = 0xFF;

/// `ulaw_expand` evaluated at compile time. The STL works on 14-bit samples left-justified in 16
/// bits, which is exactly the 16-bit value we return.
const fn expand(byte: u8) -> i16 {
    let inv = !byte;
    let exponent = ((inv >> 4) & 0x07) as i32;
    let mantissa = (inv & 0x0F) as i32;
    let step = 4 << (exponent + 1);
    let magnitude = (0x80 << exponent) + step * mantissa + step / 2 - 4 * 33;
    if byte < 0x80 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn build_decode_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        table[i] = expand(i as u8);
        i += 1;
    }
    table
}

/// mu-law code → linear PCM for all 256 codes.
pub const DECODE_TABLE: [i16; 256] = build_decode_table();

/// Decodes one mu-law byte to 16-bit linear PCM.
#[inline]
pub fn decode(byte: u8) -> i16 {
    DECODE_TABLE[byte as usize]
}

/// Encodes one 16-bit linear sample to mu-law (`ulaw_compress`).
#[inline]
pub fn encode(sample: i16) -> u8 {
    // The STL takes the one's complement of negative samples (not the two's complement) before
    // dropping to 14 bits; that is the rule that makes it differ from Sun's encoder, so keep it.
    let (mag14, sign) = if sample < 0 {
        ((!sample) >> 2, 0x00u8)
    } else {
        (sample >> 2, 0x80u8)
    };
    // 33 is the mu-law bias on the 14-bit scale; the result stays within 33..=8191.
    let absno = ((mag14 as u16) + 33).min(0x1FFF);
    // Segment number 1..=8: one more than the bit length of `absno >> 6`.
    let segno = (u16::BITS - (absno >> 6).leading_zeros()) as u16 + 1;
    let high = 8 - segno;
    let low = 0x0F - ((absno >> segno) & 0x0F);
    ((high << 4) as u8 | low as u8) | sign
}

/// Decodes `src` into the first `src.len()` samples of `dst` (stops at the shorter of the two).
pub fn decode_into(src: &[u8], dst: &mut [i16]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = decode(*s);
    }
}

/// Encodes `src` into the first `src.len()` bytes of `dst` (stops at the shorter of the two).
pub fn encode_into(src: &[i16], dst: &mut [u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = encode(*s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_decode_values() {
        assert_eq!(decode(0xFF), 0);
        assert_eq!(decode(0x7F), 0);
        assert_eq!(decode(0x80), 32124);
        assert_eq!(decode(0x00), -32124);
        assert_eq!(decode(0xF0), 120);
        assert_eq!(decode(0x70), -120);
        assert_eq!(decode(SILENCE), 0);
    }

    #[test]
    fn documented_encode_values() {
        // protocols.md §5.1: STL differs from Sun at -1 and from the 16-bit form at -4.
        assert_eq!(encode(0), 0xFF);
        assert_eq!(encode(-1), 0x7F);
        assert_eq!(encode(-4), 0x7F);
        assert_eq!(encode(-5), 0x7E);
        assert_eq!(encode(4), 0xFE);
        assert_eq!(encode(i16::MAX), 0x80);
        assert_eq!(encode(i16::MIN), 0x00);
        assert_eq!(encode(32124), 0x80);
        assert_eq!(encode(-32124), 0x00);
    }

    #[test]
    fn every_code_survives_decode_encode() {
        for b in 0..=255u8 {
            let back = encode(decode(b));
            // 0x7F is negative zero; it re-encodes as positive zero.
            let expected = if b == 0x7F { 0xFF } else { b };
            assert_eq!(back, expected, "code {b:#04x}");
        }
    }

    #[test]
    fn encode_is_monotonic() {
        let mut prev = decode(encode(i16::MIN));
        for x in i16::MIN..=i16::MAX {
            let y = decode(encode(x));
            assert!(y >= prev, "not monotonic at {x}");
            prev = y;
        }
    }

    #[test]
    fn into_variants_stop_at_the_shorter_slice() {
        let mut pcm = [7i16; 3];
        decode_into(&[0xFF, 0x80], &mut pcm);
        assert_eq!(pcm, [0, 32124, 7]);
        let mut ulaw = [1u8; 1];
        encode_into(&[0, 0, 0], &mut ulaw);
        assert_eq!(ulaw, [0xFF]);
    }
}
