//! The `kav` binary: `serve`, `demo`, `call`, `loadgen`, `transcribe`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

use kav::caller::{self, CallOptions, Step};
use kav::channels::twilio::call::CallDeps;
use kav::config::Config;
use kav::server::{self, AppState};
use kav::store::Store;

#[derive(Parser)]
#[command(
    name = "kav",
    version,
    about = "Kav: real-time voice agent for phone (Twilio Media Streams) calls"
)]
struct Cli {
    /// Configuration file (a missing file means built-in defaults); every key can be overridden
    /// with KAV_<SECTION>_<KEY>.
    #[arg(long, global = true, default_value = "config.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create a console account. The password comes from KAV_ADMIN_PASSWORD or stdin, never argv.
    CreateUser {
        #[arg(long)]
        email: String,
        /// platform_admin, owner or staff.
        #[arg(long)]
        role: String,
        /// The business of an owner or staff member (its id, e.g. biz_escape_tlv).
        #[arg(long)]
        business: Option<String>,
    },
    /// Create an API token for an account (printed once on stdout; stored hashed).
    CreateToken {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "api")]
        label: String,
    },
    /// Revoke an API token by its id.
    RevokeToken {
        #[arg(long)]
        id: String,
    },
    /// Remove one customer's messages, turns, calls, traces and dialog state; redact their name
    /// and phone from the bookings and outgoing messages that stay. Prints what was touched.
    ForgetCustomer {
        /// Their phone, any spelling (+972501234567, 0501234567, 972501234567).
        #[arg(long)]
        phone: String,
        /// Only this business's data (default: every business).
        #[arg(long)]
        business: Option<String>,
    },
    /// Run the [retention] sweep once now. Prints what was removed.
    Sweep,
}

#[derive(Subcommand)]
enum Command {
    /// Operator tasks on the configured database ([store] url): console accounts and API
    /// tokens, forgetting a customer, the retention sweep.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Run the server: TwiML webhook, Media Streams WebSocket, /healthz, /metrics.
    Serve {
        /// Listen address (env KAV_LISTEN).
        #[arg(long, env = "KAV_LISTEN")]
        listen: Option<String>,
        /// Public base URL Twilio reaches us at, e.g. https://kav.example.com (env KAV_PUBLIC_URL).
        #[arg(long, env = "KAV_PUBLIC_URL")]
        public_url: Option<String>,
    },
    /// Start a server on loopback, place a simulated call through the offline providers
    /// (booking request, barge-in, keypad number, goodbye), print the turns, exit.
    Demo {
        /// Save the bot audio the caller heard as a WAV file.
        #[arg(long)]
        save_audio: Option<PathBuf>,
    },
    /// Place one simulated Twilio call against a running server.
    Call {
        /// Base URL of the server.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        server: String,
        /// Say an audio file (WAV or raw mu-law) with the transcript the simulated STT should
        /// report: FILE=TEXT. Repeatable; each is followed by waiting for the bot. Without any
        /// --say the built-in demo conversation is used.
        #[arg(long = "say")]
        says: Vec<String>,
        /// Keypad digits to press at the end (e.g. 0501234567#).
        #[arg(long)]
        keys: Option<String>,
        /// Save the bot audio as heard (WAV).
        #[arg(long)]
        save_audio: Option<PathBuf>,
        /// Round trip (ms) added to the Media Streams link, half each way.
        #[arg(long, default_value_t = 0)]
        rtt: u64,
        /// Extra delay (ms) per direction, uniform 0..=jitter per chunk.
        #[arg(long, default_value_t = 0)]
        jitter: u64,
    },
    /// Run many simulated callers concurrently and report jitter, underruns, barge-in reaction,
    /// engine-added latency, CPU and memory per call.
    Loadgen {
        #[arg(long, default_value_t = 100)]
        calls: usize,
        /// Seconds of steady state per call.
        #[arg(long, default_value_t = 30)]
        duration: u64,
        /// Seconds over which calls start.
        #[arg(long, default_value_t = 10)]
        ramp: u64,
        /// Use this running server instead of starting one (CPU/RSS then not measured).
        #[arg(long)]
        server: Option<String>,
        /// Every n-th turn barges in (0 = never).
        #[arg(long, default_value_t = 3)]
        barge_every: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Round trip (ms) added to every caller's Media Streams link, half each way.
        #[arg(long, default_value_t = 0)]
        rtt: u64,
        /// Extra delay (ms) per direction, uniform 0..=jitter per chunk.
        #[arg(long, default_value_t = 0)]
        jitter: u64,
        /// Find how many calls the server holds: run at each count in turn (e.g.
        /// `--steps 200,400,600`; `--calls` is then ignored) and stop after the first count with
        /// an underrun (caller or server side).
        #[arg(long, value_delimiter = ',')]
        steps: Vec<usize>,
    },
    /// Post recorded WhatsApp webhooks to a running server, signed as the vendor signs them: Meta
    /// Cloud API JSON bodies with WHATSAPP_APP_SECRET over the exact file bytes, Twilio form
    /// bodies (`a=b&c=d`) with TWILIO_AUTH_TOKEN over `--twilio-url` and the parameters.
    Replay {
        /// Webhook body files, posted in order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Meta webhook URL.
        #[arg(long, default_value = "http://127.0.0.1:8080/whatsapp/webhook")]
        url: String,
        /// Twilio WhatsApp webhook URL, as the server sees it (its `public_url` when one is set).
        #[arg(long, default_value = "http://127.0.0.1:8080/twilio/whatsapp")]
        twilio_url: String,
        /// Post each file this many times (exercises deduplication).
        #[arg(long, default_value_t = 1)]
        times: u32,
    },
    /// Transcribe audio files with the local Whisper models (build with --features whisper; run
    /// scripts/fetch-models.sh first). Prints each transcript and the real-time factor
    /// (processing time / audio duration).
    Transcribe {
        /// WAV files (PCM, float or mu-law, any rate) or raw 8 kHz mu-law.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Language of the audio: en or he (or any BCP-47 tag, e.g. he-IL).
        #[arg(long, default_value = "en")]
        language: String,
        /// Model directory name under [whisper] model_dir (e.g. whisper-base, whisper-tiny.en);
        /// default: the configured model for the language.
        #[arg(long)]
        model: Option<String>,
        /// Beam size (default: [whisper] beam_size).
        #[arg(long)]
        beam_size: Option<u32>,
        /// Feed the audio as a phone call would: 8 kHz mu-law, upsampled by the call's audio
        /// graph, instead of full resolution.
        #[arg(long)]
        phone: bool,
    },
}

fn init_tracing(default: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| default.into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}

async fn build_state(cfg: Config) -> Result<(Arc<AppState>, tokio::task::JoinHandle<()>)> {
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

async fn replay(files: &[PathBuf], meta_url: &str, twilio_url: &str, times: u32) -> Result<()> {
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

/// GET on the operator API with `Authorization: Bearer` from `KAV_API_TOKEN` (an account's token)
/// or `KAV_ADMIN_TOKEN`; the body, or why not.
async fn operator_get(url: &str) -> Result<String, String> {
    let token = ["KAV_API_TOKEN", "KAV_ADMIN_TOKEN"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|t| !t.is_empty()));
    let mut request = reqwest::Client::new().get(url);
    match token {
        Some(token) => request = request.bearer_auth(token),
        None => return Err("set KAV_API_TOKEN or KAV_ADMIN_TOKEN to read the turn API".into()),
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("{status}: {}", body.trim()))
    }
}

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

async fn admin(cfg: &Config, command: AdminCommand) -> Result<()> {
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

#[tokio::main]
async fn main() -> Result<()> {
    #[cfg(feature = "dhat-heap")]
    let _heap_profile = heap_profile();
    let cli = Cli::parse();
    let mut cfg =
        Config::load(&cli.config).with_context(|| format!("loading {}", cli.config.display()))?;
    match cli.command {
        Command::Admin(command) => {
            init_tracing("warn");
            admin(&cfg, command).await
        }
        Command::Serve { listen, public_url } => {
            init_tracing("info");
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
        Command::Replay {
            files,
            url,
            twilio_url,
            times,
        } => {
            init_tracing("warn");
            replay(&files, &url, &twilio_url, times).await
        }
        Command::Demo { save_audio } => {
            init_tracing("warn");
            demo(cfg, save_audio).await
        }
        Command::Call {
            server,
            says,
            keys,
            save_audio,
            rtt,
            jitter,
        } => {
            init_tracing("warn");
            let steps = if says.is_empty() && keys.is_none() {
                caller::demo_script(&samples_dir())
            } else {
                let mut steps = Vec::new();
                for s in &says {
                    let (file, text) = s.split_once('=').context("--say takes FILE=TEXT")?;
                    let audio =
                        kav::providers::audio_file::load_mulaw_8k(std::path::Path::new(file))?;
                    steps.push(Step::Say {
                        audio: Arc::new(audio),
                        transcript: text.to_string(),
                    });
                    steps.push(Step::WaitForBot {
                        max: Duration::from_secs(30),
                    });
                }
                if let Some(k) = keys {
                    steps.push(Step::Keys {
                        digits: k,
                        gap: Duration::from_millis(150),
                    });
                    steps.push(Step::WaitForBot {
                        max: Duration::from_secs(30),
                    });
                }
                steps
            };
            let opts = CallOptions {
                server: server.clone(),
                auth_token: std::env::var("TWILIO_AUTH_TOKEN")
                    .ok()
                    .filter(|t| !t.is_empty()),
                record_bot_audio: save_audio.is_some(),
                lead_frames: cfg.playout.lead_frames,
                rtt: Duration::from_millis(rtt),
                jitter: Duration::from_millis(jitter),
                ..CallOptions::default()
            };
            let report = caller::run_call(&opts, steps).await?;
            if let Some(path) = save_audio {
                kav::providers::audio_file::save_wav_mulaw_8k(&path, &report.bot_audio)?;
                println!("bot audio saved to {}", path.display());
            }
            let turns = operator_get(&format!(
                "{}/api/calls/{}/turns",
                server.trim_end_matches('/'),
                opts.call_sid
            ))
            .await;
            match turns {
                Ok(json) => print_turns(
                    &serde_json::from_str::<Vec<serde_json::Value>>(&json).unwrap_or_default(),
                ),
                Err(e) => println!("(turn table unavailable: {e})"),
            }
            print_caller_report(&report);
            Ok(())
        }
        Command::Loadgen {
            calls,
            duration,
            ramp,
            server,
            barge_every,
            seed,
            rtt,
            jitter,
            steps,
        } => {
            init_tracing("warn");
            let opts = caller::loadgen::LoadOptions {
                calls,
                duration: Duration::from_secs(duration),
                ramp: Duration::from_secs(ramp),
                server,
                barge_every,
                seed,
                lead_frames: cfg.playout.lead_frames,
                rtt: Duration::from_millis(rtt),
                jitter: Duration::from_millis(jitter),
            };
            if !steps.is_empty() {
                println!(
                    "loadgen: steps {steps:?} calls, {duration} s steady state, ramp {ramp} s, rtt {rtt} ms, jitter {jitter} ms"
                );
                let done = caller::loadgen::find_capacity(opts, &steps, |step| {
                    println!("--- {} calls", step.calls);
                    print!("{}", step.report);
                })
                .await
                .map_err(anyhow::Error::msg)?;
                print!("\n{}", caller::loadgen::capacity_table(&done));
                return Ok(());
            }
            println!(
                "loadgen: {calls} calls, {duration} s steady state, ramp {ramp} s, rtt {rtt} ms, jitter {jitter} ms"
            );
            let report = caller::loadgen::run(opts)
                .await
                .map_err(anyhow::Error::msg)?;
            print!("{report}");
            Ok(())
        }
        Command::Transcribe {
            files,
            language,
            model,
            beam_size,
            phone,
        } => {
            init_tracing("warn");
            transcribe(cfg, files, language, model, beam_size, phone).await
        }
    }
}

#[cfg(not(feature = "whisper"))]
async fn transcribe(
    _cfg: Config,
    _files: Vec<PathBuf>,
    _language: String,
    _model: Option<String>,
    _beam_size: Option<u32>,
    _phone: bool,
) -> Result<()> {
    bail!(
        "this kav was built without Whisper: cargo build --release --features whisper, then scripts/fetch-models.sh"
    )
}

#[cfg(feature = "whisper")]
async fn transcribe(
    mut cfg: Config,
    files: Vec<PathBuf>,
    language: String,
    model: Option<String>,
    beam_size: Option<u32>,
    phone: bool,
) -> Result<()> {
    use kav::providers::audio_file;
    use kav::providers::whisper::{SAMPLE_RATE, WhisperStt, whisper_language};
    use kav::voice::audio::InboundAudio;

    if let Some(m) = model {
        cfg.whisper.model_en = m.clone();
        cfg.whisper.model_he = m.clone();
        cfg.whisper.model_other = m;
    }
    if let Some(b) = beam_size {
        cfg.whisper.beam_size = b;
    }
    let stt = WhisperStt::new(&cfg.whisper)?;
    let lang = whisper_language(&language);
    let started = std::time::Instant::now();
    stt.load().await?;
    // The first inference sets up buffers; keep it out of the measured numbers.
    stt.transcribe(vec![0; SAMPLE_RATE as usize / 2], &lang)
        .await?;
    println!(
        "model {} ({}), beam {}, loaded and warmed in {:.2} s",
        stt.model_for(&lang),
        lang,
        cfg.whisper.beam_size.max(1),
        started.elapsed().as_secs_f64()
    );
    let mut audio_total = 0.0;
    let mut processing_total = 0.0;
    for file in &files {
        let pcm = if phone {
            // The call path: mu-law frames through the session's audio graph.
            let mulaw = audio_file::load_mulaw_8k(file)?;
            let mut graph = InboundAudio::new(2, false, true);
            let mut pcm = Vec::with_capacity(mulaw.len() * 2);
            for frame in mulaw.chunks_exact(160) {
                graph.process(frame.try_into().expect("160-byte chunk"));
                pcm.extend_from_slice(graph.pcm16k());
            }
            pcm
        } else {
            audio_file::load_pcm(file, SAMPLE_RATE)?
        };
        let t = stt.transcribe(pcm, &lang).await?;
        audio_total += t.audio.as_secs_f64();
        processing_total += t.processing.as_secs_f64();
        println!(
            "{}: {:.2} s audio, {:.3} s processing, RTF {:.3}\n  {}",
            file.display(),
            t.audio.as_secs_f64(),
            t.processing.as_secs_f64(),
            t.real_time_factor(),
            t.text
        );
    }
    println!(
        "total: {} files, {:.2} s audio, {:.3} s processing, RTF {:.3}",
        files.len(),
        audio_total,
        processing_total,
        processing_total / audio_total.max(1e-9)
    );
    Ok(())
}

fn samples_dir() -> PathBuf {
    let here = PathBuf::from("audio-samples");
    if here.is_dir() {
        here
    } else {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("audio-samples")
    }
}

fn print_caller_report(r: &caller::CallReport) {
    let ms = |v: &u64| format!("{:.0}", *v as f64 / 1000.0);
    println!(
        "caller: {} bot frames heard, {} clears, barge-in reaction {} ms, speech end → bot audio {} ms, underruns {}",
        r.frames_received,
        r.clears,
        r.barge_in_reaction_us
            .iter()
            .map(ms)
            .collect::<Vec<_>>()
            .join(", "),
        r.response_us.iter().map(ms).collect::<Vec<_>>().join(", "),
        r.underruns
    );
}

fn print_turns(turns: &[serde_json::Value]) {
    let s = |v: &serde_json::Value, k: &str| {
        v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string()
    };
    let n = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(|x| x.as_i64())
            .map(|x| x.to_string())
            .unwrap_or_else(|| "-".into())
    };
    println!(
        "\n{:<4} {:<8} {:<4} {:>7} {:>7} {:>7} {:>7} {:>7}  conversation",
        "turn", "input", "cut", "partial", "final", "ai", "tts", "total"
    );
    for t in turns {
        let cut = if t
            .get("interrupted")
            .and_then(|x| x.as_bool())
            .unwrap_or(false)
        {
            "yes"
        } else {
            ""
        };
        println!(
            "{:<4} {:<8} {:<4} {:>7} {:>7} {:>7} {:>7} {:>7}  caller: {}",
            n(t, "turn"),
            s(t, "input_kind"),
            cut,
            n(t, "stt_first_partial_ms"),
            n(t, "stt_final_ms"),
            n(t, "ai_latency_ms"),
            n(t, "tts_ready_ms"),
            n(t, "total_ms"),
            s(t, "user_text"),
        );
        println!("{:<53}  bot:    {}", "", s(t, "bot_text"));
    }
    println!("(latency marks in ms; see README \"Latency marks\")\n");
}

/// The demo's booking request: tomorrow at a time the sample business is open (14:00, or 20:00
/// when tomorrow is Saturday, when it opens at 19:00), in its timezone.
fn demo_request() -> Result<String> {
    let tomorrow = jiff::Zoned::now()
        .in_tz("Asia/Jerusalem")?
        .date()
        .tomorrow()?;
    let at = if tomorrow.weekday() == jiff::civil::Weekday::Saturday {
        "8 pm"
    } else {
        "2 pm"
    };
    Ok(format!(
        "Hi, I would like to book the Dubai room for tomorrow at {at}."
    ))
}

/// The demo call: a booking through the booking agent, with a barge-in and the number typed on
/// the keypad (caller id withheld). Recorded samples where they say the words; otherwise
/// speech-shaped noise, and the simulated recogniser reports the script's transcript.
fn demo_steps(request: String) -> Vec<Step> {
    let speech = |ms: u64| Arc::new(caller::synthetic_speech(Duration::from_millis(ms)));
    let wait = || Step::WaitForBot {
        max: Duration::from_secs(20),
    };
    let thanks = kav::providers::audio_file::load_mulaw_8k(samples_dir().join("thanks_en.wav"))
        .map(Arc::new)
        .unwrap_or_else(|_| speech(1200));
    vec![
        Step::WaitForBot {
            max: Duration::from_secs(10),
        }, // the greeting
        Step::Say {
            audio: speech(2500),
            transcript: request,
        },
        // Talks over the agent's question once 600 ms of it has played.
        Step::BargeIn {
            after: Duration::from_millis(600),
            audio: speech(1200),
            transcript: "Sorry, my name is Dana.".into(),
        },
        wait(),
        Step::Pause(Duration::from_millis(300)),
        Step::Keys {
            digits: "0501234567#".into(),
            gap: Duration::from_millis(150),
        },
        wait(),
        Step::Pause(Duration::from_millis(300)),
        Step::Say {
            audio: speech(600),
            transcript: "Yes, please.".into(),
        },
        wait(),
        Step::Pause(Duration::from_millis(300)),
        Step::Say {
            audio: thanks,
            transcript: "Thank you, goodbye.".into(),
        },
        wait(),
    ]
}

/// Prints the call's appointment as stored and its WhatsApp confirmation in the outbox; true when
/// the call booked one.
async fn print_booking(store: &Store, business: &str, call_sid: &str) -> Result<bool> {
    let appts: Vec<_> = store
        .appointments_for_business(business)
        .await?
        .into_iter()
        .filter(|a| a.conversation_id == call_sid)
        .collect();
    println!("\ndatabase: appointments booked on this call");
    if appts.is_empty() {
        println!("  (none)");
    }
    for a in &appts {
        let start = jiff::Timestamp::from_millisecond(a.start_ms)?.in_tz("Asia/Jerusalem")?;
        println!(
            "  {}  {}  room {}  name {}  phone {}  status {}",
            a.id,
            start.strftime("%Y-%m-%d %H:%M %Z"),
            a.resource_id.as_deref().unwrap_or("-"),
            a.customer_name,
            a.customer_phone.as_deref().unwrap_or("-"),
            a.status
        );
        match store.outbox_by_key(&format!("confirm:{}", a.id)).await? {
            Some(row) => println!(
                "  outbox: {} {} status {} attempts {}{}",
                row.kind,
                row.idempotency_key,
                row.status,
                row.attempts,
                match row.result.as_deref() {
                    Some(r) if r.starts_with("log-") => format!(
                        " (to the log sender {r}: no WhatsApp account configured, nothing reached a phone)"
                    ),
                    Some(r) => format!(" (message id {r})"),
                    None => String::new(),
                }
            ),
            None => println!("  outbox: no WhatsApp confirmation queued"),
        }
    }
    Ok(!appts.is_empty())
}

async fn demo(mut cfg: Config, save_audio: Option<PathBuf>) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("kav-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    cfg.store.url = format!("sqlite://{}", dir.join("demo.db").display());
    cfg.call.language = "en-US".into();
    // The caller is simulated: the recogniser reports the script's transcripts. The agent is the
    // real booking agent (`[call] agent`, default `booking`: the LLM when configured, else the
    // offline dialog) over a fresh SQLite database.
    cfg.call.stt = "simulated".into();
    if cfg.call.greeting.is_empty() {
        cfg.call.greeting = "Hello, you have reached the studio. How can I help?".into();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr: SocketAddr = listener.local_addr()?;
    let lead = cfg.playout.lead_frames;
    let business = cfg.booking.default_business.clone();
    let (state, _writer) = build_state(cfg).await?;
    println!(
        "Kav demo: server on http://{addr} (providers: stt={}, agent={}, tts={})",
        state.deps.stt.name(),
        state.deps.agent.name(),
        state.deps.tts.name()
    );
    let store = state.store.clone();
    let recorder = state.deps.recorder.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, state, async move {
        let _ = stop_rx.await;
    }));

    let opts = CallOptions {
        server: format!("http://{addr}"),
        // Caller id withheld: the agent asks for the number, typed on the keypad.
        from: String::new(),
        to: "+97235550100".into(),
        record_bot_audio: save_audio.is_some(),
        lead_frames: lead,
        max_duration: Duration::from_secs(120),
        ..CallOptions::default()
    };
    println!(
        "placing a simulated call: booking request, barge-in, keypad number, confirmation, goodbye …"
    );
    let report = caller::run_call(&opts, demo_steps(demo_request()?)).await?;
    if let Some(r) = &recorder {
        r.flush().await;
    }
    let turns = match &store {
        Some(store) => store.call_turns(&opts.call_sid).await?,
        None => Vec::new(),
    };
    let json: Vec<serde_json::Value> = turns
        .iter()
        .filter_map(|t| serde_json::to_value(t).ok())
        .collect();
    print_turns(&json);
    print_caller_report(&report);
    let booked = match &store {
        Some(store) => print_booking(store, &business, &opts.call_sid).await?,
        None => false,
    };
    if let Some(path) = save_audio {
        kav::providers::audio_file::save_wav_mulaw_8k(&path, &report.bot_audio)?;
        println!("bot audio saved to {}", path.display());
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);

    let interrupted = json
        .iter()
        .filter(|t| t.get("interrupted").and_then(|x| x.as_bool()) == Some(true))
        .count();
    let digits = json
        .iter()
        .filter(|t| t.get("input_kind").and_then(|x| x.as_str()) == Some("digits"))
        .count();
    if json.len() < 4 || interrupted == 0 || digits == 0 || report.clears == 0 || !booked {
        bail!(
            "demo conversation incomplete: {} turns, {} interrupted, {} keypad turns, {} clears, booked: {booked}",
            json.len(),
            interrupted,
            digits,
            report.clears
        );
    }
    println!(
        "demo ok: {} turns, barge-in honoured, keypad number captured, appointment booked",
        json.len()
    );
    Ok(())
}

/// `--features dhat-heap` (off by default): dhat records every allocation. Every 5 s a line
/// `dhat-heap: unix_s=… curr_bytes=… curr_blocks=… max_bytes=… total_blocks=…` goes to stderr (the
/// live heap over time, which `scripts/soak.sh` samples next to RSS); on a clean exit the profile
/// is written to `dhat-heap.json` (view it with dhat's `dh_view.html`).
#[cfg(feature = "dhat-heap")]
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

#[cfg(feature = "dhat-heap")]
struct HeapProfile {
    /// Set (under the lock) before the profiler goes: the reporting thread stops asking for stats.
    stopped: Arc<std::sync::Mutex<bool>>,
    _profiler: dhat::Profiler,
}

#[cfg(feature = "dhat-heap")]
impl Drop for HeapProfile {
    fn drop(&mut self) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = true;
    }
}

#[cfg(feature = "dhat-heap")]
fn heap_profile() -> HeapProfile {
    let profiler = dhat::Profiler::new_heap();
    let stopped = Arc::new(std::sync::Mutex::new(false));
    let flag = stopped.clone();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(5));
            let stopped = flag.lock().unwrap_or_else(|p| p.into_inner());
            if *stopped {
                return;
            }
            let s = dhat::HeapStats::get();
            let unix_s = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            eprintln!(
                "dhat-heap: unix_s={unix_s} curr_bytes={} curr_blocks={} max_bytes={} total_blocks={}",
                s.curr_bytes, s.curr_blocks, s.max_bytes, s.total_blocks
            );
        }
    });
    HeapProfile {
        stopped,
        _profiler: profiler,
    }
}
