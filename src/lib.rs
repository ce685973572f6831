//! Kav: a real-time voice-agent engine.
//!
//! `core` is sans-IO (codecs, audio, the call session state machine); `adapters` are the tokio and
//! provider shells that drive it; `server` is the axum front door; `store` persists calls off the
//! audio path; `caller` is the simulated Twilio peer behind `kav call`, `kav loadgen` and `kav demo`.
//! See README.md, section ARCHITECTURE.

pub mod adapters;
pub mod agent;
pub mod caller;
pub mod config;
pub mod core;
pub mod metrics;
pub mod server;
pub mod store;
pub mod testing;
