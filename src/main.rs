//! The `kav` binary: `serve`, `demo`, `call`, `loadgen`, `transcribe`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use kav::config::Config;

mod cli;

use cli::init_tracing;

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

#[tokio::main]
async fn main() -> Result<()> {
    #[cfg(feature = "dhat-heap")]
    let _heap_profile = heap_profile();
    let cli = Cli::parse();
    let cfg =
        Config::load(&cli.config).with_context(|| format!("loading {}", cli.config.display()))?;
    match cli.command {
        Command::Admin(command) => {
            init_tracing("warn");
            cli::admin::admin(&cfg, command).await
        }
        Command::Serve { listen, public_url } => {
            init_tracing("info");
            cli::serve::run(cfg, listen, public_url).await
        }
        Command::Replay {
            files,
            url,
            twilio_url,
            times,
        } => {
            init_tracing("warn");
            cli::replay::replay(&files, &url, &twilio_url, times).await
        }
        Command::Demo { save_audio } => {
            init_tracing("warn");
            cli::demo::demo(cfg, save_audio).await
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
            cli::call::run(&cfg, server, says, keys, save_audio, rtt, jitter).await
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
            cli::loadgen::run(
                &cfg,
                calls,
                duration,
                ramp,
                server,
                barge_every,
                seed,
                rtt,
                jitter,
                steps,
            )
            .await
        }
        Command::Transcribe {
            files,
            language,
            model,
            beam_size,
            phone,
        } => {
            init_tracing("warn");
            cli::transcribe::transcribe(cfg, files, language, model, beam_size, phone).await
        }
    }
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
