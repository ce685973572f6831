//! Fake vendor servers speaking the real wire protocols on 127.0.0.1:0, for tests and benches.

pub mod fake_openai;
