//! `kav serve`: builds the application state from the configuration (store, providers, console,
//! WhatsApp channel, retention sweep), binds the listeners and serves until a shutdown signal,
//! draining calls. A configured provider that cannot be reached at start-up stops the server.

use std::sync::Arc;

use anyhow::{Context, Result};

use kav::channels::twilio::call::CallDeps;
use kav::config::Config;
use kav::server::{self, AppState};
use kav::store::Store;

/// Runs the server until a shutdown signal.
pub(crate) async fn run(
    mut cfg: Config,
    listen: Option<String>,
    public_url: Option<String>,
) -> Result<()> {
    if let Some(l) = listen {
        cfg.server.listen = l;
    }
    if let Some(u) = public_url {
        cfg.server.public_url = u;
    }
    let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
        .await
        .with_context(|| format!("binding {}", cfg.server.listen))?;
    tracing::info!(addr = %listener.local_addr()?, "kav listening");
    let metrics_listen = cfg.server.metrics_listen.clone();
    let (state, _writer) = build_state(cfg).await?;
    if !metrics_listen.is_empty() {
        let metrics = tokio::net::TcpListener::bind(&metrics_listen)
            .await
            .with_context(|| format!("binding metrics_listen {metrics_listen}"))?;
        tracing::info!(addr = %metrics.local_addr()?, "/metrics listening");
        let app = server::metrics_app(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(metrics, app).await {
                tracing::error!(error = %e, "metrics listener failed");
            }
        });
    }
    server::serve(listener, state, shutdown_signal()).await?;
    Ok(())
}

pub(crate) async fn build_state(
    cfg: Config,
) -> Result<(Arc<AppState>, tokio::task::JoinHandle<()>)> {
    let cfg = Arc::new(cfg);
    let store = Store::connect(&cfg.store.url)
        .await
        .with_context(|| format!("opening store {}", cfg.store.url))?;
    let (recorder, writer) = store.recorder(cfg.store.writer_queue);
    // The booking handle is not kept: its outbox worker runs for the life of the process.
    let (providers, booking) = kav::app::providers_with_store(&cfg, Some(store.clone())).await?;
    let console = kav::app::console(&cfg, store.clone(), booking.as_ref());
    let deps = CallDeps::new(cfg.clone(), providers, Some(recorder));
    // A configured provider that cannot be reached at start-up stops the server (issue 11).
    kav::app::warm::require_all_warm(&kav::app::warm::warm_all(&deps).await)?;
    // Runs for the life of the process; the runtime ends it on exit.
    let _keep_warm = kav::app::warm::spawn_keep_warm(
        deps.clone(),
        std::time::Duration::from_millis(cfg.call.keep_warm_ms),
    );
    let token = std::env::var("TWILIO_AUTH_TOKEN").ok();
    if token.as_deref().is_some_and(|t| !t.is_empty()) {
        tracing::info!(
            "TWILIO_AUTH_TOKEN set: X-Twilio-Signature is required on the webhook and stream"
        );
    } else {
        tracing::warn!(
            "TWILIO_AUTH_TOKEN not set: requests are NOT signature-checked (fine on loopback only)"
        );
    }
    let whatsapp = start_whatsapp(&cfg, &deps, &store)?;
    // Runs for the life of the process, like the outbox worker.
    let _sweep = kav::app::retention::spawn_retention_sweep(store.clone(), cfg.retention.clone());
    let state = AppState::with_whatsapp(deps, token, Some(store), Some(whatsapp));
    let _ = state.console.set(console);
    Ok((state, writer))
}

/// The WhatsApp channel and its inbox workers (issue 5).
fn start_whatsapp(
    cfg: &Config,
    deps: &CallDeps,
    store: &Store,
) -> Result<Arc<kav::channels::whatsapp::inbox::WhatsAppService>> {
    use kav::channels::whatsapp::inbox::{StoreDirectory, WhatsAppSecrets, WhatsAppService};
    let secrets = WhatsAppSecrets::from_env();
    tracing::info!(
        ?secrets,
        numbers = cfg.whatsapp.numbers.len(),
        mock = cfg.whatsapp.mock_sends,
        "WhatsApp channel"
    );
    if cfg.whatsapp.insecure_skip_signature {
        tracing::warn!("whatsapp.insecure_skip_signature is on: webhooks are NOT verified");
    }
    let mut whatsapp_cfg = cfg.whatsapp.clone();
    let public = cfg.server.public_url.trim_end_matches('/');
    if whatsapp_cfg.twilio_status_callback_url.is_empty() && !public.is_empty() {
        whatsapp_cfg.twilio_status_callback_url =
            format!("{public}{}", kav::server::whatsapp::TWILIO_STATUS_PATH);
    }
    let service = WhatsAppService::new(
        store.clone(),
        deps.agent.clone(),
        deps.stt.clone(),
        Arc::new(StoreDirectory::new(
            store.clone(),
            cfg.whatsapp.numbers.clone(),
        )),
        whatsapp_cfg,
        secrets,
        kav::clock::system_clock(),
    )?;
    // Workers live as long as the process.
    drop(service.spawn_workers());
    Ok(service)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown requested: draining calls");
}
