//! Account administration shared by `kav admin …` and tests: creating accounts and API tokens
//! with the same checks the console applies.

use super::ConsoleError;
use super::auth::{self, Role};
use crate::store::Store;
use crate::store::console::{AccountRow, ApiTokenRow};

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 10;

/// Creates an account. Owners and staff need an existing business; the platform admin has none.
pub async fn create_user(
    store: &Store,
    email: &str,
    role: &str,
    business_id: Option<&str>,
    password: &str,
    now_ms: i64,
) -> Result<AccountRow, ConsoleError> {
    let email = email.trim().to_lowercase();
    if !email.contains('@') || email.len() > 254 || email.chars().any(char::is_whitespace) {
        return Err(ConsoleError::invalid(
            "email",
            format!("{email:?} is not an email address"),
        ));
    }
    let role = Role::parse(role).ok_or_else(|| {
        ConsoleError::invalid(
            "role",
            format!("{role:?}: want platform_admin, owner or staff"),
        )
    })?;
    let business_id = business_id.map(str::trim).filter(|b| !b.is_empty());
    match (role, business_id) {
        (Role::PlatformAdmin, Some(_)) => {
            return Err(ConsoleError::invalid(
                "business",
                "a platform admin sees every business; give no --business",
            ));
        }
        (Role::Owner | Role::Staff, None) => {
            return Err(ConsoleError::invalid(
                "business",
                "owners and staff need --business",
            ));
        }
        (_, Some(b)) if store.business(b).await?.is_none() => {
            return Err(ConsoleError::invalid(
                "business",
                format!("no business {b:?}"),
            ));
        }
        _ => {}
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(ConsoleError::invalid(
            "password",
            format!("at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    let account = AccountRow {
        id: crate::store::booking::new_id("acct"),
        email: email.clone(),
        password_hash: auth::hash_password(password),
        role: role.as_str().to_string(),
        business_id: business_id.map(str::to_string),
        disabled: false,
        created_at_ms: now_ms,
    };
    if !store.insert_account(&account).await? {
        return Err(ConsoleError::invalid(
            "email",
            format!("{email} already has an account"),
        ));
    }
    Ok(account)
}

/// A new API token for the account with this email; returns the row and the token (shown once,
/// stored as its SHA-256).
pub async fn create_token(
    store: &Store,
    email: &str,
    label: &str,
    now_ms: i64,
) -> Result<(ApiTokenRow, String), ConsoleError> {
    let account = store
        .account_by_email(&email.trim().to_lowercase())
        .await?
        .ok_or_else(|| ConsoleError::invalid("email", format!("no account {email:?}")))?;
    let token = auth::new_api_token();
    let row = ApiTokenRow {
        id: crate::store::booking::new_id("tok"),
        account_id: account.id,
        label: if label.trim().is_empty() {
            "api".into()
        } else {
            label.trim().chars().take(80).collect()
        },
        created_at_ms: now_ms,
        revoked_at_ms: None,
    };
    store
        .insert_api_token(&row, &auth::sha256_hex(&token))
        .await?;
    Ok((row, token))
}
