//! Kav's WhatsApp side in process over real sockets: the Meta webhook, the inbox workers, the
//! offline booking agent (routed by `phone_number_id` through the booking tables) and the outbox
//! worker, sending to a fake Graph API at `cfg.whatsapp.graph_base_url`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use kav::agent::BookingRuntime;
use kav::agent::offline::OfflineBookingAgent;
use kav::channels::twilio::call::CallDeps;
use kav::channels::whatsapp::graph::GraphSender;
use kav::channels::whatsapp::inbox::{StoreDirectory, WhatsAppSecrets, WhatsAppService};
use kav::config::Config;
use kav::metrics::Metrics;
use kav::providers::sim;
use kav::server::{self, AppState};
use kav::store::Store;
use tokio::net::TcpListener;

/// The booking runtime with its outbox worker, sending through the Graph API at
/// `cfg.whatsapp.graph_base_url` with `access_token` and this request timeout.
pub fn runtime(
    store: &Store,
    cfg: &Config,
    access_token: &str,
    send_timeout: Duration,
) -> (Arc<BookingRuntime>, tokio::task::JoinHandle<()>) {
    let sender = Arc::new(GraphSender::new(
        &cfg.whatsapp.graph_base_url,
        &cfg.whatsapp.api_version,
        access_token,
        send_timeout,
        false,
    ));
    let rt = BookingRuntime::new(
        store.clone(),
        sender,
        kav::agent::system_clock(),
        cfg.booking.clone(),
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = kav::booking::outbox::spawn_worker(rt.clone(), stop_rx);
    std::mem::forget(stop_tx);
    (rt, worker)
}

/// A running server; dropping it stops the server and its workers.
pub struct Server {
    pub addr: SocketAddr,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
        self.server.abort();
    }
}

impl Server {
    pub fn webhook_url(&self) -> String {
        format!("http://{}/whatsapp/webhook", self.addr)
    }
}

pub async fn serve(
    store: Store,
    cfg: Config,
    app_secret: &str,
    access_token: &str,
    send_timeout: Duration,
) -> Server {
    let (rt, outbox) = runtime(&store, &cfg, access_token, send_timeout);
    let agent = Arc::new(OfflineBookingAgent::new(rt));
    let lat = Arc::new(sim::SimLatencies::from_config(&cfg.sim).unwrap());
    let stt = Arc::new(sim::SimulatedStt::new(lat.clone()));
    let cfg = Arc::new(cfg);
    let deps = Arc::new(CallDeps {
        config: cfg.clone(),
        stt: stt.clone(),
        agent: agent.clone(),
        tts: Arc::new(sim::SimulatedTts::new(lat)),
        recorder: None,
        metrics: Arc::new(Metrics::new()),
        live: kav::channels::live::LiveCalls::for_config(&cfg),
    });
    let secrets = WhatsAppSecrets {
        app_secret: Some(app_secret.into()),
        access_token: Some(access_token.into()),
        ..WhatsAppSecrets::default()
    };
    let svc = WhatsAppService::new(
        store.clone(),
        agent,
        stt,
        // No [[whatsapp.numbers]]: the business is found in the booking tables.
        Arc::new(StoreDirectory::new(store.clone(), Vec::new())),
        cfg.whatsapp.clone(),
        secrets,
        kav::clock::system_clock(),
    )
    .unwrap();
    let mut tasks = svc.spawn_workers();
    tasks.push(outbox);
    let state = AppState::with_whatsapp(deps, None, Some(store), Some(svc));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(server::serve(listener, state, std::future::pending()));
    Server {
        addr,
        tasks,
        server,
    }
}
