//! Staff bookings: the list, and create/move/cancel through the agent's own booking tools
//! ([`ToolContext::call`]), so the same policy checks, capacity rules, confirmations and traces
//! apply as for a customer's booking.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Serialize;

use super::calendar::{CalendarRange, calendar_view};
use super::pages::{Ctx, Fields, parse_date, see_other, text_dir};
use super::{Answer, Console, ConsoleError, Format};
use crate::agent::tools::{self, ToolContext};
use crate::booking::policy::Policy;
use crate::providers::Channel;
use crate::store::booking::{Appointment, Business, Resource};

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/b/{biz}/bookings", get(bookings).post(create_booking))
        .route("/b/{biz}/bookings/{id}/cancel", post(cancel_booking))
        .route("/b/{biz}/bookings/{id}/move", post(move_booking))
}

#[derive(Serialize)]
struct BookingsView {
    id: String,
    name: String,
    dir: &'static str,
    date: String,
    appointments: Vec<AppointmentView>,
    /// Room names for the new-booking form.
    rooms: Vec<String>,
    error: Option<String>,
    message: Option<String>,
    fields: BTreeMap<String, String>,
}

/// One appointment as the console shows it (list, calendar, customer page): local date and
/// times in the business's timezone, the room's name.
#[derive(Serialize)]
pub(super) struct AppointmentView {
    pub id: String,
    pub date: String,
    pub time: String,
    pub end: String,
    pub room: Option<String>,
    pub customer_name: String,
    pub customer_phone: Option<String>,
    pub status: String,
    pub channel: String,
    #[serde(skip)]
    pub start_ms: i64,
}

impl AppointmentView {
    /// The customer's phone as `ctx`'s principal may see it ([`Ctx::shown_phone`]).
    pub(super) fn new(ctx: &Ctx, policy: &Policy, rooms: &[Resource], a: Appointment) -> Self {
        AppointmentView {
            date: policy.date_iso(a.start_ms),
            time: policy.time_display(a.start_ms),
            end: policy.time_display(a.end_ms),
            room: a.resource_id.as_ref().map(|id| {
                rooms
                    .iter()
                    .find(|r| &r.id == id)
                    .map(|r| r.name.clone())
                    .unwrap_or_else(|| id.clone())
            }),
            start_ms: a.start_ms,
            id: a.id,
            customer_name: a.customer_name,
            customer_phone: a
                .customer_phone
                .map(|p| ctx.shown_phone(&a.business_id, &p)),
            status: a.status.as_str().to_string(),
            channel: a.channel,
        }
    }
}

async fn bookings_view(
    ctx: &Ctx,
    b: &Business,
    date: Option<jiff::civil::Date>,
) -> Result<BookingsView, ConsoleError> {
    let policy = b.policy().map_err(crate::agent::BookingError::from)?;
    let store = &ctx.c.rt.store;
    let rooms = store.resources(&b.id).await?;
    let all: Vec<Appointment> = store.appointments_for_business(&b.id).await?;
    let day = date.map(|d| d.to_string());
    let appointments = all
        .into_iter()
        .filter(|a| {
            day.as_ref()
                .is_none_or(|d| &policy.date_iso(a.start_ms) == d)
        })
        .map(|a| AppointmentView::new(ctx, &policy, &rooms, a))
        .collect();
    Ok(BookingsView {
        id: b.id.clone(),
        name: b.name.clone(),
        dir: text_dir(&b.language),
        date: day.unwrap_or_default(),
        appointments,
        rooms: rooms.into_iter().map(|r| r.name).collect(),
        error: None,
        message: None,
        fields: BTreeMap::new(),
    })
}

#[derive(serde::Deserialize)]
struct BookingsQuery {
    date: Option<String>,
    msg: Option<String>,
}

/// The business's appointments: all of them, or one day's (`?date=YYYY-MM-DD`).
async fn bookings(ctx: Ctx, Path(biz): Path<String>, Query(q): Query<BookingsQuery>) -> Answer {
    let b = ctx.business(&biz).await?;
    let mut view = bookings_view(&ctx, &b, parse_date(q.date.as_deref())?).await?;
    view.message = q.msg;
    ctx.render("bookings.html", &view)
}

/// The agent's tools, acting for staff of this business: the same policy checks, capacity
/// rules, confirmations and traces as a customer's booking. `customer_phone` is the customer the
/// tool acts for (moving and cancelling are checked against it, as for the customer).
async fn staff_tools(
    ctx: &Ctx,
    b: &Business,
    customer_phone: Option<String>,
) -> Result<ToolContext, ConsoleError> {
    let settings = ctx.c.rt.settings(&b.id, Channel::Phone).await?;
    Ok(ToolContext {
        rt: ctx.c.rt.clone(),
        settings,
        channel: Channel::Phone,
        conversation_id: format!(
            "console-{}-{}",
            ctx.p.account_id.as_deref().unwrap_or("admin"),
            ctx.c.now_ms()
        ),
        turn: 0,
        caller_phone: customer_phone,
        this_turn: Default::default(),
    })
}

/// Answers a booking tool's outcome: ok → the bookings page with a message (or the tool's JSON);
/// refused → the bookings page with the tool's reason and the form kept (or the tool's
/// `{ok:false, error, reason}` with 422).
async fn tool_answer(
    ctx: &Ctx,
    b: &Business,
    fields: &Fields,
    outcome: tools::ToolOutcome,
    done_message: &str,
) -> Answer {
    // A form on the calendar names the calendar range it came from; it goes back there.
    let calendar = CalendarRange::from_fields(fields)?;
    let back = match &calendar {
        Some(range) => format!("/console/b/{}/calendar?{}", b.id, range.query()),
        None => format!("/console/b/{}/bookings?", b.id),
    };
    if outcome.ok {
        return match ctx.fmt {
            Format::Json => Ok(axum::Json(outcome.value).into_response()),
            Format::Html => Ok(see_other(&format!(
                "{back}&msg={}",
                form_urlencoded::byte_serialize(done_message.as_bytes()).collect::<String>()
            ))),
        };
    }
    if ctx.fmt == Format::Json {
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::Json(outcome.value)).into_response());
    }
    let reason = outcome
        .value
        .get("reason")
        .and_then(|v| v.as_str())
        .unwrap_or("refused");
    let code = outcome.error().unwrap_or("refused");
    let error = format!("{code}: {reason}");
    let mut response = match calendar {
        Some(range) => {
            let mut view = calendar_view(ctx, b, range).await?;
            view.error = Some(error);
            view.fields = fields.0.clone();
            ctx.render("calendar.html", &view)?
        }
        None => {
            let mut view = bookings_view(ctx, b, None).await?;
            view.error = Some(error);
            view.fields = fields.0.clone();
            ctx.render("bookings.html", &view)?
        }
    };
    *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    Ok(response)
}

async fn create_booking(
    ctx: Ctx,
    Path(biz): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let fields = Fields::parse(&headers, &body)?;
    let b = ctx.business(&biz).await?;
    let phone = fields
        .get("customer_phone")
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_string);
    let args = serde_json::json!({
        "start_iso": fields.text("start_iso")?,
        "resource": fields.get("resource").map(str::trim).filter(|r| !r.is_empty()),
        "customer_name": fields.text("customer_name")?,
        "customer_phone": phone,
    });
    let tools = staff_tools(&ctx, &b, phone.clone()).await?;
    let outcome = tools.call(tools::CREATE, &args.to_string()).await;
    tool_answer(&ctx, &b, &fields, outcome, "booked").await
}

/// The appointment in the URL, if it belongs to the business in the URL.
async fn appointment_of(ctx: &Ctx, b: &Business, id: &str) -> Result<Appointment, ConsoleError> {
    match ctx.c.rt.store.appointment(id).await? {
        Some(a) if a.business_id == b.id => Ok(a),
        // Another business's appointment is as absent as a missing one.
        _ => Err(ConsoleError::NotFound),
    }
}

async fn cancel_booking(
    ctx: Ctx,
    Path((biz, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let fields = Fields::parse(&headers, &body)?;
    let b = ctx.business(&biz).await?;
    let a = appointment_of(&ctx, &b, &id).await?;
    let tools = staff_tools(&ctx, &b, a.customer_phone.clone()).await?;
    let args = serde_json::json!({"appointment_id": a.id});
    let outcome = tools.call(tools::CANCEL, &args.to_string()).await;
    tool_answer(&ctx, &b, &fields, outcome, "cancelled").await
}

async fn move_booking(
    ctx: Ctx,
    Path((biz, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let fields = Fields::parse(&headers, &body)?;
    let b = ctx.business(&biz).await?;
    let a = appointment_of(&ctx, &b, &id).await?;
    let tools = staff_tools(&ctx, &b, a.customer_phone.clone()).await?;
    let args = serde_json::json!({
        "appointment_id": a.id,
        "start_iso": fields.text("start_iso")?,
        "resource": fields.get("resource").map(str::trim).filter(|r| !r.is_empty()),
    });
    let outcome = tools.call(tools::UPDATE, &args.to_string()).await;
    tool_answer(&ctx, &b, &fields, outcome, "moved").await
}
