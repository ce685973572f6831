//! The per-frame audio path on arbitrary caller bytes: G.711 decode/encode, the inbound graph
//! (energy gate + VAD + in-band DTMF + 16 kHz upsampling), the standalone DTMF detector and the
//! speech segmenter. Frames are 160 bytes; the input is cut into as many as it holds.
use kav::config::VadConfig;
use kav::voice::audio::InboundAudio;
use kav::voice::dtmf::{DtmfDetector, DtmfDetectorConfig};
use kav::voice::g711;
use kav::voice::twilio::{FRAME_BYTES, is_dtmf_digit};
use kav::voice::vad::SpeechSegmenter;
use std::time::{Duration, Instant};

/// One fuzz input.
pub fn run(data: &[u8]) {
    let Some((&mode, frames)) = data.split_first() else {
        return;
    };
    let inband = mode & 4 != 0;
    let mut graph = InboundAudio::new(mode % 4, inband, mode & 8 != 0);
    let mut detector = DtmfDetector::new(DtmfDetectorConfig::default());
    let mut segmenter = SpeechSegmenter::new(&VadConfig::default());
    let t0 = Instant::now();
    let mut pcm = [0i16; 160];
    let mut back = [0u8; 160];
    for (i, chunk) in frames.chunks_exact(FRAME_BYTES).enumerate() {
        let frame: &[u8; FRAME_BYTES] = chunk.try_into().unwrap();
        // Mu-law round trip is the identity except for the two zeros (0x7F and 0xFF).
        g711::decode_into(frame, &mut pcm);
        g711::encode_into(&pcm, &mut back);
        for (a, b) in frame.iter().zip(back.iter()) {
            assert!(
                a == b || (g711::decode(*a) == 0 && g711::decode(*b) == 0),
                "{a:#x} -> {b:#x}"
            );
        }
        let analysis = graph.process(frame);
        if let Some(d) = analysis.dtmf {
            assert!(is_dtmf_digit(d), "detector produced {d:?}");
        }
        // The standalone detector where the graph has none: the same code on the same samples
        // twice per frame bought no coverage and cost a fifth of the time.
        if !inband && let Some(d) = detector.process_frame(&pcm) {
            assert!(is_dtmf_digit(d), "detector produced {d:?}");
        }
        let _ = segmenter.push(t0 + Duration::from_millis(20 * i as u64), analysis.voiced);
    }
}
