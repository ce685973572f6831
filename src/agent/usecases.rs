//! The booking use cases, typed: reserve, modify, cancel, look up. The one place where a booking
//! change is checked (the business policy, the capacity recount inside the insert transaction,
//! the duplicate window) and committed together with its outbox events.
//!
//! **Invariant:** every booking change of a customer agent ([`super::tools`], JSON in and out) and
//! of the staff tools ([`crate::staff`]) goes through these functions; neither repeats a check, so
//! a slot one refuses the other refuses for the same [`Refused`] reason.

use jiff::civil::{Date, DateTime};

use super::{AgentSettings, BookingRuntime};
use crate::booking::outbox::{KIND_APPOINTMENT_CREATED, SendPayload};
use crate::booking::policy::{
    Busy, ConcurrencyScope, Refusal, ResourceCap, Slot, StartVerdict, parse_local_datetime,
};
use crate::booking::temporal::{self, Ambiguity};
use crate::providers::{OutboundBody, OutboundMessage};
use crate::store::StoreError;
use crate::store::booking::{
    Appointment, AppointmentStatus, CapacityRule, CreateOutcome, NewOutboxEvent, Resource,
};

/// Why a use case did not change anything. `code()` is the `error` of a tool's
/// `{ok:false, error, reason}`.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The policy refuses this start (closed, outside hours, off the grid, too soon, …).
    #[error("{}", .refusal.reason())]
    Policy {
        refusal: Refusal,
        start_ms: i64,
        resource_id: Option<String>,
    },
    /// Capacity ran out between the check and the commit.
    #[error("that time was just taken")]
    Full {
        start_ms: i64,
        resource_id: Option<String>,
    },
    #[error("a booking needs the customer's name")]
    NeedName,
    #[error("this business books only with a phone number")]
    NeedPhone,
    #[error("no room named {name:?}; rooms: {}", .rooms.join(", "))]
    UnknownResource { name: String, rooms: Vec<String> },
    /// No such appointment in this business (another business's id is reported the same way).
    #[error("no such appointment")]
    NotFound,
    #[error("already cancelled")]
    AlreadyCancelled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Refused {
    pub fn code(&self) -> &'static str {
        match self {
            Refused::Policy { refusal, .. } => refusal.code(),
            Refused::Full { .. } => "full",
            Refused::NeedName => "need_name",
            Refused::NeedPhone => "need_phone",
            Refused::UnknownResource { .. } => "unknown_resource",
            Refused::NotFound | Refused::AlreadyCancelled => "not_found",
            Refused::Store(_) => "internal",
        }
    }
}

/// Why a start-time argument was not read as one local date and time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StartArgError {
    #[error("a 12-hour time without am/pm; ask the customer which one")]
    AmbiguousTime,
    #[error("several days fit (a weekend, a week); ask the customer which day")]
    AmbiguousDate,
    #[error("that date does not exist")]
    InvalidDate,
    #[error("start_iso must be like 2026-11-24T10:00")]
    Unreadable,
}

impl StartArgError {
    pub fn code(self) -> &'static str {
        match self {
            StartArgError::AmbiguousTime => "ambiguous_time",
            StartArgError::AmbiguousDate => "ambiguous_date",
            StartArgError::InvalidDate | StartArgError::Unreadable => "bad_arguments",
        }
    }

    pub fn reason(self) -> String {
        self.to_string()
    }
}

/// What to book.
#[derive(Debug, Clone)]
pub struct ReserveRequest {
    /// Local start time in the business's timezone.
    pub start: DateTime,
    /// The room asked for; `None` = the first with room left.
    pub resource_id: Option<String>,
    pub name: String,
    /// E.164, normalised.
    pub phone: Option<String>,
    /// Who booked: a channel name (`phone`, `whatsapp`) or `staff`.
    pub channel: String,
    pub conversation_id: String,
    /// Queue a WhatsApp confirmation with the booking (when the business has a number and the
    /// booking a phone).
    pub confirm_on_whatsapp: bool,
}

/// A booking made (or found: the same request within the duplicate window).
#[derive(Debug, Clone)]
pub struct Reserved {
    pub appointment: Appointment,
    /// The same request was already booked: this is that appointment, nothing new was written.
    pub duplicate: bool,
    /// A WhatsApp confirmation was queued in the outbox with it.
    pub confirmation_queued: bool,
}

/// The use cases of one business, with its cached settings.
pub struct Bookings<'a> {
    pub rt: &'a BookingRuntime,
    pub settings: &'a AgentSettings,
}

/// Local start → unix ms in the policy's timezone (0 if the time does not exist there).
pub fn start_ms_of(settings: &AgentSettings, start: DateTime) -> i64 {
    start
        .to_zoned(settings.policy.tz.clone())
        .map(|z| z.timestamp().as_millisecond())
        .unwrap_or(0)
}

impl<'a> Bookings<'a> {
    pub fn new(rt: &'a BookingRuntime, settings: &'a AgentSettings) -> Self {
        Self { rt, settings }
    }

    fn business_id(&self) -> &str {
        &self.settings.business.id
    }

    /// A room by id, name or alias (or mentioned in the text).
    pub fn resource_by_name(&self, name: &str) -> Result<&'a Resource, Refused> {
        let n = name.trim().to_lowercase();
        self.settings
            .resources
            .iter()
            .find(|r| {
                r.id.to_lowercase() == n
                    || r.name.to_lowercase() == n
                    || r.aliases.iter().any(|a| a.to_lowercase() == n)
                    || r.mentioned_in(name)
            })
            .ok_or_else(|| Refused::UnknownResource {
                name: name.to_string(),
                rooms: self.room_names(),
            })
    }

    /// A date argument: `YYYY-MM-DD`, or words the temporal parser reads ("tomorrow", "15.12").
    pub fn date_arg(&self, raw: &str, now: i64) -> Option<Date> {
        if let Ok(d) = raw.trim().parse::<Date>() {
            return Some(d);
        }
        temporal::parse(raw, &self.settings.policy.zoned(now)).date
    }

    /// A start argument: ISO (with or without offset), else the same parser the offline dialog
    /// uses. Never shifted: an ambiguous 12-hour time is an error, a past one is refused later
    /// by the policy as `past_time`.
    pub fn start_arg(&self, raw: &str, now: i64) -> Result<DateTime, StartArgError> {
        let p = &self.settings.policy;
        if let Some(dt) = parse_local_datetime(raw, &p.tz) {
            return Ok(dt);
        }
        let t = temporal::parse(raw, &p.zoned(now));
        match (t.date, t.time, t.ambiguity) {
            (_, _, Some(Ambiguity::TwelveHour { .. })) => Err(StartArgError::AmbiguousTime),
            (_, _, Some(Ambiguity::WhichDay { .. })) => Err(StartArgError::AmbiguousDate),
            (_, _, Some(Ambiguity::InvalidDate)) => Err(StartArgError::InvalidDate),
            (Some(d), Some(time), _) => Ok(d.to_datetime(time)),
            _ => Err(StartArgError::Unreadable),
        }
    }

    /// Records the booking's customer (one per business and phone) and links the appointment
    /// to it; `None` for a booking without a phone. Called after the commit: its failure never
    /// undoes a booking.
    pub async fn attach_customer(
        &self,
        appt: &Appointment,
        now: i64,
    ) -> Result<Option<String>, StoreError> {
        let Some(phone) = &appt.customer_phone else {
            return Ok(None);
        };
        let id = self
            .rt
            .store
            .upsert_customer(
                self.business_id(),
                phone,
                Some(&appt.customer_name),
                &appt.channel,
                "booked",
                now,
            )
            .await?;
        // Linking is best effort: the customer row is what later lookups join on (by phone).
        let _ = self.rt.store.set_appointment_customer(&appt.id, &id).await;
        Ok(Some(id))
    }

    /// An optional room argument: blank or absent = any room, else the room's id.
    pub fn room_id(&self, name: Option<&str>) -> Result<Option<String>, Refused> {
        match name.filter(|n| !n.trim().is_empty()) {
            Some(n) => Ok(Some(self.resource_by_name(n)?.id.clone())),
            None => Ok(None),
        }
    }

    pub fn room_names(&self) -> Vec<String> {
        self.settings
            .resources
            .iter()
            .map(|r| r.name.clone())
            .collect()
    }

    pub fn resource_name(&self, id: Option<&str>) -> Option<String> {
        id.and_then(|id| self.settings.resources.iter().find(|r| r.id == id))
            .map(|r| r.name.clone())
    }

    pub fn caps(&self) -> Vec<ResourceCap> {
        self.settings.resources.iter().map(Resource::cap).collect()
    }

    pub fn capacity_rule(&self, resource_id: Option<&str>) -> CapacityRule {
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

    /// The contact rules of a booking: a name, and a phone where the policy requires one.
    pub fn check_contact(&self, name: &str, phone: Option<&str>) -> Result<(), Refused> {
        if name.trim().is_empty() {
            return Err(Refused::NeedName);
        }
        if self.settings.policy.require_phone_before_booking && phone.is_none() {
            return Err(Refused::NeedPhone);
        }
        Ok(())
    }

    /// The appointment with this id, if it belongs to this business.
    pub async fn appointment(&self, id: &str) -> Result<Appointment, Refused> {
        match self.rt.store.appointment(id).await? {
            Some(a) if a.business_id == self.business_id() => Ok(a),
            _ => Err(Refused::NotFound),
        }
    }

    /// The `count` bookable slots nearest to `target_ms`.
    pub async fn suggestions(
        &self,
        now: i64,
        target_ms: i64,
        resource: Option<&str>,
        count: usize,
    ) -> Vec<Slot> {
        let busy = self
            .rt
            .store
            .busy(
                self.business_id(),
                target_ms - 2 * 86_400_000,
                target_ms + 2 * 86_400_000,
            )
            .await
            .unwrap_or_default();
        self.settings
            .policy
            .nearest_slots(now, target_ms, &self.caps(), &busy, resource, count)
    }

    /// Booked time within a day either side of `start_ms`: what a start check needs.
    async fn busy_around(&self, start_ms: i64) -> Result<Vec<Busy>, StoreError> {
        self.rt
            .store
            .busy(
                self.business_id(),
                start_ms - 86_400_000,
                start_ms + 86_400_000,
            )
            .await
    }

    async fn existing_duplicate(&self, key: &str, now: i64) -> Option<Appointment> {
        let found = self.rt.store.recent_booking_for_request(key, now).await;
        found
            .ok()
            .flatten()
            .filter(|a| a.business_id == self.business_id())
    }

    /// The policy's verdict on `start` in `resource_id` against the calendar as it stands, not
    /// counting `moving` (a booking being moved). Nothing is written: the dry run of
    /// [`Self::reserve`] and [`Self::modify`], which commit with a capacity recount. Gives the
    /// slot's `(start_ms, end_ms)` and the busy time it was checked against.
    pub async fn check_start(
        &self,
        start: DateTime,
        resource_id: Option<&str>,
        moving: Option<&Appointment>,
        now: i64,
    ) -> Result<(i64, i64, Vec<Busy>), Refused> {
        let start_ms = start_ms_of(self.settings, start);
        let busy: Vec<Busy> = self
            .busy_around(start_ms)
            .await?
            .into_iter()
            .filter(|b| {
                moving.is_none_or(|m| !(b.start_ms == m.start_ms && b.resource_id == m.resource_id))
            })
            .collect();
        match self
            .settings
            .policy
            .check_start(now, start, &self.caps(), &busy, resource_id)
        {
            StartVerdict::Ok { start_ms, end_ms } => Ok((start_ms, end_ms, busy)),
            StartVerdict::Refused(refusal) => Err(Refused::Policy {
                refusal,
                start_ms,
                resource_id: resource_id.map(str::to_string),
            }),
        }
    }

    /// Books `req`: contact rules, the duplicate window, the policy, a room, then the insert with
    /// its capacity recount and the WhatsApp confirmation event in one transaction.
    pub async fn reserve(&self, req: &ReserveRequest, now: i64) -> Result<Reserved, Refused> {
        let name = req.name.trim().to_string();
        self.check_contact(&name, req.phone.as_deref())?;
        let p = &self.settings.policy;
        let start_ms = start_ms_of(self.settings, req.start);
        // An identical request within the window is the existing booking (no duplicate), even
        // though that booking itself now fills the slot.
        let key = super::tools::request_key(
            self.business_id(),
            req.resource_id.as_deref(),
            start_ms,
            req.phone.as_deref(),
            &name,
        );
        if let Some(existing) = self.existing_duplicate(&key, now).await {
            return Ok(Reserved {
                appointment: existing,
                duplicate: true,
                confirmation_queued: false,
            });
        }
        let (start_ms, end_ms, busy) = self
            .check_start(req.start, req.resource_id.as_deref(), None, now)
            .await?;
        let caps = self.caps();
        // The room: the one asked for, else the first with room left.
        let resource_id = match &req.resource_id {
            Some(id) => Some(id.clone()),
            None => p
                .free_resources(start_ms, end_ms, &caps, &busy, None)
                .into_iter()
                .next(),
        };
        let business = &self.settings.business;
        let whatsapp_target = match &req.phone {
            Some(phone) => self
                .rt
                .store
                .whatsapp_number_for(&business.id)
                .await
                .ok()
                .flatten()
                .map(|pnid| (phone.clone(), pnid)),
            None => None,
        };
        let mut events = Vec::new();
        if let Some((to, pnid)) = whatsapp_target.as_ref().filter(|_| req.confirm_on_whatsapp) {
            let text = super::tools::confirmation_text(
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
            customer_name: name,
            customer_phone: req.phone.clone(),
            start_ms,
            end_ms,
            status: AppointmentStatus::Booked,
            channel: req.channel.clone(),
            conversation_id: req.conversation_id.clone(),
            request_key: key,
            created_at_ms: now,
        };
        match self
            .rt
            .store
            .create_appointment(appt, self.capacity_rule(resource_id.as_deref()), events)
            .await?
        {
            CreateOutcome::Created(a) => Ok(Reserved {
                appointment: a,
                duplicate: false,
                confirmation_queued: whatsapp_target.is_some() && req.confirm_on_whatsapp,
            }),
            CreateOutcome::Existing(a) => Ok(Reserved {
                appointment: a,
                duplicate: true,
                confirmation_queued: false,
            }),
            CreateOutcome::Full => Err(Refused::Full {
                start_ms,
                resource_id,
            }),
        }
    }

    /// Moves `current` to `start` (and `resource_id`, `None` = its room): the policy without
    /// counting the appointment itself, then the move with its capacity recount.
    pub async fn modify(
        &self,
        current: &Appointment,
        start: DateTime,
        resource_id: Option<String>,
        now: i64,
    ) -> Result<Appointment, Refused> {
        let resource_id = resource_id.or_else(|| current.resource_id.clone());
        let (start_ms, end_ms, _) = self
            .check_start(start, resource_id.as_deref(), Some(current), now)
            .await?;
        let moved = self
            .rt
            .store
            .move_appointment(
                &current.id,
                resource_id.as_deref(),
                start_ms,
                end_ms,
                self.capacity_rule(resource_id.as_deref()),
                now,
            )
            .await?;
        if !moved {
            return Err(Refused::Full {
                start_ms,
                resource_id,
            });
        }
        Ok(Appointment {
            resource_id,
            start_ms,
            end_ms,
            ..current.clone()
        })
    }

    /// Cancels `current` if it is still booked.
    pub async fn cancel(&self, current: &Appointment, now: i64) -> Result<(), Refused> {
        if self.rt.store.cancel_appointment(&current.id, now).await? {
            Ok(())
        } else {
            Err(Refused::AlreadyCancelled)
        }
    }
}
