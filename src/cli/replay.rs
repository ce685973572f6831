//! `kav replay`: posts recorded webhook requests to a running server, a number of times.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};

pub(crate) async fn replay(
    files: &[PathBuf],
    meta_url: &str,
    twilio_url: &str,
    times: u32,
) -> Result<()> {
    let secret = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|s| !s.is_empty())
            .with_context(|| format!("{name} must be set to sign replayed webhooks"))
    };
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let mut failed = 0;
    for file in files {
        let body = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        let is_json = body
            .iter()
            .find(|b| !b.is_ascii_whitespace())
            .is_some_and(|b| *b == b'{');
        // Each request is built once and sent `times` times: the same bytes, the same signature.
        let (url, request) = if is_json {
            let signature =
                kav::channels::signature::hub_signature_256(&secret("WHATSAPP_APP_SECRET")?, &body);
            let request = http
                .post(meta_url)
                .header("content-type", "application/json")
                .header("x-hub-signature-256", signature)
                .body(body);
            (meta_url, request)
        } else {
            let text = String::from_utf8(body)
                .with_context(|| format!("{} is neither JSON nor a form body", file.display()))?;
            let params: Vec<(String, String)> = form_urlencoded::parse(text.trim().as_bytes())
                .into_owned()
                .collect();
            let signature = kav::channels::signature::compute(
                &secret("TWILIO_AUTH_TOKEN")?,
                twilio_url,
                &params,
            );
            let request = http
                .post(twilio_url)
                .header("x-twilio-signature", signature)
                .form(&params);
            (twilio_url, request)
        };
        for _ in 0..times.max(1) {
            let response = request
                .try_clone()
                .context("request body cannot be cloned")?
                .send()
                .await
                .with_context(|| format!("posting {} to {url}", file.display()))?;
            let status = response.status();
            let text = response.text().await.unwrap_or_default();
            println!("{} -> {} {}", file.display(), status.as_u16(), text.trim());
            if !status.is_success() {
                failed += 1;
            }
        }
    }
    if failed > 0 {
        bail!("{failed} webhook posts were refused");
    }
    Ok(())
}
