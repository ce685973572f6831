//! Fake vendor servers speaking the real wire protocols, for tests, benches and end-to-end runs.

pub mod fake_google;
