//! Fake vendor servers on 127.0.0.1:0 speaking the vendors' wire protocols, for tests and benches.

pub mod fake_graph;
