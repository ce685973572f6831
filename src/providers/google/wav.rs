#[allow(unused_imports)]
use super::*;

// ------------------------------------------------------------------ text to speech

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WavError {
    /// The audio ends before the `data` chunk starts.
    #[error("WAV header is truncated")]
    Truncated,
    #[error("not a valid WAV header: {0}")]
    Malformed(#[from] super::audio_file::WavHeaderError),
    #[error(
        "unsupported WAV audio: format {format}, {channels} channel(s), {rate} Hz, {bits} bits"
    )]
    Unsupported {
        format: u16,
        channels: u16,
        rate: u32,
        bits: u16,
    },
}

/// Turns what `SynthesizeSpeech` returned into headerless 8 kHz mu-law. Google wraps MULAW and
/// LINEAR16 in a WAV header, read by the one WAV parser ([`audio_file::parse_wav_header`], which
/// walks the chunks, so extra chunks such as LIST are handled). Audio without a RIFF header is
/// taken as mu-law already.
pub fn wav_to_mulaw(bytes: &[u8]) -> Result<Vec<u8>, WavError> {
    use super::audio_file::{WavEncoding, parse_wav_header};
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Ok(bytes.to_vec());
    }
    let header = parse_wav_header(bytes)
        .map_err(WavError::Malformed)?
        .ok_or(WavError::Truncated)?;
    let start = header.data_offset.min(bytes.len());
    // Streaming encoders write 0 or a placeholder near u32::MAX: the data then runs to the end.
    let end = match header.data_len {
        0 => bytes.len(),
        n => start.saturating_add(n as usize).min(bytes.len()),
    };
    let data = &bytes[start..end];
    match (header.encoding, header.channels, header.sample_rate) {
        (WavEncoding::MuLaw, 1, 8000) => Ok(data.to_vec()),
        (WavEncoding::Pcm16, 1, 8000) => Ok(data
            .chunks_exact(2)
            .map(|s| g711::encode(i16::from_le_bytes([s[0], s[1]])))
            .collect()),
        (encoding, channels, rate) => {
            let (format, bits) = match encoding {
                WavEncoding::Pcm16 => (1, 16),
                WavEncoding::MuLaw => (7, 8),
                WavEncoding::Other { tag, bits } => (tag, bits),
            };
            Err(WavError::Unsupported {
                format,
                channels,
                rate,
                bits,
            })
        }
    }
}
