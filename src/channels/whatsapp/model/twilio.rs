//! Twilio's WhatsApp webhook: the `application/x-www-form-urlencoded` form of an inbound
//! message and of a status callback, told apart by `MessageStatus`, and Twilio's
//! `whatsapp:+…` addresses. A sender is a phone only if it is plain E.164 digits.

use std::collections::BTreeMap;

use super::{InboundMessage, MessageContent, Sender, StatusUpdate, is_phone_digits};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TwilioFormError {
    #[error("Twilio WhatsApp webhook lacks {0}")]
    Missing(&'static str),
}

/// Parses Twilio's `application/x-www-form-urlencoded` WhatsApp webhook.
pub fn parse_twilio_form(params: &[(String, String)]) -> Result<InboundMessage, TwilioFormError> {
    let map: BTreeMap<&str, &str> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let message_id = map
        .get("MessageSid")
        .or_else(|| map.get("SmsMessageSid"))
        .ok_or(TwilioFormError::Missing("MessageSid"))?
        .to_string();
    let from = map.get("From").ok_or(TwilioFormError::Missing("From"))?;
    let to = map.get("To").copied().unwrap_or("");
    let phone = map
        .get("WaId")
        .map(|s| s.to_string())
        .filter(|s| is_phone_digits(s))
        .or_else(|| Some(strip_whatsapp_address(from)).filter(|s| is_phone_digits(s)));
    let sender = Sender {
        phone,
        user_id: None,
        profile_name: map.get("ProfileName").map(|s| s.to_string()),
    };
    if sender.customer_key().is_none() {
        return Err(TwilioFormError::Missing("From"));
    }
    let num_media: usize = map
        .get("NumMedia")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let body = map.get("Body").copied().unwrap_or("");
    let content = if num_media > 0 {
        let mime = map.get("MediaContentType0").map(|s| s.to_string());
        let is_audio = mime.as_deref().is_some_and(|m| m.starts_with("audio/"));
        if is_audio {
            MessageContent::Audio {
                media_id: None,
                url: map.get("MediaUrl0").map(|s| s.to_string()),
                mime_type: mime,
                sha256: None,
                voice: true,
            }
        } else {
            MessageContent::Unsupported {
                message_type: mime.unwrap_or_else(|| "media".into()),
            }
        }
    } else if let Some(payload) = map.get("ButtonPayload").filter(|p| !p.is_empty()) {
        MessageContent::Choice {
            id: payload.to_string(),
            title: map.get("ButtonText").copied().unwrap_or(body).to_string(),
        }
    } else {
        MessageContent::Text {
            body: body.to_string(),
        }
    };
    Ok(InboundMessage {
        message_id,
        phone_number_id: String::new(),
        business_number: strip_whatsapp_address(to),
        sender,
        timestamp_s: 0,
        content,
    })
}

/// Twilio's delivery report for one of our outbound messages (the `StatusCallback` request).
/// Returns the update and the business number it was sent from (the status's routing key).
/// Twilio's vocabulary is mapped onto Meta's (`undelivered` is a failure); stages before `sent`
/// (`queued`, `sending`, …) are kept raw, so they reach the history but move nothing.
pub fn parse_twilio_status(
    params: &[(String, String)],
) -> Result<(StatusUpdate, String), TwilioFormError> {
    let get = |key: &str| {
        params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let message_id = get("MessageSid")
        .or_else(|| get("SmsSid"))
        .filter(|s| !s.is_empty())
        .ok_or(TwilioFormError::Missing("MessageSid"))?;
    let raw = get("MessageStatus")
        .or_else(|| get("SmsStatus"))
        .filter(|s| !s.is_empty())
        .ok_or(TwilioFormError::Missing("MessageStatus"))?;
    let status = match raw {
        "undelivered" | "failed" => "failed",
        other => other,
    };
    let error_code = get("ErrorCode").and_then(|c| c.trim().parse::<i64>().ok());
    let recipient = get("To").map(strip_whatsapp_address);
    let update = StatusUpdate {
        message_id: message_id.to_string(),
        status: status.to_string(),
        timestamp_s: 0,
        recipient_id: recipient.filter(|r| is_phone_digits(r)),
        recipient_user_id: None,
        error_code: error_code.filter(|_| status == "failed"),
        error_title: get("ErrorMessage")
            .filter(|m| !m.is_empty())
            .map(str::to_string)
            .or_else(|| (raw == "undelivered").then(|| "undelivered".to_string())),
        phone_number_id: String::new(),
    };
    Ok((update, strip_whatsapp_address(get("From").unwrap_or(""))))
}

/// Twilio posts status callbacks with the same form shape as inbound messages; they carry a
/// `MessageStatus` other than `received` and no message content.
pub fn is_twilio_status_callback(params: &[(String, String)]) -> bool {
    params
        .iter()
        .any(|(k, v)| k == "MessageStatus" && v != "received" && v != "receiving")
}

/// `whatsapp:+14155238886` → `14155238886`.
pub fn strip_whatsapp_address(address: &str) -> String {
    let a = address.strip_prefix("whatsapp:").unwrap_or(address);
    a.trim().trim_start_matches('+').to_string()
}
