//! Audio files in and out of Kav's wire format, 8 kHz mu-law: test clips, demo input, call
//! recordings. Off the frame path, so allocation is fine here.
//!
//! hound reads linear PCM and float WAV but not mu-law (format tag 7), which is what telephony
//! tools (and `audio-samples/`) produce, so the RIFF chunk walk is done here as well;
//! [`parse_wav_header`] is also what the espeak-ng provider uses on its streaming stdout.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use crate::voice::g711;
use crate::voice::resample::{Resampler, ResamplerError};

/// Kav's wire rate.
const RATE: u32 = 8000;
/// A header that has not reached its `data` chunk by this size is not a sane WAV file.
pub const MAX_WAV_HEADER_BYTES: usize = 64 * 1024;

const TAG_PCM: u16 = 1;
const TAG_FLOAT: u16 = 3;
const TAG_MULAW: u16 = 7;
const TAG_EXTENSIBLE: u16 = 0xFFFE;

#[derive(Debug, thiserror::Error)]
pub enum AudioFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a valid WAV file: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("{}: unsupported audio: {what}", path.display())]
    Unsupported { path: PathBuf, what: String },
    #[error("{}: unknown file type; expected a WAV file or raw mu-law (.ulaw, .u, .mulaw)", path.display())]
    UnknownType { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Resample {
        path: PathBuf,
        source: ResamplerError,
    },
}

/// How the samples in a WAV `data` chunk are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WavEncoding {
    /// 16-bit little-endian linear PCM.
    Pcm16,
    /// 8-bit G.711 mu-law.
    MuLaw,
    /// Anything else (format tag and bits per sample, as in the `fmt ` chunk).
    Other { tag: u16, bits: u16 },
}

/// The parts of a WAV header needed to read its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WavHeader {
    pub encoding: WavEncoding,
    pub channels: u16,
    pub sample_rate: u32,
    /// Offset of the first sample byte.
    pub data_offset: usize,
    /// Length of the `data` chunk as declared. Streaming writers (espeak-ng `--stdout`) put a
    /// placeholder near `u32::MAX` here, so treat it as an upper bound.
    pub data_len: u32,
}

/// Why bytes are not a WAV header we understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WavHeaderError {
    #[error("does not start with 'RIFF'")]
    NotRiff,
    #[error("missing RIFF/WAVE signature")]
    NotWave,
    #[error("no 'data' chunk in the first {MAX_WAV_HEADER_BYTES} bytes")]
    NoData,
    #[error("'data' chunk before 'fmt ' chunk")]
    DataBeforeFmt,
    #[error("'fmt ' chunk is {0} bytes, need at least 16")]
    ShortFmt(usize),
    #[error("WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk too short")]
    ShortExtensible,
    #[error("zero channels")]
    ZeroChannels,
    #[error("sample rate 0")]
    ZeroSampleRate,
}

/// Parses a RIFF/WAVE header from the start of `buf`, which may be incomplete.
///
/// `Ok(None)`: `buf` ends before the `data` chunk starts; call again with more bytes.
/// `Err`: not a WAV header we understand (the error says why).
pub fn parse_wav_header(buf: &[u8]) -> Result<Option<WavHeader>, WavHeaderError> {
    if buf.len() < 12 {
        // Reject early garbage without waiting for 12 bytes when possible.
        let n = buf.len().min(4);
        if buf[..n] != b"RIFF"[..n] {
            return Err(WavHeaderError::NotRiff);
        }
        return Ok(None);
    }
    if &buf[..4] != b"RIFF" || &buf[8..12] != b"WAVE" {
        return Err(WavHeaderError::NotWave);
    }
    let mut pos = 12;
    let mut format: Option<(WavEncoding, u16, u32)> = None;
    loop {
        if pos > MAX_WAV_HEADER_BYTES {
            return Err(WavHeaderError::NoData);
        }
        let Some(chunk_header) = buf.get(pos..pos + 8) else {
            return Ok(None);
        };
        let id = &chunk_header[..4];
        let size = u32::from_le_bytes([
            chunk_header[4],
            chunk_header[5],
            chunk_header[6],
            chunk_header[7],
        ]);
        let body = pos + 8;
        if id == b"data" {
            let Some((encoding, channels, sample_rate)) = format else {
                return Err(WavHeaderError::DataBeforeFmt);
            };
            return Ok(Some(WavHeader {
                encoding,
                channels,
                sample_rate,
                data_offset: body,
                data_len: size,
            }));
        }
        if id == b"fmt " {
            let Some(fmt) = buf.get(body..body + size as usize) else {
                return Ok(None);
            };
            format = Some(parse_fmt(fmt)?);
        }
        // Chunks are padded to an even length.
        pos = body + size as usize + (size as usize & 1);
    }
}

fn parse_fmt(fmt: &[u8]) -> Result<(WavEncoding, u16, u32), WavHeaderError> {
    if fmt.len() < 16 {
        return Err(WavHeaderError::ShortFmt(fmt.len()));
    }
    let u16_at = |i: usize| u16::from_le_bytes([fmt[i], fmt[i + 1]]);
    let mut tag = u16_at(0);
    let channels = u16_at(2);
    let sample_rate = u32::from_le_bytes([fmt[4], fmt[5], fmt[6], fmt[7]]);
    let bits = u16_at(14);
    if tag == TAG_EXTENSIBLE {
        // cbSize(2) validBits(2) channelMask(4) then the sub-format GUID, whose first two bytes
        // are the plain format tag.
        if fmt.len() < 26 {
            return Err(WavHeaderError::ShortExtensible);
        }
        tag = u16_at(24);
    }
    if channels == 0 {
        return Err(WavHeaderError::ZeroChannels);
    }
    if sample_rate == 0 {
        return Err(WavHeaderError::ZeroSampleRate);
    }
    let encoding = match (tag, bits) {
        (TAG_PCM, 16) => WavEncoding::Pcm16,
        (TAG_MULAW, 8) => WavEncoding::MuLaw,
        (tag, bits) => WavEncoding::Other { tag, bits },
    };
    Ok((encoding, channels, sample_rate))
}

/// Loads an audio file as headerless 8 kHz mono mu-law, the format of Twilio media payloads.
///
/// Reads WAV (mu-law, 8/16/24/32-bit PCM or 32-bit float; any rate; multi-channel is mixed to
/// mono) and raw mu-law (`.ulaw`, `.u`, `.mulaw`, taken to be 8 kHz mono). 8 kHz mono mu-law WAV
/// data is returned byte for byte; everything else is resampled and encoded.
pub fn load_mulaw_8k(path: impl AsRef<Path>) -> Result<Vec<u8>, AudioFileError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| AudioFileError::Read {
        path: path.into(),
        source,
    })?;
    if bytes.starts_with(b"RIFF") {
        return wav_to_mulaw_8k(path, &bytes);
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("ulaw" | "u" | "mulaw") => Ok(bytes),
        Some("wav") => Err(AudioFileError::Malformed {
            path: path.into(),
            reason: "does not start with 'RIFF'".into(),
        }),
        _ => Err(AudioFileError::UnknownType { path: path.into() }),
    }
}

/// Loads an audio file as mono 16-bit PCM at `rate` (e.g. 16 kHz for Whisper), off the frame path.
///
/// Same inputs as [`load_mulaw_8k`]; mu-law is decoded, PCM and float are read at full
/// resolution (not squeezed through mu-law), then mixed to mono and resampled.
pub fn load_pcm(path: impl AsRef<Path>, rate: u32) -> Result<Vec<i16>, AudioFileError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| AudioFileError::Read {
        path: path.into(),
        source,
    })?;
    let (samples, from_rate) = if bytes.starts_with(b"RIFF") {
        let malformed = |reason: String| AudioFileError::Malformed {
            path: path.into(),
            reason,
        };
        let header = parse_wav_header(&bytes)
            .map_err(|e| malformed(e.to_string()))?
            .ok_or_else(|| malformed("file ends before the 'data' chunk".into()))?;
        let channels = header.channels.max(1) as usize;
        match header.encoding {
            WavEncoding::MuLaw => {
                let end = header
                    .data_offset
                    .saturating_add(header.data_len as usize)
                    .min(bytes.len());
                let data = &bytes[header.data_offset..end];
                let pcm: Vec<i16> = data.iter().map(|b| g711::decode(*b)).collect();
                (mix_to_mono(&pcm, channels), header.sample_rate)
            }
            WavEncoding::Pcm16
            | WavEncoding::Other {
                tag: TAG_PCM | TAG_FLOAT | TAG_EXTENSIBLE,
                ..
            } => {
                let (interleaved, from_rate) = read_with_hound(path, &bytes)?;
                (mix_to_mono(&interleaved, channels), from_rate)
            }
            WavEncoding::Other { tag, bits } => {
                return Err(AudioFileError::Unsupported {
                    path: path.into(),
                    what: format!("WAV format tag {tag} ({bits} bits); use PCM, float or mu-law"),
                });
            }
        }
    } else {
        let mulaw = load_mulaw_8k(path)?;
        (mulaw.iter().map(|b| g711::decode(*b)).collect(), RATE)
    };
    if from_rate == rate {
        return Ok(samples);
    }
    let mut resampler =
        Resampler::new(from_rate, rate).map_err(|source| AudioFileError::Resample {
            path: path.into(),
            source,
        })?;
    let mut out = Vec::with_capacity(samples.len() * rate as usize / from_rate.max(1) as usize + 1);
    resampler.process(&samples, &mut out);
    resampler.flush(&mut out);
    Ok(out)
}

fn wav_to_mulaw_8k(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, AudioFileError> {
    let malformed = |reason: String| AudioFileError::Malformed {
        path: path.into(),
        reason,
    };
    let header = parse_wav_header(bytes)
        .map_err(|e| malformed(e.to_string()))?
        .ok_or_else(|| malformed("file ends before the 'data' chunk".into()))?;
    let channels = header.channels as usize;
    let (samples, rate) = match header.encoding {
        WavEncoding::MuLaw => {
            // A declared length past the end of the file (truncated, or written by a streaming
            // tool that never patched the header) means "up to the end".
            let end = header
                .data_offset
                .saturating_add(header.data_len as usize)
                .min(bytes.len());
            let data = &bytes[header.data_offset..end];
            let data = &data[..data.len() - data.len() % channels];
            if channels == 1 && header.sample_rate == RATE {
                return Ok(data.to_vec());
            }
            let pcm: Vec<i16> = data.iter().map(|b| g711::decode(*b)).collect();
            (mix_to_mono(&pcm, channels), header.sample_rate)
        }
        WavEncoding::Pcm16
        | WavEncoding::Other {
            tag: TAG_PCM | TAG_FLOAT | TAG_EXTENSIBLE,
            ..
        } => {
            let (interleaved, rate) = read_with_hound(path, bytes)?;
            (mix_to_mono(&interleaved, channels), rate)
        }
        WavEncoding::Other { tag, bits } => {
            return Err(AudioFileError::Unsupported {
                path: path.into(),
                what: format!("WAV format tag {tag} ({bits} bits); use PCM, float or mu-law"),
            });
        }
    };
    pcm_to_mulaw_8k(path, &samples, rate)
}

/// Linear PCM and float WAV via hound, as interleaved 16-bit samples.
fn read_with_hound(path: &Path, bytes: &[u8]) -> Result<(Vec<i16>, u32), AudioFileError> {
    let hound_err = |e: hound::Error| match e {
        hound::Error::IoError(source) => AudioFileError::Read {
            path: path.into(),
            source,
        },
        hound::Error::Unsupported => AudioFileError::Unsupported {
            path: path.into(),
            what: "WAV variant not supported by hound".into(),
        },
        other => AudioFileError::Malformed {
            path: path.into(),
            reason: other.to_string(),
        },
    };
    let mut reader = hound::WavReader::new(Cursor::new(bytes)).map_err(hound_err)?;
    let spec = reader.spec();
    let samples: Vec<i16> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 16) => reader
            .samples::<i16>()
            .collect::<Result<_, _>>()
            .map_err(hound_err)?,
        (hound::SampleFormat::Int, bits @ 1..=32) => reader
            .samples::<i32>()
            .map(|s| {
                s.map(|v| {
                    if bits > 16 {
                        (v >> (bits - 16)) as i16
                    } else {
                        (v << (16 - bits)) as i16
                    }
                })
            })
            .collect::<Result<_, _>>()
            .map_err(hound_err)?,
        (hound::SampleFormat::Float, 32) => reader
            .samples::<f32>()
            .map(|s| s.map(|v| (v * 32768.0).round().clamp(-32768.0, 32767.0) as i16))
            .collect::<Result<_, _>>()
            .map_err(hound_err)?,
        (format, bits) => {
            return Err(AudioFileError::Unsupported {
                path: path.into(),
                what: format!("{bits}-bit {format:?} samples"),
            });
        }
    };
    Ok((samples, spec.sample_rate))
}

fn mix_to_mono(interleaved: &[i16], channels: usize) -> Vec<i16> {
    if channels <= 1 {
        return interleaved.to_vec();
    }
    interleaved
        .chunks_exact(channels)
        .map(|frame| (frame.iter().map(|s| *s as i32).sum::<i32>() / channels as i32) as i16)
        .collect()
}

fn pcm_to_mulaw_8k(path: &Path, samples: &[i16], rate: u32) -> Result<Vec<u8>, AudioFileError> {
    let resampled;
    let samples = if rate == RATE {
        samples
    } else {
        let mut r = Resampler::new(rate, RATE).map_err(|source| AudioFileError::Resample {
            path: path.into(),
            source,
        })?;
        let mut out = Vec::with_capacity(samples.len() * RATE as usize / rate as usize + 1);
        r.process(samples, &mut out);
        r.flush(&mut out);
        resampled = out;
        &resampled[..]
    };
    let mut mulaw = vec![g711::SILENCE; samples.len()];
    g711::encode_into(samples, &mut mulaw);
    Ok(mulaw)
}

/// A complete 8 kHz mono mu-law WAV file (format tag 7, 18-byte `fmt `, `fact` chunk: the layout
/// sox writes, which sox, ffmpeg and Audacity read).
pub fn wav_mulaw_8k_bytes(mulaw: &[u8]) -> Vec<u8> {
    let n = mulaw.len() as u32;
    let pad = n & 1;
    let mut out = Vec::with_capacity(58 + mulaw.len() + 1);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(4 + 26 + 12 + 8 + n + pad).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&18u32.to_le_bytes());
    out.extend_from_slice(&TAG_MULAW.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // channels
    out.extend_from_slice(&RATE.to_le_bytes());
    out.extend_from_slice(&RATE.to_le_bytes()); // bytes per second
    out.extend_from_slice(&1u16.to_le_bytes()); // block align
    out.extend_from_slice(&8u16.to_le_bytes()); // bits per sample
    out.extend_from_slice(&0u16.to_le_bytes()); // cbSize
    // Non-PCM formats must carry a `fact` chunk with the sample count.
    out.extend_from_slice(b"fact");
    out.extend_from_slice(&4u32.to_le_bytes());
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(mulaw);
    if pad == 1 {
        out.push(0);
    }
    out
}

/// Writes headerless 8 kHz mu-law as a mu-law WAV file (see [`wav_mulaw_8k_bytes`]).
pub fn save_wav_mulaw_8k(path: impl AsRef<Path>, mulaw: &[u8]) -> Result<(), AudioFileError> {
    let path = path.as_ref();
    if mulaw.len() > (u32::MAX - 64) as usize {
        return Err(AudioFileError::Unsupported {
            path: path.into(),
            what: "more than 4 GiB of audio".into(),
        });
    }
    std::fs::write(path, wav_mulaw_8k_bytes(mulaw)).map_err(|source| AudioFileError::Write {
        path: path.into(),
        source,
    })
}

/// Writes mono 16-bit linear PCM WAV at `rate`.
pub fn save_wav_pcm16(
    path: impl AsRef<Path>,
    rate: u32,
    samples: &[i16],
) -> Result<(), AudioFileError> {
    let path = path.as_ref();
    let write_err = |e: hound::Error| AudioFileError::Write {
        path: path.into(),
        source: match e {
            hound::Error::IoError(io) => io,
            other => std::io::Error::other(other.to_string()),
        },
    };
    if rate == 0 {
        return Err(AudioFileError::Unsupported {
            path: path.into(),
            what: "sample rate 0".into(),
        });
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(write_err)?;
    let mut w = writer.get_i16_writer(samples.len() as u32);
    for s in samples {
        w.write_sample(*s);
    }
    w.flush().map_err(write_err)?;
    writer.finalize().map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("audio-samples")
    }

    fn sine(f: f64, rate: u32, n: usize) -> Vec<i16> {
        (0..n)
            .map(|k| {
                (12000.0 * (2.0 * std::f64::consts::PI * f * k as f64 / rate as f64).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn header_of_a_written_file_is_exactly_what_sox_writes() {
        // thanks_en.wav (even length) and book_he.wav (odd length, so padded) were written by sox.
        for name in ["thanks_en.wav", "book_he.wav"] {
            let original = std::fs::read(samples_dir().join(name)).unwrap();
            let mulaw = load_mulaw_8k(samples_dir().join(name)).unwrap();
            assert_eq!(
                mulaw.len() + 58 + (mulaw.len() & 1),
                original.len(),
                "{name}"
            );
            assert_eq!(wav_mulaw_8k_bytes(&mulaw), original, "{name}");
        }
    }

    #[test]
    fn mulaw_wav_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        for n in [0usize, 1, 159, 160, 8001] {
            let mulaw: Vec<u8> = (0..n).map(|i| (i * 37 % 256) as u8).collect();
            let path = dir.path().join(format!("rt{n}.wav"));
            save_wav_mulaw_8k(&path, &mulaw).unwrap();
            assert_eq!(load_mulaw_8k(&path).unwrap(), mulaw, "n={n}");
            let header = parse_wav_header(&std::fs::read(&path).unwrap())
                .unwrap()
                .unwrap();
            assert_eq!(
                header,
                WavHeader {
                    encoding: WavEncoding::MuLaw,
                    channels: 1,
                    sample_rate: 8000,
                    data_offset: 58,
                    data_len: n as u32
                }
            );
        }
    }

    #[test]
    fn pcm16_8k_round_trip_equals_encoding() {
        let dir = tempfile::tempdir().unwrap();
        let pcm = sine(440.0, 8000, 1234);
        let path = dir.path().join("pcm.wav");
        save_wav_pcm16(&path, 8000, &pcm).unwrap();
        let mut expected = vec![0u8; pcm.len()];
        g711::encode_into(&pcm, &mut expected);
        assert_eq!(load_mulaw_8k(&path).unwrap(), expected);
    }

    #[test]
    fn pcm16_other_rates_are_resampled() {
        let dir = tempfile::tempdir().unwrap();
        for rate in [16000u32, 22050, 44100] {
            let pcm = sine(200.0, rate, rate as usize / 2);
            let path = dir.path().join(format!("pcm{rate}.wav"));
            save_wav_pcm16(&path, rate, &pcm).unwrap();
            let mulaw = load_mulaw_8k(&path).unwrap();
            assert_eq!(mulaw.len(), 4000, "{rate}");
            let decoded: Vec<i16> = mulaw.iter().map(|b| g711::decode(*b)).collect();
            let expected = sine(200.0, 8000, 4000);
            let err = (200..3800)
                .map(|i| (decoded[i] as i32 - expected[i] as i32).abs())
                .max()
                .unwrap();
            // Mu-law step (~3 %) plus up to half an output sample of alignment error at 200 Hz.
            assert!(err < 1400, "{rate}: max error {err} of 12000");
        }
    }

    #[test]
    fn load_pcm_keeps_full_resolution_and_resamples() {
        let dir = tempfile::tempdir().unwrap();
        let pcm = sine(300.0, 16000, 8000);
        let path = dir.path().join("pcm16k.wav");
        save_wav_pcm16(&path, 16000, &pcm).unwrap();
        // Same rate: sample for sample, no mu-law step.
        assert_eq!(load_pcm(&path, 16000).unwrap(), pcm);
        // 16 kHz -> 8 kHz: half as many samples, the same tone.
        let down = load_pcm(&path, 8000).unwrap();
        assert_eq!(down.len(), 4000);
        let expected = sine(300.0, 8000, 4000);
        let err = (200..3800)
            .map(|i| (down[i] as i32 - expected[i] as i32).abs())
            .max()
            .unwrap();
        assert!(err < 400, "max error {err} of 12000");
        // A mu-law WAV is decoded.
        let mulaw_path = dir.path().join("mulaw.wav");
        let mut mulaw = vec![0u8; 4000];
        g711::encode_into(&expected, &mut mulaw);
        save_wav_mulaw_8k(&mulaw_path, &mulaw).unwrap();
        let decoded: Vec<i16> = mulaw.iter().map(|b| g711::decode(*b)).collect();
        assert_eq!(load_pcm(&mulaw_path, 8000).unwrap(), decoded);
        assert_eq!(load_pcm(&mulaw_path, 16000).unwrap().len(), 8000);
    }

    #[test]
    fn stereo_is_mixed_to_mono() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stereo.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for _ in 0..100 {
            w.write_sample(1000i16).unwrap();
            w.write_sample(3000i16).unwrap();
        }
        w.finalize().unwrap();
        let mulaw = load_mulaw_8k(&path).unwrap();
        assert_eq!(mulaw.len(), 100);
        assert!(mulaw.iter().all(|b| *b == g711::encode(2000)));
    }

    #[test]
    fn raw_mulaw_files_load_verbatim() {
        let dir = tempfile::tempdir().unwrap();
        for ext in ["ulaw", "u", "MULAW"] {
            let path = dir.path().join(format!("x.{ext}"));
            std::fs::write(&path, [1u8, 2, 3, 0xFF]).unwrap();
            assert_eq!(load_mulaw_8k(&path).unwrap(), vec![1, 2, 3, 0xFF]);
        }
    }

    #[test]
    fn committed_samples_load() {
        for (name, min_s, max_s) in [
            ("book_en.wav", 2.0, 5.0),
            ("barge_en.wav", 2.0, 5.0),
            ("thanks_en.wav", 1.0, 3.0),
            ("book_he.wav", 2.0, 5.0),
            ("short_noise.wav", 0.11, 0.13),
            ("dtmf_0501234567_hash.wav", 1.7, 1.8),
        ] {
            let mulaw = load_mulaw_8k(samples_dir().join(name)).unwrap();
            let secs = mulaw.len() as f64 / 8000.0;
            assert!((min_s..=max_s).contains(&secs), "{name}: {secs} s");
        }
    }

    #[test]
    fn errors_name_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.wav");
        let err = load_mulaw_8k(&missing).unwrap_err();
        assert!(
            matches!(err, AudioFileError::Read { .. }) && err.to_string().contains("missing.wav"),
            "{err}"
        );

        let junk = dir.path().join("junk.wav");
        std::fs::write(&junk, b"not audio at all").unwrap();
        let err = load_mulaw_8k(&junk).unwrap_err();
        assert!(
            matches!(err, AudioFileError::Malformed { .. }) && err.to_string().contains("junk.wav"),
            "{err}"
        );

        let truncated = dir.path().join("truncated.wav");
        std::fs::write(&truncated, &wav_mulaw_8k_bytes(&[0; 10])[..30]).unwrap();
        let err = load_mulaw_8k(&truncated).unwrap_err();
        assert!(err.to_string().contains("ends before"), "{err}");

        let alaw = dir.path().join("alaw.wav");
        let mut bytes = wav_mulaw_8k_bytes(&[0; 10]);
        bytes[20] = 6; // format tag: A-law
        std::fs::write(&alaw, bytes).unwrap();
        let err = load_mulaw_8k(&alaw).unwrap_err();
        assert!(
            matches!(err, AudioFileError::Unsupported { .. }) && err.to_string().contains("tag 6"),
            "{err}"
        );

        let other = dir.path().join("x.mp3");
        std::fs::write(&other, b"ID3").unwrap();
        assert!(matches!(
            load_mulaw_8k(&other).unwrap_err(),
            AudioFileError::UnknownType { .. }
        ));

        let err = save_wav_mulaw_8k(dir.path().join("no/such/dir.wav"), &[0]).unwrap_err();
        assert!(
            matches!(err, AudioFileError::Write { .. }) && err.to_string().contains("dir.wav"),
            "{err}"
        );
    }

    #[test]
    fn header_parser_handles_partial_input_and_streaming_placeholders() {
        // What espeak-ng writes on stdout: sizes unknown, placeholder lengths.
        let mut espeak = b"RIFF\x24\xf0\xff\x7fWAVEfmt \x10\0\0\0\x01\0\x01\0\x22\x56\0\0\x44\xac\0\0\x02\0\x10\0data\0\xf0\xff\x7f".to_vec();
        for cut in 0..espeak.len() {
            assert_eq!(parse_wav_header(&espeak[..cut]), Ok(None), "cut at {cut}");
        }
        espeak.extend_from_slice(&[0; 10]);
        let h = parse_wav_header(&espeak).unwrap().unwrap();
        assert_eq!(
            (h.encoding, h.channels, h.sample_rate, h.data_offset),
            (WavEncoding::Pcm16, 1, 22050, 44)
        );
        assert!(parse_wav_header(b"RIFX").is_err());
        assert!(parse_wav_header(b"xy").is_err());
    }
}
