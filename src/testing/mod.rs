//! Fake vendor servers and network helpers for tests and benchmarks. Cloud services are not
//! reachable here, so each real client is exercised against a local server speaking the vendor's
//! wire protocol on 127.0.0.1:0.

pub mod clock;
pub mod fake_google;
pub mod fake_graph;
pub mod fake_openai;
pub mod switchable_sender;
