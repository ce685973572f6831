//! Counters and per-turn latency histograms, rendered for Prometheus at `GET /metrics`.
