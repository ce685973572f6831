//! Per-frame costs on the real-time path. Run: `cargo bench --bench audio_graph`.
//! Target (issue): decode + resample + VAD + DTMF ≤ 10 µs per 20 ms frame.

use std::hint::black_box;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{Criterion, criterion_group, criterion_main};
use kav::config::Config;
use kav::providers::SttAudioFormat;
use kav::voice::audio::InboundAudio;
use kav::voice::session::{CallSession, SessionConfig};
use kav::voice::twilio;

/// Two seconds of speech-like audio followed by a second of silence, as 20 ms mu-law frames.
fn frames() -> Vec<[u8; 160]> {
    let audio = kav::caller::synthetic_speech(Duration::from_secs(2));
    let mut out: Vec<[u8; 160]> = audio
        .chunks_exact(160)
        .map(|c| c.try_into().unwrap())
        .collect();
    out.extend(std::iter::repeat_n([0xFFu8; 160], 50));
    out
}

fn audio_graph(c: &mut Criterion) {
    let frames = frames();
    let mut full = InboundAudio::new(2, true, true);
    let mut i = 0;
    c.bench_function("graph: decode + resample 16k + VAD + DTMF", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            black_box(full.process(black_box(&frames[i])))
        })
    });
    let mut no_resample = InboundAudio::new(2, true, false);
    c.bench_function("graph: decode + VAD + DTMF (8 kHz STT)", |b| {
        b.iter(|| {
            i = (i + 1) % frames.len();
            black_box(no_resample.process(black_box(&frames[i])))
        })
    });
}

fn session_frame(c: &mut Criterion) {
    let frames = frames();
    let cfg = Config::default();
    let t0 = Instant::now();
    let mut session = CallSession::new(
        t0,
        SessionConfig::from_config(&cfg, SttAudioFormat::Mulaw8k),
    );
    let mut n = 0u64;
    c.bench_function("session: handle_media + drain outputs per frame", |b| {
        b.iter(|| {
            n += 1;
            let now = t0 + Duration::from_millis(20 * n);
            session.handle_media(now, &frames[(n as usize) % frames.len()]);
            while let Some(out) = session.poll_output() {
                black_box(out);
            }
        })
    });
}

fn wire(c: &mut Criterion) {
    let mut buf = BytesMut::with_capacity(1024);
    twilio::write_inbound_media(
        &mut buf,
        "MZ0123456789abcdef0123456789abcdef",
        42,
        41,
        820,
        &[0x55; 160],
    );
    let text = String::from_utf8(buf.to_vec()).unwrap();
    let mut pcm = [0u8; 512];
    c.bench_function("wire: parse media + decode payload", |b| {
        b.iter(|| {
            let ev = twilio::parse_inbound(black_box(&text)).unwrap();
            if let twilio::Inbound::Media(m) = ev {
                black_box(twilio::decode_payload(&m.payload, &mut pcm).unwrap());
            }
        })
    });
    let mut out = BytesMut::with_capacity(64 * 1024);
    c.bench_function("wire: write outbound media", |b| {
        b.iter(|| {
            if out.capacity() < 1024 {
                out.reserve(64 * 1024);
            }
            twilio::write_media(
                &mut out,
                "MZ0123456789abcdef0123456789abcdef",
                black_box(&[0x55; 160]),
            );
            black_box(out.split());
        })
    });
}

criterion_group!(benches, audio_graph, session_frame, wire);
criterion_main!(benches);
