//! WhatsApp routes: the Meta Cloud API webhook (`GET|POST /whatsapp/webhook`), Twilio's WhatsApp
//! webhook (`POST /twilio/whatsapp`) and the operator endpoints (`/api/test/message`,
//! `/api/conversations`) behind `KAV_ADMIN_TOKEN`.
//!
//! Webhooks are verified over the raw body bytes, queued durably and answered 200 at once; the
//! work happens in [`crate::channels::whatsapp::inbox`] workers.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::AppState;
use crate::channels::signature;
use crate::channels::whatsapp::inbox::{WhatsAppError, WhatsAppService};
use crate::channels::whatsapp::model::{
    is_twilio_status_callback, parse_twilio_form, parse_twilio_status, parse_webhook,
};
use crate::metrics::Counter;

pub const META_WEBHOOK_PATH: &str = "/whatsapp/webhook";
pub const TWILIO_WHATSAPP_PATH: &str = "/twilio/whatsapp";
/// Where our Twilio sends ask for delivery reports (`StatusCallback`).
pub const TWILIO_STATUS_PATH: &str = "/twilio/whatsapp/status";

/// Meta: "Webhook payloads can be up to 3 MB".
const MAX_WEBHOOK_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WhatsAppHttpError {
    #[error("WhatsApp channel not configured")]
    NotConfigured,
    #[error("missing or invalid signature")]
    BadSignature,
    #[error("verification refused")]
    VerifyRefused,
    #[error("admin token required")]
    Unauthorized,
    #[error("KAV_ADMIN_TOKEN is not set: operator endpoints are disabled")]
    AdminDisabled,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Channel(#[from] WhatsAppError),
}

impl From<crate::store::StoreError> for WhatsAppHttpError {
    fn from(e: crate::store::StoreError) -> Self {
        WhatsAppHttpError::Channel(WhatsAppError::Store(e))
    }
}

impl IntoResponse for WhatsAppHttpError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::NotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadSignature | Self::VerifyRefused | Self::AdminDisabled => StatusCode::FORBIDDEN,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Channel(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        tracing::warn!(%status, error = %self, "WhatsApp request refused");
        (status, self.to_string()).into_response()
    }
}

/// The webhooks the vendors call (rate-limited per IP by the caller).
pub fn webhook_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route(
            META_WEBHOOK_PATH,
            get(meta_verify)
                .post(meta_webhook)
                .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BYTES)),
        )
        .route(TWILIO_WHATSAPP_PATH, post(twilio_webhook))
        .route(TWILIO_STATUS_PATH, post(twilio_webhook))
}

/// The operator API (admin token).
pub fn operator_routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/api/test/message", post(test_message))
        .route("/api/conversations", get(list_conversations))
        .route("/api/conversations/{id}", delete(delete_conversation))
        .route("/api/customers/forget", post(forget_customer))
}

fn service(state: &AppState) -> Result<&Arc<WhatsAppService>, WhatsAppHttpError> {
    state
        .whatsapp
        .as_ref()
        .ok_or(WhatsAppHttpError::NotConfigured)
}

fn ct_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

#[derive(Deserialize)]
struct VerifyQuery {
    #[serde(rename = "hub.mode")]
    mode: Option<String>,
    #[serde(rename = "hub.verify_token")]
    verify_token: Option<String>,
    #[serde(rename = "hub.challenge")]
    challenge: Option<String>,
}

/// Meta's subscription handshake: echo `hub.challenge` when the verify token matches. Refused
/// when no token is configured (an empty token would match a request without one).
async fn meta_verify(
    State(state): State<Arc<AppState>>,
    Query(q): Query<VerifyQuery>,
) -> Result<Response, WhatsAppHttpError> {
    let svc = service(&state)?;
    let expected = svc
        .secrets
        .verify_token
        .as_deref()
        .ok_or(WhatsAppHttpError::VerifyRefused)?;
    let given = q.verify_token.as_deref().unwrap_or("");
    match (q.mode.as_deref(), q.challenge) {
        (Some("subscribe"), Some(challenge)) if ct_eq(expected, given) => {
            Ok(([(header::CONTENT_TYPE, "text/plain")], challenge).into_response())
        }
        _ => Err(WhatsAppHttpError::VerifyRefused),
    }
}

/// A webhook that could not be stored is answered 5xx, so the vendor retries it, and counted
/// (`kav_webhooks_not_stored_total`); the cause is in the answer and in the log.
fn unstored<T>(
    state: &AppState,
    accepted: Result<T, WhatsAppError>,
) -> Result<T, WhatsAppHttpError> {
    accepted.map_err(|e| {
        state.deps.metrics.add(Counter::WebhooksNotStored, 1);
        WhatsAppHttpError::Channel(e)
    })
}

async fn meta_webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WhatsAppHttpError> {
    let svc = service(&state)?;
    if !svc.config.insecure_skip_signature {
        let secret = svc
            .secrets
            .app_secret
            .as_deref()
            .ok_or(WhatsAppHttpError::BadSignature)?;
        let given = headers
            .get("x-hub-signature-256")
            .and_then(|h| h.to_str().ok())
            .ok_or(WhatsAppHttpError::BadSignature)?;
        if !signature::validate_hub_signature(secret, &body, given) {
            return Err(WhatsAppHttpError::BadSignature);
        }
    }
    let events = parse_webhook(&body).map_err(|e| WhatsAppHttpError::BadRequest(e.to_string()))?;
    let report = unstored(&state, svc.accept_meta(events).await)?;
    tracing::debug!(?report, "Meta webhook accepted");
    Ok((StatusCode::OK, "EVENT_RECEIVED").into_response())
}

async fn twilio_webhook(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Result<Response, WhatsAppHttpError> {
    let svc = service(&state)?;
    let params: Vec<(String, String)> = form_urlencoded::parse(&body).into_owned().collect();
    if !svc.config.insecure_skip_signature {
        let token = svc
            .secrets
            .twilio_auth_token
            .as_deref()
            .or(state.auth_token.as_deref())
            .ok_or(WhatsAppHttpError::BadSignature)?;
        let given = headers
            .get("x-twilio-signature")
            .and_then(|h| h.to_str().ok())
            .ok_or(WhatsAppHttpError::BadSignature)?;
        let url = super::request_url(&state, &headers, &uri, false);
        if !signature::validate(token, &url, &params, given) {
            return Err(WhatsAppHttpError::BadSignature);
        }
    }
    // Delivery reports come to the status path, or to this one when the number's callback was
    // configured in Twilio's console to point here.
    if uri.path() == TWILIO_STATUS_PATH || is_twilio_status_callback(&params) {
        let (update, business_number) = parse_twilio_status(&params)
            .map_err(|e| WhatsAppHttpError::BadRequest(e.to_string()))?;
        let report = unstored(
            &state,
            svc.accept_twilio_status(update, &business_number).await,
        )?;
        tracing::debug!(?report, "Twilio status callback accepted");
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    let message =
        parse_twilio_form(&params).map_err(|e| WhatsAppHttpError::BadRequest(e.to_string()))?;
    if svc.config.twilio_reply == "twiml" {
        let parts = svc.answer_twilio_inline(message).await?.unwrap_or_default();
        let mut twiml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response>");
        for part in parts {
            twiml.push_str("<Message>");
            twiml.push_str(&super::xml_escape(&part));
            twiml.push_str("</Message>");
        }
        twiml.push_str("</Response>\n");
        return Ok(([(header::CONTENT_TYPE, "text/xml; charset=utf-8")], twiml).into_response());
    }
    let report = unstored(&state, svc.accept_twilio(message).await)?;
    tracing::debug!(?report, "Twilio WhatsApp webhook accepted");
    // The reply goes out through the REST API from the worker; an empty TwiML says "no reply".
    Ok((
        [(header::CONTENT_TYPE, "text/xml; charset=utf-8")],
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response></Response>\n",
    )
        .into_response())
}

// ------------------------------------------------------------------ operator endpoints

/// `Authorization: Bearer <KAV_ADMIN_TOKEN>`, compared in constant time. Unset token: 403.
fn require_admin(svc: &WhatsAppService, headers: &HeaderMap) -> Result<(), WhatsAppHttpError> {
    let expected = svc
        .secrets
        .admin_token
        .as_deref()
        .ok_or(WhatsAppHttpError::AdminDisabled)?;
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Bearer "))
        .ok_or(WhatsAppHttpError::Unauthorized)?;
    if ct_eq(expected, given.trim()) {
        Ok(())
    } else {
        Err(WhatsAppHttpError::Unauthorized)
    }
}

/// An operator request: the admin token checked, then the JSON body parsed.
fn admin_json<'a, T: serde::de::DeserializeOwned>(
    state: &'a AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(&'a Arc<WhatsAppService>, T), WhatsAppHttpError> {
    let svc = service(state)?;
    require_admin(svc, headers)?;
    let req =
        serde_json::from_slice(body).map_err(|e| WhatsAppHttpError::BadRequest(e.to_string()))?;
    Ok((svc, req))
}

#[derive(Deserialize)]
struct TestMessage {
    message: String,
    session_id: Option<String>,
    phone: Option<String>,
    business: String,
}

async fn test_message(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WhatsAppHttpError> {
    let (svc, req): (_, TestMessage) = admin_json(&state, &headers, &body)?;
    let (session, is_phone) = match (&req.phone, &req.session_id) {
        (Some(phone), _) if !phone.trim().is_empty() => (phone.trim().to_string(), true),
        (_, Some(session)) if !session.trim().is_empty() => (session.trim().to_string(), false),
        _ => {
            return Err(WhatsAppHttpError::BadRequest(
                "one of session_id or phone is required".into(),
            ));
        }
    };
    if is_phone
        && !session
            .trim_start_matches('+')
            .chars()
            .all(|c| c.is_ascii_digit())
    {
        return Err(WhatsAppHttpError::BadRequest(
            "phone must be E.164 digits".into(),
        ));
    }
    let business = svc
        .directory
        .by_id(&req.business)
        .await?
        .ok_or(WhatsAppHttpError::NotFound)?;
    let (conversation_id, reply) = svc
        .test_message(&business, &session, is_phone, &req.message)
        .await?;
    Ok(axum::Json(serde_json::json!({
        "conversation_id": conversation_id,
        "business": business.id,
        "reply": reply,
    }))
    .into_response())
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<u32>,
}

async fn list_conversations(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(q): Query<Limit>,
) -> Result<Response, WhatsAppHttpError> {
    let svc = service(&state)?;
    require_admin(svc, &headers)?;
    let rows = svc
        .store
        .whatsapp_conversations(q.limit.unwrap_or(100).min(1000))
        .await?;
    Ok(axum::Json(rows).into_response())
}

async fn delete_conversation(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, WhatsAppHttpError> {
    let svc = service(&state)?;
    require_admin(svc, &headers)?;
    if svc.store.whatsapp_delete_conversation(&id).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(WhatsAppHttpError::NotFound)
    }
}

#[derive(Deserialize)]
struct ForgetCustomer {
    phone: String,
    business: Option<String>,
}

/// "Forget this customer" (`kav admin forget-customer` over HTTP): `{"phone": "...",
/// "business": "..."}` (business optional: every business). Answers what was touched.
async fn forget_customer(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, WhatsAppHttpError> {
    let (svc, req): (_, ForgetCustomer) = admin_json(&state, &headers, &body)?;
    let report = svc
        .store
        .forget_customer(
            &req.phone,
            req.business.as_deref().filter(|b| !b.is_empty()),
            crate::store::privacy::unix_now_ms(),
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::BadValue { .. } => {
                WhatsAppHttpError::BadRequest("phone must have at least 7 digits".into())
            }
            e => e.into(),
        })?;
    tracing::info!(entries = report.total(), "customer forgotten");
    Ok(axum::Json(report).into_response())
}
