//! The console's handlers. Each builds one serialisable view and hands it to
//! [`Console::render`]: the same handler answers the page and the JSON API.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use super::auth::{self, AuthError, Principal, Via};
use super::{Answer, Console, ConsoleError, Format};
use crate::agent::tools::{self, ToolContext};
use crate::booking::policy::{Slot, WEEKDAY_KEYS};
use crate::providers::Channel;
use crate::store::booking::{Appointment, Business};
use crate::store::console::{ApiTokenRow, EditOutcome, PolicyColumns};

/// Cookie of the sign-in form's double-submit CSRF token (no session exists yet).
const LOGIN_CSRF_COOKIE: &str = "kav_login_csrf";
/// Slots the policy preview lists.
const PREVIEW_SLOTS: usize = 12;

// ------------------------------------------------------------------ templates and UI strings

pub(super) fn templates() -> minijinja::Environment<'static> {
    let mut env = minijinja::Environment::new();
    // `.html` templates are autoescaped (minijinja's default by extension): business text,
    // prompts and documents can hold any HTML and are shown as text.
    for (name, source) in [
        ("base.html", include_str!("templates/base.html")),
        ("login.html", include_str!("templates/login.html")),
        ("index.html", include_str!("templates/index.html")),
        ("business.html", include_str!("templates/business.html")),
        ("slots.html", include_str!("templates/slots.html")),
        ("bookings.html", include_str!("templates/bookings.html")),
        ("token.html", include_str!("templates/token.html")),
        ("audit.html", include_str!("templates/audit.html")),
    ] {
        env.add_template(name, source)
            .expect("console templates are valid");
    }
    env
}

/// UI strings: key, English, Hebrew.
const STRINGS: &[(&str, &str, &str)] = &[
    ("console", "Kav console", "קונסולת קב"),
    ("sign_in", "Sign in", "כניסה"),
    ("sign_out", "Sign out", "יציאה"),
    ("email", "Email", "דוא\"ל"),
    ("password", "Password", "סיסמה"),
    ("businesses", "Businesses", "עסקים"),
    ("business", "Business", "עסק"),
    ("name", "Name", "שם"),
    ("timezone", "Timezone", "אזור זמן"),
    ("language", "Language", "שפה"),
    ("save", "Save", "שמירה"),
    ("saved", "Saved.", "נשמר."),
    ("prompts", "Prompts", "הנחיות"),
    ("prompt_default", "Default prompt", "הנחיה כללית"),
    ("prompt_phone", "Phone prompt", "הנחיה לטלפון"),
    ("prompt_whatsapp", "WhatsApp prompt", "הנחיה לוואטסאפ"),
    ("preview", "What the agent receives", "מה הסוכן מקבל"),
    ("policy", "Booking policy", "מדיניות הזמנות"),
    ("opening_hours", "Opening hours", "שעות פתיחה"),
    ("open_24_7", "Open 24/7", "פתוח 24/7"),
    ("slot_size", "Slot size (min)", "משך משבצת (דק')"),
    ("notice", "Minimum notice (min)", "התראה מינימלית (דק')"),
    ("window", "Booking window (days)", "חלון הזמנה (ימים)"),
    (
        "phone_required",
        "Phone required before booking",
        "טלפון נדרש לפני הזמנה",
    ),
    ("scope", "Concurrency per", "מקביליות לפי"),
    ("limit", "Concurrency limit", "מגבלת מקביליות"),
    ("next_slots", "Next free slots", "המשבצות הפנויות הבאות"),
    (
        "no_slots",
        "No free slot in the booking window.",
        "אין משבצת פנויה בחלון ההזמנה.",
    ),
    ("numbers", "Numbers", "מספרים"),
    ("rooms", "Rooms", "חדרים"),
    ("documents", "Knowledge documents", "מסמכי ידע"),
    ("bookings", "Bookings", "הזמנות"),
    ("settings", "Settings", "הגדרות"),
    ("new_booking", "New booking", "הזמנה חדשה"),
    ("start", "Start", "התחלה"),
    ("room", "Room", "חדר"),
    ("customer", "Customer", "לקוח"),
    ("phone", "Phone", "טלפון"),
    ("status", "Status", "סטטוס"),
    ("book", "Book", "הזמנה"),
    ("cancel", "Cancel", "ביטול"),
    ("move", "Move", "העברה"),
    ("day", "Day", "יום"),
    ("closed", "closed", "סגור"),
    ("api_tokens", "API tokens", "אסימוני API"),
    ("new_token", "New API token", "אסימון API חדש"),
    ("label", "Label", "תווית"),
    ("revoke", "Revoke", "ביטול"),
    (
        "token_once",
        "Copy it now: it is shown only once.",
        "העתיקו עכשיו: הוא מוצג פעם אחת בלבד.",
    ),
    (
        "read_only",
        "Read only: only the owner changes settings.",
        "קריאה בלבד: רק הבעלים משנים הגדרות.",
    ),
];

const DAY_NAMES: [(&str, &str); 7] = [
    ("Sunday", "ראשון"),
    ("Monday", "שני"),
    ("Tuesday", "שלישי"),
    ("Wednesday", "רביעי"),
    ("Thursday", "חמישי"),
    ("Friday", "שישי"),
    ("Saturday", "שבת"),
];

/// The UI language of a request: `?lang=he|en`, else the browser's `Accept-Language`.
fn ui_language(uri: &axum::http::Uri, headers: &HeaderMap) -> &'static str {
    let query = uri.query().unwrap_or("");
    if let Some((_, lang)) = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "lang") {
        return if lang.starts_with("he") { "he" } else { "en" };
    }
    let accept = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.trim_start().starts_with("he") {
        "he"
    } else {
        "en"
    }
}

/// What every page template gets besides its view.
#[derive(Debug, Clone, Serialize)]
pub struct PageCtx {
    pub email: Option<String>,
    pub role: Option<&'static str>,
    pub csrf: Option<String>,
    pub lang: &'static str,
    pub dir: &'static str,
    pub t: BTreeMap<&'static str, &'static str>,
    pub days: Vec<&'static str>,
}

impl PageCtx {
    fn new(lang: &'static str, p: Option<&Principal>) -> Self {
        let he = lang == "he";
        Self {
            email: p.map(|p| p.email.clone()),
            role: p.map(|p| p.role.as_str()),
            csrf: p.and_then(|p| p.csrf().map(str::to_string)),
            lang,
            dir: if he { "rtl" } else { "ltr" },
            t: STRINGS
                .iter()
                .map(|(k, en, hebrew)| (*k, if he { *hebrew } else { *en }))
                .collect(),
            days: DAY_NAMES
                .iter()
                .map(|(en, hebrew)| if he { *hebrew } else { *en })
                .collect(),
        }
    }
}

/// One authenticated request: the console, the principal, the answer format, the page context.
pub struct Ctx {
    pub c: Arc<Console>,
    pub p: Principal,
    pub fmt: Format,
    pub page: PageCtx,
}

impl FromRequestParts<Arc<Console>> for Ctx {
    type Rejection = ConsoleError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<Console>,
    ) -> Result<Self, Self::Rejection> {
        let p = parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or(AuthError::Unauthenticated)?;
        let fmt = parts
            .extensions
            .get::<Format>()
            .copied()
            .unwrap_or(Format::Html);
        Ok(Ctx {
            c: state.clone(),
            page: PageCtx::new(ui_language(&parts.uri, &parts.headers), Some(&p)),
            p,
            fmt,
        })
    }
}

impl Ctx {
    pub(super) fn render<V: Serialize>(&self, template: &str, view: &V) -> Answer {
        self.c.render(self.fmt, &self.page, template, view)
    }

    /// After a successful change: the page at `to` (HTML), or `{ok:true, …extra}` (JSON).
    pub(super) fn done(&self, to: &str, extra: serde_json::Value) -> Answer {
        match self.fmt {
            Format::Html => Ok(see_other(to)),
            Format::Json => {
                let mut body = serde_json::json!({"ok": true});
                if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
                    b.extend(e.clone());
                }
                Ok(axum::Json(body).into_response())
            }
        }
    }

    /// The business in the URL, if this principal may see it.
    pub(super) async fn business(&self, id: &str) -> Result<Business, ConsoleError> {
        self.p.can_view(id)?;
        self.c
            .rt
            .store
            .business(id)
            .await?
            .ok_or(ConsoleError::NotFound)
    }
}

fn see_other(to: &str) -> Response {
    (StatusCode::SEE_OTHER, [(header::LOCATION, to.to_string())]).into_response()
}

/// A small error page (the template engine's HTML escaping, no template needed).
pub(super) fn error_page(status: StatusCode, message: &str) -> String {
    use minijinja::HtmlEscape;
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{status}</title></head>\
         <body><h1>{}</h1><p dir=\"auto\" class=\"error\">{}</p><p><a href=\"/console/\">Kav console</a></p></body></html>",
        HtmlEscape(status.as_str()),
        HtmlEscape(message)
    )
}

// ------------------------------------------------------------------ input (form or JSON)

/// A request's fields, from a form (`a=1&b=2`) or a JSON object (scalars as text, arrays and
/// objects as their JSON): one parser serves pages and API.
pub struct Fields(BTreeMap<String, String>);

impl Fields {
    pub(super) fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Fields, ConsoleError> {
        let json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let mut out = BTreeMap::new();
        if json {
            let value: serde_json::Value = serde_json::from_slice(body)
                .map_err(|e| ConsoleError::invalid("body", format!("not JSON: {e}")))?;
            let obj = value
                .as_object()
                .ok_or_else(|| ConsoleError::invalid("body", "want a JSON object"))?;
            for (k, v) in obj {
                let text = match v {
                    serde_json::Value::Null => continue,
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Bool(b) => if *b { "on" } else { "" }.to_string(),
                    other => other.to_string(),
                };
                out.insert(k.clone(), text);
            }
        } else {
            for (k, v) in form_urlencoded::parse(body) {
                out.insert(k.into_owned(), v.into_owned());
            }
        }
        out.remove("csrf");
        Ok(Fields(out))
    }

    pub(super) fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str)
    }

    fn text(&self, k: &str) -> Result<String, ConsoleError> {
        self.get(k)
            .map(|v| v.trim().to_string())
            .ok_or_else(|| ConsoleError::invalid(k, "missing"))
    }

    fn int(&self, k: &str) -> Result<i64, ConsoleError> {
        let v = self.text(k)?;
        v.parse()
            .map_err(|_| ConsoleError::invalid(k, format!("{v:?} is not a whole number")))
    }

    /// A checkbox: present and not `""`/`false`/`0`/`off`.
    fn flag(&self, k: &str) -> bool {
        self.get(k)
            .is_some_and(|v| !matches!(v.trim(), "" | "false" | "0" | "off"))
    }

    fn version(&self) -> Result<i64, ConsoleError> {
        self.int("version")
    }
}

// ------------------------------------------------------------------ routes

/// Sign-in (no principal yet).
pub(super) fn public_routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/login", get(login_page).post(login))
        .route(
            "/assets/htmx.min.js",
            get(|| asset("text/javascript", HTMX)),
        )
        .route("/assets/console.css", get(|| asset("text/css", CSS)))
}

const HTMX: &str = include_str!("assets/htmx.min.js");
const CSS: &str = include_str!("assets/console.css");

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "max-age=86400"),
        ],
        body,
    )
        .into_response()
}

/// Everything behind authentication (mounted twice: pages and `/api`).
pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/", get(index))
        .route("/logout", post(logout))
        .route("/tokens", post(create_token))
        .route("/tokens/{id}/revoke", post(revoke_token))
        .route("/b/{biz}", get(business_page))
        .route("/b/{biz}/basics", post(edit_basics))
        .route("/b/{biz}/prompt", post(edit_prompt))
        .route("/b/{biz}/policy", post(edit_policy))
        .route("/b/{biz}/slots", get(slots))
        .route("/b/{biz}/bookings", get(bookings).post(create_booking))
        .route("/b/{biz}/bookings/{id}/cancel", post(cancel_booking))
        .route("/b/{biz}/bookings/{id}/move", post(move_booking))
        .route("/b/{biz}/audit", get(super::audit::audit))
}

// ------------------------------------------------------------------ sign-in

/// The client's IP, when the server recorded the peer address.
pub struct PeerIp(Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(PeerIp(super::peer_ip(&parts.extensions)))
    }
}

#[derive(serde::Deserialize)]
struct NextQuery {
    next: Option<String>,
    error: Option<String>,
}

/// Only local console paths (no `//host`, no scheme): an open redirect is a phishing tool.
fn safe_next(next: Option<&str>) -> String {
    next.filter(|n| n.starts_with("/console") && !n.starts_with("//") && !n.contains("://"))
        .unwrap_or("/console/")
        .to_string()
}

async fn login_page(
    State(c): State<Arc<Console>>,
    Query(q): Query<NextQuery>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Answer {
    let token = auth::random_token(16);
    let mut page = PageCtx::new(ui_language(&uri, &headers), None);
    page.csrf = Some(token.clone());
    let view = serde_json::json!({
        "next": safe_next(q.next.as_deref()),
        "error": q.error,
    });
    let mut response = c.render(Format::Html, &page, "login.html", &view)?;
    let cookie = format!(
        "{LOGIN_CSRF_COOKIE}={token}; Path=/console/login; HttpOnly; SameSite=Strict; Max-Age=3600{}",
        if c.config.secure_cookie {
            "; Secure"
        } else {
            ""
        }
    );
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie.parse().expect("cookie is a valid header value"),
    );
    Ok(response)
}

/// Sign-in form post: double-submit CSRF (form field = cookie), rate limits, then the session
/// cookie and a redirect. Failures go back to the form with a message.
async fn login(
    State(c): State<Arc<Console>>,
    PeerIp(ip): PeerIp,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = match Fields::parse(&headers, &body) {
        Ok(f) => f,
        Err(e) => return e.into_response(),
    };
    let form_token: Option<String> = form_urlencoded::parse(&body)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned());
    let cookie_token = auth::cookie(&headers, LOGIN_CSRF_COOKIE);
    let next = safe_next(fields.get("next"));
    let back = |message: &str| {
        see_other(&format!(
            "/console/login?next={}&error={}",
            form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>(),
            form_urlencoded::byte_serialize(message.as_bytes()).collect::<String>()
        ))
    };
    match (form_token, cookie_token) {
        (Some(f), Some(c)) if auth::ct_eq(&f, c) => {}
        _ => return back(&AuthError::Csrf.to_string()),
    }
    let email = fields.get("email").unwrap_or("");
    let password = fields.get("password").unwrap_or("");
    match c.login(ip, email, password).await {
        Ok(session) => {
            let max_age = c.config.session_ttl_min * 60;
            let mut response = see_other(&next);
            response.headers_mut().append(
                header::SET_COOKIE,
                auth::session_cookie(&session, max_age, c.config.secure_cookie)
                    .parse()
                    .expect("cookie is a valid header value"),
            );
            response
        }
        Err(e @ ConsoleError::Auth(AuthError::RateLimited)) => {
            let mut r = back(&e.to_string());
            *r.status_mut() = StatusCode::SEE_OTHER;
            r
        }
        Err(e @ ConsoleError::Auth(_)) => back(&e.to_string()),
        Err(e) => e.into_response(),
    }
}

async fn logout(ctx: Ctx) -> Answer {
    if let Via::Session { id_hash, .. } = &ctx.p.via {
        ctx.c.rt.store.delete_session(id_hash).await?;
    }
    let mut response = ctx.done("/console/login", serde_json::json!({}))?;
    response.headers_mut().append(
        header::SET_COOKIE,
        auth::session_cookie("", 0, ctx.c.config.secure_cookie)
            .parse()
            .expect("cookie is a valid header value"),
    );
    Ok(response)
}

// ------------------------------------------------------------------ index and tokens

#[derive(Serialize)]
struct IndexView {
    businesses: Vec<BusinessSummary>,
    tokens: Vec<ApiTokenRow>,
}

#[derive(Serialize)]
struct BusinessSummary {
    id: String,
    name: String,
    language: String,
    dir: &'static str,
}

pub(super) fn text_dir(language: &str) -> &'static str {
    if language.starts_with("he") || language.starts_with("ar") {
        "rtl"
    } else {
        "ltr"
    }
}

async fn index(ctx: Ctx) -> Answer {
    let store = &ctx.c.rt.store;
    let all = store.businesses().await?;
    let businesses = all
        .into_iter()
        .filter(|b| ctx.p.can_view(&b.id).is_ok())
        .map(|b| BusinessSummary {
            dir: text_dir(&b.language),
            id: b.id,
            name: b.name,
            language: b.language,
        })
        .collect();
    let tokens = match &ctx.p.account_id {
        Some(id) => store.api_tokens(id).await?,
        None => Vec::new(),
    };
    ctx.render("index.html", &IndexView { businesses, tokens })
}

/// A new API token for the signed-in account, shown once.
async fn create_token(ctx: Ctx, headers: HeaderMap, body: Bytes) -> Answer {
    let fields = Fields::parse(&headers, &body)?;
    if ctx.p.account_id.is_none() {
        return Err(ConsoleError::Refused(
            "KAV_ADMIN_TOKEN has no account to own tokens; use `kav admin create-token`".into(),
        ));
    }
    let label = fields.get("label").unwrap_or("");
    let (row, token) =
        super::admin::create_token(&ctx.c.rt.store, &ctx.p.email, label, ctx.c.now_ms()).await?;
    let view = serde_json::json!({"ok": true, "id": row.id, "label": row.label, "token": token});
    ctx.render("token.html", &view)
}

async fn revoke_token(ctx: Ctx, Path(id): Path<String>) -> Answer {
    // Platform admins may revoke anyone's token; others only their own.
    let owner = if ctx.p.is_platform_admin() {
        None
    } else {
        ctx.p.account_id.as_deref()
    };
    if ctx.p.account_id.is_none() && !ctx.p.is_platform_admin() {
        return Err(AuthError::Forbidden.into());
    }
    if !ctx
        .c
        .rt
        .store
        .revoke_api_token(&id, owner, ctx.c.now_ms())
        .await?
    {
        return Err(ConsoleError::NotFound);
    }
    ctx.done("/console/", serde_json::json!({"revoked": id}))
}

// ------------------------------------------------------------------ business set-up

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
    documents: Vec<crate::store::booking::Document>,
    saved: Option<String>,
    error: Option<ErrorView>,
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
    f.insert("concurrency_scope".into(), b.concurrency_scope.clone());
    f.insert("concurrency_limit".into(), b.concurrency_limit.to_string());
    f
}

fn hhmm(t: jiff::civil::Time) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
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
        documents: rt.store.documents(&b.id).await?,
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
    let error = match outcome {
        Ok(EditOutcome::Saved(version)) => {
            return ctx.done(
                &format!("/console/b/{biz}?saved={what}"),
                serde_json::json!({"version": version}),
            );
        }
        Ok(EditOutcome::NotFound) => return Err(ConsoleError::NotFound),
        Ok(EditOutcome::Conflict) => ConsoleError::Conflict,
        Err(e) => e,
    };
    let (field, message) = match &error {
        ConsoleError::Invalid { field, message } => (field.clone(), message.clone()),
        ConsoleError::Conflict => (what.to_string(), error.to_string()),
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
    let scope = fields
        .get("concurrency_scope")
        .unwrap_or(&current.concurrency_scope)
        .to_string();
    if scope != "resource" && scope != "business" {
        return Err(ConsoleError::invalid(
            "concurrency_scope",
            format!("{scope:?}: want resource or business"),
        ));
    }
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
        concurrency_scope: columns.concurrency_scope.clone(),
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

#[derive(serde::Deserialize)]
struct DateQuery {
    date: Option<String>,
}

fn parse_date(s: Option<&str>) -> Result<Option<jiff::civil::Date>, ConsoleError> {
    s.filter(|d| !d.trim().is_empty())
        .map(|d| {
            d.trim()
                .parse()
                .map_err(|_| ConsoleError::invalid("date", format!("{d:?} is not YYYY-MM-DD")))
        })
        .transpose()
}

/// The next free slots from `date` (default today): the preview on the settings page (htmx
/// fragment) and an API call.
async fn slots(ctx: Ctx, Path(biz): Path<String>, Query(q): Query<DateQuery>) -> Answer {
    let b = ctx.business(&biz).await?;
    let view = next_slots(&ctx.c, &b, parse_date(q.date.as_deref())?).await?;
    ctx.render("slots.html", &view)
}

// ------------------------------------------------------------------ bookings

#[derive(Serialize)]
struct BookingsView {
    id: String,
    name: String,
    dir: &'static str,
    date: String,
    appointments: Vec<AppointmentView>,
    error: Option<String>,
    message: Option<String>,
    fields: BTreeMap<String, String>,
}

#[derive(Serialize)]
struct AppointmentView {
    id: String,
    date: String,
    time: String,
    end: String,
    room: Option<String>,
    customer_name: String,
    customer_phone: Option<String>,
    status: String,
    channel: String,
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
        .map(|a| AppointmentView {
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
            id: a.id,
            customer_name: a.customer_name,
            customer_phone: a.customer_phone,
            status: a.status,
            channel: a.channel,
        })
        .collect();
    Ok(BookingsView {
        id: b.id.clone(),
        name: b.name.clone(),
        dir: text_dir(&b.language),
        date: day.unwrap_or_default(),
        appointments,
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
    let back = format!("/console/b/{}/bookings", b.id);
    if outcome.ok {
        return match ctx.fmt {
            Format::Json => Ok(axum::Json(outcome.value).into_response()),
            Format::Html => Ok(see_other(&format!(
                "{back}?msg={}",
                form_urlencoded::byte_serialize(done_message.as_bytes()).collect::<String>()
            ))),
        };
    }
    if ctx.fmt == Format::Json {
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::Json(outcome.value)).into_response());
    }
    let mut view = bookings_view(ctx, b, None).await?;
    let reason = outcome
        .value
        .get("reason")
        .and_then(|v| v.as_str())
        .unwrap_or("refused");
    let code = outcome.error().unwrap_or("refused");
    view.error = Some(format!("{code}: {reason}"));
    view.fields = fields.0.clone();
    let mut response = ctx.render("bookings.html", &view)?;
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
