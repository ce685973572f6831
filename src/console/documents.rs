//! A business's knowledge documents (what the agent's `business_info` tool and the offline
//! dialog's retrieval answer from): add, edit, delete. They are read from the table on every
//! question, so the next turn sees an edit. Shown escaped, Hebrew right-to-left.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::routing::post;

use super::business::owner_change;
use super::pages::{Ctx, Fields};
use super::{Answer, Console, ConsoleError};

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/b/{biz}/documents", post(add_document))
        .route("/b/{biz}/documents/{id}", post(edit_document))
        .route("/b/{biz}/documents/{id}/delete", post(delete_document))
}

/// The kinds `business_info` filters by.
const KINDS: [&str; 5] = ["hours", "prices", "rooms", "faq", "other"];
/// Longest document body accepted (characters).
const MAX_BODY_CHARS: usize = 20_000;

fn document_fields(fields: &Fields) -> Result<(String, String, String), ConsoleError> {
    let kind = fields.text("kind")?;
    if !KINDS.contains(&kind.as_str()) {
        return Err(ConsoleError::invalid(
            "kind",
            format!("{kind:?}: want one of {}", KINDS.join(", ")),
        ));
    }
    let title = fields.text("title")?;
    if title.is_empty() || title.chars().count() > 200 {
        return Err(ConsoleError::invalid(
            "title",
            "give a title of 1 to 200 characters",
        ));
    }
    let body = fields.text("body")?;
    let chars = body.chars().count();
    if chars == 0 || chars > MAX_BODY_CHARS {
        return Err(ConsoleError::invalid(
            "body",
            format!("{chars} characters: a document holds 1 to {MAX_BODY_CHARS}"),
        ));
    }
    Ok((kind, title, body))
}

async fn put(ctx: &Ctx, biz: &str, id: Option<&str>, headers: &HeaderMap, body: &[u8]) -> Answer {
    owner_change(ctx, biz, "documents", headers, body, async |fields| {
        let (kind, title, text) = document_fields(fields)?;
        let stored = ctx
            .c
            .rt
            .store
            .put_document(biz, id, &kind, &title, &text)
            .await?;
        let id = stored.ok_or(ConsoleError::NotFound)?;
        Ok(serde_json::json!({"id": id}))
    })
    .await
}

async fn add_document(
    ctx: Ctx,
    Path(biz): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    put(&ctx, &biz, None, &headers, &body).await
}

async fn edit_document(
    ctx: Ctx,
    Path((biz, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    put(&ctx, &biz, Some(&id), &headers, &body).await
}

async fn delete_document(
    ctx: Ctx,
    Path((biz, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    owner_change(&ctx, &biz, "documents", &headers, &body, async |_| {
        if !ctx.c.rt.store.delete_document(&biz, &id).await? {
            return Err(ConsoleError::NotFound);
        }
        Ok(serde_json::json!({"deleted": id}))
    })
    .await
}
