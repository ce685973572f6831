//! Business set-up: basics (name, timezone, language), the prompt per channel with a preview of
//! the agent's full instructions, the booking policy with its "next free slots" preview.
//! Every edit carries the version the editor saw ([`EditOutcome`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::routing::{get, post};
use serde::Serialize;

use super::pages::{Ctx, DateQuery, Fields, hhmm, parse_date, text_dir};
use super::{Answer, Console, ConsoleError, Format};
use crate::booking::policy::{ConcurrencyScope, Slot, WEEKDAY_KEYS};
use crate::providers::Channel;
use crate::store::booking::Business;
use crate::store::console::{EditOutcome, PolicyColumns};

/// Slots the policy preview lists.
const PREVIEW_SLOTS: usize = 12;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/b/{biz}", get(business_page))
        .route("/b/{biz}/basics", post(edit_basics))
        .route("/b/{biz}/prompt", post(edit_prompt))
        .route("/b/{biz}/policy", post(edit_policy))
        .route("/b/{biz}/slots", get(slots))
}

#[derive(Serialize)]
struct BusinessView {
    id: String,
    version: i64,
    dir: &'static str,
    can_configure: bool,
    /// Editable values as text (form fields); on a refused edit, what was submitted.
    fields: BTreeMap<String, String>,
    instructions_phone: String,
    instructions_whatsapp: String,
    policy_error: Option<String>,
    slots: SlotsView,
    numbers: Vec<(String, String)>,
    rooms: Vec<crate::store::booking::Resource>,
    documents: Vec<DocumentView>,
    saved: Option<String>,
    error: Option<ErrorView>,
}

#[derive(Serialize)]
struct DocumentView {
    id: String,
    kind: String,
    title: String,
    body: String,
    /// `rtl` when the text is mostly Hebrew (or Arabic): shown and edited right-to-left.
    dir: &'static str,
}

/// The direction of a piece of business content: right-to-left when most of its letters are
/// Hebrew or Arabic. (`dir="auto"` looks only at the first strong letter, which in a bilingual
/// document is often Latin.)
pub(super) fn content_dir(text: &str) -> &'static str {
    let (mut rtl, mut ltr) = (0usize, 0usize);
    for c in text.chars().filter(|c| c.is_alphabetic()) {
        if ('\u{0590}'..='\u{08FF}').contains(&c) {
            rtl += 1;
        } else {
            ltr += 1;
        }
    }
    if rtl > ltr { "rtl" } else { "auto" }
}

#[derive(Serialize)]
struct ErrorView {
    field: String,
    message: String,
}

/// The editable values of a business as form fields.
fn business_fields(b: &Business) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    f.insert("name".into(), b.name.clone());
    f.insert("timezone".into(), b.timezone.clone());
    f.insert("language".into(), b.language.clone());
    f.insert("prompt_default".into(), b.prompt_default.clone());
    f.insert(
        "prompt_phone".into(),
        b.prompt_phone.clone().unwrap_or_default(),
    );
    f.insert(
        "prompt_whatsapp".into(),
        b.prompt_whatsapp.clone().unwrap_or_default(),
    );
    if let Ok(hours) = crate::booking::policy::parse_opening_hours(&b.opening_hours_json) {
        for (i, key) in WEEKDAY_KEYS.iter().enumerate() {
            if let Some((open, close)) = hours[i] {
                f.insert(format!("open_{key}"), hhmm(open));
                f.insert(format!("close_{key}"), hhmm(close));
            }
        }
    }
    let flag = |v: bool| if v { "on" } else { "" }.to_string();
    f.insert("allow_24_7".into(), flag(b.allow_24_7));
    f.insert("slot_size_min".into(), b.slot_size_min.to_string());
    f.insert("min_notice_min".into(), b.min_notice_min.to_string());
    f.insert(
        "booking_window_days".into(),
        b.booking_window_days.to_string(),
    );
    f.insert(
        "require_phone_before_booking".into(),
        flag(b.require_phone_before_booking),
    );
    f.insert(
        "concurrency_scope".into(),
        b.concurrency_scope.as_str().into(),
    );
    f.insert("concurrency_limit".into(), b.concurrency_limit.to_string());
    f
}

#[derive(Serialize, Default)]
struct SlotsView {
    slots: Vec<SlotView>,
}

#[derive(Serialize)]
struct SlotView {
    start_iso: String,
    date: String,
    time: String,
    rooms: Vec<String>,
}

/// The next free slots of a business (from `from`, or today, within the booking window), by the
/// policy's own slot search.
async fn next_slots(
    c: &Console,
    business: &Business,
    from: Option<jiff::civil::Date>,
) -> Result<SlotsView, ConsoleError> {
    let policy = business
        .policy()
        .map_err(crate::agent::BookingError::from)?;
    let now = c.now_ms();
    let today = policy.local_date(now);
    let from = from.unwrap_or(today).max(today);
    let to = from.checked_add(jiff::Span::new().days(7)).unwrap_or(from);
    let resources = c.rt.store.resources(&business.id).await?;
    let caps: Vec<_> = resources.iter().map(|r| r.cap()).collect();
    let span_ms = 9 * 86_400_000;
    let start_ms = policy
        .zoned(now)
        .timestamp()
        .as_millisecond()
        .max(now - 86_400_000);
    let busy =
        c.rt.store
            .busy(
                &business.id,
                start_ms - 86_400_000,
                start_ms + span_ms + 7 * 86_400_000,
            )
            .await?;
    let slots: Vec<Slot> = policy.find_slots(now, from, to, &caps, &busy, None);
    Ok(SlotsView {
        slots: slots
            .into_iter()
            .take(PREVIEW_SLOTS)
            .map(|s| SlotView {
                start_iso: policy.iso(s.start_ms),
                date: policy.date_iso(s.start_ms),
                time: policy.time_display(s.start_ms),
                rooms: s
                    .resource_ids
                    .iter()
                    .map(|id| {
                        resources
                            .iter()
                            .find(|r| &r.id == id)
                            .map(|r| r.name.clone())
                            .unwrap_or_else(|| id.clone())
                    })
                    .collect(),
            })
            .collect(),
    })
}

async fn business_view(
    ctx: &Ctx,
    b: Business,
    saved: Option<String>,
) -> Result<BusinessView, ConsoleError> {
    let rt = &ctx.c.rt;
    // The instructions exactly as the agent builds them (its cached settings).
    let (instructions_phone, instructions_whatsapp, policy_error) = match (
        rt.settings(&b.id, Channel::Phone).await,
        rt.settings(&b.id, Channel::Whatsapp).await,
    ) {
        (Ok(p), Ok(w)) => (p.instructions.clone(), w.instructions.clone(), None),
        (Err(e), _) | (_, Err(e)) => (String::new(), String::new(), Some(e.to_string())),
    };
    let slots = if policy_error.is_none() {
        next_slots(&ctx.c, &b, None).await?
    } else {
        SlotsView::default()
    };
    Ok(BusinessView {
        numbers: rt.store.business_addresses(&b.id).await?,
        rooms: rt.store.resources(&b.id).await?,
        documents: rt
            .store
            .documents(&b.id)
            .await?
            .into_iter()
            .map(|d| DocumentView {
                dir: content_dir(&d.body),
                id: d.id,
                kind: d.kind,
                title: d.title,
                body: d.body,
            })
            .collect(),
        id: b.id.clone(),
        version: b.updated_at_ms,
        dir: text_dir(&b.language),
        can_configure: ctx.p.can_configure(&b.id).is_ok(),
        fields: business_fields(&b),
        instructions_phone,
        instructions_whatsapp,
        policy_error,
        slots,
        saved,
        error: None,
    })
}

#[derive(serde::Deserialize)]
struct SavedQuery {
    saved: Option<String>,
}

async fn business_page(ctx: Ctx, Path(biz): Path<String>, Query(q): Query<SavedQuery>) -> Answer {
    let b = ctx.business(&biz).await?;
    let view = business_view(&ctx, b, q.saved).await?;
    ctx.render("business.html", &view)
}

/// Answers a settings edit: saved → back to the page (or `{ok, version}`); refused or
/// conflicting → the page again with the message and the submitted values (HTML), or the error
/// (JSON). Nothing typed is lost.
async fn edit_answer(
    ctx: &Ctx,
    biz: &str,
    what: &str,
    fields: &Fields,
    outcome: Result<EditOutcome, ConsoleError>,
) -> Answer {
    let outcome = match outcome {
        Ok(EditOutcome::Saved(version)) => Ok(serde_json::json!({"version": version})),
        Ok(EditOutcome::NotFound) => Err(ConsoleError::NotFound),
        Ok(EditOutcome::Conflict) => Err(ConsoleError::Conflict),
        Err(e) => Err(e),
    };
    change_answer(ctx, biz, what, fields, outcome).await
}

/// An owner's change to a business's set-up from a form or JSON body: checks the principal may
/// configure the business and that it exists, runs `change`, and answers it with
/// [`change_answer`] (back to the `what` section of the page, or JSON).
pub(super) async fn owner_change(
    ctx: &Ctx,
    biz: &str,
    what: &str,
    headers: &HeaderMap,
    body: &[u8],
    change: impl AsyncFnOnce(&Fields) -> Result<serde_json::Value, ConsoleError>,
) -> Answer {
    let fields = Fields::parse(headers, body)?;
    ctx.p.can_configure(biz)?;
    let outcome = match ctx.business(biz).await {
        Ok(_) => change(&fields).await,
        Err(e) => Err(e),
    };
    change_answer(ctx, biz, what, &fields, outcome).await
}

/// Answers a change to a business's set-up (`what`: its section): done → back to the section
/// (or `{ok:true, …}`); invalid, refused or conflicting → the page again with the message by
/// the field and the submitted values (HTML), or the error (JSON).
pub(super) async fn change_answer(
    ctx: &Ctx,
    biz: &str,
    what: &str,
    fields: &Fields,
    outcome: Result<serde_json::Value, ConsoleError>,
) -> Answer {
    let error = match outcome {
        Ok(extra) => {
            return ctx.done(&format!("/console/b/{biz}?saved={what}#{what}"), extra);
        }
        Err(e) => e,
    };
    let (field, message) = match &error {
        ConsoleError::Invalid { field, message } => (field.clone(), message.clone()),
        ConsoleError::Conflict | ConsoleError::Refused(_) => (what.to_string(), error.to_string()),
        _ => return Err(error),
    };
    if ctx.fmt == Format::Json {
        return Err(error);
    }
    let b = ctx.business(biz).await?;
    let mut view = business_view(ctx, b, None).await?;
    // Keep what was typed; a conflict keeps the submitted version too, so saving again is a
    // deliberate overwrite only after a reload.
    for (k, v) in &fields.0 {
        if k != "version" {
            view.fields.insert(k.clone(), v.clone());
        }
    }
    view.error = Some(ErrorView { field, message });
    let mut response = ctx.render("business.html", &view)?;
    *response.status_mut() = error.status();
    Ok(response)
}

async fn edit_basics(ctx: Ctx, Path(biz): Path<String>, headers: HeaderMap, body: Bytes) -> Answer {
    let fields = Fields::parse(&headers, &body)?;
    ctx.p.can_configure(&biz)?;
    let outcome = async {
        let version = fields.version()?;
        let name = fields.text("name")?;
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ConsoleError::invalid(
                "name",
                "give a name of 1 to 200 characters",
            ));
        }
        let timezone = fields.text("timezone")?;
        crate::booking::policy::timezone(&timezone)
            .map_err(|e| ConsoleError::invalid("timezone", e.to_string()))?;
        let language = fields.text("language")?;
        if !is_language_tag(&language) {
            return Err(ConsoleError::invalid(
                "language",
                format!("{language:?} is not a language tag like he-IL or en-US"),
            ));
        }
        Ok(ctx
            .c
            .rt
            .store
            .edit_business_basics(&biz, version, &name, &timezone, &language, ctx.c.now_ms())
            .await?)
    }
    .await;
    edit_answer(&ctx, &biz, "basics", &fields, outcome).await
}

fn is_language_tag(s: &str) -> bool {
    let mut parts = s.split('-');
    parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphabetic()))
        && parts.all(|p| (1..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// Longest prompt accepted (characters).
const MAX_PROMPT_CHARS: usize = 20_000;

async fn edit_prompt(ctx: Ctx, Path(biz): Path<String>, headers: HeaderMap, body: Bytes) -> Answer {
    let fields = Fields::parse(&headers, &body)?;
    ctx.p.can_configure(&biz)?;
    let outcome = async {
        let version = fields.version()?;
        let channel = match fields.get("channel").unwrap_or("default") {
            "default" | "" => None,
            "phone" => Some("phone"),
            "whatsapp" => Some("whatsapp"),
            other => {
                return Err(ConsoleError::invalid(
                    "channel",
                    format!("{other:?}: want default, phone or whatsapp"),
                ));
            }
        };
        let field = match channel {
            None => "prompt_default",
            Some("phone") => "prompt_phone",
            _ => "prompt_whatsapp",
        };
        let prompt = fields.get(field).or(fields.get("prompt")).unwrap_or("");
        if prompt.chars().count() > MAX_PROMPT_CHARS {
            return Err(ConsoleError::invalid(
                field,
                format!("longer than {MAX_PROMPT_CHARS} characters"),
            ));
        }
        if channel.is_none() && prompt.trim().is_empty() {
            return Err(ConsoleError::invalid(
                field,
                "the default prompt cannot be empty",
            ));
        }
        Ok(ctx
            .c
            .rt
            .store
            .edit_business_prompt(&biz, version, channel, prompt, ctx.c.now_ms())
            .await?)
    }
    .await;
    edit_answer(&ctx, &biz, "prompt", &fields, outcome).await
}

async fn edit_policy(ctx: Ctx, Path(biz): Path<String>, headers: HeaderMap, body: Bytes) -> Answer {
    let fields = Fields::parse(&headers, &body)?;
    ctx.p.can_configure(&biz)?;
    let outcome = async {
        let version = fields.version()?;
        let current = ctx.business(&biz).await?;
        let columns = policy_from_fields(&fields, &current)?;
        Ok(ctx
            .c
            .rt
            .store
            .edit_business_policy(&biz, version, &columns, ctx.c.now_ms())
            .await?)
    }
    .await;
    edit_answer(&ctx, &biz, "policy", &fields, outcome).await
}

/// Reads and validates a policy edit. Opening hours come as `open_<day>`/`close_<day>` (form)
/// or `hours: {"mon": [["09:00","17:00"]], …}` (JSON; several spans per day are checked for
/// overlap). The whole policy is then checked by the same code the agent uses
/// ([`Business::policy`]).
pub(super) fn policy_from_fields(
    fields: &Fields,
    current: &Business,
) -> Result<PolicyColumns, ConsoleError> {
    let mut hours = serde_json::Map::new();
    let spans_by_day: Vec<Vec<(String, String)>> = match fields.get("hours") {
        Some(json) => {
            let value: serde_json::Value = serde_json::from_str(json)
                .map_err(|e| ConsoleError::invalid("hours", format!("not JSON: {e}")))?;
            let obj = value
                .as_object()
                .ok_or_else(|| ConsoleError::invalid("hours", "want {\"mon\": [[open, close]]}"))?;
            if let Some(bad) = obj.keys().find(|k| !WEEKDAY_KEYS.contains(&k.as_str())) {
                return Err(ConsoleError::invalid(
                    "hours",
                    format!("unknown weekday {bad:?}"),
                ));
            }
            WEEKDAY_KEYS
                .iter()
                .map(|day| spans_of(obj.get(*day), day))
                .collect::<Result<_, _>>()?
        }
        None => WEEKDAY_KEYS
            .iter()
            .map(|day| {
                let open = fields.get(&format!("open_{day}")).unwrap_or("").trim();
                let close = fields.get(&format!("close_{day}")).unwrap_or("").trim();
                match (open.is_empty(), close.is_empty()) {
                    (true, true) => Ok(Vec::new()),
                    (false, false) => Ok(vec![(open.to_string(), close.to_string())]),
                    _ => Err(ConsoleError::invalid(
                        &format!("open_{day}"),
                        format!("{day}: give both the opening and the closing time, or neither"),
                    )),
                }
            })
            .collect::<Result<_, _>>()?,
    };
    for (day, spans) in WEEKDAY_KEYS.iter().zip(&spans_by_day) {
        let mut parsed = Vec::new();
        for (open, close) in spans {
            let o = parse_time(open, day)?;
            let c = parse_time(close, day)?;
            if c <= o {
                return Err(ConsoleError::invalid(
                    &format!("close_{day}"),
                    format!("{day}: closes at {close}, not after it opens at {open}"),
                ));
            }
            parsed.push((o, c, open, close));
        }
        parsed.sort_by_key(|p| p.0);
        for w in parsed.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(ConsoleError::invalid(
                    "hours",
                    format!(
                        "{day}: hours {}–{} and {}–{} overlap",
                        w[0].2, w[0].3, w[1].2, w[1].3
                    ),
                ));
            }
        }
        if parsed.len() > 1 {
            return Err(ConsoleError::invalid(
                "hours",
                format!("{day}: one opening span per day is supported (split shifts are not yet)"),
            ));
        }
        if let Some((o, c, _, _)) = parsed.first() {
            hours.insert(day.to_string(), serde_json::json!([hhmm(*o), hhmm(*c)]));
        }
    }
    let slot_size_min = fields.int("slot_size_min")?;
    if slot_size_min <= 0 {
        return Err(ConsoleError::invalid(
            "slot_size_min",
            "the slot size must be at least 1 minute",
        ));
    }
    let scope = match fields.get("concurrency_scope") {
        None => current.concurrency_scope,
        Some(scope) => ConcurrencyScope::parse(scope).ok_or_else(|| {
            ConsoleError::invalid(
                "concurrency_scope",
                format!("{scope:?}: want resource or business"),
            )
        })?,
    };
    let columns = PolicyColumns {
        opening_hours_json: serde_json::Value::Object(hours).to_string(),
        allow_24_7: fields.flag("allow_24_7"),
        slot_size_min,
        min_notice_min: fields.int("min_notice_min")?,
        booking_window_days: fields.int("booking_window_days")?,
        require_phone_before_booking: fields.flag("require_phone_before_booking"),
        concurrency_scope: scope,
        concurrency_limit: fields.int("concurrency_limit")?,
    };
    if !columns.allow_24_7 && columns.opening_hours_json == "{}" {
        return Err(ConsoleError::invalid(
            "hours",
            "closed every day: give opening hours or tick 24/7",
        ));
    }
    // The agent's own check of the whole policy.
    let candidate = Business {
        opening_hours_json: columns.opening_hours_json.clone(),
        allow_24_7: columns.allow_24_7,
        slot_size_min: columns.slot_size_min,
        min_notice_min: columns.min_notice_min,
        booking_window_days: columns.booking_window_days,
        require_phone_before_booking: columns.require_phone_before_booking,
        concurrency_scope: columns.concurrency_scope,
        concurrency_limit: columns.concurrency_limit,
        ..current.clone()
    };
    candidate
        .policy()
        .map_err(|e| ConsoleError::invalid("policy", e.to_string()))?;
    Ok(columns)
}

fn spans_of(
    value: Option<&serde_json::Value>,
    day: &str,
) -> Result<Vec<(String, String)>, ConsoleError> {
    let bad = || ConsoleError::invalid("hours", format!("{day}: want [[\"09:00\", \"17:00\"], …]"));
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let list = value.as_array().ok_or_else(bad)?;
    // One span may be given flat: ["09:00", "17:00"].
    let spans: Vec<&serde_json::Value> = if list.iter().all(|v| v.is_string()) && !list.is_empty() {
        vec![value]
    } else {
        list.iter().collect()
    };
    spans
        .into_iter()
        .map(|s| match s.as_array().map(Vec::as_slice) {
            Some([o, c]) => Ok((
                o.as_str().ok_or_else(bad)?.to_string(),
                c.as_str().ok_or_else(bad)?.to_string(),
            )),
            _ => Err(bad()),
        })
        .collect()
}

fn parse_time(s: &str, day: &str) -> Result<jiff::civil::Time, ConsoleError> {
    let bad = || {
        ConsoleError::invalid(
            &format!("open_{day}"),
            format!("{day}: {s:?} is not a time like 09:30"),
        )
    };
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    jiff::civil::Time::new(h, m, 0, 0).map_err(|_| bad())
}

/// The next free slots from `date` (default today): the preview on the settings page (htmx
/// fragment) and an API call.
async fn slots(ctx: Ctx, Path(biz): Path<String>, Query(q): Query<DateQuery>) -> Answer {
    let b = ctx.business(&biz).await?;
    let view = next_slots(&ctx.c, &b, parse_date(q.date.as_deref())?).await?;
    ctx.render("slots.html", &view)
}
