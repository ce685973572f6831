//! `[console]` (the operator console) and `[staff_agent]` (the staff assistant's tools).

use serde::{Deserialize, Serialize};

/// The operator console (`/console`, issue 12): sessions and sign-in limits. Accounts are made
/// with `kav admin create-user`; `KAV_ADMIN_TOKEN` (environment) is a platform-admin bearer token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// A browser session ends this long after sign-in.
    pub session_ttl_min: u64,
    /// Sign-in attempts per minute from one client IP (also the burst); 0 = no limit.
    pub login_per_min_ip: u32,
    /// Sign-in attempts per minute at one account (also the burst); 0 = no limit.
    pub login_per_min_account: u32,
    /// Mark the session cookie `Secure` (set it when the console is served over HTTPS).
    pub secure_cookie: bool,
    /// Largest form or JSON body a console request may send (documents included).
    pub max_body_bytes: usize,
    /// Ops view: live-call event streams open at once (more get 503).
    pub ops_max_streams: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            session_ttl_min: 12 * 60,
            login_per_min_ip: 20,
            login_per_min_account: 5,
            secure_cookie: false,
            max_body_bytes: 256 * 1024,
            ops_max_streams: 64,
        }
    }
}

/// The staff assistant (issue 13, `src/staff/`): its batch tools.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StaffAgentConfig {
    /// A batch touching more items than this asks for confirmation first (a single-use token).
    pub confirm_over: usize,
    /// A confirmation token expires this long after it was issued.
    pub confirm_ttl_s: u64,
    /// The default staff-assistant prompt (tone, house rules), after the fixed rules in
    /// `src/staff/prompt.rs`; each business can replace it in the console.
    pub prompt: String,
}

impl Default for StaffAgentConfig {
    fn default() -> Self {
        Self {
            confirm_over: 5,
            confirm_ttl_s: 600,
            prompt: "Be brief and exact. Answer in the staff member's language. After any \
                     change, list each booking affected with its result."
                .into(),
        }
    }
}
