//! The operator console: accounts and sessions, business set-up, bookings — HTML pages under
//! `/console/…` and the same handlers as a JSON API under `/console/api/…`.
//!
//! **Invariant:** every page and API call is authorised against the session's (or token's)
//! account and business before it reads or writes anything: one middleware authenticates
//! ([`auth`]) and checks CSRF on state-changing cookie requests; each handler then checks the
//! principal may view or configure the business named in its URL (a business's staff get 403 on
//! another business's ids). Handlers are shared by HTML pages and the JSON API: a handler builds
//! one serialisable view; [`Console::render`] turns it into a page (minijinja, HTML autoescaped)
//! or JSON according to the route's [`Format`].
//!
//! Booking changes by staff go through the agent's own booking tools
//! ([`crate::agent::tools::ToolContext::call`]), so the same policy checks apply; settings edits
//! carry the version the editor saw ([`crate::store::console::EditOutcome`]).

mod account;
pub mod admin;
mod audit;
pub mod auth;
mod bookings;
mod business;
mod calendar;
mod customers;
mod documents;
mod numbers;
pub mod ops;
mod outbox;
mod pages;
mod rooms;
mod staff;
mod strings;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::agent::{BookingError, BookingRuntime};
use crate::config::ConsoleConfig;
use crate::store::StoreError;
use auth::{AuthError, Principal, Via};

/// Whether a route answers with a page or with JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Html,
    Json,
}

/// The console's errors; each maps to one status and a `{ok:false, error, reason}` body (JSON)
/// or an error page (HTML).
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("not found")]
    NotFound,
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("changed by someone else since you opened it; reload to see their version")]
    Conflict,
    #[error("request body too large")]
    TooLarge,
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Booking(#[from] BookingError),
    #[error("template error: {0}")]
    Template(#[from] minijinja::Error),
    #[error("{0}")]
    Unavailable(String),
}

impl ConsoleError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        ConsoleError::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ConsoleError::Auth(AuthError::Unauthenticated | AuthError::BadCredentials) => {
                StatusCode::UNAUTHORIZED
            }
            ConsoleError::Auth(AuthError::Forbidden | AuthError::Csrf) => StatusCode::FORBIDDEN,
            ConsoleError::Auth(AuthError::RateLimited) => StatusCode::TOO_MANY_REQUESTS,
            ConsoleError::NotFound => StatusCode::NOT_FOUND,
            ConsoleError::Invalid { .. } | ConsoleError::Refused(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ConsoleError::Conflict => StatusCode::CONFLICT,
            ConsoleError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ConsoleError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ConsoleError::Auth(AuthError::BadRole(_))
            | ConsoleError::Store(_)
            | ConsoleError::Booking(_)
            | ConsoleError::Template(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short machine-readable kind.
    pub fn code(&self) -> &'static str {
        match self {
            ConsoleError::Auth(AuthError::Unauthenticated) => "unauthenticated",
            ConsoleError::Auth(AuthError::BadCredentials) => "bad_credentials",
            ConsoleError::Auth(AuthError::Forbidden) => "forbidden",
            ConsoleError::Auth(AuthError::Csrf) => "csrf",
            ConsoleError::Auth(AuthError::RateLimited) => "rate_limited",
            ConsoleError::NotFound => "not_found",
            ConsoleError::Invalid { .. } => "invalid",
            ConsoleError::Refused(_) => "refused",
            ConsoleError::Conflict => "conflict",
            ConsoleError::TooLarge => "too_large",
            ConsoleError::Unavailable(_) => "unavailable",
            _ => "internal",
        }
    }
}

/// What an error response carries for [`html_errors`] to turn into a page.
#[derive(Debug, Clone)]
struct Failed {
    code: &'static str,
    message: String,
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "console request failed");
        }
        let message = if status.is_server_error() {
            "internal error (logged)".to_string()
        } else {
            self.to_string()
        };
        let mut body = serde_json::json!({"ok": false, "error": self.code(), "reason": message});
        if let ConsoleError::Invalid { field, .. } = &self {
            body["field"] = field.clone().into();
        }
        let mut response = (status, axum::Json(body)).into_response();
        response.extensions_mut().insert(Failed {
            code: self.code(),
            message,
        });
        response
    }
}

pub type Answer = Result<Response, ConsoleError>;

/// The console: built once in the composition root, mounted by the server at `/console`.
pub struct Console {
    pub rt: Arc<BookingRuntime>,
    pub config: ConsoleConfig,
    admin_token: Option<String>,
    limiter: auth::LoginLimiter,
    templates: minijinja::Environment<'static>,
    /// The staff assistant behind `/b/{biz}/staff` ([`Console::set_staff_agent`]).
    staff_agent: std::sync::OnceLock<Arc<crate::staff::agent::StaffAgent>>,
}

impl Console {
    /// `admin_token`: `KAV_ADMIN_TOKEN` (empty or None: no deployment-wide admin token).
    pub fn new(
        rt: Arc<BookingRuntime>,
        config: ConsoleConfig,
        admin_token: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            rt,
            limiter: auth::LoginLimiter::new(config.login_per_min_ip, config.login_per_min_account),
            config,
            admin_token: admin_token.filter(|t| !t.trim().is_empty()),
            templates: {
                let mut env = ops::with_templates(pages::templates());
                staff::add_templates(&mut env);
                env
            },
            staff_agent: std::sync::OnceLock::new(),
        })
    }

    fn now_ms(&self) -> i64 {
        self.rt.now_ms()
    }

    /// Gives the staff panel its assistant (the composition root does, with the LLM when one is
    /// configured). Once only; later calls are ignored.
    pub fn set_staff_agent(&self, agent: Arc<crate::staff::agent::StaffAgent>) {
        let _ = self.staff_agent.set(agent);
    }

    /// The staff assistant; if none was set, the offline one with the default prompt.
    pub fn staff_agent(&self) -> Arc<crate::staff::agent::StaffAgent> {
        self.staff_agent
            .get_or_init(|| {
                crate::staff::agent::StaffAgent::new(self.rt.clone(), None, Default::default())
            })
            .clone()
    }

    /// Who sent these headers: a bearer token (account API token or `KAV_ADMIN_TOKEN`), else
    /// the session cookie. Expired sessions, revoked tokens and disabled accounts are refused.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, ConsoleError> {
        let store = &self.rt.store;
        if let Some(token) = auth::bearer(headers) {
            if let Some(admin) = &self.admin_token
                && auth::ct_eq(admin, token)
            {
                return Ok(Principal::admin_token());
            }
            if token.starts_with(auth::TOKEN_PREFIX)
                && let Some(account) = store.account_by_token(&auth::sha256_hex(token)).await?
            {
                return Ok(Principal::from_account(&account, Via::ApiToken)?);
            }
            return Err(AuthError::Unauthenticated.into());
        }
        let Some(id) = auth::cookie(headers, auth::SESSION_COOKIE) else {
            return Err(AuthError::Unauthenticated.into());
        };
        let id_hash = auth::sha256_hex(id);
        let session = store
            .live_session(&id_hash, self.now_ms())
            .await?
            .ok_or(AuthError::Unauthenticated)?;
        Ok(Principal::from_account(
            &session.account,
            Via::Session {
                csrf: session.csrf_token,
                id_hash,
            },
        )?)
    }

    /// Checks email and password (rate-limited per IP and account) and opens a session.
    /// Returns the cookie value (the session id; only its hash is stored).
    pub async fn login(
        &self,
        ip: Option<std::net::IpAddr>,
        email: &str,
        password: &str,
    ) -> Result<String, ConsoleError> {
        self.limiter.check(ip, email)?;
        let account = self
            .rt
            .store
            .account_by_email(&email.trim().to_lowercase())
            .await?;
        // Verify against a real hash even when the account does not exist, so the answer takes
        // as long either way.
        // argon2id is deliberately slow CPU work: off the async workers, where it would hold up
        // live calls' playout timers (and trip the loop-lag admission check).
        let hash = account.as_ref().map(|a| a.password_hash.clone());
        let given = password.to_string();
        let verified = tokio::task::spawn_blocking(move || match hash {
            Some(h) => auth::verify_password(&given, &h),
            None => {
                auth::verify_password(&given, dummy_hash());
                false
            }
        })
        .await
        .unwrap_or(false);
        let ok = verified && account.as_ref().is_some_and(|a| !a.disabled);
        let Some(account) = account.filter(|_| ok) else {
            return Err(AuthError::BadCredentials.into());
        };
        let id = auth::random_token(32);
        let now = self.now_ms();
        let ttl_ms = (self.config.session_ttl_min as i64).saturating_mul(60_000);
        self.rt
            .store
            .insert_session(
                &auth::sha256_hex(&id),
                &account.id,
                &auth::random_token(32),
                now,
                now.saturating_add(ttl_ms),
            )
            .await?;
        // Opportunistic sweep: expired rows and recovered limiter keys.
        let _ = self.rt.store.delete_expired_sessions(now).await;
        self.limiter.housekeep();
        Ok(id)
    }

    /// May this principal read the turns and traces of call `call_sid`? The call's business is
    /// resolved the way the agent resolves it (`business_id` parameter, the number reached, the
    /// default business). Unknown calls are 404 for everyone.
    pub async fn authorize_call(&self, p: &Principal, call_sid: &str) -> Result<(), ConsoleError> {
        if p.is_platform_admin() {
            return Ok(());
        }
        let call = self
            .rt
            .store
            .call(call_sid)
            .await?
            .ok_or(ConsoleError::NotFound)?;
        let parameters = serde_json::from_str(&call.parameters_json).unwrap_or_default();
        let business = self.business_of(parameters).await?;
        Ok(p.can_view(&business)?)
    }

    /// The business of a phone call with these stream `<Parameter>`s, resolved as the agent
    /// resolves it.
    pub async fn business_of(
        &self,
        parameters: std::collections::BTreeMap<String, String>,
    ) -> Result<String, ConsoleError> {
        let request = crate::providers::AgentRequest {
            channel: crate::providers::Channel::Phone,
            call: crate::providers::CallContext {
                call_sid: String::new(),
                stream_sid: String::new(),
                language: String::new(),
                parameters,
            },
            turn: 0,
            history: Vec::new(),
            digits: false,
        };
        Ok(self.rt.resolve_business(&request).await?)
    }

    /// The `/console` router (paths relative to the mount point): the pages, and the same
    /// handlers under `/api` answering JSON.
    pub fn router(self: &Arc<Self>, ops: ops::Sources) -> Router {
        let authed = |format: Format| {
            routes()
                .merge(ops::routes(ops.clone()))
                .route_layer(axum::middleware::from_fn_with_state(
                    self.clone(),
                    require_principal,
                ))
                .layer(axum::Extension(format))
        };
        Router::new()
            .nest("/api", authed(Format::Json))
            .merge(authed(Format::Html).layer(axum::middleware::from_fn(html_errors)))
            .merge(account::public_routes())
            .merge(ops::public_routes())
            .layer(axum::extract::DefaultBodyLimit::max(
                self.config.max_body_bytes,
            ))
            .with_state(self.clone())
    }

    /// The view as JSON, or rendered through `template` (HTML-escaped) with the common context:
    /// the principal, its CSRF token, the UI strings of the request's language.
    pub fn render<V: Serialize>(
        &self,
        format: Format,
        page: &pages::PageCtx,
        template: &str,
        view: &V,
    ) -> Answer {
        match format {
            Format::Json => Ok(axum::Json(view).into_response()),
            Format::Html => {
                let html = self
                    .templates
                    .get_template(template)?
                    .render(minijinja::context! {
                        page => page,
                        view => view,
                    })?;
                Ok(html_response(html))
            }
        }
    }
}

/// Every route behind authentication, one line per concept (each module's `routes()`); mounted
/// twice by [`Console::router`]: as pages and under `/api` as JSON.
fn routes() -> Router<Arc<Console>> {
    Router::new()
        .merge(account::routes())
        .merge(business::routes())
        .merge(bookings::routes())
        .merge(calendar::routes())
        .merge(numbers::routes())
        .merge(rooms::routes())
        .merge(documents::routes())
        .merge(outbox::routes())
        .merge(customers::routes())
        .merge(staff::routes())
        .route("/b/{biz}/audit", axum::routing::get(audit::audit))
}

fn html_response(html: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // No framing (clickjacking), no inline script except htmx's own attributes.
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
        ],
        html,
    )
        .into_response()
}

/// A valid argon2id hash of a random password, verified against when the email is unknown.
fn dummy_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| auth::hash_password(&auth::random_token(16)))
}

/// Authenticates every console request and checks CSRF on state-changing cookie requests: the
/// `X-CSRF-Token` header, or the `csrf` field of a form body. Puts the [`Principal`] in the
/// request's extensions.
async fn require_principal(
    State(console): State<Arc<Console>>,
    request: Request,
    next: Next,
) -> Response {
    let principal = match console.authenticate(request.headers()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let safe = matches!(*request.method(), Method::GET | Method::HEAD);
    let request = match (safe, principal.csrf()) {
        (false, Some(expected)) => {
            match check_csrf(request, expected, console.config.max_body_bytes).await {
                Ok(r) => r,
                Err(e) => return e.into_response(),
            }
        }
        _ => request,
    };
    let mut request = request;
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// The request (body re-attached) if it carries the session's CSRF token.
async fn check_csrf(
    request: Request,
    expected: &str,
    limit: usize,
) -> Result<Request, ConsoleError> {
    if let Some(given) = request
        .headers()
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
    {
        return if auth::ct_eq(given, expected) {
            Ok(request)
        } else {
            Err(AuthError::Csrf.into())
        };
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err(AuthError::Csrf.into());
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| ConsoleError::TooLarge)?;
    let given = form_urlencoded::parse(&bytes)
        .find(|(k, _)| k == "csrf")
        .map(|(_, v)| v.into_owned());
    match given {
        Some(given) if auth::ct_eq(&given, expected) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(AuthError::Csrf.into()),
    }
}

/// On HTML routes: an unauthenticated request goes to the sign-in page; other errors become a
/// small page with the same status.
async fn html_errors(request: Request, next: Next) -> Response {
    let next_path = request.uri().path().to_string();
    let response = next.run(request).await;
    let Some(failed) = response.extensions().get::<Failed>().cloned() else {
        return response;
    };
    if failed.code == "unauthenticated" {
        let to = format!(
            "/console/login?next={}",
            form_urlencoded::byte_serialize(format!("/console{next_path}").as_bytes())
                .collect::<String>()
        );
        return (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response();
    }
    let status = response.status();
    let mut page = html_response(pages::error_page(status, &failed.message));
    *page.status_mut() = status;
    page
}

/// The client's address, when the server recorded it.
pub(crate) fn peer_ip(request_ext: &axum::http::Extensions) -> Option<std::net::IpAddr> {
    request_ext
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| a.ip())
}
