//! Reusable fakes for tests, benches and end-to-end runs.

pub mod switchable_sender;
