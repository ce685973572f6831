//! Fake vendor servers and network helpers for tests and benchmarks. Cloud services are not
//! reachable here, so each real client is exercised against a local server speaking the vendor's
//! wire protocol.

pub mod fake_graph;
pub mod latency_proxy;
