//! Async shells: the per-call driver that runs the sans-IO session, and provider implementations.

pub mod audio_file;
pub mod espeak;
pub mod providers;
pub mod sim;
