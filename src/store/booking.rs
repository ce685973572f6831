//! Booking tables (migration 0002): businesses and their policy, resources, customers (leads),
//! appointments, conversation messages and summaries, tool traces and the durable outbox.
//!
//! Same conventions as the call tables: runtime queries through the `Any` driver with `$n`
//! placeholders, ids chosen here, unix-ms timestamps, 0/1 booleans.
//!
//! One file per aggregate: businesses (with resources and documents), appointments,
//! customers, conversations, tool traces and the outbox; their types are re-exported here.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

mod appointments;
mod businesses;
mod conversations;
mod customers;
mod outbox;
mod traces;

pub use appointments::{
    Appointment, AppointmentStatus, CapacityRule, CreateOutcome, DEDUPE_WINDOW_MS,
};
pub(super) use businesses::prompt_column;
pub use businesses::{Business, Document, Resource};
pub use conversations::ConversationMessage;
pub use customers::CustomerRow;
pub use outbox::{NewOutboxEvent, OutboxRow, OutboxStatus};
pub use traces::ToolTraceRow;

/// A fresh unique id: `prefix_<process-random>-<counter>`.
pub fn new_id(prefix: &str) -> String {
    static PROCESS: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let process = PROCESS.get_or_init(|| format!("{:012x}", super::id_random() & 0xffff_ffff_ffff));
    let n = NEXT.fetch_add(1, Ordering::Relaxed) + 1;
    format!("{prefix}_{process}{n:06x}")
}
