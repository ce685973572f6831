//! The simulated Twilio peer: `kav call`, `kav loadgen`, `kav demo`.
