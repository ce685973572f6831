//! The simulated Twilio peer behind `kav call`, `kav loadgen` and `kav demo`.
//!
//! It does what Twilio does: POSTs the voice webhook, reads the TwiML `<Stream>` URL and
//! `<Parameter>`s, opens the Media Streams WebSocket, sends `connected` and `start`, streams caller
//! audio in real time as 20 ms `media` frames (silence between utterances, as a phone line does),
//! sends `dtmf`, and models Twilio's playback buffer: bot audio plays at 20 ms per frame, a mark
//! is echoed when playback reaches it (at once if nothing is buffered), and `clear` empties the
//! buffer and echoes every pending mark.
//!
//! With `rtt`/`jitter` the Media Streams socket goes through a delaying proxy on 127.0.0.1, so
//! server→caller messages and the caller's media and mark echoes each take rtt/2 (+ jitter), as
//! they would between a data centre and Twilio's media servers.

pub mod arrivals;
pub mod latency_proxy;
pub mod loadgen;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use futures_util::{SinkExt, StreamExt};
use tokio::time::{Instant, MissedTickBehavior, interval};
use tokio_tungstenite::tungstenite::Message;

use crate::providers::sim::SIM_TRANSCRIPTS_PARAM;
use crate::voice::g711;
use crate::voice::twilio::{self, FRAME_BYTES, MediaFormat, Outbound, Start};

#[derive(Debug, thiserror::Error)]
pub enum CallerError {
    #[error("voice webhook {url}: {detail}")]
    Webhook { url: String, detail: String },
    #[error("TwiML has no <Stream url=…>: {0}")]
    NoStream(String),
    /// The server answered with its overflow TwiML (`<Say>` or `<Dial>`): admission control.
    #[error("call refused by the server (overflow TwiML)")]
    Refused,
    #[error("WebSocket {url}: {detail}")]
    Connect { url: String, detail: String },
    #[error("stream ended: {0}")]
    Stream(String),
}

/// A plain-HTTP exchange with the server failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("bad URL {url:?}: {detail}")]
    Url { url: String, detail: String },
    #[error("the simulated caller speaks plain http only")]
    NotHttp,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("HTTP {status}: {body}")]
    Status { status: u16, body: String },
}

/// Host and port of a plain-HTTP `url`.
fn http_host_port(url: &str) -> Result<(url::Url, String, u16), HttpError> {
    let bad = |detail: String| HttpError::Url {
        url: url.into(),
        detail,
    };
    let parsed = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    if parsed.scheme() != "http" {
        return Err(HttpError::NotHttp);
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| bad("no host".into()))?
        .to_string();
    let port = parsed.port_or_known_default().unwrap_or(80);
    Ok((parsed, host, port))
}

/// One thing the simulated caller does.
#[derive(Debug, Clone)]
pub enum Step {
    /// Speak this audio (8 kHz mu-law); `transcript` is what the simulated recogniser will "hear".
    Say {
        audio: Arc<Vec<u8>>,
        transcript: String,
    },
    Pause(Duration),
    /// Press keys as Twilio `dtmf` events, `gap` apart.
    Keys {
        digits: String,
        gap: Duration,
    },
    /// Stay silent until the bot has spoken and finished (or `max` passes).
    WaitForBot {
        max: Duration,
    },
    /// Wait until the bot has played `after` of audio, then talk over it.
    BargeIn {
        after: Duration,
        audio: Arc<Vec<u8>>,
        transcript: String,
    },
}

#[derive(Debug, Clone)]
pub struct CallOptions {
    /// Base URL of the Kav server, e.g. `http://127.0.0.1:8080`.
    pub server: String,
    pub from: String,
    pub to: String,
    pub call_sid: String,
    /// Sign the webhook and the handshake like Twilio (when the server validates).
    pub auth_token: Option<String>,
    /// Keep the bot's audio as played.
    pub record_bot_audio: bool,
    /// Frames the server sends at once before pacing (to tell the lead burst from jitter).
    pub lead_frames: u32,
    /// Give up on a call after this long.
    pub max_duration: Duration,
    /// Round trip added to the Media Streams link (half each way).
    pub rtt: Duration,
    /// Extra delay per direction, uniform 0..=jitter per chunk (order kept).
    pub jitter: Duration,
}

impl Default for CallOptions {
    fn default() -> Self {
        Self {
            server: "http://127.0.0.1:8080".into(),
            from: "+972501234567".into(),
            to: "+97231234567".into(),
            call_sid: "CA00000000000000000000000000000001".into(),
            auth_token: None,
            record_bot_audio: false,
            lead_frames: 5,
            max_duration: Duration::from_secs(300),
            rtt: Duration::ZERO,
            jitter: Duration::ZERO,
        }
    }
}

/// What the caller observed. Times are in microseconds.
#[derive(Debug, Clone, Default)]
pub struct CallReport {
    pub call_sid: String,
    pub stream_sid: String,
    /// Steady-state jitter: |inter-arrival − 20 ms| of bot frames after each reply's priming
    /// burst, in µs (see [`arrivals`]).
    pub jitter_us: Vec<u64>,
    /// Spread of each reply's priming burst (first to last of its `lead_frames` frames), µs.
    pub priming_spread_us: Vec<u64>,
    /// Bot frames that arrived in priming bursts (not counted as jitter).
    pub priming_frames: u64,
    /// Playback ran dry mid-reply (bot audio resumed within 500 ms).
    pub underruns: u64,
    pub underrun_ms: u64,
    /// Caller speech onset → `clear` received, µs.
    pub barge_in_reaction_us: Vec<u64>,
    /// End of caller speech → first bot frame, µs (one per answered utterance or key commit).
    pub response_us: Vec<u64>,
    pub frames_received: u64,
    pub marks_echoed: u64,
    pub clears: u64,
    pub bot_audio: Vec<u8>,
    pub closed_by_server: bool,
}

/// POSTs the TwiML webhook and returns the stream URL and its `<Parameter>`s.
pub async fn fetch_twiml(
    opts: &CallOptions,
) -> Result<(String, Vec<(String, String)>), CallerError> {
    let url = format!(
        "{}{}",
        opts.server.trim_end_matches('/'),
        crate::server::VOICE_PATH
    );
    let params = vec![
        ("CallSid".to_string(), opts.call_sid.clone()),
        ("From".to_string(), opts.from.clone()),
        ("To".to_string(), opts.to.clone()),
        ("Direction".to_string(), "inbound".to_string()),
    ];
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params.iter())
        .finish();
    let signature = opts
        .auth_token
        .as_ref()
        .map(|t| crate::channels::signature::compute(t, &url, &params));
    let err = |detail: String| CallerError::Webhook {
        url: url.clone(),
        detail,
    };
    let text = http_post_form(&url, &body, signature.as_deref())
        .await
        .map_err(|e| err(e.to_string()))?;
    parse_twiml(&text)
}

/// Pulls `<Stream url>` and `<Parameter name value>` out of TwiML (enough for Kav's own answer).
pub fn parse_twiml(xml: &str) -> Result<(String, Vec<(String, String)>), CallerError> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!("{name}=\"");
        let start = tag.find(&key)? + key.len();
        let end = tag[start..].find('"')? + start;
        Some(unescape_xml(&tag[start..end]))
    };
    if !xml.contains("<Stream") && (xml.contains("<Say") || xml.contains("<Dial")) {
        return Err(CallerError::Refused);
    }
    let stream_tag = xml
        .split("<Stream")
        .nth(1)
        .ok_or_else(|| CallerError::NoStream(xml.to_string()))?;
    let url = attr(stream_tag, "url").ok_or_else(|| CallerError::NoStream(xml.to_string()))?;
    let params = xml
        .split("<Parameter")
        .skip(1)
        .filter_map(|tag| Some((attr(tag, "name")?, attr(tag, "value")?)))
        .collect();
    Ok((url, params))
}

fn unescape_xml(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// Minimal HTTP/1.1 POST over a TCP socket (the caller only talks to Kav on loopback).
async fn http_post_form(
    url: &str,
    body: &str,
    signature: Option<&str>,
) -> Result<String, HttpError> {
    let (parsed, host, port) = http_host_port(url)?;
    let mut req = format!(
        "POST {} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n",
        parsed.path(),
        body.len()
    );
    if let Some(sig) = signature {
        req.push_str(&format!("X-Twilio-Signature: {sig}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    http_roundtrip(&host, port, &req).await
}

/// GET over plain HTTP, returning the body (used for the server's JSON APIs).
pub async fn http_get(url: &str) -> Result<String, HttpError> {
    let (parsed, host, port) = http_host_port(url)?;
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_string(),
    };
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
    http_roundtrip(&host, port, &req).await
}

async fn http_roundtrip(host: &str, port: u16, req: &str) -> Result<String, HttpError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect((host, port)).await?;
    sock.write_all(req.as_bytes()).await?;
    let mut buf = Vec::new();
    sock.read_to_end(&mut buf).await?;
    let response = parse_http_response(&buf);
    if !(200..300).contains(&response.status) {
        return Err(HttpError::Status {
            status: response.status,
            body: response.body,
        });
    }
    Ok(response.body)
}

/// An HTTP/1.1 response read to the end of the connection.
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    /// 0 when the status line is unreadable.
    pub status: u16,
    pub head: String,
    pub body: String,
}

/// Splits a raw response into status, head and body (chunked bodies joined).
pub fn parse_http_response(raw: &[u8]) -> HttpResponse {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    HttpResponse {
        status,
        head: head.to_string(),
        body,
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || tail.len() < n {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

/// The audio the caller is producing right now.
enum Mouth {
    Silent,
    Talking { audio: Arc<Vec<u8>>, pos: usize },
}

/// Twilio's playback buffer for bot audio.
#[derive(Default)]
struct Playback {
    queue: VecDeque<PlayItem>,
    buffered_frames: usize,
    /// Partial frame bytes (media payloads of any size are accepted).
    partial: Vec<u8>,
}

enum PlayItem {
    Frame([u8; FRAME_BYTES]),
    Mark(String),
}

/// Runs one simulated call through `steps` and returns what was observed.
pub async fn run_call(opts: &CallOptions, steps: Vec<Step>) -> Result<CallReport, CallerError> {
    let (stream_url, mut params) = fetch_twiml(opts).await?;
    let transcripts: Vec<String> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Say { transcript, .. } | Step::BargeIn { transcript, .. } => {
                Some(transcript.clone())
            }
            _ => None,
        })
        .collect();
    params.push((SIM_TRANSCRIPTS_PARAM.to_string(), transcripts.join("|")));

    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            stream_url.as_str(),
        )
        .map_err(|e| CallerError::Connect {
            url: stream_url.clone(),
            detail: e.to_string(),
        })?;
    if let Some(token) = &opts.auth_token {
        let sig = crate::channels::signature::compute(token, &stream_url, &[]);
        if let Ok(v) = sig.parse() {
            request.headers_mut().insert("X-Twilio-Signature", v);
        }
    }
    // The proxy lives as long as the call; the signature stays that of the server's URL.
    let _proxy =
        if opts.rtt.is_zero() && opts.jitter.is_zero() {
            None
        } else {
            let (proxy, url) = delayed_url(&stream_url, opts).await?;
            *request.uri_mut() = url.parse().map_err(
                |e: tokio_tungstenite::tungstenite::http::uri::InvalidUri| CallerError::Connect {
                    url: url.clone(),
                    detail: e.to_string(),
                },
            )?;
            Some(proxy)
        };
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0);
    let (ws, _) = tokio_tungstenite::connect_async_with_config(request, Some(config), true)
        .await
        .map_err(|e| CallerError::Connect {
            url: stream_url.clone(),
            detail: e.to_string(),
        })?;
    let (mut tx, mut rx) = ws.split();

    let stream_sid = format!("MZ{}", &opts.call_sid.get(2..).unwrap_or("0"));
    let start = Start {
        sequence_number: Some(1),
        stream_sid: stream_sid.clone(),
        account_sid: "AC00000000000000000000000000000000".into(),
        call_sid: opts.call_sid.clone(),
        tracks: vec!["inbound".into()],
        custom_parameters: params.into_iter().collect(),
        media_format: MediaFormat {
            encoding: "audio/x-mulaw".into(),
            sample_rate: 8000,
            channels: 1,
        },
    };
    let mut buf = BytesMut::with_capacity(1024);
    let send_text = |buf: &mut BytesMut| {
        Message::Text(String::from_utf8_lossy(&buf.split()).into_owned().into())
    };
    twilio::write_connected(&mut buf);
    let msg = send_text(&mut buf);
    tx.send(msg)
        .await
        .map_err(|e| CallerError::Stream(e.to_string()))?;
    twilio::write_start(&mut buf, &start);
    let msg = send_text(&mut buf);
    tx.send(msg)
        .await
        .map_err(|e| CallerError::Stream(e.to_string()))?;

    let mut report = CallReport {
        call_sid: opts.call_sid.clone(),
        stream_sid: stream_sid.clone(),
        ..Default::default()
    };
    let mut steps: VecDeque<Step> = steps.into();
    let mut seq: u64 = 1;
    let mut chunk: u64 = 0;
    let mut mouth = Mouth::Silent;
    let mut playback = Playback::default();
    let mut step_started = Instant::now();
    let mut bot_heard_since_step = false;
    let mut played_since_step = Duration::ZERO;
    let mut speech_end: Option<Instant> = None;
    let mut awaiting_response = false;
    let mut barge_onset: Option<Instant> = None;
    let mut last_frame_at: Option<Instant> = None;
    let mut arrivals = arrivals::ArrivalMeter::new(opts.lead_frames);
    let mut dry_since: Option<Instant> = None;
    let mut keys: VecDeque<char> = VecDeque::new();
    let mut key_gap = Duration::ZERO;
    let mut next_key_at = Instant::now();
    let started = Instant::now();
    let mut tick = interval(Duration::from_millis(20));
    tick.set_missed_tick_behavior(MissedTickBehavior::Burst);

    loop {
        // Read whatever has arrived before playing: Twilio's media servers play on their own
        // clock, so a load generator that was itself descheduled must not report the frames
        // waiting in its socket as an underrun.
        tokio::select! {
            biased;
            msg = rx.next() => {
                let now = Instant::now();
                let text = match msg {
                    Some(Ok(Message::Text(t))) => t,
                    Some(Ok(Message::Close(_))) | None => { report.closed_by_server = true; break; }
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => return Err(CallerError::Stream(e.to_string())),
                };
                match twilio::parse_outbound(text.as_str()) {
                    Ok(Outbound::Media { payload, .. }) => {
                        let mut audio = [0u8; 4096];
                        let Ok(n) = twilio::decode_payload(&payload, &mut audio) else { continue };
                        report.frames_received += 1;
                        if awaiting_response {
                            awaiting_response = false;
                            if let Some(end) = speech_end {
                                report.response_us.push(now.duration_since(end).as_micros() as u64);
                            }
                        }
                        // Priming burst apart from steady state; a new reply clears a dry spell.
                        if arrivals.on_frame(now.into_std()) == arrivals::Arrival::ReplyStart {
                            dry_since = None;
                        } else if let Some(since) = dry_since.take() {
                            report.underruns += 1;
                            report.underrun_ms += now.duration_since(since).as_millis() as u64;
                        }
                        last_frame_at = Some(now);
                        bot_heard_since_step = true;
                        playback.partial.extend_from_slice(&audio[..n]);
                        while playback.partial.len() >= FRAME_BYTES {
                            let mut f = [0u8; FRAME_BYTES];
                            f.copy_from_slice(&playback.partial[..FRAME_BYTES]);
                            playback.partial.drain(..FRAME_BYTES);
                            playback.queue.push_back(PlayItem::Frame(f));
                            playback.buffered_frames += 1;
                        }
                    }
                    Ok(Outbound::Mark { name, .. }) => playback.queue.push_back(PlayItem::Mark(name.into_owned())),
                    Ok(Outbound::Clear { .. }) => {
                        report.clears += 1;
                        if let Some(onset) = barge_onset.take() {
                            report.barge_in_reaction_us.push(now.duration_since(onset).as_micros() as u64);
                        }
                        // Twilio empties its buffer and echoes every pending mark.
                        let pending: Vec<String> = playback.queue.drain(..).filter_map(|i| match i { PlayItem::Mark(m) => Some(m), _ => None }).collect();
                        playback.buffered_frames = 0;
                        playback.partial.clear();
                        for name in pending {
                            seq += 1;
                            twilio::write_mark_echo(&mut buf, &stream_sid, seq, &name);
                            let msg = send_text(&mut buf);
                            tx.send(msg).await.map_err(|e| CallerError::Stream(e.to_string()))?;
                            report.marks_echoed += 1;
                        }
                        last_frame_at = None;
                        arrivals.on_clear();
                        dry_since = None;
                    }
                    Err(_) => {}
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                if now.duration_since(started) > opts.max_duration {
                    break;
                }
                // 1. Twilio plays one frame of bot audio and echoes marks it reaches.
                let mut played = false;
                while let Some(item) = playback.queue.front() {
                    match item {
                        PlayItem::Mark(_) => {
                            let Some(PlayItem::Mark(name)) = playback.queue.pop_front() else { break };
                            seq += 1;
                            twilio::write_mark_echo(&mut buf, &stream_sid, seq, &name);
                            let msg = send_text(&mut buf);
                            tx.send(msg).await.map_err(|e| CallerError::Stream(e.to_string()))?;
                            report.marks_echoed += 1;
                        }
                        PlayItem::Frame(_) if !played => {
                            let Some(PlayItem::Frame(f)) = playback.queue.pop_front() else { break };
                            playback.buffered_frames -= 1;
                            if opts.record_bot_audio {
                                report.bot_audio.extend_from_slice(&f);
                            }
                            played = true;
                            played_since_step += Duration::from_millis(20);
                        }
                        PlayItem::Frame(_) => break,
                    }
                }
                if !played && arrivals.in_reply() && dry_since.is_none() {
                    dry_since = Some(now);
                }

                // 2. The caller's side: script progress.
                let mut frame = [g711::SILENCE; FRAME_BYTES];
                let mut advance = false;
                match (&mut mouth, steps.front()) {
                    (Mouth::Talking { audio, pos }, _) => {
                        let n = (audio.len() - *pos).min(FRAME_BYTES);
                        frame[..n].copy_from_slice(&audio[*pos..*pos + n]);
                        *pos += n;
                        if *pos >= audio.len() {
                            mouth = Mouth::Silent;
                            // Same convention as the server: a frame sent at T ends its audio at T.
                            speech_end = Some(now);
                            awaiting_response = true;
                            advance = true;
                        }
                    }
                    (Mouth::Silent, Some(Step::Say { audio, .. })) => {
                        mouth = Mouth::Talking { audio: audio.clone(), pos: 0 };
                        let n = audio.len().min(FRAME_BYTES);
                        frame[..n].copy_from_slice(&audio[..n]);
                        if let Mouth::Talking { pos, .. } = &mut mouth { *pos = n; }
                    }
                    (Mouth::Silent, Some(Step::BargeIn { after, audio, .. })) => {
                        if played_since_step >= *after {
                            mouth = Mouth::Talking { audio: audio.clone(), pos: 0 };
                            let n = audio.len().min(FRAME_BYTES);
                            frame[..n].copy_from_slice(&audio[..n]);
                            if let Mouth::Talking { pos, .. } = &mut mouth { *pos = n; }
                            barge_onset = Some(now);
                        } else if now.duration_since(step_started) > Duration::from_secs(30) {
                            advance = true; // the bot never spoke long enough to interrupt
                        }
                    }
                    (Mouth::Silent, Some(Step::Pause(d))) => {
                        if now.duration_since(step_started) >= *d { advance = true; }
                    }
                    (Mouth::Silent, Some(Step::WaitForBot { max })) => {
                        let bot_quiet = playback.queue.is_empty() && last_frame_at.is_some_and(|t| now.duration_since(t) > Duration::from_millis(600));
                        if (bot_heard_since_step && bot_quiet) || now.duration_since(step_started) >= *max {
                            advance = true;
                        }
                    }
                    (Mouth::Silent, Some(Step::Keys { digits, gap })) => {
                        if keys.is_empty() {
                            keys = digits.chars().collect();
                            key_gap = *gap;
                            next_key_at = now;
                        }
                    }
                    (Mouth::Silent, None) => {
                        break;
                    }
                }
                if !keys.is_empty() && now >= next_key_at {
                    let key = keys.pop_front().unwrap_or('#');
                    seq += 1;
                    twilio::write_dtmf(&mut buf, &stream_sid, seq, key);
                    let msg = send_text(&mut buf);
                    tx.send(msg).await.map_err(|e| CallerError::Stream(e.to_string()))?;
                    next_key_at = now + key_gap;
                    if keys.is_empty() {
                        speech_end = Some(now);
                        awaiting_response = true;
                        advance = true;
                    }
                }
                if advance {
                    steps.pop_front();
                    step_started = now;
                    bot_heard_since_step = false;
                    played_since_step = Duration::ZERO;
                }

                // 3. Twilio streams the caller's line continuously.
                seq += 1;
                chunk += 1;
                twilio::write_inbound_media(&mut buf, &stream_sid, seq, chunk, chunk * 20, &frame);
                let msg = send_text(&mut buf);
                tx.send(msg).await.map_err(|e| CallerError::Stream(e.to_string()))?;
            }
        }
    }
    if !report.closed_by_server {
        seq += 1;
        twilio::write_stop(
            &mut buf,
            &stream_sid,
            seq,
            "AC00000000000000000000000000000000",
            &opts.call_sid,
        );
        let msg = send_text(&mut buf);
        let _ = tx.send(msg).await;
        let _ = tx.close().await;
    }
    report.jitter_us = arrivals.steady_jitter_us;
    report.priming_spread_us = arrivals.priming_spread_us;
    report.priming_frames = arrivals.priming_frames;
    Ok(report)
}

/// Starts a delaying proxy in front of the stream URL's host; returns it and the URL through it.
async fn delayed_url(
    stream_url: &str,
    opts: &CallOptions,
) -> Result<(crate::caller::latency_proxy::LatencyProxy, String), CallerError> {
    use crate::caller::latency_proxy::{LatencyProxy, LinkDelay};
    let err = |detail: String| CallerError::Connect {
        url: stream_url.to_string(),
        detail,
    };
    let mut url = url::Url::parse(stream_url).map_err(|e| err(e.to_string()))?;
    let upstream = url
        .socket_addrs(|| None)
        .map_err(|e| err(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| err("no address".into()))?;
    let delay = LinkDelay {
        one_way: opts.rtt / 2,
        jitter: opts.jitter,
    };
    let seed = opts
        .call_sid
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31) + b as u64);
    let proxy = LatencyProxy::start_with_jitter(upstream, delay, Duration::ZERO, seed)
        .await
        .map_err(|e| err(format!("delaying proxy: {e}")))?;
    url.set_ip_host(proxy.addr().ip())
        .map_err(|()| err("cannot set proxy host".into()))?;
    url.set_port(Some(proxy.addr().port()))
        .map_err(|()| err("cannot set proxy port".into()))?;
    Ok((proxy, url.to_string()))
}

/// A speech-like signal (harmonic-rich, slowly varying pitch) that VAD calls voice, for load
/// tests when no recorded sample is at hand.
pub fn synthetic_speech(duration: Duration) -> Vec<u8> {
    let n = (duration.as_millis() as usize) * 8;
    let mut phase = 0.0f32;
    (0..n)
        .map(|i| {
            let pitch = 150.0 + 30.0 * ((i as f32 / 8000.0) * 3.0).sin();
            phase += 2.0 * std::f32::consts::PI * pitch / 8000.0;
            let v: f32 = (1..8).map(|h| (phase * h as f32).sin() / h as f32).sum();
            g711::encode((v * 7000.0) as i16)
        })
        .collect()
}

/// The built-in demo conversation: a booking request, a barge-in, keypad entry of a phone number,
/// and goodbye. Uses the recorded samples when present, synthetic speech otherwise.
pub fn demo_script(samples_dir: &std::path::Path) -> Vec<Step> {
    let load = |name: &str, fallback_ms: u64| -> Arc<Vec<u8>> {
        let path = samples_dir.join(name);
        Arc::new(
            crate::providers::audio_file::load_mulaw_8k(&path)
                .unwrap_or_else(|_| synthetic_speech(Duration::from_millis(fallback_ms))),
        )
    };
    vec![
        Step::WaitForBot {
            max: Duration::from_secs(10),
        }, // the greeting
        Step::Say {
            audio: load("book_en.wav", 2500),
            transcript: "Hi, I would like to book an appointment for tomorrow morning.".into(),
        },
        Step::BargeIn {
            after: Duration::from_millis(2500),
            audio: load("barge_en.wav", 2000),
            transcript: "Wait, actually, can we make it in the afternoon?".into(),
        },
        Step::WaitForBot {
            max: Duration::from_secs(20),
        },
        Step::Pause(Duration::from_millis(300)),
        Step::Keys {
            digits: "0501234567#".into(),
            gap: Duration::from_millis(150),
        },
        Step::WaitForBot {
            max: Duration::from_secs(20),
        },
        Step::Pause(Duration::from_millis(300)),
        Step::Say {
            audio: load("thanks_en.wav", 1200),
            transcript: "Thank you, goodbye.".into(),
        },
        Step::WaitForBot {
            max: Duration::from_secs(20),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twiml_stream_and_parameters_are_read() {
        let xml = "<?xml version=\"1.0\"?><Response><Connect><Stream url=\"wss://h/twilio/stream\">\
                   <Parameter name=\"From\" value=\"+97250&amp;1\" /></Stream></Connect></Response>";
        let (url, params) = parse_twiml(xml).unwrap();
        assert_eq!(url, "wss://h/twilio/stream");
        assert_eq!(params, vec![("From".to_string(), "+97250&1".to_string())]);
        assert!(parse_twiml("<Response/>").is_err());
    }

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n"), "Wikipedia");
    }
}
