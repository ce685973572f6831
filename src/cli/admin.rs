//! `kav admin`: user, token and customer administration straight against the store (create a
//! user, create or revoke a token, forget a customer, run the retention sweep once). Passwords
//! are read from the environment or stdin, never from argv.

use anyhow::{Context, Result, bail};

use kav::config::Config;
use kav::store::Store;

use crate::AdminCommand;

/// Reads a password from `KAV_ADMIN_PASSWORD`, else the first line of stdin (never argv, which
/// other users can read in the process list).
fn read_password() -> Result<String> {
    if let Some(p) = std::env::var("KAV_ADMIN_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
    {
        return Ok(p);
    }
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        eprint!("password (input is echoed; pipe it or use KAV_ADMIN_PASSWORD to avoid that): ");
    }
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_string();
    if password.is_empty() {
        bail!("no password: set KAV_ADMIN_PASSWORD or pipe it on stdin");
    }
    Ok(password)
}

pub(crate) async fn admin(cfg: &Config, command: AdminCommand) -> Result<()> {
    let store = Store::connect(&cfg.store.url)
        .await
        .with_context(|| format!("opening store {}", cfg.store.url))?;
    let now = kav::agent::system_clock()();
    match command {
        AdminCommand::CreateUser {
            email,
            role,
            business,
        } => {
            let password = read_password()?;
            let account = kav::console::admin::create_user(
                &store,
                &email,
                &role,
                business.as_deref(),
                &password,
                now,
            )
            .await?;
            println!(
                "created {} ({}{}) id {}",
                account.email,
                account.role,
                account
                    .business_id
                    .as_deref()
                    .map(|b| format!(" of {b}"))
                    .unwrap_or_default(),
                account.id
            );
        }
        AdminCommand::CreateToken { email, label } => {
            let (row, token) =
                kav::console::admin::create_token(&store, &email, &label, now).await?;
            eprintln!("token {} for {email} (shown once; stored hashed):", row.id);
            println!("{token}");
        }
        AdminCommand::RevokeToken { id } => {
            if !store.revoke_api_token(&id, None, now).await? {
                bail!("no live token {id:?}");
            }
            println!("revoked {id}");
        }
        AdminCommand::ForgetCustomer { phone, business } => {
            let report = store
                .forget_customer(&phone, business.as_deref(), now)
                .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        AdminCommand::Sweep => {
            let plan = kav::store::privacy::RetentionPlan::at(now, &cfg.retention);
            let report = store.sweep_retention(&plan).await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(())
}
