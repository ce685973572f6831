//! Where a message goes: the [`BusinessDirectory`] port that finds the business a WhatsApp
//! number belongs to, with [`ConfigDirectory`] (`[[whatsapp.numbers]]`) and [`StoreDirectory`]
//! (the booking tables, config first). A failed lookup is an error, never "unknown": an unknown
//! number is acknowledged and dropped, so a database error must not look like one.

use crate::config::WhatsAppNumber;
use crate::providers::BoxFuture;
use crate::store::{Store, StoreError};

/// A business as the channel needs it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BusinessInfo {
    pub id: String,
    pub name: String,
    /// BCP-47, e.g. `he-IL`.
    pub language: String,
    /// Meta Cloud API number id (sender for Graph sends).
    pub phone_number_id: String,
    /// E.164 digits without `+` (Twilio sender, `To` for the agent).
    pub display_number: String,
}

/// A directory answer: found, not found (`Ok(None)`), or the lookup failed (a database error:
/// the caller must not treat it as "unknown", or a webhook would be acknowledged and lost).
pub type Lookup = Result<Option<BusinessInfo>, StoreError>;

/// Finds the business a message was sent to. The lead implements it over the booking tables.
pub trait BusinessDirectory: Send + Sync + 'static {
    fn by_whatsapp_number_id(&self, phone_number_id: &str) -> BoxFuture<'static, Lookup>;
    /// `number` is E.164 digits without `+` or `whatsapp:`.
    fn by_twilio_number(&self, number: &str) -> BoxFuture<'static, Lookup>;
    fn by_id(&self, business_id: &str) -> BoxFuture<'static, Lookup>;
}

/// `[[whatsapp.numbers]]` from the config.
pub struct ConfigDirectory {
    numbers: Vec<WhatsAppNumber>,
}

impl ConfigDirectory {
    pub fn new(numbers: Vec<WhatsAppNumber>) -> Self {
        Self { numbers }
    }

    fn find(&self, pred: impl Fn(&WhatsAppNumber) -> bool) -> Option<BusinessInfo> {
        self.numbers.iter().find(|n| pred(n)).map(|n| BusinessInfo {
            id: n.business_id.clone(),
            name: n.business_name.clone(),
            language: n.language.clone(),
            phone_number_id: n.phone_number_id.clone(),
            display_number: n.display_number.trim_start_matches('+').to_string(),
        })
    }
}

impl BusinessDirectory for ConfigDirectory {
    fn by_whatsapp_number_id(&self, id: &str) -> BoxFuture<'static, Lookup> {
        let found = self.find(|n| !id.is_empty() && n.phone_number_id == id);
        Box::pin(async move { Ok(found) })
    }

    fn by_twilio_number(&self, number: &str) -> BoxFuture<'static, Lookup> {
        let number = number.trim_start_matches('+');
        let found =
            self.find(|n| !number.is_empty() && n.display_number.trim_start_matches('+') == number);
        Box::pin(async move { Ok(found) })
    }

    fn by_id(&self, business_id: &str) -> BoxFuture<'static, Lookup> {
        let found = self.find(|n| n.business_id == business_id);
        Box::pin(async move { Ok(found) })
    }
}

/// The businesses of the booking tables (`business_numbers`), with `[[whatsapp.numbers]]` from
/// the config taking precedence, so one database serves every tenant without config edits.
pub struct StoreDirectory {
    store: Store,
    config: ConfigDirectory,
}

impl StoreDirectory {
    pub fn new(store: Store, numbers: Vec<WhatsAppNumber>) -> Self {
        Self {
            store,
            config: ConfigDirectory::new(numbers),
        }
    }

    async fn info(store: &Store, business_id: &str) -> Lookup {
        let Some(business) = store.business(business_id).await? else {
            return Ok(None);
        };
        let addresses = store.business_addresses(business_id).await?;
        let address = |channel: &str| {
            addresses
                .iter()
                .find(|(c, _)| c == channel)
                .map(|(_, a)| a.trim_start_matches('+').to_string())
                .unwrap_or_default()
        };
        Ok(Some(BusinessInfo {
            id: business.id,
            name: business.name,
            language: business.language,
            phone_number_id: address("whatsapp"),
            display_number: address("phone"),
        }))
    }

    async fn by_address(store: &Store, channel: &str, address: &str) -> Lookup {
        match store.business_id_by_number(channel, address).await? {
            Some(id) => Self::info(store, &id).await,
            None => Ok(None),
        }
    }
}

impl BusinessDirectory for StoreDirectory {
    fn by_whatsapp_number_id(&self, id: &str) -> BoxFuture<'static, Lookup> {
        let configured = self.config.by_whatsapp_number_id(id);
        let (store, id) = (self.store.clone(), id.to_string());
        Box::pin(async move {
            if let Some(found) = configured.await? {
                return Ok(Some(found));
            }
            if id.is_empty() {
                return Ok(None);
            }
            Self::by_address(&store, "whatsapp", &id).await
        })
    }

    fn by_twilio_number(&self, number: &str) -> BoxFuture<'static, Lookup> {
        let configured = self.config.by_twilio_number(number);
        let (store, digits) = (
            self.store.clone(),
            number.trim_start_matches('+').to_string(),
        );
        Box::pin(async move {
            if let Some(found) = configured.await? {
                return Ok(Some(found));
            }
            if digits.is_empty() {
                return Ok(None);
            }
            // Twilio WhatsApp senders are usually the business's own phone number.
            Self::by_address(&store, "phone", &format!("+{digits}")).await
        })
    }

    fn by_id(&self, business_id: &str) -> BoxFuture<'static, Lookup> {
        let configured = self.config.by_id(business_id);
        let (store, id) = (self.store.clone(), business_id.to_string());
        Box::pin(async move {
            match configured.await? {
                Some(found) => Ok(Some(found)),
                None => Self::info(&store, &id).await,
            }
        })
    }
}
