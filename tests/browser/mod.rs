//! A real browser for the console tests: Debian's `chromium`, headless, driven over WebDriver by
//! its `chromedriver` (both installed by `scripts/setup.sh`) through fantoccini.
//!
//! - [`launch`] starts `chromedriver` on a free loopback port in its own process group and opens
//!   one session. Dropping the [`Browser`] kills that group (chromedriver and every chromium
//!   process it started), also when a test panics.
//! - Nothing here sleeps for a fixed time: every wait polls for what the page should show and
//!   fails after [`WAIT`], naming what it waited for and the page it was on.
//! - A missing browser is a failure under `CI`; locally the caller skips with the reason
//!   ([`launch`] returns it as `Err`).
#![allow(dead_code)]

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::elements::Element;
use fantoccini::error::{CmdError, ErrorStatus};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// How long a step waits for the page to show what it expects (generous: 2 shared cores).
pub const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

/// The first executable called `name` on `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// The chromedriver process group; dropping it kills the whole group.
struct Driver {
    child: Child,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group id is chromedriver's pid (`process_group(0)`); chromium inherits the group.
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
        unsafe {
            libc::kill(-(self.child.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

pub struct Browser {
    pub client: Client,
    base: String,
    _profile: tempfile::TempDir,
    _driver: Driver,
}

/// Starts chromedriver and a headless chromium with a `width`×`height` window, the pages of
/// `base` (`http://127.0.0.1:port`) in English. `Err` says what is missing; under `CI` this
/// panics instead, since the setup script must have installed both.
pub async fn launch(base: &str, width: u32, height: u32) -> Result<Browser, String> {
    match try_launch(base, width, height).await {
        Ok(b) => Ok(b),
        Err(reason) if std::env::var_os("CI").is_some() => {
            panic!("CI: no browser for the console tests: {reason}")
        }
        Err(reason) => Err(reason),
    }
}

async fn try_launch(base: &str, width: u32, height: u32) -> Result<Browser, String> {
    let chromium = on_path("chromium")
        .ok_or("`chromium` is not on PATH (Debian package chromium; scripts/setup.sh)")?;
    let chromedriver = on_path("chromedriver").ok_or(
        "`chromedriver` is not on PATH (Debian package chromium-driver; scripts/setup.sh)",
    )?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port: {e}"))?
        .port();
    let driver = Driver {
        child: Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("{} does not start: {e}", chromedriver.display()))?,
    };
    let webdriver = format!("http://127.0.0.1:{port}");
    wait_ready(&webdriver).await?;
    let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless=new",
                // Root in a container has no user namespace for the sandbox.
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--disable-gpu",
                "--lang=en-US",
                "--force-device-scale-factor=1",
                "--hide-scrollbars",
                format!("--window-size={width},{height}"),
                format!("--user-data-dir={}", profile.path().display()),
            ],
            "prefs": {"intl.accept_languages": "en-US,en"},
        },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!("a JSON object")
    };
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&webdriver)
        .await
        .map_err(|e| format!("chromium does not start under chromedriver: {e}"))?;
    // A page or script that never finishes fails its step after WAIT, not WebDriver's 300 s.
    client
        .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
            Some(WAIT),
            Some(WAIT),
            Some(Duration::ZERO),
        ))
        .await
        .map_err(|e| format!("setting chromedriver's timeouts: {e}"))?;
    Ok(Browser {
        client,
        base: base.trim_end_matches('/').to_string(),
        _profile: profile,
        _driver: driver,
    })
}

/// Polls chromedriver's `/status` until it answers `ready`.
async fn wait_ready(webdriver: &str) -> Result<(), String> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if let Ok(r) = http.get(format!("{webdriver}/status")).send().await
            && let Ok(v) = r.json::<serde_json::Value>().await
            && v["value"]["ready"] == true
        {
            return Ok(());
        }
        tokio::time::sleep(POLL).await;
    }
    Err(format!(
        "chromedriver at {webdriver} not ready after {WAIT:?}"
    ))
}

fn stale(e: &CmdError) -> bool {
    matches!(e, CmdError::Standard(w) if w.error == ErrorStatus::StaleElementReference)
}

impl Browser {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A fresh visitor: no cookies from an earlier step.
    pub async fn forget_cookies(&self) {
        self.client.goto(&self.url("/console/login")).await.unwrap();
        self.client.delete_all_cookies().await.unwrap();
    }

    pub async fn goto(&self, path: &str) {
        self.client
            .goto(&self.url(path))
            .await
            .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    }

    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.unwrap();
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        }
    }

    /// Polls `check` until it gives `Some`, failing after [`WAIT`] with `what` and the page.
    pub async fn until<T>(&self, what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if Instant::now() >= deadline {
                let page = self.client.source().await.unwrap_or_default();
                let at = self.path().await;
                panic!("waited {WAIT:?} for {what} on {at}; the page:\n{page}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The element once it is on the page.
    pub async fn find(&self, css: &str) -> Element {
        self.until(&format!("`{css}`"), async || {
            self.client.find(Locator::Css(css)).await.ok()
        })
        .await
    }

    /// Every element matching `css` now (no wait).
    pub async fn all(&self, css: &str) -> Vec<Element> {
        self.client.find_all(Locator::Css(css)).await.unwrap()
    }

    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.unwrap()
    }

    /// Waits until `css` is on the page with text containing `needle`; returns the text.
    pub async fn text_contains(&self, css: &str, needle: &str) -> String {
        self.until(&format!("`{css}` to say {needle:?}"), async || {
            let e = self.client.find(Locator::Css(css)).await.ok()?;
            let t = e.text().await.ok()?;
            t.contains(needle).then_some(t)
        })
        .await
    }

    /// Clears the field and types `text` into it, key by key, as a user does.
    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.unwrap();
        if !text.is_empty() {
            e.send_keys(text).await.unwrap();
        }
    }

    pub async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking `{css}`: {e}"));
    }

    /// Clicks `element` and waits until the browser has left the page it was on and the next
    /// one has loaded (a form post, its redirect, a link).
    pub async fn click_and_load(&self, element: Element) {
        let old = self.client.find(Locator::Css("html")).await.unwrap();
        element.click().await.unwrap();
        self.until("the next page", async || match old.tag_name().await {
            Err(e) if stale(&e) => Some(()),
            _ => None,
        })
        .await;
        self.until("the page to load", async || {
            let state = self
                .client
                .execute("return document.readyState", vec![])
                .await
                .ok()?;
            (state == "complete").then_some(())
        })
        .await;
    }

    /// [`Browser::click_and_load`] on the first element matching `css`.
    pub async fn submit(&self, css: &str) {
        let e = self.find(css).await;
        self.click_and_load(e).await;
    }

    /// The HTTP status the browser got for the current page (Navigation Timing).
    pub async fn status(&self) -> u16 {
        let v = self
            .client
            .execute(
                "return performance.getEntriesByType('navigation')[0].responseStatus",
                vec![],
            )
            .await
            .unwrap();
        v.as_u64()
            .unwrap_or_else(|| panic!("no response status: {v}")) as u16
    }

    /// The value of cookie `name` in this browser (HttpOnly ones included).
    pub async fn cookie(&self, name: &str) -> Option<String> {
        self.client
            .get_all_cookies()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.name() == name)
            .map(|c| c.value().to_string())
    }

    /// Saves a PNG of `css` (the element's box) as `dir/name.png`.
    pub async fn screenshot(&self, css: &str, dir: &Path, name: &str) {
        let e = self.find(css).await;
        // From the element's top: a shot is cut where the window ends.
        let at = serde_json::to_value(&e).unwrap();
        self.client
            .execute("arguments[0].scrollIntoView()", vec![at])
            .await
            .unwrap();
        let png = e.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{name}: not a PNG");
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, &png).unwrap();
        println!("    wrote {} ({} KB)", path.display(), png.len() / 1024);
    }

    /// Ends the session (chromium exits); the process group is killed on drop either way.
    pub async fn close(self) {
        let _ = self.client.clone().close().await;
    }
}
