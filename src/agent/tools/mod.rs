//! The booking tools: JSON-schema'd, strict arguments (unknown fields are errors), and every
//! failure is a value `{ok:false, error, reason}`, never an error to the caller. Every call is
//! traced (tool, masked argument snapshot, ok, error, reason, latency) in `tool_traces`.
//!
//! This file holds the context, the dispatcher and the trace; `args.rs` the argument types and the
//! tool list (schemas derived from them), `calendar.rs` the calendar tools, `customer.rs` the lead,
//! WhatsApp and business-facts tools.

use std::sync::Arc;
use std::time::Instant;

use jiff::civil::Date;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::usecases::Bookings;
use super::{AgentSettings, BookingRuntime};
use crate::booking::guard::Evidence;
use crate::booking::pii::hash_phone;
use crate::booking::policy::{Refusal, ResourceCap};
use crate::providers::Channel;
use crate::store::booking::ToolTraceRow;

mod args;
mod calendar;
mod customer;

pub use args::{CreateArgs, specs};

pub const FIND_SLOTS: &str = "calendar_find_slots";
pub const CREATE: &str = "calendar_create_appointment";
pub const LIST: &str = "calendar_list_appointments";
pub const UPDATE: &str = "calendar_update_appointment";
pub const CANCEL: &str = "calendar_cancel_appointment";
pub const LEADS_UPSERT: &str = "leads_upsert";
pub const WHATSAPP_SEND: &str = "whatsapp_send";
pub const BUSINESS_INFO: &str = "business_info";

/// Most slots one `calendar_find_slots` answer lists (keeps the LLM context small).
pub const MAX_SLOTS: usize = 24;

/// Who is calling the tools, for which business and conversation.
#[derive(Clone)]
pub struct ToolContext {
    pub rt: Arc<BookingRuntime>,
    pub settings: Arc<AgentSettings>,
    pub channel: Channel,
    pub conversation_id: String,
    pub turn: u32,
    /// The customer's phone as the channel knows it (caller id, WhatsApp sender), E.164.
    pub caller_phone: Option<String>,
    /// What this turn's tools did (shared by clones of the context, so whichever agent ran the
    /// tools, the turn knows what was called and what it changed).
    pub this_turn: TurnTools,
}

/// Longest tool result remembered (characters); a 30-slot answer is cut, its head is what matters.
const MEMORY_RESULT_CHARS: usize = 600;

/// One remembered call: `tool {args} -> {result}`. The history carries only text, so without this
/// a model would see its own "21:00 is free, shall I book?" on the next turn but not the slot,
/// room id or appointment id it was built from.
pub fn memory_line(tool: &str, arguments: &str, result: &str) -> String {
    let mut kept: String = result.chars().take(MEMORY_RESULT_CHARS).collect();
    if kept.len() < result.len() {
        kept.push('…');
    }
    format!("{tool} {} -> {kept}", arguments.trim())
}

/// What one turn's tools did: every call as a [`memory_line`], and the appointments they booked,
/// moved or cancelled (in order, each once).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolsUsed {
    pub lines: Vec<String>,
    pub bookings: Vec<String>,
}

impl ToolsUsed {
    /// Appends `later` (another agent's calls in the same turn).
    pub fn extend(&mut self, later: ToolsUsed) {
        self.lines.extend(later.lines);
        for id in &later.bookings {
            self.add_booking(id);
        }
    }

    fn add_booking(&mut self, id: &str) {
        if !self.bookings.iter().any(|known| known == id) {
            self.bookings.push(id.to_string());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty() && self.bookings.is_empty()
    }
}

/// One turn's [`ToolsUsed`], recorded by [`ToolContext::call`] (the one place every customer
/// tool runs) and read by the agent at the end of the turn, to remember it across turns and
/// instances (the LLM agent's tool memory), whether the model or the offline fallback called.
#[derive(Debug, Clone, Default)]
pub struct TurnTools(Arc<std::sync::Mutex<ToolsUsed>>);

impl TurnTools {
    fn record(&self, raw_args: &str, outcome: &ToolOutcome) {
        let line = memory_line(&outcome.tool, raw_args, &outcome.value.to_string());
        // A poisoned lock only means another holder panicked mid-push; the lists are still valid.
        let mut used = self.0.lock().unwrap_or_else(|e| e.into_inner());
        used.lines.push(line);
        if !outcome.ok || ![CREATE, UPDATE, CANCEL].contains(&outcome.tool.as_str()) {
            return;
        }
        if let Some(id) = outcome.value["appointment_id"].as_str() {
            used.add_booking(id);
        }
    }

    /// What was recorded so far; the record is left empty.
    pub fn take(&self) -> ToolsUsed {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Result of one tool call.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutcome {
    pub tool: String,
    pub ok: bool,
    pub value: Value,
}

impl ToolOutcome {
    pub fn error(&self) -> Option<&str> {
        self.value.get("error").and_then(Value::as_str)
    }

    /// What a successful call lets the agent claim.
    pub fn add_evidence(&self, e: &mut Evidence) {
        if !self.ok {
            // A booking refused for a calendar reason did check the calendar: "11:00 is taken,
            // I can offer 10:00" is backed by it.
            if matches!(self.tool.as_str(), CREATE | UPDATE)
                && self
                    .error()
                    .and_then(Refusal::from_code)
                    .is_some_and(|r| r != Refusal::PastTime)
            {
                e.availability = true;
            }
            return;
        }
        match self.tool.as_str() {
            CREATE | UPDATE => {
                e.booked = true;
                if self.value.get("whatsapp_status").and_then(Value::as_str) == Some("sent") {
                    e.sent = true;
                }
            }
            CANCEL => e.cancelled = true,
            FIND_SLOTS | LIST => e.availability = true,
            WHATSAPP_SEND => e.sent = true,
            _ => {}
        }
    }
}

/// A tool failure as a value: `{ok:false, error, reason}` (customer and staff tools alike).
pub fn fail(error: &str, reason: impl Into<String>) -> Value {
    json!({"ok": false, "error": error, "reason": reason.into()})
}

/// The argument snapshot for traces: phones hashed, names and free text redacted, unless the
/// business opted into `trace_log_pii`.
pub fn mask_args(args: &Value, log_pii: bool) -> Value {
    if log_pii {
        return args.clone();
    }
    match args {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = k.to_ascii_lowercase();
                    let masked = if key.contains("phone") || key == "to" {
                        v.as_str()
                            .map(|s| Value::String(hash_phone(s)))
                            .unwrap_or(Value::Null)
                    } else if key.contains("name") && key != "resource"
                        || key == "text"
                        || key == "notes"
                    {
                        Value::String("[redacted]".into())
                    } else {
                        mask_args(v, log_pii)
                    };
                    (k.clone(), masked)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| mask_args(v, log_pii)).collect()),
        other => other.clone(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(raw: &str) -> Result<T, Value> {
    let raw = if raw.trim().is_empty() { "{}" } else { raw };
    serde_json::from_str(raw).map_err(|e| fail("bad_arguments", e.to_string()))
}

impl ToolContext {
    fn store(&self) -> &crate::store::Store {
        &self.rt.store
    }

    fn now(&self) -> i64 {
        self.rt.now_ms()
    }

    fn bookings(&self) -> Bookings<'_> {
        Bookings::new(&self.rt, &self.settings)
    }

    /// A date argument: `YYYY-MM-DD`, or words the temporal parser reads ("tomorrow", "15.12").
    fn date_arg(&self, raw: &str) -> Result<Date, ()> {
        self.bookings().date_arg(raw, self.now()).ok_or(())
    }

    /// A start argument (see [`Bookings::start_arg`]).
    fn start_arg(&self, raw: &str) -> Result<jiff::civil::DateTime, Value> {
        self.bookings()
            .start_arg(raw, self.now())
            .map_err(|e| fail(e.code(), e.reason()))
    }

    fn caps(&self) -> Vec<ResourceCap> {
        self.bookings().caps()
    }

    fn resource_name(&self, id: Option<&str>) -> Option<String> {
        self.bookings().resource_name(id)
    }

    /// Runs a tool by name with raw JSON arguments and traces it. Never fails.
    pub async fn call(&self, tool: &str, raw_args: &str) -> ToolOutcome {
        let started = Instant::now();
        let at_ms = self.now();
        let value = match tool {
            FIND_SLOTS => self.find_slots(raw_args).await,
            CREATE => self.create(raw_args).await,
            LIST => self.list(raw_args).await,
            UPDATE => self.update(raw_args).await,
            CANCEL => self.cancel(raw_args).await,
            LEADS_UPSERT => self.leads_upsert(raw_args).await,
            WHATSAPP_SEND => self.whatsapp_send(raw_args).await,
            BUSINESS_INFO => self.business_info(raw_args).await,
            other => fail("unknown_tool", format!("no tool named {other:?}")),
        };
        let ok = value.get("ok").and_then(Value::as_bool).unwrap_or(false);
        if value.get("error").and_then(Value::as_str) == Some("internal") {
            // A refusal is the customer's business; a store failure is the operator's.
            let reason = value.get("reason").and_then(|r| r.as_str()).unwrap_or("");
            tracing::warn!(tool, reason, "tool failed on an internal error");
        }
        let args_value: Value = serde_json::from_str(raw_args)
            .unwrap_or_else(|_| json!({"unparsed_chars": raw_args.len()}));
        self.trace(
            tool,
            &args_value,
            ok,
            value.get("error").and_then(Value::as_str),
            value.get("reason").and_then(Value::as_str),
            started.elapsed().as_millis() as i64,
            at_ms,
        )
        .await;
        let outcome = ToolOutcome {
            tool: tool.into(),
            ok,
            value,
        };
        self.this_turn.record(raw_args, &outcome);
        outcome
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn trace(
        &self,
        tool: &str,
        args: &Value,
        ok: bool,
        error: Option<&str>,
        reason: Option<&str>,
        latency_ms: i64,
        at_ms: i64,
    ) {
        let row = ToolTraceRow {
            business_id: self.settings.business.id.clone(),
            conversation_id: self.conversation_id.clone(),
            channel: self.channel.as_str().into(),
            turn: self.turn as i64,
            tool: tool.into(),
            args_json: mask_args(args, self.settings.business.trace_log_pii).to_string(),
            ok,
            error: error.map(str::to_string),
            reason: reason.map(str::to_string),
            latency_ms,
            at_ms,
        };
        if let Err(e) = self.store().insert_tool_trace(&row).await {
            tracing::warn!(error = %e, tool, "tool trace not stored");
        }
    }
}

/// Local midnight of `from` to local midnight after `to`, in unix ms.
pub fn day_bounds(p: &crate::booking::policy::Policy, from: Date, to: Date) -> (i64, i64) {
    let ms = |d: Date| {
        d.to_datetime(jiff::civil::Time::midnight())
            .to_zoned(p.tz.clone())
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or(0)
    };
    (ms(from), ms(to.tomorrow().unwrap_or(to)))
}

/// Same business, room, start and customer = the same request.
pub fn request_key(
    business: &str,
    resource: Option<&str>,
    start_ms: i64,
    phone: Option<&str>,
    name: &str,
) -> String {
    let who = phone
        .map(str::to_string)
        .unwrap_or_else(|| name.trim().to_lowercase());
    let digest = Sha256::digest(
        format!("{business}|{}|{start_ms}|{who}", resource.unwrap_or("-")).as_bytes(),
    );
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

pub fn confirmation_text(
    hebrew: bool,
    business: &str,
    room: Option<&str>,
    date: &str,
    time: &str,
    name: &str,
) -> String {
    if hebrew {
        format!(
            "{name}, התור שלך ב-{business} מאושר: {date} בשעה {time}{}.",
            room.map(|r| format!(", חדר {r}")).unwrap_or_default()
        )
    } else {
        format!(
            "{name}, your booking at {business} is confirmed: {date} at {time}{}.",
            room.map(|r| format!(", room {r}")).unwrap_or_default()
        )
    }
}
