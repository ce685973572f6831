//! The bodies of the fuzz targets, one module each: `fuzz_targets/<name>.rs` hands libFuzzer's
//! bytes to `<name>::run`, and the main crate's `tests/fuzz_regressions.rs` includes the same files
//! to replay the seed corpora and every crash found, and to run a short random (not
//! coverage-guided) pass in CI. Each `run` panics when Kav panics or breaks a checked invariant.

pub mod audio_frames;
pub mod booking_parse;
pub mod call_session;
pub mod signatures;
pub mod twilio_form;
pub mod twilio_inbound;
pub mod whatsapp_webhook;
