//! A WhatsApp sender that can be switched down (every send fails retryably, like a 5xx or a
//! 130429 rate limit) and up again. It records every attempt and every delivered message, so a
//! test can prove "delivered once, after recovery".

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::providers::{BoxFuture, OutboundMessage, SendError, SendReceipt, WhatsAppSender};

#[derive(Default)]
pub struct SwitchableSender {
    down: AtomicBool,
    attempts: AtomicU64,
    delivered: Mutex<Vec<OutboundMessage>>,
}

impl SwitchableSender {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    pub fn attempts(&self) -> u64 {
        self.attempts.load(Ordering::SeqCst)
    }

    /// Messages that reached the "customer", in order (one per successful send).
    pub fn delivered(&self) -> Vec<OutboundMessage> {
        self.delivered.lock().expect("sender lock").clone()
    }
}

impl WhatsAppSender for SwitchableSender {
    fn name(&self) -> &'static str {
        "switchable-test-sender"
    }

    fn send(&self, message: OutboundMessage) -> BoxFuture<'static, Result<SendReceipt, SendError>> {
        self.attempts.fetch_add(1, Ordering::SeqCst);
        let result = if self.down.load(Ordering::SeqCst) {
            Err(SendError::Retryable {
                code: 131000,
                message: "service unavailable (switched down)".into(),
                retry_after_ms: None,
            })
        } else {
            let mut delivered = self.delivered.lock().expect("sender lock");
            delivered.push(message);
            Ok(SendReceipt {
                message_id: format!("wamid.test.{}", delivered.len()),
            })
        };
        Box::pin(async move { result })
    }
}
