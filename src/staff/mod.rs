//! The staff assistant's room (issue 13): batch tools over the calendar for a business's own
//! staff, reachable only from the operator console.
//!
//! **Invariant:** every staff tool runs for one authenticated [`tools::StaffPrincipal`] of one
//! business, through the same typed booking use cases as the customer tools
//! ([`crate::agent::usecases`]: policy, capacity recount, duplicate window, outbox events). A
//! `StaffPrincipal` is made only from an authenticated console principal
//! ([`tools::StaffPrincipal::from_console`]); no customer channel (phone, WhatsApp) has one, so
//! none can reach these tools, whatever the sender number or message text.
//!
//! **API boundary** (what the staff agent uses):
//! * [`tools::StaffToolbox::tool_schemas`] — the tools as OpenAI function-tool schemas, derived
//!   from the argument types (`schemars`), so the schema is exactly what is parsed;
//!   [`tools::StaffToolbox::specs`] — the same as [`crate::providers::ToolSpec`]s.
//! * [`tools::StaffToolbox::call`]`(who, name, args, now_ms)` — runs one tool; never fails:
//!   refusals are `{ok:false, error, reason}` values.
//!
//! Tools: `staff_find`, `staff_free_slots`, `staff_chat_stats` (reads), `staff_batch_reserve`,
//! `staff_batch_modify`, `staff_batch_cancel` (changes). Changes:
//! * **Per-item commit.** Each item is checked and committed on its own, in start order; the
//!   valid ones are committed and each failure is reported with its reason. Items are different
//!   customers' bookings, and one item refused by the policy (a closed day, a full slot) must not
//!   block the others; all-or-nothing would also need one transaction across the per-booking
//!   capacity transactions. The confirmation preview shows the set before anything changes.
//! * **Confirmation.** A batch of more than `[staff_agent] confirm_over` items changes nothing
//!   and answers `confirmation_required` with a single-use token (stored hashed in the database,
//!   so any instance accepts it) bound to the account, business, tool, arguments and selected
//!   items, expiring after `confirm_ttl_s`.
//! * **Audit.** Every change call, refused or not, is one `staff_audit` row.
//! * **Notices.** A batch move or cancel queues one WhatsApp notice per affected customer in the
//!   outbox (text, or a template outside the 24-hour window), unless `notify: false`; a notice
//!   that cannot be queued never fails the change.
//! * **Customer data is data.** Names and messages are returned as JSON strings; nothing in
//!   them is interpreted.

pub mod agent;
mod batch;
mod names;
pub mod offline;
pub mod prompt;
mod query;
pub mod tools;
