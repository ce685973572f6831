//! What every console handler shares: the templates, the page context (UI language, CSRF
//! token), the request context [`Ctx`] (console, principal, answer format) and the field parser
//! [`Fields`] that reads forms and JSON alike. Each handler builds one serialisable view and
//! hands it to [`Console::render`]: the same handler answers the page and the JSON API.
//! The handlers themselves live by concept: [`super::account`], [`super::business`],
//! [`super::bookings`].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::auth::{AuthError, Principal};
use super::strings::{DAY_NAMES, STRINGS};
use super::{Answer, Console, ConsoleError, Format};
use crate::store::booking::Business;

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
        ("calendar.html", include_str!("templates/calendar.html")),
        (
            "booking_card.html",
            include_str!("templates/booking_card.html"),
        ),
        ("outbox.html", include_str!("templates/outbox.html")),
        (
            "new_booking.html",
            include_str!("templates/new_booking.html"),
        ),
        ("customers.html", include_str!("templates/customers.html")),
        ("customer.html", include_str!("templates/customer.html")),
    ] {
        env.add_template(name, source)
            .expect("console templates are valid");
    }
    env
}

/// The UI language of a request: `?lang=he|en`, else the browser's `Accept-Language`.
pub(super) fn ui_language(uri: &axum::http::Uri, headers: &HeaderMap) -> &'static str {
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
    pub(super) fn new(lang: &'static str, p: Option<&Principal>) -> Self {
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

    /// A customer's phone as this principal may see it: in full for the business's own
    /// accounts; masked to its country prefix and last four digits (`+9725•••4567`) for anyone
    /// else (the platform admin).
    pub(super) fn shown_phone(&self, business_id: &str, phone: &str) -> String {
        if self.p.business_id.as_deref() == Some(business_id) {
            return phone.to_string();
        }
        let chars: Vec<char> = phone.chars().collect();
        if chars.len() <= 7 {
            return "•••".into();
        }
        let head: String = chars[..5].iter().collect();
        let tail: String = chars[chars.len() - 4..].iter().collect();
        format!("{head}•••{tail}")
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

pub(super) fn see_other(to: &str) -> Response {
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
pub struct Fields(pub(super) BTreeMap<String, String>);

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

    pub(super) fn text(&self, k: &str) -> Result<String, ConsoleError> {
        self.get(k)
            .map(|v| v.trim().to_string())
            .ok_or_else(|| ConsoleError::invalid(k, "missing"))
    }

    pub(super) fn int(&self, k: &str) -> Result<i64, ConsoleError> {
        let v = self.text(k)?;
        v.parse()
            .map_err(|_| ConsoleError::invalid(k, format!("{v:?} is not a whole number")))
    }

    /// A checkbox: present and not `""`/`false`/`0`/`off`.
    pub(super) fn flag(&self, k: &str) -> bool {
        self.get(k)
            .is_some_and(|v| !matches!(v.trim(), "" | "false" | "0" | "off"))
    }

    pub(super) fn version(&self) -> Result<i64, ConsoleError> {
        self.int("version")
    }
}

/// The writing direction of text in `language`.
pub(super) fn text_dir(language: &str) -> &'static str {
    if language.starts_with("he") || language.starts_with("ar") {
        "rtl"
    } else {
        "ltr"
    }
}

pub(super) fn hhmm(t: jiff::civil::Time) -> String {
    format!("{:02}:{:02}", t.hour(), t.minute())
}

#[derive(serde::Deserialize)]
pub(super) struct DateQuery {
    pub date: Option<String>,
}

pub(super) fn parse_date(s: Option<&str>) -> Result<Option<jiff::civil::Date>, ConsoleError> {
    s.filter(|d| !d.trim().is_empty())
        .map(|d| {
            d.trim()
                .parse()
                .map_err(|_| ConsoleError::invalid("date", format!("{d:?} is not YYYY-MM-DD")))
        })
        .transpose()
}
