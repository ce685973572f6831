//! The booking tools: JSON-schema'd, strict arguments (unknown fields are errors), and every
//! failure is a value `{ok:false, error, reason}`, never an error to the caller. Every call is
//! traced (tool, masked argument snapshot, ok, error, reason, latency) in `tool_traces`.

use std::sync::Arc;
use std::time::Instant;

use jiff::civil::Date;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::usecases::{Bookings, Refused, ReserveRequest};
use super::{AgentSettings, BookingRuntime};
use crate::booking::guard::Evidence;
use crate::booking::outbox::{self, Delivery, KIND_WHATSAPP_SEND, SendPayload};
use crate::booking::parse::normalize_phone;
use crate::booking::pii::hash_phone;
use crate::booking::policy::{Refusal, ResourceCap};
use crate::providers::{Channel, OutboundBody, OutboundMessage, ToolSpec};
use crate::store::booking::{Appointment, NewOutboxEvent, OutboxStatus, ToolTraceRow};

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

fn fail(error: &str, reason: impl Into<String>) -> Value {
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

/// The tool list given to the LLM.
pub fn specs() -> Vec<ToolSpec> {
    let spec = |name: &str, description: &str, parameters: Value| ToolSpec {
        name: name.into(),
        description: description.into(),
        parameters,
    };
    vec![
        spec(
            FIND_SLOTS,
            "Free appointment slots on a date or a date range (local dates YYYY-MM-DD), optionally for one room.",
            json!({"type":"object","additionalProperties":false,"properties":{
                "date":{"type":"string","description":"YYYY-MM-DD"},
                "from_date":{"type":"string"},"to_date":{"type":"string"},
                "resource":{"type":"string","description":"room name"}}}),
        ),
        spec(
            CREATE,
            "Book an appointment. Call only after the customer confirmed the details.",
            json!({"type":"object","additionalProperties":false,"required":["start_iso","customer_name"],"properties":{
                "start_iso":{"type":"string","description":"local start, e.g. 2026-11-24T10:00"},
                "resource":{"type":"string"},"customer_name":{"type":"string"},
                "customer_phone":{"type":"string"}}}),
        ),
        spec(
            LIST,
            "The customer's own upcoming appointments.",
            json!({"type":"object","additionalProperties":false,"properties":{}}),
        ),
        spec(
            UPDATE,
            "Move one of the customer's appointments to another start time (and optionally room).",
            json!({"type":"object","additionalProperties":false,"required":["appointment_id","start_iso"],"properties":{
                "appointment_id":{"type":"string"},"start_iso":{"type":"string"},"resource":{"type":"string"}}}),
        ),
        spec(
            CANCEL,
            "Cancel one of the customer's appointments.",
            json!({"type":"object","additionalProperties":false,"required":["appointment_id"],"properties":{
                "appointment_id":{"type":"string"}}}),
        ),
        spec(
            LEADS_UPSERT,
            "Save the customer's name, phone and notes.",
            json!({"type":"object","additionalProperties":false,"properties":{
                "name":{"type":"string"},"phone":{"type":"string"},"notes":{"type":"string"}}}),
        ),
        spec(
            WHATSAPP_SEND,
            "Send the customer a WhatsApp text message.",
            json!({"type":"object","additionalProperties":false,"required":["text"],"properties":{
                "text":{"type":"string"}}}),
        ),
        spec(
            BUSINESS_INFO,
            "Facts about the business: hours, prices, rooms, faq, or all.",
            json!({"type":"object","additionalProperties":false,"properties":{
                "topic":{"type":"string","enum":["hours","prices","rooms","faq","all"]}}}),
        ),
    ]
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FindSlotsArgs {
    date: Option<String>,
    from_date: Option<String>,
    to_date: Option<String>,
    resource: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateArgs {
    pub start_iso: String,
    pub resource: Option<String>,
    pub customer_name: String,
    pub customer_phone: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EmptyArgs {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateArgs {
    appointment_id: String,
    start_iso: String,
    resource: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelArgs {
    appointment_id: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LeadArgs {
    name: Option<String>,
    phone: Option<String>,
    notes: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendArgs {
    text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InfoArgs {
    topic: Option<String>,
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
        ToolOutcome {
            tool: tool.into(),
            ok,
            value,
        }
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

    fn slot_json(&self, start_ms: i64, end_ms: i64, resource_ids: &[String]) -> Value {
        let p = &self.settings.policy;
        let names: Vec<String> = resource_ids
            .iter()
            .filter_map(|id| self.resource_name(Some(id)))
            .collect();
        json!({"start_iso": p.iso(start_ms), "end_iso": p.iso(end_ms),
               "time_display": p.time_display(start_ms), "resources": names})
    }

    async fn find_slots(&self, raw: &str) -> Value {
        let args: FindSlotsArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let today = self.settings.policy.local_date(self.now());
        let date = |s: &Option<String>| s.as_deref().map(|d| self.date_arg(d));
        let (from, to) = match (date(&args.date), date(&args.from_date), date(&args.to_date)) {
            (Some(Ok(d)), _, _) | (None, Some(Ok(d)), _) if d < today => {
                return fail("past_time", "that date has passed; ask for another day");
            }
            (Some(Ok(d)), None, None) => (d, d),
            (None, Some(Ok(f)), Some(Ok(t))) if f <= t => (f, t),
            (None, Some(Ok(f)), None) => (f, f),
            _ => {
                return fail(
                    "bad_arguments",
                    "give `date` or `from_date` (+ `to_date` not before it), as YYYY-MM-DD",
                );
            }
        };
        let resource = match self.bookings().room_id(args.resource.as_deref()) {
            Ok(id) => id,
            Err(refused) => return self.refusal_json(refused).await,
        };
        let p = &self.settings.policy;
        let now = self.now();
        let (from_ms, to_ms) = day_bounds(p, from, to);
        let busy = match self
            .store()
            .busy(&self.settings.business.id, from_ms, to_ms)
            .await
        {
            Ok(b) => b,
            Err(e) => return fail("internal", e.to_string()),
        };
        let slots = p.find_slots(now, from, to, &self.caps(), &busy, resource.as_deref());
        let truncated = slots.len() > MAX_SLOTS;
        let slots: Vec<Value> = slots
            .iter()
            .take(MAX_SLOTS)
            .map(|s| self.slot_json(s.start_ms, s.end_ms, &s.resource_ids))
            .collect();
        json!({"ok": true, "timezone": self.settings.business.timezone, "slots": slots, "truncated": truncated})
    }

    fn unknown_resource(&self, name: &str) -> Value {
        let names: Vec<&str> = self
            .settings
            .resources
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        json!({"ok": false, "error": "unknown_resource",
               "reason": format!("no room named {name:?}; rooms: {}", names.join(", ")),
               "resources": names})
    }

    /// A refused start time: the policy's reason and the nearest valid times.
    async fn refused(&self, refusal: Refusal, start_ms: i64, resource: Option<&str>) -> Value {
        let suggestions = self.suggestions(start_ms, resource).await;
        json!({"ok": false, "error": refusal.code(), "reason": refusal.reason(),
               "suggestions": suggestions})
    }

    async fn suggestions(&self, target_ms: i64, resource: Option<&str>) -> Vec<Value> {
        self.bookings()
            .suggestions(self.now(), target_ms, resource, 2)
            .await
            .iter()
            .map(|s| self.slot_json(s.start_ms, s.end_ms, &s.resource_ids))
            .collect()
    }

    /// A refusal of the use cases as this tool answers it.
    async fn refusal_json(&self, refused: Refused) -> Value {
        match refused {
            Refused::Policy {
                refusal,
                start_ms,
                resource_id,
            } => {
                self.refused(refusal, start_ms, resource_id.as_deref())
                    .await
            }
            Refused::Full { .. } => fail("full", "that time was just taken"),
            Refused::NeedName => fail("need_name", "ask the customer's name before booking"),
            Refused::NeedPhone => fail(
                "need_phone",
                if self.channel == Channel::Phone {
                    "ask the caller to type their phone number on the keypad and press #"
                } else {
                    "ask the customer for their phone number"
                },
            ),
            Refused::UnknownResource { name, .. } => self.unknown_resource(&name),
            Refused::NotFound => fail("not_found", "no such appointment for this customer"),
            Refused::AlreadyCancelled => fail("not_found", "already cancelled"),
            Refused::Store(e) => fail("internal", e.to_string()),
        }
    }

    async fn create(&self, raw: &str) -> Value {
        let args: CreateArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let now = self.now();
        let start = match self.start_arg(&args.start_iso) {
            Ok(s) => s,
            Err(e) => return e,
        };
        let phone = args
            .customer_phone
            .as_deref()
            .filter(|p| p.chars().filter(char::is_ascii_digit).count() >= 7)
            .map(normalize_phone)
            .or_else(|| self.caller_phone.clone());
        let bookings = self.bookings();
        if let Err(refused) = bookings.check_contact(&args.customer_name, phone.as_deref()) {
            return self.refusal_json(refused).await;
        }
        let resource_id = match bookings.room_id(args.resource.as_deref()) {
            Ok(id) => id,
            Err(refused) => return self.refusal_json(refused).await,
        };
        let request = ReserveRequest {
            start,
            resource_id,
            name: args.customer_name.trim().to_string(),
            phone: phone.clone(),
            channel: self.channel.as_str().into(),
            conversation_id: self.conversation_id.clone(),
            confirm_on_whatsapp: true,
        };
        let reserved = match bookings.reserve(&request, now).await {
            Ok(r) => r,
            Err(Refused::Full {
                start_ms,
                resource_id,
            }) => {
                let suggestions = self.suggestions(start_ms, resource_id.as_deref()).await;
                return json!({"ok": false, "error": "full", "reason": "that time was just taken; offer the suggestions", "suggestions": suggestions});
            }
            Err(refused) => return self.refusal_json(refused).await,
        };
        let appt = reserved.appointment;
        if reserved.duplicate {
            let status = self.confirmation_status(&appt).await;
            return self.created_json(&appt, true, None, status);
        }
        let name = appt.customer_name.clone();
        // Lead upsert after the commit: a failure is traced, never fatal to the booking.
        let started = Instant::now();
        let lead_id = match bookings.attach_customer(&appt, now).await {
            Ok(id) => id,
            Err(e) => {
                self.trace(
                    "leads_upsert(auto)",
                    &json!({"phone": appt.customer_phone, "name": name}),
                    false,
                    Some("internal"),
                    Some(&e.to_string()),
                    started.elapsed().as_millis() as i64,
                    now,
                )
                .await;
                None
            }
        };
        // One immediate WhatsApp attempt; the outbox worker retries if it fails.
        let status = if !reserved.confirmation_queued {
            "pending"
        } else {
            match outbox::deliver_key_now(&self.rt, &format!("confirm:{}", appt.id)).await {
                Ok(Delivery::Delivered) => self.sent_status(),
                Ok(_) => "failed",
                Err(e) => {
                    tracing::warn!(error = %e, "confirmation attempt not recorded");
                    "failed"
                }
            }
        };
        self.created_json(&appt, false, lead_id, status)
    }

    fn created_json(
        &self,
        a: &Appointment,
        duplicate: bool,
        lead_id: Option<String>,
        status: &str,
    ) -> Value {
        let p = &self.settings.policy;
        json!({"ok": true, "appointment_id": a.id, "date_iso": p.date_iso(a.start_ms),
               "time_display": p.time_display(a.start_ms), "start_iso": p.iso(a.start_ms),
               "resource": self.resource_name(a.resource_id.as_deref()),
               "lead_id": lead_id.or(a.customer_id.clone()), "whatsapp_status": status,
               "duplicate": duplicate})
    }

    async fn whatsapp_number_id(&self) -> Option<String> {
        self.store()
            .whatsapp_number_for(&self.settings.business.id)
            .await
            .ok()
            .flatten()
    }

    /// A duplicate request reports where the original confirmation stands.
    async fn confirmation_status(&self, a: &Appointment) -> &'static str {
        match self
            .store()
            .outbox_by_key(&format!("confirm:{}", a.id))
            .await
        {
            Ok(Some(row)) if row.status == OutboxStatus::Delivered => self.sent_status(),
            Ok(Some(_)) => "failed",
            _ => "pending",
        }
    }

    /// A confirmation the sender took: `sent` only if that sender reaches the customer. The log
    /// stand-in keeps it for the operator, and the customer hears that the details will follow.
    fn sent_status(&self) -> &'static str {
        if self.rt.sender.delivers() {
            "sent"
        } else {
            "pending"
        }
    }

    async fn own(&self, appointment_id: &str) -> Result<Appointment, Value> {
        let Some(phone) = &self.caller_phone else {
            return Err(fail(
                "need_phone",
                "the customer's phone is unknown; ask for it",
            ));
        };
        match self.store().appointment(appointment_id).await {
            Ok(Some(a))
                if a.customer_phone.as_deref() == Some(phone.as_str())
                    && a.business_id == self.settings.business.id =>
            {
                Ok(a)
            }
            Ok(_) => Err(fail("not_found", "no such appointment for this customer")),
            Err(e) => Err(fail("internal", e.to_string())),
        }
    }

    async fn list(&self, raw: &str) -> Value {
        if let Err(e) = parse::<EmptyArgs>(raw) {
            return e;
        }
        let Some(phone) = &self.caller_phone else {
            return fail("need_phone", "the customer's phone is unknown; ask for it");
        };
        let now = self.now();
        match self
            .store()
            .appointments_for_phone(&self.settings.business.id, phone, now)
            .await
        {
            Ok(list) => {
                let p = &self.settings.policy;
                let items: Vec<Value> = list
                    .iter()
                    .map(|a| json!({"appointment_id": a.id, "start_iso": p.iso(a.start_ms),
                        "date_iso": p.date_iso(a.start_ms), "time_display": p.time_display(a.start_ms),
                        "resource": self.resource_name(a.resource_id.as_deref())}))
                    .collect();
                json!({"ok": true, "appointments": items})
            }
            Err(e) => fail("internal", e.to_string()),
        }
    }

    async fn update(&self, raw: &str) -> Value {
        let args: UpdateArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let current = match self.own(&args.appointment_id).await {
            Ok(a) => a,
            Err(e) => return e,
        };
        let start = match self.start_arg(&args.start_iso) {
            Ok(s) => s,
            Err(e) => return e,
        };
        let bookings = self.bookings();
        let resource_id = match args.resource.as_deref() {
            Some(n) => match bookings.resource_by_name(n) {
                Ok(r) => Some(r.id.clone()),
                Err(refused) => return self.refusal_json(refused).await,
            },
            None => None,
        };
        match bookings
            .modify(&current, start, resource_id, self.now())
            .await
        {
            Ok(moved) => {
                let p = &self.settings.policy;
                json!({"ok": true, "appointment_id": moved.id, "date_iso": p.date_iso(moved.start_ms),
                "time_display": p.time_display(moved.start_ms), "start_iso": p.iso(moved.start_ms),
                "resource": self.resource_name(moved.resource_id.as_deref())})
            }
            Err(refused) => self.refusal_json(refused).await,
        }
    }

    async fn cancel(&self, raw: &str) -> Value {
        let args: CancelArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let current = match self.own(&args.appointment_id).await {
            Ok(a) => a,
            Err(e) => return e,
        };
        match self.bookings().cancel(&current, self.now()).await {
            Ok(()) => json!({"ok": true, "appointment_id": current.id}),
            Err(refused) => self.refusal_json(refused).await,
        }
    }

    async fn leads_upsert(&self, raw: &str) -> Value {
        let args: LeadArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let phone = args
            .phone
            .as_deref()
            .map(normalize_phone)
            .or_else(|| self.caller_phone.clone());
        let Some(phone) = phone else {
            return fail("need_phone", "a lead is keyed by phone; ask for it");
        };
        let _ = args.notes;
        match self
            .store()
            .upsert_customer(
                &self.settings.business.id,
                &phone,
                args.name.as_deref(),
                self.channel.as_str(),
                "lead",
                self.now(),
            )
            .await
        {
            Ok(id) => json!({"ok": true, "lead_id": id}),
            Err(e) => fail("internal", e.to_string()),
        }
    }

    async fn whatsapp_send(&self, raw: &str) -> Value {
        let args: SendArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let Some(phone) = &self.caller_phone else {
            return fail("need_phone", "the customer's phone is unknown");
        };
        let Some(pnid) = self.whatsapp_number_id().await else {
            return fail("not_configured", "this business has no WhatsApp number");
        };
        if !self.rt.sender.delivers() {
            return fail(
                "not_configured",
                "WhatsApp sending is not configured on this server",
            );
        }
        let now = self.now();
        let digest = Sha256::digest(args.text.as_bytes());
        let key = format!(
            "send:{}:{}:{}",
            self.conversation_id,
            self.turn,
            digest
                .iter()
                .take(6)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let payload = SendPayload {
            message: OutboundMessage {
                phone_number_id: pnid,
                to: phone.trim_start_matches('+').to_string(),
                body: OutboundBody::Text { text: args.text },
                idempotency_key: key.clone(),
            },
            template_fallback: None,
        };
        let ev = NewOutboxEvent {
            business_id: self.settings.business.id.clone(),
            kind: KIND_WHATSAPP_SEND.into(),
            payload_json: serde_json::to_string(&payload).unwrap_or_default(),
            idempotency_key: key.clone(),
            not_before_ms: now,
        };
        if let Err(e) = self.store().enqueue(&ev, now).await {
            return fail("internal", e.to_string());
        }
        match outbox::deliver_key_now(&self.rt, &key).await {
            Ok(Delivery::Delivered) => json!({"ok": true, "status": "sent"}),
            Ok(Delivery::Dead { error }) => fail("send_failed", format!("not sent: {error}")),
            Ok(_) => fail("send_failed", "not sent yet; queued for retry"),
            Err(e) => fail("internal", e.to_string()),
        }
    }

    async fn business_info(&self, raw: &str) -> Value {
        let args: InfoArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let topic = args.topic.unwrap_or_else(|| "all".into());
        if !["hours", "prices", "rooms", "faq", "all"].contains(&topic.as_str()) {
            return fail(
                "bad_arguments",
                "topic is one of hours, prices, rooms, faq, all",
            );
        }
        match self.store().documents(&self.settings.business.id).await {
            Ok(docs) => {
                let docs: Vec<_> = docs
                    .into_iter()
                    .filter(|d| topic == "all" || d.kind == topic)
                    .collect();
                json!({"ok": true, "business": self.settings.business.name, "documents": docs})
            }
            Err(e) => fail("internal", e.to_string()),
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
