//! The fuzz targets (`fuzz/`, README "Reliability: fuzzing and faults") as plain tests, so they run
//! without cargo-fuzz, libFuzzer or an instrumented build:
//! - `replay_*`: every committed seed (`fuzz/corpus/<target>/`) and every crash the fuzzer found
//!   (`fuzz/regressions/<target>/`, minimised) goes through the target's checks; a crash found
//!   once stays fixed.
//! - `random_*` (ignored; CI runs them with `-- --ignored`): a time-bounded random pass per target,
//!   `KAV_FUZZ_SECS` seconds each (default 20): seeds mutated at random (bit flips, byte and token
//!   inserts, deletions, splices) and fresh random bytes. Not coverage-guided — the real fuzzer is
//!   `scripts/fuzz.sh` — but the same checks on the same code, in the debug build CI already has.
//!   A failing input is written to `target/fuzz-failures/<target>/` for replay.

#[path = "../fuzz/src/audio_frames.rs"]
mod audio_frames;
#[path = "../fuzz/src/booking_parse.rs"]
mod booking_parse;
#[path = "../fuzz/src/call_session.rs"]
mod call_session;
#[path = "../fuzz/src/signatures.rs"]
mod signatures;
#[path = "../fuzz/src/twilio_form.rs"]
mod twilio_form;
#[path = "../fuzz/src/twilio_inbound.rs"]
mod twilio_inbound;
#[path = "../fuzz/src/whatsapp_webhook.rs"]
mod whatsapp_webhook;

use kav::providers::sim::Rng;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn fuzz_dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz")
        .join(kind)
        .join(target)
}

/// The files of `dir` (none when it does not exist), sorted by name.
fn inputs(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Runs every seed and regression input of `target`; returns how many ran.
fn replay(target: &str, run: fn(&[u8])) -> usize {
    let mut all = inputs(&fuzz_dir("corpus", target));
    all.extend(inputs(&fuzz_dir("regressions", target)));
    for (path, bytes) in &all {
        if catch_unwind(|| run(bytes)).is_err() {
            panic!("{target}: {} fails", path.display());
        }
    }
    all.len()
}

/// `n` > 0 picks in `0..n`.
fn below(rng: &mut Rng, n: usize) -> usize {
    (rng.next_u64() % n.max(1) as u64) as usize
}

/// Fragments the text targets' grammars are made of, so mutations reach past the first byte.
const TOKENS: &[&[u8]] = &[
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b":",
    b",",
    b"null",
    b"\"event\":\"media\"",
    b"\"payload\":\"",
    b"\\u0000",
    b"\\ud800",
    b"=",
    b"&",
    b"%",
    b"%FF",
    b"+",
    b"whatsapp:",
    b"18446744073709551616",
    b"-1",
    b"0",
    b"9999",
    b"24:00",
    b"29/02",
    b"31.12.9999",
    b"+972",
    "מחר ב".as_bytes(),
    "בשמונה וחצי".as_bytes(),
    b"next friday at 7pm",
    b"\xF0\x9F\x98\x80",
    b"\xFF\xFF\xFF\xFF",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], data: &mut Vec<u8>) {
    for _ in 0..1 + below(rng, 8) {
        match below(rng, 7) {
            0 if !data.is_empty() => {
                let i = below(rng, data.len());
                data[i] ^= 1 << below(rng, 8);
            }
            1 if !data.is_empty() => {
                let i = below(rng, data.len());
                data[i] = rng.next_u64() as u8;
            }
            2 => {
                let i = below(rng, data.len() + 1);
                let n = 1 + below(rng, 16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next_u64() as u8).collect();
                data.splice(i..i, bytes);
            }
            3 if !data.is_empty() => {
                let i = below(rng, data.len());
                let n = 1 + below(rng, (data.len() - i).min(64));
                data.drain(i..i + n);
            }
            4 if !data.is_empty() => {
                let i = below(rng, data.len());
                let n = 1 + below(rng, (data.len() - i).min(64));
                let copy = data[i..i + n].to_vec();
                let at = below(rng, data.len() + 1);
                data.splice(at..at, copy);
            }
            5 if !seeds.is_empty() => {
                let other = &seeds[below(rng, seeds.len())];
                let from = below(rng, other.len() + 1);
                let at = below(rng, data.len() + 1);
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            _ => {
                let i = below(rng, data.len() + 1);
                let token = TOKENS[below(rng, TOKENS.len())];
                data.splice(i..i, token.iter().copied());
            }
        }
    }
    data.truncate(64 * 1024);
}

/// Feeds `target` mutated seeds and random bytes for `KAV_FUZZ_SECS` seconds (default 20).
fn random(target: &str, run: fn(&[u8])) {
    let secs: u64 = std::env::var("KAV_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed = std::env::var("KAV_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1;
    let mut rng = Rng::new(seed);
    let mut seeds: Vec<Vec<u8>> = inputs(&fuzz_dir("corpus", target))
        .into_iter()
        .chain(inputs(&fuzz_dir("regressions", target)))
        .map(|(_, b)| b)
        .collect();
    let start = Instant::now();
    let mut runs = 0u64;
    while start.elapsed() < Duration::from_secs(secs) {
        let mut data = if seeds.is_empty() || below(&mut rng, 8) == 0 {
            let n = below(&mut rng, 4096);
            (0..n).map(|_| rng.next_u64() as u8).collect()
        } else {
            seeds[below(&mut rng, seeds.len())].clone()
        };
        mutate(&mut rng, &seeds, &mut data);
        if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
            let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("target/fuzz-failures")
                .join(target);
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("crash-{seed}-{runs}"));
            std::fs::write(&path, &data).unwrap();
            panic!(
                "FUZZ CRASH in {target} (KAV_FUZZ_SEED={seed}, run {runs}): input saved to {}; \
                 minimise it and add it under fuzz/regressions/{target}/",
                path.display()
            );
        }
        runs += 1;
        // Inputs that parsed far enough to be interesting are kept as further seeds, bounded.
        if seeds.len() < 512 && below(&mut rng, 64) == 0 {
            seeds.push(data);
        }
    }
    eprintln!("{target}: {runs} random inputs in {secs} s, seed {seed}, 0 crashes");
    assert!(runs > 0, "{target}: no input ran in {secs} s");
}

macro_rules! targets {
    ($($name:ident: $min_seeds:expr),* $(,)?) => {
        mod replay {
            $(
                #[test]
                fn $name() {
                    let n = super::replay(stringify!($name), super::$name::run);
                    assert!(n >= $min_seeds, "{}: {n} seed inputs, expected ≥ {}", stringify!($name), $min_seeds);
                }
            )*
        }
        mod random {
            $(
                #[test]
                #[ignore = "time-bounded random pass; CI runs it (KAV_FUZZ_SECS)"]
                fn $name() {
                    super::random(stringify!($name), super::$name::run);
                }
            )*
        }
    };
}

targets! {
    twilio_inbound: 6,
    whatsapp_webhook: 4,
    twilio_form: 1,
    signatures: 1,
    booking_parse: 2,
    audio_frames: 1,
    call_session: 1,
}
