//! Real-socket harness for the server tests: a Kav server on 127.0.0.1:0 with the simulated
//! providers and a temporary SQLite store, a raw HTTP/1.1 client, and a raw Media Streams client
//! that controls every byte it sends.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use kav::caller::{CallOptions, Step, synthetic_speech};
use kav::channels::twilio::call::CallDeps;
use kav::config::Config;
use kav::server::{self, AppState};
use kav::store::{Recorder, Store};
use kav::voice::twilio::{self, FRAME_BYTES, Outbound, Start};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const ACCOUNT_SID: &str = "AC00000000000000000000000000000000";

pub fn ms(v: u64) -> Duration {
    Duration::from_millis(v)
}

/// The simulated caller speaks `len_ms` of synthetic speech; the recogniser "hears" `transcript`.
pub fn say(len_ms: u64, transcript: &str) -> Step {
    Step::Say {
        audio: Arc::new(synthetic_speech(ms(len_ms))),
        transcript: transcript.into(),
    }
}

/// The simulated caller stays silent until the bot has spoken and finished (at most 15 s).
pub fn wait_for_bot() -> Step {
    Step::WaitForBot {
        max: Duration::from_secs(15),
    }
}

/// `RUST_LOG=kav=debug cargo test --test server` shows the server's side of a failing test.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "off".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Simulated providers with small fixed latencies, so a turn takes a few hundred ms.
pub fn base_config() -> Config {
    let mut cfg = Config::default();
    // The scripted recogniser and agent: these tests drive calls with known transcripts.
    cfg.call.stt = "simulated".into();
    cfg.call.agent = "simulated".into();
    cfg.call.tts = "simulated".into();
    cfg.call.language = "en-US".into();
    cfg.sim.stt_first_partial_ms = "fixed:50".into();
    cfg.sim.stt_final_ms = "fixed:50".into();
    cfg.sim.agent_first_token_ms = "fixed:50".into();
    cfg.sim.agent_token_ms = "fixed:5".into();
    cfg.sim.tts_first_audio_ms = "fixed:50".into();
    cfg.server.start_timeout_ms = 5_000;
    cfg.server.shutdown_grace_ms = 5_000;
    cfg
}

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    pub store: Store,
    pub recorder: Recorder,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// A server on 127.0.0.1:0; `tune` adjusts the config once the address is known.
    pub async fn start(tune: impl FnOnce(&mut Config, SocketAddr)) -> Self {
        Self::start_with(None, tune).await
    }

    pub async fn start_with(
        auth_token: Option<&str>,
        tune: impl FnOnce(&mut Config, SocketAddr),
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::on_listener(listener, auth_token, tune).await
    }

    pub async fn on_listener(
        listener: TcpListener,
        auth_token: Option<&str>,
        tune: impl FnOnce(&mut Config, SocketAddr),
    ) -> Self {
        init_tracing();
        let addr = listener.local_addr().expect("local addr");
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = base_config();
        cfg.store.url = format!("sqlite://{}", dir.path().join("kav.db").display());
        tune(&mut cfg, addr);
        let cfg = Arc::new(cfg);
        let store = Store::connect(&cfg.store.url).await.expect("store");
        let (recorder, _writer) = store.recorder(cfg.store.writer_queue);
        // The booking agents (`booking`, `offline`, `openai`) run over this store; the outbox
        // worker lives as long as the test's runtime.
        let (providers, _booking) = kav::app::providers_with_store(&cfg, Some(store.clone()))
            .await
            .expect("providers");
        let deps = CallDeps::new(cfg.clone(), providers, Some(recorder.clone()));
        let state = AppState::new(deps, auth_token.map(str::to_string), Some(store.clone()));
        let (tx, rx) = oneshot::channel::<()>();
        let served = tokio::spawn(server::serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        Self {
            addr,
            state,
            store,
            recorder,
            shutdown: Some(tx),
            served: Some(served),
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn caller(&self, call_sid: &str) -> CallOptions {
        CallOptions {
            server: self.url(),
            call_sid: call_sid.into(),
            lead_frames: self.state.deps.config.playout.lead_frames,
            max_duration: Duration::from_secs(40),
            ..CallOptions::default()
        }
    }

    pub async fn get(&self, path: &str) -> HttpResponse {
        http(self.addr, "GET", path, &[], "").await.expect("GET")
    }

    /// Twilio's voice webhook for a new call `call_sid` (unsigned, as when no token is set).
    pub async fn voice_webhook(&self, call_sid: &str) -> HttpResponse {
        let body = form(&voice_params(call_sid));
        let ct = [("Content-Type", "application/x-www-form-urlencoded")];
        http(self.addr, "POST", kav::server::VOICE_PATH, &ct, &body)
            .await
            .expect("POST")
    }

    pub async fn metrics(&self) -> String {
        let r = self.get("/metrics").await;
        assert_eq!(r.status, 200, "{r:?}");
        r.body
    }

    /// Waits until no call is live (the driver has folded its counters and queued its records).
    pub async fn wait_idle(&self, within: Duration) {
        let state = self.state.clone();
        eventually("no live calls", within, move || {
            let state = state.clone();
            async move { state.live_calls() == 0 }
        })
        .await;
    }

    /// Waits for the calls to end, then for the store writer to commit what they recorded.
    pub async fn settle(&self) {
        self.wait_idle(Duration::from_secs(5)).await;
        self.recorder.flush().await;
    }

    /// Resolves the shutdown future passed to `serve`.
    /// Signals shutdown and waits until the server has taken it in (the signal is async: a
    /// request sent before the server polled it is still served normally).
    pub async fn trigger_shutdown(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        while !self.state.is_draining() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// The `serve` task, to await its return after a shutdown.
    pub fn take_served(&mut self) -> JoinHandle<std::io::Result<()>> {
        self.served.take().expect("serve task already taken")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(served) = &self.served {
            served.abort();
        }
    }
}

/// Polls `check` every 20 ms until it holds; panics after `within`.
pub async fn eventually<F, Fut>(what: &str, within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(ms(20)).await;
    }
}

/// The value of an unlabelled Prometheus sample.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            let (n, v) = l.split_once(' ')?;
            (n == name).then(|| v.trim().parse::<f64>().ok()).flatten()
        })
        .unwrap_or_else(|| panic!("metric {name} missing from:\n{text}"))
}

// ------------------------------------------------------------------ HTTP

pub use kav::caller::HttpResponse;

/// One HTTP/1.1 request on a fresh connection (`Connection: close`).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<HttpResponse> {
    let mut sock = TcpStream::connect(addr).await?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    sock.write_all(req.as_bytes()).await?;
    read_response(&mut sock).await
}

pub async fn read_response(sock: &mut TcpStream) -> std::io::Result<HttpResponse> {
    let mut buf = Vec::new();
    timeout(Duration::from_secs(10), sock.read_to_end(&mut buf)).await??;
    Ok(kav::caller::parse_http_response(&buf))
}

/// The form body Twilio POSTs to the voice webhook, and its parameters.
pub fn voice_params(call_sid: &str) -> Vec<(String, String)> {
    [
        ("CallSid", call_sid),
        ("AccountSid", ACCOUNT_SID),
        ("From", "+972501234567"),
        ("To", "+97231234567"),
        ("Direction", "inbound"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

pub fn form(params: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish()
}

// ------------------------------------------------------------------ Media Streams

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens the Media Streams WebSocket, optionally with an `X-Twilio-Signature`.
pub async fn ws_connect(
    addr: SocketAddr,
    signature: Option<&str>,
) -> Result<Ws, tungstenite::Error> {
    let mut request = format!("ws://{addr}{}", server::STREAM_PATH).into_client_request()?;
    if let Some(sig) = signature {
        request
            .headers_mut()
            .insert("X-Twilio-Signature", sig.parse().expect("header value"));
    }
    let (ws, _) = tokio_tungstenite::connect_async(request).await?;
    Ok(ws)
}

/// Builds one message with a `twilio::write_*` function.
pub fn wire(f: impl FnOnce(&mut BytesMut)) -> String {
    let mut buf = BytesMut::new();
    f(&mut buf);
    String::from_utf8(buf.to_vec()).expect("utf-8")
}

pub fn start_message(call_sid: &str, stream_sid: &str, transcripts: &[&str]) -> String {
    let mut params = std::collections::BTreeMap::new();
    params.insert(
        kav::providers::sim::SIM_TRANSCRIPTS_PARAM.to_string(),
        transcripts.join("|"),
    );
    let start = Start {
        sequence_number: Some(1),
        stream_sid: stream_sid.into(),
        account_sid: ACCOUNT_SID.into(),
        call_sid: call_sid.into(),
        custom_parameters: params,
        ..Start::default()
    };
    wire(|b| twilio::write_start(b, &start))
}

/// What the server sent, as the raw client saw it.
#[derive(Debug, Default, Clone)]
pub struct Received {
    pub media: u64,
    pub marks: Vec<String>,
    pub clears: u64,
}

/// A Media Streams peer driven by hand: every message is explicit.
pub struct RawCall {
    pub ws: Ws,
    pub call_sid: String,
    pub stream_sid: String,
    seq: u64,
    chunk: u64,
    pub received: Received,
}

impl RawCall {
    /// Connects and sends `connected` + `start` with the transcripts the simulated STT will use.
    pub async fn open(addr: SocketAddr, call_sid: &str, transcripts: &[&str]) -> Self {
        let ws = ws_connect(addr, None).await.expect("ws connect");
        let mut call = Self::unstarted(ws, call_sid);
        call.send(wire(twilio::write_connected)).await;
        let start = start_message(&call.call_sid, &call.stream_sid, transcripts);
        call.send(start).await;
        call
    }

    pub fn unstarted(ws: Ws, call_sid: &str) -> Self {
        Self {
            ws,
            call_sid: call_sid.into(),
            stream_sid: format!("MZ{}", &call_sid[2..]),
            seq: 1,
            chunk: 0,
            received: Received::default(),
        }
    }

    pub async fn send(&mut self, text: String) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send to server");
    }

    pub fn media_message(&mut self, frame: &[u8]) -> String {
        self.seq += 1;
        self.chunk += 1;
        let (seq, chunk, sid) = (self.seq, self.chunk, self.stream_sid.clone());
        wire(|b| twilio::write_inbound_media(b, &sid, seq, chunk, chunk * 20, frame))
    }

    pub fn mark_echo(&mut self, name: &str) -> String {
        self.seq += 1;
        let (seq, sid) = (self.seq, self.stream_sid.clone());
        wire(|b| twilio::write_mark_echo(b, &sid, seq, name))
    }

    /// Streams `audio` then `silence_ms` of silence in 20 ms frames at real-time pace, answering
    /// whatever the server sends meanwhile (marks are echoed at once: nothing is "played").
    pub async fn speak(&mut self, audio: &[u8], silence_ms: u64) {
        let mut frames: Vec<[u8; FRAME_BYTES]> = audio
            .chunks(FRAME_BYTES)
            .map(|c| {
                let mut f = [kav::voice::g711::SILENCE; FRAME_BYTES];
                f[..c.len()].copy_from_slice(c);
                f
            })
            .collect();
        frames.extend(std::iter::repeat_n(
            [kav::voice::g711::SILENCE; FRAME_BYTES],
            (silence_ms / 20) as usize,
        ));
        let mut tick = tokio::time::interval(ms(20));
        for f in frames {
            tick.tick().await;
            let msg = self.media_message(&f);
            self.send(msg).await;
            self.answer_pending().await;
        }
    }

    /// Handles whatever the server already sent, without waiting.
    async fn answer_pending(&mut self) {
        while let Ok(Some(msg)) = timeout(Duration::ZERO, self.ws.next()).await {
            match msg {
                Ok(Message::Text(t)) => self.on_outbound(t.as_str()).await,
                Ok(_) => {}
                Err(e) => panic!("socket error: {e}"),
            }
        }
    }

    async fn on_outbound(&mut self, text: &str) {
        match twilio::parse_outbound(text) {
            Ok(Outbound::Media { .. }) => self.received.media += 1,
            Ok(Outbound::Mark { name, .. }) => {
                let name = name.into_owned();
                self.received.marks.push(name.clone());
                let echo = self.mark_echo(&name);
                self.send(echo).await;
            }
            Ok(Outbound::Clear { .. }) => self.received.clears += 1,
            Err(e) => panic!("server sent something unparsable: {e}: {text}"),
        }
    }

    /// Reads and answers (echoes marks) until `done(received)` holds; panics after `within` or if
    /// the server closes first.
    pub async fn pump_until(&mut self, within: Duration, done: impl Fn(&Received) -> bool) {
        let deadline = Instant::now() + within;
        while !done(&self.received) {
            let msg = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .unwrap_or_else(|_| panic!("timed out; got {:?}", self.received));
            match msg {
                Some(Ok(Message::Text(t))) => self.on_outbound(t.as_str()).await,
                Some(Ok(Message::Close(_))) | None => {
                    panic!("server closed the stream; got {:?}", self.received)
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => panic!("socket error {e}; got {:?}", self.received),
            }
        }
    }

    pub async fn stop(mut self) {
        self.seq += 1;
        let (seq, sid, call) = (self.seq, self.stream_sid.clone(), self.call_sid.clone());
        let msg = wire(|b| twilio::write_stop(b, &sid, seq, ACCOUNT_SID, &call));
        self.send(msg).await;
        let _ = self.ws.close(None).await;
    }
}

/// Reads until the server closes the stream (close frame, EOF or reset); returns how long it took.
/// Panics if it is still open after `within`.
pub async fn expect_closed(ws: &mut Ws, within: Duration) -> Duration {
    let started = Instant::now();
    let deadline = started + within;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Err(_) => panic!("server did not close the stream within {within:?}"),
            Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => {
                return started.elapsed();
            }
            Ok(Some(Ok(_))) => {}
        }
    }
}

/// A Media Streams connection over a client socket with a tiny receive buffer.
pub async fn ws_connect_small_rcvbuf(addr: SocketAddr, rcvbuf: u32) -> Ws {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
    let stream = sock.connect(addr).await.expect("connect");
    let url = format!("ws://{addr}{}", server::STREAM_PATH);
    let (ws, _) = tokio_tungstenite::client_async(url, MaybeTlsStream::Plain(stream))
        .await
        .expect("handshake");
    ws
}

/// A listener whose accepted sockets inherit a tiny send buffer (SO_SNDBUF, Linux semantics).
pub fn listener_small_sndbuf(sndbuf: u32) -> TcpListener {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_send_buffer_size(sndbuf).expect("SO_SNDBUF");
    sock.bind("127.0.0.1:0".parse().unwrap()).expect("bind");
    sock.listen(64).expect("listen")
}
