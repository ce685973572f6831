//! `[server]` (the front door: listen addresses, WebSocket limits, shutdown) and `[limits]`
//! (what one client may hold, admission control).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address `kav serve` listens on (also `KAV_LISTEN`, `--listen`).
    pub listen: String,
    /// Public base URL Twilio reaches us at, e.g. `https://kav.example.com` (also `KAV_PUBLIC_URL`,
    /// `--public-url`). Empty: derived from the request's Host header (fine on loopback only).
    pub public_url: String,
    /// Largest WebSocket message accepted from Twilio; larger ones end that call's stream.
    pub max_message_bytes: usize,
    /// Outbound WebSocket messages queued per call before further ones are dropped and counted.
    pub ws_send_queue: usize,
    /// A call whose outbound queue stays full this long is a slow consumer and is ended.
    pub slow_consumer_ms: u64,
    /// On shutdown, live calls get this long to finish before they are closed.
    pub shutdown_grace_ms: u64,
    /// A call that sends no `start` within this long after connecting is closed.
    pub start_timeout_ms: u64,
    /// Serve `/metrics` on this separate address (e.g. an internal interface) instead of `listen`.
    /// Empty: `/metrics` is on `listen`.
    pub metrics_listen: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            public_url: String::new(),
            max_message_bytes: 64 * 1024,
            ws_send_queue: 128,
            slow_consumer_ms: 5_000,
            shutdown_grace_ms: 30_000,
            start_timeout_ms: 10_000,
            metrics_listen: String::new(),
        }
    }
}

/// What one client may hold, and when new calls are refused (issue 15). Every limit is counted on
/// `/metrics` when it bites.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// A connection must deliver a whole request head within this long, also while it idles
    /// between keep-alive requests and for the WebSocket handshake; else it is closed.
    pub header_read_timeout_ms: u64,
    /// A request (body and handler) must be answered within this long, else 408.
    pub request_timeout_ms: u64,
    /// Open TCP connections (calls included); beyond this new connections are closed at once.
    pub max_connections: usize,
    /// Live calls; beyond this the voice webhook answers the overflow TwiML. 0 = no limit.
    /// A call counts from the webhook that admits it, not only once its stream is open.
    pub max_calls: usize,
    /// How long a call admitted at the webhook holds its place while its Media Stream has not
    /// opened yet (Twilio opens it about a second after the TwiML; a caller who hangs up while
    /// it rings never does).
    pub admission_hold_ms: u64,
    /// Event-loop lag (a sampler's timer lateness, ms) above which new calls are refused. 0 = off.
    pub max_loop_lag_ms: u64,
    /// How often the lag sampler wakes up.
    pub lag_sample_ms: u64,
    /// Refused calls are dialled here (`<Dial>`, E.164) when set; else `overflow_say` is spoken.
    pub overflow_dial: String,
    /// Spoken to refused calls; empty = a built-in sentence in the call's language.
    pub overflow_say: String,
    /// Webhook requests per second per client IP (sustained); 0 = no limit.
    pub webhook_rate_per_s: u32,
    /// Webhook requests one IP may send in a burst.
    pub webhook_burst: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            max_connections: 10_000,
            max_calls: 1_000,
            admission_hold_ms: 10_000,
            max_loop_lag_ms: 50,
            lag_sample_ms: 100,
            overflow_dial: String::new(),
            overflow_say: String::new(),
            webhook_rate_per_s: 50,
            webhook_burst: 200,
        }
    }
}
