//! The customer's lead record, a WhatsApp message to them, and the business's facts.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::args::{InfoArgs, LeadArgs, SendArgs};
use super::{ToolContext, fail, parse};
use crate::booking::outbox::{self, Delivery, KIND_WHATSAPP_SEND, SendPayload};
use crate::booking::parse::normalize_phone;
use crate::providers::{OutboundBody, OutboundMessage};
use crate::store::booking::NewOutboxEvent;

impl ToolContext {
    pub(super) async fn leads_upsert(&self, raw: &str) -> Value {
        let args: LeadArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let phone = args
            .phone
            .as_deref()
            .map(normalize_phone)
            .or_else(|| self.caller_phone.clone());
        let Some(phone) = phone else {
            return fail("need_phone", "a lead is keyed by phone; ask for it");
        };
        let _ = args.notes;
        match self
            .store()
            .upsert_customer(
                &self.settings.business.id,
                &phone,
                args.name.as_deref(),
                self.channel.as_str(),
                "lead",
                self.now(),
            )
            .await
        {
            Ok(id) => json!({"ok": true, "lead_id": id}),
            Err(e) => fail("internal", e.to_string()),
        }
    }

    pub(super) async fn whatsapp_send(&self, raw: &str) -> Value {
        let args: SendArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let Some(phone) = &self.caller_phone else {
            return fail("need_phone", "the customer's phone is unknown");
        };
        let Some(pnid) = self.whatsapp_number_id().await else {
            return fail("not_configured", "this business has no WhatsApp number");
        };
        if !self.rt.sender.delivers() {
            return fail(
                "not_configured",
                "WhatsApp sending is not configured on this server",
            );
        }
        let now = self.now();
        let digest = Sha256::digest(args.text.as_bytes());
        let key = format!(
            "send:{}:{}:{}",
            self.conversation_id,
            self.turn,
            digest
                .iter()
                .take(6)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
        let payload = SendPayload {
            message: OutboundMessage {
                phone_number_id: pnid,
                to: phone.trim_start_matches('+').to_string(),
                body: OutboundBody::Text { text: args.text },
                idempotency_key: key.clone(),
            },
            template_fallback: None,
        };
        let ev = NewOutboxEvent {
            business_id: self.settings.business.id.clone(),
            kind: KIND_WHATSAPP_SEND.into(),
            payload_json: serde_json::to_string(&payload).unwrap_or_default(),
            idempotency_key: key.clone(),
            not_before_ms: now,
        };
        if let Err(e) = self.store().enqueue(&ev, now).await {
            return fail("internal", e.to_string());
        }
        match outbox::deliver_key_now(&self.rt, &key).await {
            Ok(Delivery::Delivered) => json!({"ok": true, "status": "sent"}),
            Ok(Delivery::Dead { error }) => fail("send_failed", format!("not sent: {error}")),
            Ok(_) => fail("send_failed", "not sent yet; queued for retry"),
            Err(e) => fail("internal", e.to_string()),
        }
    }

    pub(super) async fn business_info(&self, raw: &str) -> Value {
        let args: InfoArgs = match parse(raw) {
            Ok(a) => a,
            Err(e) => return e,
        };
        let kind = args.topic.unwrap_or_default().kind();
        match self.store().documents(&self.settings.business.id).await {
            Ok(docs) => {
                let docs: Vec<_> = docs
                    .into_iter()
                    .filter(|d| kind.is_none_or(|k| d.kind == k))
                    .collect();
                json!({"ok": true, "business": self.settings.business.name, "documents": docs})
            }
            Err(e) => fail("internal", e.to_string()),
        }
    }

    async fn whatsapp_number_id(&self) -> Option<String> {
        self.store()
            .whatsapp_number_for(&self.settings.business.id)
            .await
            .ok()
            .flatten()
    }
}
