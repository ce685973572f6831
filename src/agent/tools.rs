//! The booking tools: JSON-schema'd, strict arguments (unknown fields are errors), and every
//! failure is a value `{ok:false, error, reason}`, never an error to the caller. Every call is
//! traced (tool, masked argument snapshot, ok, error, reason, latency) in `tool_traces`.

use std::sync::Arc;
use std::time::Instant;

use jiff::civil::Date;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{AgentSettings, BookingRuntime};
use crate::booking::guard::Evidence;
use crate::booking::outbox::{
    self, Delivery, KIND_APPOINTMENT_CREATED, KIND_WHATSAPP_SEND, SendPayload,
};
use crate::booking::parse::normalize_phone;
use crate::booking::pii::hash_phone;
use crate::booking::policy::{
    ConcurrencyScope, Refusal, ResourceCap, StartVerdict, parse_local_datetime,
};
use crate::booking::temporal::{self, Ambiguity};
use crate::providers::{Channel, OutboundBody, OutboundMessage, ToolSpec};
use crate::store::booking::{
    Appointment, CapacityRule, CreateOutcome, NewOutboxEvent, Resource, ToolTraceRow,
};

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

    fn resource_by_name(&self, name: &str) -> Option<&Resource> {
        let n = name.trim().to_lowercase();
        self.settings.resources.iter().find(|r| {
            r.id.to_lowercase() == n
                || r.name.to_lowercase() == n
                || r.aliases.iter().any(|a| a.to_lowercase() == n)
                || r.mentioned_in(name)
        })
    }

    /// A date argument: `YYYY-MM-DD`, or words the temporal parser reads ("tomorrow", "15.12").
    fn date_arg(&self, raw: &str) -> Result<Date, ()> {
        if let Ok(d) = raw.trim().parse::<Date>() {
            return Ok(d);
        }
        let now = self.settings.policy.zoned(self.now());
        temporal::parse(raw, &now).date.ok_or(())
    }

    /// A start argument: ISO (with or without offset), else the same parser the offline dialog
    /// uses. Never shifted: an ambiguous 12-hour time is an error, a past one is refused later
    /// by the policy as `past_time`.
    fn start_arg(&self, raw: &str) -> Result<jiff::civil::DateTime, Value> {
        let p = &self.settings.policy;
        if let Some(dt) = parse_local_datetime(raw, &p.tz) {
            return Ok(dt);
        }
        let t = temporal::parse(raw, &p.zoned(self.now()));
        match (t.date, t.time, t.ambiguity) {
            (_, _, Some(Ambiguity::TwelveHour { .. })) => Err(fail(
                "ambiguous_time",
                "a 12-hour time without am/pm; ask the customer which one",
            )),
            (_, _, Some(Ambiguity::WhichDay { .. })) => Err(fail(
                "ambiguous_date",
                "several days fit (a weekend, a week); ask the customer which day",
            )),
            (_, _, Some(Ambiguity::InvalidDate)) => {
                Err(fail("bad_arguments", "that date does not exist"))
            }
            (Some(d), Some(time), _) => Ok(d.to_datetime(time)),
            _ => Err(fail(
                "bad_arguments",
                "start_iso must be like 2026-11-24T10:00",
            )),
        }
    }

    fn caps(&self) -> Vec<ResourceCap> {
        self.settings.resources.iter().map(Resource::cap).collect()
    }

    fn resource_name(&self, id: Option<&str>) -> Option<String> {
        id.and_then(|id| self.settings.resources.iter().find(|r| r.id == id))
            .map(|r| r.name.clone())
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
        let resource = match args.resource.as_deref().filter(|r| !r.trim().is_empty()) {
            Some(name) => match self.resource_by_name(name) {
                Some(r) => Some(r.id.clone()),
                None => return self.unknown_resource(name),
            },
            None => None,
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

    fn capacity_rule(&self, resource_id: Option<&str>) -> CapacityRule {
        match (self.settings.policy.scope, resource_id) {
            (ConcurrencyScope::Resource, Some(id)) => CapacityRule::Resource {
                resource_id: id.into(),
                limit: self
                    .settings
                    .resources
                    .iter()
                    .find(|r| r.id == id)
                    .map(|r| r.concurrency_limit)
                    .unwrap_or(1),
            },
            _ => CapacityRule::Business {
                limit: self.settings.policy.business_limit,
            },
        }
    }

    /// A refused start time: the policy's reason and the nearest valid times.
    async fn refused(&self, refusal: Refusal, start_ms: i64, resource: Option<&str>) -> Value {
        let suggestions = self.suggestions(start_ms, resource).await;
        json!({"ok": false, "error": refusal.code(), "reason": refusal.reason(),
               "suggestions": suggestions})
    }

    async fn suggestions(&self, target_ms: i64, resource: Option<&str>) -> Vec<Value> {
        let p = &self.settings.policy;
        let busy = self
            .store()
            .busy(
                &self.settings.business.id,
                target_ms - 2 * 86_400_000,
                target_ms + 2 * 86_400_000,
            )
            .await
            .unwrap_or_default();
        p.nearest_slots(self.now(), target_ms, &self.caps(), &busy, resource, 2)
            .iter()
            .map(|s| self.slot_json(s.start_ms, s.end_ms, &s.resource_ids))
            .collect()
    }

    async fn create(&self, raw: &str) -> Value {
        let args: CreateArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let p = self.settings.policy.clone();
        let now = self.now();
        let start = match self.start_arg(&args.start_iso) {
            Ok(s) => s,
            Err(e) => return e,
        };
        let name = args.customer_name.trim().to_string();
        if name.is_empty() {
            return fail("need_name", "ask the customer's name before booking");
        }
        let phone = args
            .customer_phone
            .as_deref()
            .filter(|p| p.chars().filter(char::is_ascii_digit).count() >= 7)
            .map(normalize_phone)
            .or_else(|| self.caller_phone.clone());
        if p.require_phone_before_booking && phone.is_none() {
            let how = if self.channel == Channel::Phone {
                "ask the caller to type their phone number on the keypad and press #"
            } else {
                "ask the customer for their phone number"
            };
            return fail("need_phone", how);
        }
        let wanted = match args.resource.as_deref().filter(|r| !r.trim().is_empty()) {
            Some(n) => match self.resource_by_name(n) {
                Some(r) => Some(r.id.clone()),
                None => return self.unknown_resource(n),
            },
            None => None,
        };
        let start_ms = start
            .to_zoned(p.tz.clone())
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or(0);
        let busy = match self
            .store()
            .busy(
                &self.settings.business.id,
                start_ms - 86_400_000,
                start_ms + 86_400_000,
            )
            .await
        {
            Ok(b) => b,
            Err(e) => return fail("internal", e.to_string()),
        };
        // An identical request within the window is the existing booking (no duplicate), even
        // though that booking itself now fills the slot.
        let key = request_key(
            &self.settings.business.id,
            wanted.as_deref(),
            start_ms,
            phone.as_deref(),
            &name,
        );
        if let Some(existing) = self.existing_duplicate(&key, now).await {
            let status = self.confirmation_status(&existing).await;
            return self.created_json(&existing, true, None, status);
        }
        let (start_ms, end_ms) =
            match p.check_start(now, start, &self.caps(), &busy, wanted.as_deref()) {
                StartVerdict::Ok { start_ms, end_ms } => (start_ms, end_ms),
                StartVerdict::Refused(refusal) => {
                    return self.refused(refusal, start_ms, wanted.as_deref()).await;
                }
            };
        // Pick the room: the one asked for, else the first with room left.
        let resource_id = match wanted {
            Some(id) => Some(id),
            None => p
                .free_resources(start_ms, end_ms, &self.caps(), &busy, None)
                .into_iter()
                .next(),
        };
        let business = &self.settings.business;
        let whatsapp_target = phone.clone().zip(self.whatsapp_number_id().await);
        let mut events = Vec::new();
        if let Some((to, pnid)) = &whatsapp_target {
            let text = confirmation_text(
                business.hebrew(),
                &business.name,
                self.resource_name(resource_id.as_deref()).as_deref(),
                &p.date_iso(start_ms),
                &p.time_display(start_ms),
                &name,
            );
            let payload = SendPayload {
                message: OutboundMessage {
                    phone_number_id: pnid.clone(),
                    to: to.trim_start_matches('+').to_string(),
                    body: OutboundBody::Text { text },
                    idempotency_key: "confirm:{appointment_id}".into(),
                },
                template_fallback: Some(OutboundBody::Template {
                    name: "appointment_confirmation".into(),
                    language: if business.hebrew() {
                        "he".into()
                    } else {
                        "en".into()
                    },
                    params: vec![name.clone(), p.date_iso(start_ms), p.time_display(start_ms)],
                }),
            };
            events.push(NewOutboxEvent {
                business_id: business.id.clone(),
                kind: KIND_APPOINTMENT_CREATED.into(),
                payload_json: serde_json::to_string(&payload).unwrap_or_default(),
                idempotency_key: "confirm:{appointment_id}".into(),
                not_before_ms: now,
            });
        }
        let appt = Appointment {
            id: String::new(),
            business_id: business.id.clone(),
            resource_id: resource_id.clone(),
            customer_id: None,
            customer_name: name.clone(),
            customer_phone: phone.clone(),
            start_ms,
            end_ms,
            status: "booked".into(),
            channel: self.channel.as_str().into(),
            conversation_id: self.conversation_id.clone(),
            request_key: key,
            created_at_ms: now,
        };
        let appt = match self
            .store()
            .create_appointment(appt, self.capacity_rule(resource_id.as_deref()), events)
            .await
        {
            Ok(CreateOutcome::Created(a)) => a,
            Ok(CreateOutcome::Existing(a)) => {
                let status = self.confirmation_status(&a).await;
                return self.created_json(&a, true, None, status);
            }
            Ok(CreateOutcome::Full) => {
                let suggestions = self.suggestions(start_ms, resource_id.as_deref()).await;
                return json!({"ok": false, "error": "full", "reason": "that time was just taken; offer the suggestions", "suggestions": suggestions});
            }
            Err(e) => return fail("internal", e.to_string()),
        };
        // Lead upsert after the commit: a failure is traced, never fatal to the booking.
        let lead_id = match &phone {
            Some(ph) => {
                let started = Instant::now();
                match self
                    .store()
                    .upsert_customer(
                        &business.id,
                        ph,
                        Some(&name),
                        self.channel.as_str(),
                        "booked",
                        now,
                    )
                    .await
                {
                    Ok(id) => {
                        let _ = self.store().set_appointment_customer(&appt.id, &id).await;
                        Some(id)
                    }
                    Err(e) => {
                        self.trace(
                            "leads_upsert(auto)",
                            &json!({"phone": ph, "name": name}),
                            false,
                            Some("internal"),
                            Some(&e.to_string()),
                            started.elapsed().as_millis() as i64,
                            now,
                        )
                        .await;
                        None
                    }
                }
            }
            None => None,
        };
        // One immediate WhatsApp attempt; the outbox worker retries if it fails.
        let status = if whatsapp_target.is_none() {
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

    async fn existing_duplicate(&self, key: &str, now: i64) -> Option<Appointment> {
        let all = self
            .store()
            .appointments_for_business(&self.settings.business.id)
            .await
            .ok()?;
        all.into_iter().find(|a| {
            a.request_key == key
                && a.status == "booked"
                && a.created_at_ms >= now - crate::store::booking::DEDUPE_WINDOW_MS
        })
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
            Ok(Some(row)) if row.status == "delivered" => self.sent_status(),
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
        let p = self.settings.policy.clone();
        let start = match self.start_arg(&args.start_iso) {
            Ok(s) => s,
            Err(e) => return e,
        };
        let resource_id = match args.resource.as_deref() {
            Some(n) => match self.resource_by_name(n) {
                Some(r) => Some(r.id.clone()),
                None => return self.unknown_resource(n),
            },
            None => current.resource_id.clone(),
        };
        let now = self.now();
        let start_ms = start
            .to_zoned(p.tz.clone())
            .map(|z| z.timestamp().as_millisecond())
            .unwrap_or(0);
        let busy: Vec<_> = match self
            .store()
            .busy(
                &self.settings.business.id,
                start_ms - 86_400_000,
                start_ms + 86_400_000,
            )
            .await
        {
            Ok(b) => b
                .into_iter()
                .filter(|b| {
                    !(b.start_ms == current.start_ms && b.resource_id == current.resource_id)
                })
                .collect(),
            Err(e) => return fail("internal", e.to_string()),
        };
        match p.check_start(now, start, &self.caps(), &busy, resource_id.as_deref()) {
            StartVerdict::Ok { start_ms, end_ms } => {
                match self
                    .store()
                    .move_appointment(
                        &current.id,
                        resource_id.as_deref(),
                        start_ms,
                        end_ms,
                        self.capacity_rule(resource_id.as_deref()),
                        now,
                    )
                    .await
                {
                    Ok(true) => {
                        json!({"ok": true, "appointment_id": current.id, "date_iso": p.date_iso(start_ms),
                        "time_display": p.time_display(start_ms), "start_iso": p.iso(start_ms),
                        "resource": self.resource_name(resource_id.as_deref())})
                    }
                    Ok(false) => fail("full", "that time was just taken"),
                    Err(e) => fail("internal", e.to_string()),
                }
            }
            StartVerdict::Refused(refusal) => {
                self.refused(refusal, start_ms, resource_id.as_deref())
                    .await
            }
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
        match self
            .store()
            .cancel_appointment(&current.id, self.now())
            .await
        {
            Ok(true) => json!({"ok": true, "appointment_id": current.id}),
            Ok(false) => fail("not_found", "already cancelled"),
            Err(e) => fail("internal", e.to_string()),
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
fn day_bounds(p: &crate::booking::policy::Policy, from: Date, to: Date) -> (i64, i64) {
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
