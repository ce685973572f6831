//! `kav serve` with the built-in defaults does the real job or says it cannot (issue 11 step 6):
//! the booking agent answers (offline dialog, no LLM configured), espeak-ng speaks, and with no
//! speech recogniser available the start-up log says calls understand keypad input only. A
//! provider that is configured but cannot start stops the server with the reason.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

fn serve(dir: &tempfile::TempDir, env: &[(&str, &str)]) -> std::process::Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kav"));
    cmd.args(["serve", "--listen", "127.0.0.1:0"])
        .args(["--config", "/nonexistent/kav.toml"])
        .env(
            "KAV_STORE_URL",
            format!("sqlite://{}", dir.path().join("kav.db").display()),
        )
        .env("KAV_CALL_KEEP_WARM_MS", "0")
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .env_remove("OPENAI_API_KEY")
        .env_remove("KAV_LLM_API_KEY")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("kav serve starts")
}

/// Lines of the child's log (stdout and stderr) until `until` matches one or 20 s pass.
fn log_until(child: &mut std::process::Child, until: impl Fn(&str) -> bool) -> String {
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for l in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx2.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut log = String::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                log.push_str(&line);
                log.push('\n');
                if until(&line) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    log
}

#[test]
fn defaults_run_the_booking_agent_and_say_calls_are_keypad_only() {
    let dir = tempfile::tempdir().unwrap();
    // No Whisper models (a `--features whisper` build with models would pick Whisper for `auto`).
    let models = tempfile::tempdir().unwrap();
    let mut child = serve(
        &dir,
        &[(
            "KAV_WHISPER_MODEL_DIR",
            &models.path().display().to_string(),
        )],
    );
    let log = log_until(&mut child, |l| {
        l.contains("provider warm") && l.contains("tts")
    });
    let _ = child.kill();
    let _ = child.wait();
    assert!(log.contains("KEYPAD INPUT ONLY"), "{log}");
    assert!(
        log.contains("provider=\"keypad-only\"") || log.contains("provider=keypad-only"),
        "{log}"
    );
    assert!(log.contains("offline-booking"), "{log}");
    assert!(log.contains("espeak"), "{log}");
    assert!(
        !log.contains("simulated"),
        "no simulation by default:\n{log}"
    );
}

#[test]
fn a_configured_provider_that_cannot_start_stops_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let models = tempfile::tempdir().unwrap();
    let mut child = serve(
        &dir,
        &[
            ("KAV_CALL_STT", "whisper"),
            (
                "KAV_WHISPER_MODEL_DIR",
                &models.path().display().to_string(),
            ),
        ],
    );
    let log = log_until(&mut child, |_| false);
    let status = child.wait().unwrap();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("stt provider \"whisper\" is configured but cannot start"),
        "{log}"
    );

    // An LLM endpoint that is configured but unreachable at warm-up.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}/v1");
    let mut child = serve(
        &dir,
        &[("KAV_LLM_BASE_URL", &url), ("KAV_LLM_TIMEOUT_MS", "1000")],
    );
    let log = log_until(&mut child, |_| false);
    let status = child.wait().unwrap();
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("agent provider \"llm-booking\" failed its start-up warm-up"),
        "{log}"
    );
}
