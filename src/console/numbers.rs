//! A business's Twilio numbers (`phone`, E.164) and WhatsApp Cloud API `phone_number_id`s
//! (`whatsapp`): add and remove. Calls and messages are routed by a lookup of
//! `business_numbers` on every call and message (no cache), so a change applies to the next one.
//! A number another business has is refused.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::routing::post;

use super::business::owner_change;
use super::pages::{Ctx, Fields};
use super::{Answer, Console, ConsoleError};
use crate::store::console::AddressOutcome;

pub(super) fn routes() -> Router<Arc<Console>> {
    Router::new()
        .route("/b/{biz}/numbers", post(add_number))
        .route("/b/{biz}/numbers/remove", post(remove_number))
}

/// The channel and the address in its canonical form, or the specific reason it is not one.
pub(super) fn channel_address(fields: &Fields) -> Result<(&'static str, String), ConsoleError> {
    let channel = match fields.text("channel")?.as_str() {
        "phone" => "phone",
        "whatsapp" => "whatsapp",
        other => {
            return Err(ConsoleError::invalid(
                "channel",
                format!("{other:?}: want phone or whatsapp"),
            ));
        }
    };
    let raw = fields.text("address")?;
    // People paste numbers with spaces, dashes, dots and brackets.
    let address: String = raw
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = |s: &str, range: std::ops::RangeInclusive<usize>| {
        range.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    let ok = match channel {
        "phone" => address
            .strip_prefix('+')
            .is_some_and(|d| digits(d, 8..=15) && !d.starts_with('0')),
        _ => digits(&address, 5..=30),
    };
    if !ok {
        let want = match channel {
            "phone" => "an E.164 number: +, country code, number, e.g. +97235550100",
            _ => "a WhatsApp phone_number_id: digits only, e.g. 100200300400500",
        };
        return Err(ConsoleError::invalid(
            "address",
            format!("{raw:?} is not {want}"),
        ));
    }
    Ok((channel, address))
}

async fn add_number(ctx: Ctx, Path(biz): Path<String>, headers: HeaderMap, body: Bytes) -> Answer {
    owner_change(&ctx, &biz, "numbers", &headers, &body, async |fields| {
        let (channel, address) = channel_address(fields)?;
        let store = &ctx.c.rt.store;
        match store.add_business_address(&biz, channel, &address).await? {
            AddressOutcome::Added => {
                Ok(serde_json::json!({"channel": channel, "address": address}))
            }
            AddressOutcome::AlreadyThis => {
                Ok(serde_json::json!({"channel": channel, "address": address, "unchanged": true}))
            }
            AddressOutcome::OwnedByAnother => Err(ConsoleError::Refused(format!(
                "{address} ({channel}) is already used by another business; it must be removed \
                 there first"
            ))),
        }
    })
    .await
}

async fn remove_number(
    ctx: Ctx,
    Path(biz): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    owner_change(&ctx, &biz, "numbers", &headers, &body, async |fields| {
        let (channel, address) = channel_address(fields)?;
        let store = &ctx.c.rt.store;
        if !store
            .remove_business_address(&biz, channel, &address)
            .await?
        {
            return Err(ConsoleError::invalid(
                "address",
                format!("{address} ({channel}) is not one of this business's numbers"),
            ));
        }
        Ok(serde_json::json!({"removed": address}))
    })
    .await
}
