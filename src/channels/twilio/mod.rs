//! Twilio Media Streams voice calls: the per-call driver.

pub mod call;
