//! The calendar tools: free slots, book, list, move and cancel the customer's own appointments.

use std::time::Instant;

use serde_json::{Value, json};

use super::args::{CancelArgs, CreateArgs, EmptyArgs, FindSlotsArgs, UpdateArgs};
use super::{MAX_SLOTS, ToolContext, day_bounds, fail, parse};
use crate::agent::usecases::{Refused, ReserveRequest};
use crate::booking::outbox::{self, Delivery};
use crate::booking::parse::normalize_phone;
use crate::booking::policy::Refusal;
use crate::providers::Channel;
use crate::store::booking::{Appointment, OutboxStatus};

impl ToolContext {
    fn slot_json(&self, start_ms: i64, end_ms: i64, resource_ids: &[String]) -> Value {
        let p = &self.settings.policy;
        let names: Vec<String> = resource_ids
            .iter()
            .filter_map(|id| self.resource_name(Some(id)))
            .collect();
        json!({"start_iso": p.iso(start_ms), "end_iso": p.iso(end_ms),
               "time_display": p.time_display(start_ms), "resources": names})
    }

    pub(super) async fn find_slots(&self, raw: &str) -> Value {
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

    pub(super) async fn create(&self, raw: &str) -> Value {
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

    pub(super) async fn list(&self, raw: &str) -> Value {
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

    pub(super) async fn update(&self, raw: &str) -> Value {
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

    pub(super) async fn cancel(&self, raw: &str) -> Value {
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
}
