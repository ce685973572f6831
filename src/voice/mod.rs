//! Sans-IO core: nothing in here reads the clock, touches a socket, spawns a task or logs.
//! Time comes in as `now: Instant` arguments; work goes out through `poll_*` methods.

pub mod audio;
pub mod config;
pub mod digits;
pub mod dtmf;
pub mod events;
pub mod g711;
pub mod pacer;
pub mod ports;
pub mod resample;
pub mod session;
pub mod twilio;
pub mod vad;
pub mod wer;
