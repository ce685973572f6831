//! Signing in and out, the index page (the businesses this account may see) and the account's
//! API tokens. Sign-in is the one public route besides the static assets.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use super::auth::{self, AuthError, Via};
use super::pages::{Ctx, Fields, PageCtx, see_other, text_dir, ui_language};
use super::{Answer, Console, ConsoleError, Format};
use crate::store::console::ApiTokenRow;

/// Cookie of the sign-in form's double-submit CSRF token (no session exists yet).
const LOGIN_CSRF_COOKIE: &str = "kav_login_csrf";

/// Signed-in account routes: the index, sign-out, API tokens.
pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/", get(index))
        .route("/logout", post(logout))
        .route("/tokens", post(create_token))
        .route("/tokens/{id}/revoke", post(revoke_token))
}

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
