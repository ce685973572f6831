//! Voice notes: OGG/Opus bytes → PCM (libopus through `audiopus`) → the configured recogniser.
//!
//! Opus decodes natively at 8, 12, 16, 24 or 48 kHz, so we ask libopus for exactly the rate the
//! recogniser wants (16 kHz PCM, or 8 kHz then G.711 mu-law) instead of decoding at 48 kHz and
//! resampling. The audio is fed in 20 ms frames followed by `UtteranceEnd`, as a call would.

use std::io::Cursor;
use std::time::Duration;

use audiopus::coder::Decoder;
use audiopus::{Channels, SampleRate};
use tokio::sync::mpsc;

use crate::providers::{CallContext, SpeechToText, SttAudioFormat, SttEvent, SttInput};
use crate::voice::g711;

#[derive(Debug, thiserror::Error)]
pub enum VoiceNoteError {
    #[error("not an OGG stream: {0}")]
    Ogg(String),
    #[error("not an Opus stream (no OpusHead)")]
    NotOpus,
    #[error("opus decoder: {0}")]
    Opus(String),
    #[error("voice note longer than {max_s} s")]
    TooLong { max_s: u32 },
    #[error("speech recogniser failed: {0}")]
    Stt(String),
    #[error("speech recogniser produced no transcript")]
    NoTranscript,
    #[error("speech recogniser timed out")]
    Timeout,
}

/// Decoded mono audio.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
}

impl DecodedAudio {
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.samples.len() as f64 / f64::from(self.sample_rate.max(1)))
    }

    /// Root mean square level in dBFS (−inf for silence is reported as −120).
    pub fn rms_dbfs(&self) -> f64 {
        if self.samples.is_empty() {
            return -120.0;
        }
        let sum: f64 = self.samples.iter().map(|s| f64::from(*s).powi(2)).sum();
        let rms = (sum / self.samples.len() as f64).sqrt() / 32768.0;
        if rms <= 1e-6 {
            -120.0
        } else {
            20.0 * rms.log10()
        }
    }
}

/// Longest voice note decoded (WhatsApp caps audio at 16 MB; this bounds memory and STT time).
pub const MAX_VOICE_NOTE_S: u32 = 600;

/// Decodes an OGG/Opus file to mono PCM at `sample_rate` (8000, 12000, 16000, 24000 or 48000).
/// Stereo input is decoded as stereo and averaged. The encoder's pre-skip is dropped.
pub fn decode_ogg_opus(bytes: &[u8], sample_rate: u32) -> Result<DecodedAudio, VoiceNoteError> {
    let rate = match sample_rate {
        8000 => SampleRate::Hz8000,
        12000 => SampleRate::Hz12000,
        16000 => SampleRate::Hz16000,
        24000 => SampleRate::Hz24000,
        48000 => SampleRate::Hz48000,
        other => return Err(VoiceNoteError::Opus(format!("unsupported rate {other}"))),
    };
    let mut reader = ogg::reading::PacketReader::new(Cursor::new(bytes));
    let head = reader
        .read_packet()
        .map_err(|e| VoiceNoteError::Ogg(e.to_string()))?
        .ok_or_else(|| VoiceNoteError::Ogg("empty stream".into()))?;
    // RFC 7845 §5.1: "OpusHead", version, channel count, pre-skip (LE u16, at 48 kHz), ...
    if head.data.len() < 19 || &head.data[..8] != b"OpusHead" {
        return Err(VoiceNoteError::NotOpus);
    }
    let channel_count = head.data[9];
    let pre_skip_48k = u16::from_le_bytes([head.data[10], head.data[11]]) as usize;
    let channels = match channel_count {
        1 => Channels::Mono,
        2 => Channels::Stereo,
        n => return Err(VoiceNoteError::Opus(format!("{n} channels not supported"))),
    };
    let stereo = channel_count == 2;
    let mut decoder =
        Decoder::new(rate, channels).map_err(|e| VoiceNoteError::Opus(e.to_string()))?;
    // The longest Opus packet is 120 ms.
    let max_frame = sample_rate as usize * 120 / 1000 * usize::from(channel_count);
    let mut buf = vec![0i16; max_frame];
    let mut samples = Vec::new();
    let max_samples = sample_rate as usize * MAX_VOICE_NOTE_S as usize;
    let mut index = 0usize;
    while let Some(packet) = reader
        .read_packet()
        .map_err(|e| VoiceNoteError::Ogg(e.to_string()))?
    {
        index += 1;
        // Packet 2 is OpusTags (comments), not audio.
        if index == 1 && packet.data.starts_with(b"OpusTags") {
            continue;
        }
        if packet.data.is_empty() {
            continue;
        }
        let n = decoder
            .decode(Some(&packet.data[..]), &mut buf[..], false)
            .map_err(|e| VoiceNoteError::Opus(e.to_string()))?;
        if stereo {
            samples.extend(
                buf[..n * 2]
                    .chunks_exact(2)
                    .map(|lr| ((i32::from(lr[0]) + i32::from(lr[1])) / 2) as i16),
            );
        } else {
            samples.extend_from_slice(&buf[..n]);
        }
        if samples.len() > max_samples {
            return Err(VoiceNoteError::TooLong {
                max_s: MAX_VOICE_NOTE_S,
            });
        }
    }
    let pre_skip = pre_skip_48k * sample_rate as usize / 48_000;
    samples.drain(..pre_skip.min(samples.len()));
    Ok(DecodedAudio {
        sample_rate,
        samples,
    })
}

/// Decodes a voice note in the recogniser's format and returns its final transcript.
/// `call` is handed to the recogniser (its parameters carry e.g. the language).
pub async fn transcribe(
    stt: &dyn SpeechToText,
    call: CallContext,
    ogg_opus: &[u8],
    timeout: Duration,
) -> Result<(String, DecodedAudio), VoiceNoteError> {
    let format = stt.audio_format();
    let rate = match format {
        SttAudioFormat::Mulaw8k => 8000,
        SttAudioFormat::Pcm16k => 16000,
    };
    let audio = decode_ogg_opus(ogg_opus, rate)?;
    let (in_tx, in_rx) = mpsc::channel::<SttInput>(64);
    let (ev_tx, mut ev_rx) = mpsc::channel::<SttEvent>(64);
    let recognition = stt.stream(call, in_rx, ev_tx);
    let frames = audio.samples.clone();
    let feed = async move {
        let frame_len = match format {
            SttAudioFormat::Mulaw8k => 160,
            SttAudioFormat::Pcm16k => 320,
        };
        for chunk in frames.chunks(frame_len) {
            let input = match format {
                SttAudioFormat::Mulaw8k => {
                    let mut frame = [g711::encode(0); 160];
                    for (out, s) in frame.iter_mut().zip(chunk) {
                        *out = g711::encode(*s);
                    }
                    SttInput::Mulaw(frame)
                }
                SttAudioFormat::Pcm16k => {
                    let mut frame = [0i16; 320];
                    frame[..chunk.len()].copy_from_slice(chunk);
                    SttInput::Pcm16k(frame)
                }
            };
            if in_tx.send(input).await.is_err() {
                return in_tx;
            }
        }
        let _ = in_tx.send(SttInput::UtteranceEnd).await;
        // Keep the input open until the final arrives: closing it ends the stream.
        in_tx
    };
    let run = async {
        let (feed_done, first_final) = tokio::join!(feed, async {
            while let Some(event) = ev_rx.recv().await {
                if let SttEvent::Final { text } = event {
                    return Some(text);
                }
            }
            None
        });
        drop(feed_done);
        first_final
    };
    let outcome = tokio::time::timeout(timeout, async {
        tokio::select! {
            text = run => Ok(text),
            ended = recognition => match ended {
                Ok(()) => Ok(None),
                Err(e) => Err(VoiceNoteError::Stt(e.to_string())),
            },
        }
    })
    .await;
    let text = match outcome {
        Ok(Ok(Some(text))) if !text.trim().is_empty() => text,
        Ok(Ok(_)) => return Err(VoiceNoteError::NoTranscript),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(VoiceNoteError::Timeout),
    };
    Ok((text, audio))
}
