//! The inbound audio graph, run once per 20 ms frame: mu-law decode → (8k→16k resample) → VAD →
//! in-band DTMF. Everything is allocated in `new`; `process` allocates, locks and logs nothing.

use crate::voice::dtmf::{DtmfDetector, DtmfDetectorConfig};
use crate::voice::g711;
use crate::voice::resample::Upsampler8kTo16k;
use crate::voice::twilio::FRAME_BYTES;
use crate::voice::vad::Vad;

/// Per-frame results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameAnalysis {
    pub voiced: bool,
    pub dtmf: Option<char>,
}

/// Mean square of a frame below which it is never speech: about -55 dBFS.
const MIN_VOICE_ENERGY: u64 = 60 * 60;

fn frame_energy(pcm: &[i16; 160]) -> u64 {
    pcm.iter()
        .map(|s| (*s as i64 * *s as i64) as u64)
        .sum::<u64>()
        / pcm.len() as u64
}

pub struct InboundAudio {
    pcm8k: [i16; 160],
    pcm16k: [i16; 320],
    upsampler: Option<Upsampler8kTo16k>,
    vad: Vad,
    dtmf: Option<DtmfDetector>,
}

impl InboundAudio {
    /// `upsample`: also produce 16 kHz PCM (for recognisers that want it).
    pub fn new(vad_aggressiveness: u8, inband_dtmf: bool, upsample: bool) -> Self {
        Self {
            pcm8k: [0; 160],
            pcm16k: [0; 320],
            upsampler: upsample.then(Upsampler8kTo16k::new),
            vad: Vad::new(vad_aggressiveness),
            dtmf: inband_dtmf.then(|| DtmfDetector::new(DtmfDetectorConfig::default())),
        }
    }

    pub fn process(&mut self, mulaw: &[u8; FRAME_BYTES]) -> FrameAnalysis {
        g711::decode_into(mulaw, &mut self.pcm8k);
        if let Some(up) = self.upsampler.as_mut() {
            up.process(&self.pcm8k, &mut self.pcm16k);
        }
        // libfvad keeps saying "voice" for up to ~80 ms after a sound stops (its own hangover).
        // Gating on a minimal level ends that on a silent line, so a short click cannot pass the
        // barge-in guard by riding on the VAD's tail.
        let voiced =
            frame_energy(&self.pcm8k) >= MIN_VOICE_ENERGY && self.vad.is_voice(&self.pcm8k);
        let dtmf = self
            .dtmf
            .as_mut()
            .and_then(|d| d.process_frame(&self.pcm8k));
        FrameAnalysis { voiced, dtmf }
    }

    /// 16 kHz PCM of the last processed frame (zeros unless built with `upsample`).
    pub fn pcm16k(&self) -> &[i16; 320] {
        &self.pcm16k
    }

    pub fn pcm8k(&self) -> &[i16; 160] {
        &self.pcm8k
    }
}
