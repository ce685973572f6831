//! The channel's secrets, read from the environment only (their `Debug` says set/unset, never
//! the value), and the check that refuses unsigned webhooks in a release build.

use super::WhatsAppError;

/// Secrets, from the environment only.
#[derive(Clone, Default)]
pub struct WhatsAppSecrets {
    pub app_secret: Option<String>,
    pub verify_token: Option<String>,
    pub access_token: Option<String>,
    pub twilio_account_sid: Option<String>,
    pub twilio_auth_token: Option<String>,
    pub admin_token: Option<String>,
}

impl std::fmt::Debug for WhatsAppSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let set = |o: &Option<String>| if o.is_some() { "set" } else { "unset" };
        f.debug_struct("WhatsAppSecrets")
            .field("app_secret", &set(&self.app_secret))
            .field("verify_token", &set(&self.verify_token))
            .field("access_token", &set(&self.access_token))
            .field("twilio_account_sid", &set(&self.twilio_account_sid))
            .field("twilio_auth_token", &set(&self.twilio_auth_token))
            .field("admin_token", &set(&self.admin_token))
            .finish()
    }
}

impl WhatsAppSecrets {
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        Self {
            app_secret: var("WHATSAPP_APP_SECRET"),
            verify_token: var("WHATSAPP_VERIFY_TOKEN"),
            access_token: var("WHATSAPP_ACCESS_TOKEN"),
            twilio_account_sid: var("TWILIO_ACCOUNT_SID"),
            twilio_auth_token: var("TWILIO_AUTH_TOKEN"),
            admin_token: var("KAV_ADMIN_TOKEN"),
        }
    }
}

/// Unsigned webhooks are a development convenience: a release (production) build refuses them.
pub fn check_insecure_allowed(
    insecure_skip_signature: bool,
    release_build: bool,
) -> Result<(), WhatsAppError> {
    if insecure_skip_signature && release_build {
        Err(WhatsAppError::InsecureInRelease)
    } else {
        Ok(())
    }
}
