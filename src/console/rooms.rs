//! A business's rooms (bookable resources): add, rename (`room_name`, `room_aliases`: other names
//! the agent recognises, `|` or `,` separated; `room_limit`: concurrent bookings), remove. A room with upcoming bookings is not removed: the refusal says how
//! many. Every change moves the business's version, so the agent's cached settings (its room
//! list) rebuild on the next turn.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::routing::post;

use super::business::owner_change;
use super::pages::{Ctx, Fields};
use super::{Answer, Console, ConsoleError};
use crate::store::console::RoomRemoval;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/b/{biz}/rooms", post(add_room))
        .route("/b/{biz}/rooms/{id}", post(edit_room))
        .route("/b/{biz}/rooms/{id}/remove", post(remove_room))
}

/// Most concurrent bookings one room may take.
const MAX_ROOM_LIMIT: i64 = 1000;

/// A room's name, other names and limit, validated; `except`: the room being renamed, whose own
/// names do not clash with themselves.
async fn room_fields(
    ctx: &Ctx,
    biz: &str,
    fields: &Fields,
    except: Option<&str>,
) -> Result<(String, Vec<String>, i64), ConsoleError> {
    let name = fields.text("room_name")?;
    if name.is_empty() || name.chars().count() > 100 || name.contains('|') {
        return Err(ConsoleError::invalid(
            "room_name",
            "give a room name of 1 to 100 characters, without |",
        ));
    }
    let aliases: Vec<String> = fields
        .get("room_aliases")
        .unwrap_or("")
        .split(['|', ','])
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string)
        .collect();
    let limit = match fields.get("room_limit").map(str::trim) {
        None | Some("") => 1,
        Some(_) => fields.int("room_limit")?,
    };
    if !(1..=MAX_ROOM_LIMIT).contains(&limit) {
        return Err(ConsoleError::invalid(
            "room_limit",
            format!("{limit}: a room takes 1 to {MAX_ROOM_LIMIT} bookings at once"),
        ));
    }
    // The agent finds a room by any of its names: two rooms may not share one.
    let rooms = ctx.c.rt.store.resources(biz).await?;
    for other in rooms.iter().filter(|r| Some(r.id.as_str()) != except) {
        let taken = std::iter::once(&other.name).chain(&other.aliases);
        if let Some(clash) = std::iter::once(&name)
            .chain(&aliases)
            .find(|n| taken.clone().any(|t| t.to_lowercase() == n.to_lowercase()))
        {
            return Err(ConsoleError::invalid(
                "room_name",
                format!("{clash:?} already names the room {:?}", other.name),
            ));
        }
    }
    Ok((name, aliases, limit))
}

async fn add_room(ctx: Ctx, Path(biz): Path<String>, headers: HeaderMap, body: Bytes) -> Answer {
    owner_change(&ctx, &biz, "rooms", &headers, &body, async |fields| {
        let (name, aliases, limit) = room_fields(&ctx, &biz, fields, None).await?;
        let store = &ctx.c.rt.store;
        let id = store
            .add_room(&biz, &name, &aliases, limit, ctx.c.now_ms())
            .await?;
        Ok(serde_json::json!({"id": id}))
    })
    .await
}

async fn edit_room(
    ctx: Ctx,
    Path((biz, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    owner_change(&ctx, &biz, "rooms", &headers, &body, async |fields| {
        let (name, aliases, limit) = room_fields(&ctx, &biz, fields, Some(&id)).await?;
        let store = &ctx.c.rt.store;
        if !store
            .edit_room(&biz, &id, &name, &aliases, limit, ctx.c.now_ms())
            .await?
        {
            return Err(ConsoleError::NotFound);
        }
        Ok(serde_json::json!({"id": id}))
    })
    .await
}

async fn remove_room(
    ctx: Ctx,
    Path((biz, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    owner_change(&ctx, &biz, "rooms", &headers, &body, async |_| {
        match ctx
            .c
            .rt
            .store
            .remove_room(&biz, &id, ctx.c.now_ms())
            .await?
        {
            RoomRemoval::Removed => Ok(serde_json::json!({"removed": id})),
            RoomRemoval::NotFound => Err(ConsoleError::NotFound),
            RoomRemoval::HasFutureBookings(n) => Err(ConsoleError::Refused(format!(
                "the room has {n} upcoming booking{}; move or cancel {} first",
                if n == 1 { "" } else { "s" },
                if n == 1 { "it" } else { "them" },
            ))),
        }
    })
    .await
}
