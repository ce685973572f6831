//! Who is asking: accounts, roles, passwords (argon2id), sessions (random id in an HttpOnly
//! SameSite=Lax cookie, SHA-256 of it in `console_sessions`), CSRF synchronizer tokens, per-account
//! API tokens, and the login rate limits (per client IP and per account).
//!
//! Three ways in, one [`Principal`] out:
//! * a session cookie (browser): state-changing requests must also carry the session's CSRF
//!   token (form field `csrf` or header `X-CSRF-Token`);
//! * `Authorization: Bearer kav_…`: an account's API token (hashed at rest, revocable); no CSRF,
//!   a browser never sends it on its own;
//! * `Authorization: Bearer $KAV_ADMIN_TOKEN`: the platform admin of the deployment (kept from the
//!   WhatsApp operator API, so existing scripts keep working).

use std::net::IpAddr;
use std::num::NonZeroU32;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use axum::http::{HeaderMap, header};
use base64::Engine;
use governor::{DefaultKeyedRateLimiter, Quota};
use subtle::ConstantTimeEq;

use crate::store::console::AccountRow;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kav_session";
/// API tokens start with this, so a leaked one is recognisable in logs and scanners.
pub const TOKEN_PREFIX: &str = "kav_";

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Every business, accounts, every call.
    PlatformAdmin,
    /// One business: its settings, bookings and conversations.
    Owner,
    /// One business: bookings and conversations, settings read-only.
    Staff,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform_admin",
            Role::Owner => "owner",
            Role::Staff => "staff",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s.trim() {
            "platform_admin" | "admin" => Some(Role::PlatformAdmin),
            "owner" | "business_owner" => Some(Role::Owner),
            "staff" | "business_staff" => Some(Role::Staff),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("sign in required")]
    Unauthenticated,
    #[error("this account may not open that business")]
    Forbidden,
    #[error("missing or wrong CSRF token; reload the page and try again")]
    Csrf,
    #[error("too many sign-in attempts; wait a minute")]
    RateLimited,
    #[error("wrong email or password")]
    BadCredentials,
    #[error("account row has an unknown role {0:?}")]
    BadRole(String),
}

/// How the request authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// A browser session; its CSRF token and the cookie's id hash (for logout).
    Session { csrf: String, id_hash: String },
    /// An account's API token.
    ApiToken,
    /// `KAV_ADMIN_TOKEN`.
    AdminToken,
}

/// The authenticated caller of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// None for `KAV_ADMIN_TOKEN`.
    pub account_id: Option<String>,
    pub email: String,
    pub role: Role,
    /// The one business of an owner or staff member.
    pub business_id: Option<String>,
    pub via: Via,
}

impl Principal {
    pub fn from_account(a: &AccountRow, via: Via) -> Result<Principal, AuthError> {
        Ok(Principal {
            account_id: Some(a.id.clone()),
            email: a.email.clone(),
            role: Role::parse(&a.role).ok_or_else(|| AuthError::BadRole(a.role.clone()))?,
            business_id: a.business_id.clone(),
            via,
        })
    }

    pub fn admin_token() -> Principal {
        Principal {
            account_id: None,
            email: "KAV_ADMIN_TOKEN".into(),
            role: Role::PlatformAdmin,
            business_id: None,
            via: Via::AdminToken,
        }
    }

    pub fn is_platform_admin(&self) -> bool {
        self.role == Role::PlatformAdmin
    }

    /// May see this business's pages, bookings and conversations.
    pub fn can_view(&self, business_id: &str) -> Result<(), AuthError> {
        if self.is_platform_admin() || self.business_id.as_deref() == Some(business_id) {
            Ok(())
        } else {
            Err(AuthError::Forbidden)
        }
    }

    /// May change this business's settings (owners and the platform admin).
    pub fn can_configure(&self, business_id: &str) -> Result<(), AuthError> {
        self.can_view(business_id)?;
        if self.role == Role::Staff {
            return Err(AuthError::Forbidden);
        }
        Ok(())
    }

    /// The session's CSRF token (None: not a cookie session, no CSRF needed).
    pub fn csrf(&self) -> Option<&str> {
        match &self.via {
            Via::Session { csrf, .. } => Some(csrf),
            _ => None,
        }
    }
}

/// Constant-time string equality.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `bytes` from the OS generator, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).expect("the OS random generator is unavailable");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&buf)
}

/// Hex SHA-256: how session ids and API tokens are stored (they are 256-bit random values, so a
/// fast hash is enough; passwords get argon2id).
pub fn sha256_hex(s: &str) -> String {
    crate::hash::sha256_hex(s.as_bytes())
}

/// A fresh API token (`kav_` + 32 random bytes).
pub fn new_api_token() -> String {
    format!("{TOKEN_PREFIX}{}", random_token(32))
}

/// argon2id (the crate's defaults: m=19 MiB, t=2, p=1, as OWASP recommends) PHC string.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).expect("the OS random generator is unavailable");
    let salt = SaltString::encode_b64(&salt).expect("16 bytes is a valid salt");
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters cannot fail")
        .to_string()
}

/// Checks a password against a stored PHC string; a malformed hash is a mismatch.
pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc).is_ok_and(|h| {
        argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// The bearer token of `Authorization: Bearer …`, if any.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// A cookie's value from the `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// `Set-Cookie` for a new session (or, with `max_age_s` 0, the one that clears it).
pub fn session_cookie(value: &str, max_age_s: u64, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_s}{}",
        if secure { "; Secure" } else { "" }
    )
}

/// Login attempts: a GCRA limit per client IP and one per account (email), so neither one
/// address guessing many accounts nor many addresses guessing one account get far.
pub struct LoginLimiter {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_account: Option<DefaultKeyedRateLimiter<String>>,
}

impl LoginLimiter {
    /// Attempts per minute (each also the burst); 0 = no limit.
    pub fn new(per_ip_per_min: u32, per_account_per_min: u32) -> Self {
        fn quota(n: u32) -> Option<Quota> {
            let n = NonZeroU32::new(n)?;
            Some(Quota::per_minute(n).allow_burst(n))
        }
        Self {
            per_ip: quota(per_ip_per_min).map(DefaultKeyedRateLimiter::keyed),
            per_account: quota(per_account_per_min).map(DefaultKeyedRateLimiter::keyed),
        }
    }

    /// Counts one attempt; `Err` when either limit is exhausted.
    pub fn check(&self, ip: Option<IpAddr>, email: &str) -> Result<(), AuthError> {
        if let (Some(l), Some(ip)) = (&self.per_ip, ip)
            && l.check_key(&ip).is_err()
        {
            return Err(AuthError::RateLimited);
        }
        if let Some(l) = &self.per_account
            && l.check_key(&email.trim().to_lowercase()).is_err()
        {
            return Err(AuthError::RateLimited);
        }
        Ok(())
    }

    /// Forgets keys whose limit has recovered (bounded memory).
    pub fn housekeep(&self) {
        if let Some(l) = &self.per_ip {
            l.retain_recent();
        }
        if let Some(l) = &self.per_account {
            l.retain_recent();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_with_argon2id_and_verify() {
        let h = hash_password("correct horse");
        assert!(h.starts_with("$argon2id$"), "{h}");
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("correct horse", "not a phc string"));
        // Salted: the same password hashes differently.
        assert_ne!(h, hash_password("correct horse"));
    }

    #[test]
    fn tokens_are_random_and_hashes_stable() {
        let (a, b) = (new_api_token(), new_api_token());
        assert_ne!(a, b);
        assert!(a.starts_with(TOKEN_PREFIX) && a.len() > 40, "{a}");
        assert_eq!(sha256_hex("abc").len(), 64);
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn cookies_are_read_from_any_cookie_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; kav_session=xyz".parse().unwrap());
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, "b"), None);
        let set = session_cookie("v", 60, false);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Lax"),
            "{set}"
        );
        assert!(session_cookie("v", 60, true).ends_with("; Secure"));
    }

    #[test]
    fn login_limits_per_ip_and_per_account() {
        let l = LoginLimiter::new(3, 2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        assert!(l.check(Some(ip), "a@x").is_ok());
        assert!(l.check(Some(ip), "A@x ").is_ok());
        // Third try at the same account (case and spaces do not make it another).
        assert_eq!(l.check(Some(ip), "a@x"), Err(AuthError::RateLimited));
        // Another account from the same IP: the IP's 3rd attempt is allowed, its 4th is not.
        let other: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(l.check(Some(other), "a@x"), Err(AuthError::RateLimited));
        assert_eq!(l.check(Some(ip), "b@x"), Err(AuthError::RateLimited));
        assert!(l.check(Some(other), "c@x").is_ok());
    }

    #[test]
    fn tenants_see_only_their_business() {
        let staff = Principal {
            account_id: Some("a".into()),
            email: "s@a".into(),
            role: Role::Staff,
            business_id: Some("biz_a".into()),
            via: Via::ApiToken,
        };
        assert!(staff.can_view("biz_a").is_ok());
        assert_eq!(staff.can_view("biz_b"), Err(AuthError::Forbidden));
        assert_eq!(staff.can_configure("biz_a"), Err(AuthError::Forbidden));
        let owner = Principal {
            role: Role::Owner,
            ..staff
        };
        assert!(owner.can_configure("biz_a").is_ok());
        assert_eq!(owner.can_configure("biz_b"), Err(AuthError::Forbidden));
        assert!(Principal::admin_token().can_configure("biz_b").is_ok());
    }
}
