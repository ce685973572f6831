//! Kav: a real-time voice-agent engine. One room per domain; see README.md, section ARCHITECTURE.

pub mod agent;
pub mod app;
pub mod booking;
pub mod caller;
pub mod channels;
pub mod clock;
pub mod config;
/// The operator console (issue 12): accounts, sessions, business set-up, bookings.
pub mod console;
pub mod hash;
pub mod metrics;
pub mod providers;
pub mod retry;
pub mod scheduler;
pub mod server;
/// The staff assistant (issue 13): batch tools for a business's staff, console only.
pub mod staff;
pub mod store;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod voice;
