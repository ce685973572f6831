//! The staff chat panel (issue 13): `/console/b/{biz}/staff`, the only way to reach the staff
//! assistant. Owners and staff of that business, or a platform admin's account; the page shows
//! the signed-in account's chat with the business (persisted), a form to write, and the
//! business's staff-assistant prompt (editable by the owner). The same handlers answer JSON
//! under `/console/api/…`: `POST {"message": "…"}` returns the reply with its tool calls.
//!
//! Authorisation is the console's (session or API token, CSRF on cookie POSTs), then
//! [`StaffPrincipal::from_console`] for this business: another business's staff get 403.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Serialize;

use super::pages::{Ctx, Fields, text_dir};
use super::{Answer, ConsoleError, Format};
use crate::staff::agent::{StaffAgent, StaffTurn};
use crate::staff::tools::StaffPrincipal;
use crate::store::staff_chat::StaffChatMessage;

/// Messages the page shows.
const PAGE_MESSAGES: usize = 200;

pub(super) fn routes() -> Router<Arc<super::Console>> {
    Router::new()
        .route("/b/{biz}/staff", get(page).post(message))
        .route("/b/{biz}/staff/prompt", post(edit_prompt))
}

pub(super) fn add_templates(env: &mut minijinja::Environment<'static>) {
    env.add_template("staff.html", include_str!("templates/staff.html"))
        .expect("staff template is valid");
}

/// The principal acting for `biz` in the staff assistant: may view the business, and is an
/// account (the admin token is nobody to audit).
fn staff_principal(ctx: &Ctx, biz: &str) -> Result<StaffPrincipal, ConsoleError> {
    ctx.p.can_view(biz)?;
    StaffPrincipal::from_console(&ctx.p, biz).map_err(|e| ConsoleError::Refused(e.to_string()))
}

#[derive(Serialize)]
struct MessageView {
    role: String,
    text: String,
    tool_name: Option<String>,
    arguments: Option<String>,
    mode: Option<String>,
    at: String,
    dir: &'static str,
}

#[derive(Serialize)]
struct StaffView {
    id: String,
    name: String,
    dir: &'static str,
    /// `llm` or `offline`.
    mode: &'static str,
    messages: Vec<MessageView>,
    prompt: String,
    prompt_is_default: bool,
    can_configure: bool,
}

fn message_view(m: StaffChatMessage, policy: &crate::booking::policy::Policy) -> MessageView {
    let at = format!(
        "{} {}",
        policy.local_date(m.at_ms),
        policy.time_display(m.at_ms)
    );
    MessageView {
        dir: if crate::booking::guard::is_hebrew(&m.text) {
            "rtl"
        } else {
            "auto"
        },
        role: m.role,
        text: m.text,
        tool_name: m.tool_name,
        arguments: m.arguments_json,
        mode: m.mode,
        at,
    }
}

fn agent(ctx: &Ctx) -> Arc<StaffAgent> {
    ctx.c.staff_agent()
}

async fn page(ctx: Ctx, Path(biz): Path<String>) -> Answer {
    let b = ctx.business(&biz).await?;
    staff_principal(&ctx, &biz)?;
    let agent = agent(&ctx);
    let policy = b.policy().map_err(crate::agent::BookingError::from)?;
    let messages = agent
        .history(&biz, &ctx.p.email, PAGE_MESSAGES)
        .await?
        .into_iter()
        .map(|m| message_view(m, &policy))
        .collect();
    let own = ctx.c.rt.store.staff_prompt(&biz).await?;
    let view = StaffView {
        dir: text_dir(&b.language),
        id: b.id,
        name: b.name,
        mode: agent.mode(),
        messages,
        prompt_is_default: own.is_none(),
        prompt: own
            .map(|r| r.prompt)
            .unwrap_or_else(|| agent.default_prompt().to_string()),
        can_configure: ctx.p.can_configure(&biz).is_ok(),
    };
    ctx.render("staff.html", &view)
}

/// A staff message: the assistant answers; the page again (HTML) or the reply (JSON).
async fn message(ctx: Ctx, Path(biz): Path<String>, headers: HeaderMap, body: Bytes) -> Answer {
    ctx.business(&biz).await?;
    let who = staff_principal(&ctx, &biz)?;
    let fields = Fields::parse(&headers, &body)?;
    let text = fields.get("message").unwrap_or("").trim().to_string();
    if text.is_empty() {
        return Err(ConsoleError::invalid("message", "write a message"));
    }
    let agent = agent(&ctx);
    let tools = agent.tools_for(who);
    let reply = agent
        .turn(StaffTurn {
            business_id: &biz,
            account_email: &ctx.p.email,
            text: &text,
            tools: &tools,
        })
        .await
        .map_err(|e| match e {
            crate::staff::agent::StaffAgentError::Booking(b) => ConsoleError::Booking(b),
            crate::staff::agent::StaffAgentError::Store(s) => ConsoleError::Store(s),
            crate::staff::agent::StaffAgentError::Empty => {
                ConsoleError::invalid("message", "write a message")
            }
        })?;
    match ctx.fmt {
        Format::Json => Ok(axum::Json(reply).into_response()),
        Format::Html => ctx.done(
            &format!("/console/b/{biz}/staff#end"),
            serde_json::json!({}),
        ),
    }
}

/// The business's own staff-assistant prompt (owner or platform admin); empty restores the
/// configured default.
async fn edit_prompt(ctx: Ctx, Path(biz): Path<String>, headers: HeaderMap, body: Bytes) -> Answer {
    ctx.business(&biz).await?;
    ctx.p.can_configure(&biz)?;
    let fields = Fields::parse(&headers, &body)?;
    let prompt = fields.get("prompt").unwrap_or("").trim().to_string();
    ctx.c
        .rt
        .store
        .set_staff_prompt(&biz, &prompt, &ctx.p.email, ctx.c.rt.now_ms())
        .await?;
    ctx.done(
        &format!("/console/b/{biz}/staff"),
        serde_json::json!({"prompt_is_default": prompt.is_empty()}),
    )
}
