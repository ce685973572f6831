//! A real `kav serve` child process on a given database, for tests that need processes
//! (two instances, a rolling restart, SIGKILL, the operator API). Offline agent, simulated
//! TTS/STT with short fixed latencies, fast worker polls; `extra` env vars override any of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

pub const APP_SECRET: &str = "two_instances_secret";
pub const ACCESS_TOKEN: &str = "EAAGtwo";
pub const ADMIN_TOKEN: &str = "kav-test-admin-token";

pub struct KavProcess {
    pub child: Child,
    pub addr: SocketAddr,
}

impl KavProcess {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGKILL: no drain, no flush, no goodbye.
    pub async fn kill9(mut self) {
        self.child.start_kill().expect("SIGKILL");
        self.child.wait().await.expect("reaped");
    }
}

pub async fn spawn_kav(db_url: &str, graph_base_url: &str, extra: &[(&str, &str)]) -> KavProcess {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kav"));
    cmd.args(["serve", "--listen", &addr.to_string()])
        .args(["--config", "/nonexistent/kav.toml"])
        .env("KAV_STORE_URL", db_url)
        .env("KAV_CALL_STT", "simulated")
        .env("KAV_CALL_AGENT", "offline")
        .env("KAV_CALL_TTS", "simulated")
        .env("KAV_CALL_GREETING", "")
        .env("KAV_CALL_LANGUAGE", "en-US")
        .env("KAV_CALL_KEEP_WARM_MS", "0")
        .env("KAV_SIM_STT_FINAL_MS", "fixed:50")
        .env("KAV_SIM_TTS_FIRST_AUDIO_MS", "fixed:50")
        .env("KAV_WHATSAPP_GRAPH_BASE_URL", graph_base_url)
        .env("KAV_WHATSAPP_POLL_MS", "50")
        .env("KAV_BOOKING_OUTBOX_POLL_MS", "50")
        .env("KAV_LIMITS_WEBHOOK_RATE_PER_S", "0")
        .env("KAV_SERVER_SHUTDOWN_GRACE_MS", "20000")
        .env("WHATSAPP_APP_SECRET", APP_SECRET)
        .env("WHATSAPP_ACCESS_TOKEN", ACCESS_TOKEN)
        .env("KAV_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("RUST_LOG", "warn");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kav serve starts");
    let http = reqwest::Client::new();
    for _ in 0..600 {
        if let Ok(r) = http.get(format!("http://{addr}/readyz")).send().await
            && r.status() == 200
        {
            return KavProcess { child, addr };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("kav serve on {addr} did not become ready");
}

/// `kav admin <args>` on the database at `db_url`, with `stdin` piped in as an operator types a
/// password. Returns stdout; panics with stderr when the command fails.
pub async fn kav_admin(db_url: &str, args: &[&str], stdin: &str) -> String {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new(env!("CARGO_BIN_EXE_kav"))
        .args(["--config", "/nonexistent/kav.toml", "admin"])
        .args(args)
        .env("KAV_STORE_URL", db_url)
        .env_remove("KAV_ADMIN_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kav admin starts");
    let mut pipe = child.stdin.take().expect("stdin piped");
    pipe.write_all(stdin.as_bytes())
        .await
        .expect("stdin written");
    drop(pipe);
    let out = child.wait_with_output().await.expect("kav admin ran");
    assert!(
        out.status.success(),
        "kav admin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}
