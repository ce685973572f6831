//! The operator console over a real server (127.0.0.1:0, SQLite in a temp dir, a manual clock):
//! sign-in with argon2id passwords and session cookies, CSRF on every state change, session
//! expiry, sign-in rate limits, API tokens, tenant isolation (pages, API, the turn API), policy
//! validation with the slot preview, versioned edits, escaping, and staff bookings through the
//! agent's own tools. The store part also runs on PostgreSQL when `KAV_TEST_POSTGRES_URL` is set.

mod backends;
mod console_forms;

use std::sync::Arc;

use console_forms::{form_value, set_cookie};
use kav::agent::BookingRuntime;
use kav::channels::twilio::call::CallDeps;
use kav::config::{BookingConfig, Config};
use kav::console::Console;
use kav::server::{self, AppState};
use kav::store::Store;
use kav::testing::clock::ManualClock;
use kav::testing::switchable_sender::SwitchableSender;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const A: &str = "biz_escape_tlv";
const ADMIN_TOKEN: &str = "deployment-admin-token";
const PASSWORD: &str = "a long enough password";

struct Server {
    url: String,
    store: Store,
    /// The console's booking runtime and its WhatsApp sender (switchable up/down).
    rt: Arc<BookingRuntime>,
    sender: Arc<SwitchableSender>,
    clock: ManualClock,
    http: reqwest::Client,
    db_url: String,
    _dir: tempfile::TempDir,
}

async fn start_with(edit: impl FnOnce(&mut Config)) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::default();
    cfg.call.tts = "simulated".into();
    // Calls are not what these tests exercise: the console builds its own booking runtime below.
    cfg.call.stt = "simulated".into();
    cfg.call.agent = "simulated".into();
    cfg.store.url = format!("sqlite://{}", dir.path().join("kav.db").display());
    edit(&mut cfg);
    let cfg = Arc::new(cfg);
    let store = Store::connect(&cfg.store.url).await.unwrap();
    // A second business, so one tenant can try the other's ids.
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&cfg.store.url).await.unwrap();
    backends::add_business_like_seeded(&cfg.store.url, "biz_other", "Other Studio").await;
    sqlx::query(
        "INSERT INTO business_numbers (channel, address, business_id) \
         VALUES ('phone', '+15550000001', 'biz_other')",
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO resources (id, business_id, name, aliases, concurrency_limit, active) \
         VALUES ('room_main', 'biz_other', 'Main', '', 1, 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let clock = ManualClock::monday_noon();
    let sender = Arc::new(SwitchableSender::new());
    let rt = BookingRuntime::new(
        store.clone(),
        sender.clone(),
        clock.clock(),
        BookingConfig::default(),
    );
    let providers = kav::app::providers_from_config(&cfg).await.unwrap();
    let deps = CallDeps::new(cfg.clone(), providers, None);
    let state = AppState::new(deps, None, Some(store.clone()));
    let console = Console::new(rt.clone(), cfg.console.clone(), Some(ADMIN_TOKEN.into()));
    assert!(state.console.set(console).is_ok());
    tokio::spawn(server::serve(listener, state, std::future::pending::<()>()));
    Server {
        url: format!("http://{addr}"),
        store,
        rt,
        sender,
        clock,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        db_url: cfg.store.url.clone(),
        _dir: dir,
    }
}

async fn start() -> Server {
    start_with(|_| {}).await
}

/// A browser's state: the session cookie and the CSRF token of the last page.
#[derive(Default, Clone)]
struct Browser {
    session: String,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    async fn user(&self, email: &str, role: &str, business: Option<&str>) {
        kav::console::admin::create_user(
            &self.store,
            email,
            role,
            business,
            PASSWORD,
            self.clock.now_ms(),
        )
        .await
        .unwrap();
    }

    /// The sign-in form's flow: GET (login CSRF cookie + field), POST. Returns the response.
    async fn login_response(&self, email: &str, password: &str) -> reqwest::Response {
        let page = self
            .http
            .get(self.url("/console/login"))
            .send()
            .await
            .unwrap();
        let cookie = set_cookie(&page, "kav_login_csrf").expect("login csrf cookie");
        let html = page.text().await.unwrap();
        let csrf = form_value(&html, "csrf").unwrap().to_string();
        assert_eq!(csrf, cookie, "double-submit token");
        self.http
            .post(self.url("/console/login"))
            .header("cookie", format!("kav_login_csrf={cookie}"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("email", email),
                ("password", password),
                ("next", "/console/"),
            ])
            .send()
            .await
            .unwrap()
    }

    async fn login(&self, email: &str) -> Browser {
        let r = self.login_response(email, PASSWORD).await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER);
        assert_eq!(r.headers()["location"], "/console/");
        let session = set_cookie(&r, "kav_session").expect("session cookie");
        let raw = r.headers()["set-cookie"].to_str().unwrap().to_string();
        assert!(
            raw.contains("HttpOnly") && raw.contains("SameSite=Lax"),
            "{raw}"
        );
        Browser { session }
    }

    async fn get(&self, b: &Browser, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .header("cookie", format!("kav_session={}", b.session))
            .send()
            .await
            .unwrap()
    }

    /// The page's CSRF token and version (from its forms).
    async fn form_tokens(&self, b: &Browser, path: &str) -> (String, String) {
        let html = self.get(b, path).await.text().await.unwrap();
        (
            form_value(&html, "csrf").expect("csrf field").to_string(),
            form_value(&html, "version").unwrap_or("").to_string(),
        )
    }

    async fn post_form(&self, b: &Browser, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .header("cookie", format!("kav_session={}", b.session))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// A POST with a bearer token that must be refused with 422: `expect` is the field an
    /// `invalid` answer names, or the error kind (`refused`). Returns the answer.
    async fn post_refused(&self, token: &str, path: &str, body: Value, expect: &str) -> Value {
        let (status, e) = self.api(token, "POST", path, Some(body)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{path}: {e}");
        let named = e["field"].as_str().or(e["error"].as_str());
        assert_eq!(named, Some(expect), "{path}: {e}");
        e
    }

    /// A POST with a bearer token that must succeed; returns the answer.
    async fn post_ok(&self, token: &str, path: &str, body: Value) -> Value {
        let (status, v) = self.api(token, "POST", path, Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
        v
    }

    async fn api(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut r = self
            .http
            .request(method.parse().unwrap(), self.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            r = r.json(&body);
        }
        let r = r.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

fn policy_body(version: i64, slot: i64, hours: Value) -> Value {
    json!({
        "version": version,
        "hours": hours,
        "slot_size_min": slot,
        "min_notice_min": 60,
        "booking_window_days": 30,
        "require_phone_before_booking": true,
        "concurrency_scope": "resource",
        "concurrency_limit": 1,
    })
}

fn week(open: &str, close: &str) -> Value {
    let mut m = serde_json::Map::new();
    for d in ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] {
        m.insert(d.into(), json!([[open, close]]));
    }
    Value::Object(m)
}

#[tokio::test]
async fn sign_in_sessions_csrf_and_expiry() {
    let s = start().await;
    s.user("Owner@Example.com", "owner", Some(A)).await;

    // Not signed in: pages go to the sign-in form, the API answers 401.
    let r = s
        .http
        .get(s.url("/console/b/biz_escape_tlv"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/console/login?next=")
    );
    let r = s
        .http
        .get(s.url("/console/api/b/biz_escape_tlv"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // The turn API (transcripts) is closed too.
    let r = s.http.get(s.url("/api/turns")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Wrong password: back to the form with a message, no session.
    let r = s
        .login_response("owner@example.com", "wrong password!")
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(set_cookie(&r, "kav_session").is_none());
    assert!(r.headers()["location"].to_str().unwrap().contains("error="));
    // A sign-in post without the login CSRF cookie is refused even with the right password.
    let r = s
        .http
        .post(s.url("/console/login"))
        .form(&[
            ("csrf", "forged"),
            ("email", "owner@example.com"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert!(set_cookie(&r, "kav_session").is_none());

    // Email is case-insensitive.
    let b = s.login("OWNER@example.com").await;
    let page = s.get(&b, "/console/b/biz_escape_tlv").await;
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("dir=\"rtl\""),
        "Hebrew business renders right to left"
    );
    let (csrf, version) = s.form_tokens(&b, "/console/b/biz_escape_tlv").await;
    assert!(!csrf.is_empty() && !version.is_empty());

    // A state change without the token, or with a forged one, is refused and changes nothing.
    let form = |token: &'static str| {
        vec![
            ("name", "Renamed"),
            ("timezone", "Asia/Jerusalem"),
            ("language", "he"),
            ("csrf", token),
        ]
    };
    let mut no_token = form("");
    no_token.pop();
    no_token.push(("version", version.as_str()));
    let r = s
        .post_form(&b, "/console/b/biz_escape_tlv/basics", &no_token)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let mut forged = form("forged-token");
    forged.push(("version", version.as_str()));
    let r = s
        .post_form(&b, "/console/b/biz_escape_tlv/basics", &forged)
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // JSON with cookie auth needs the header.
    let r = s
        .http
        .post(s.url("/console/api/b/biz_escape_tlv/basics"))
        .header("cookie", format!("kav_session={}", b.session))
        .json(&json!({"version": version.parse::<i64>().unwrap(), "name": "Renamed", "timezone": "Asia/Jerusalem", "language": "he"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        s.store.business(A).await.unwrap().unwrap().name,
        "Escape TLV"
    );

    // With the token: saved, and the page says so.
    let mut good = vec![
        ("name", "Renamed"),
        ("timezone", "Asia/Jerusalem"),
        ("language", "he"),
    ];
    good.push(("csrf", csrf.as_str()));
    good.push(("version", version.as_str()));
    let r = s
        .post_form(&b, "/console/b/biz_escape_tlv/basics", &good)
        .await;
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        r.text().await.unwrap()
    );
    assert_eq!(s.store.business(A).await.unwrap().unwrap().name, "Renamed");

    // Sessions expire (12 h by default): the same cookie is then refused.
    s.clock.advance(12 * 3_600_000 + 1);
    let r = s.get(&b, "/console/api").await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // Logout ends the session server-side.
    s.clock.advance(-(12 * 3_600_000 + 1));
    let b = s.login("owner@example.com").await;
    let (csrf, _) = s.form_tokens(&b, "/console/").await;
    let r = s.post_form(&b, "/console/logout", &[("csrf", &csrf)]).await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        s.get(&b, "/console/api").await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_account_and_per_ip() {
    let s = start_with(|c| {
        c.console.login_per_min_account = 3;
        c.console.login_per_min_ip = 5;
    })
    .await;
    s.user("owner@example.com", "owner", Some(A)).await;
    s.user("staff@example.com", "staff", Some(A)).await;
    for _ in 0..3 {
        let r = s
            .login_response("owner@example.com", "not the password")
            .await;
        assert!(r.headers()["location"].to_str().unwrap().contains("wrong"));
    }
    // The 4th attempt within the minute is refused even with the right password.
    let r = s.login_response("owner@example.com", PASSWORD).await;
    assert!(set_cookie(&r, "kav_session").is_none());
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("too+many"),
        "{:?}",
        r.headers()
    );
    // Another account from the same address: the address's 5th attempt passes, its 6th not.
    let _ = s.login("staff@example.com").await;
    let r = s.login_response("staff@example.com", PASSWORD).await;
    assert!(set_cookie(&r, "kav_session").is_none());
}

#[tokio::test]
async fn tenants_see_only_their_business() {
    let s = start().await;
    s.user("staff@a.example", "staff", Some(A)).await;
    let (_, token) = kav::console::admin::create_token(&s.store, "staff@a.example", "script", 0)
        .await
        .unwrap();
    let b = s.login("staff@a.example").await;

    // Pages and API of the other business: 403.
    assert_eq!(
        s.get(&b, "/console/b/biz_other").await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.get(&b, "/console/b/biz_other/bookings").await.status(),
        StatusCode::FORBIDDEN
    );
    let (status, body) = s.api(&token, "GET", "/console/api/b/biz_other", None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );
    let (status, _) = s
        .api(&token, "GET", "/console/api/b/biz_other/slots", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Their own business: readable; settings are the owner's (staff: 403).
    let (status, view) = s
        .api(&token, "GET", "/console/api/b/biz_escape_tlv", None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(view["can_configure"], false);
    let (status, _) = s
        .api(
            &token,
            "POST",
            "/console/api/b/biz_escape_tlv/policy",
            Some(policy_body(0, 30, week("09:00", "17:00"))),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The index lists only their business.
    let (_, index) = s.api(&token, "GET", "/console/api", None).await;
    let ids: Vec<&str> = index["businesses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [A]);

    // An appointment of B addressed through A's URL is not found, and stays booked.
    let (status, created) = s
        .api(ADMIN_TOKEN, "POST", "/console/api/b/biz_other/bookings", Some(json!({
            "start_iso": "2026-11-24T18:00", "customer_name": "Dana", "customer_phone": "+972501234567"
        })))
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let other_id = created["appointment_id"].as_str().unwrap().to_string();
    let (status, _) = s
        .api(
            &token,
            "POST",
            &format!("/console/api/b/biz_escape_tlv/bookings/{other_id}/cancel"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        s.store
            .appointment(&other_id)
            .await
            .unwrap()
            .unwrap()
            .status,
        kav::store::booking::AppointmentStatus::Booked
    );

    // The turn API: all calls are the platform admin's; one call is its business's.
    let (status, _) = s.api(&token, "GET", "/api/turns", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s.api(ADMIN_TOKEN, "GET", "/api/turns", None).await;
    assert_eq!(status, StatusCode::OK);
    let (recorder, _writer) = s.store.recorder(8);
    for (sid, to) in [("CA_a", "+97235550100"), ("CA_b", "+15550000001")] {
        recorder.record(kav::store::Record::CallStarted {
            call_id: format!("id_{sid}"),
            call_sid: sid.into(),
            stream_sid: "MZ".into(),
            account_sid: "AC".into(),
            at_ms: 1,
            parameters_json: json!({"To": to}).to_string(),
        });
    }
    recorder.flush().await;
    let (status, _) = s.api(&token, "GET", "/api/calls/CA_a/turns", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.api(&token, "GET", "/api/calls/CA_b/turns", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s.api(&token, "GET", "/api/calls/CA_b/tools", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .api(ADMIN_TOKEN, "GET", "/api/calls/CA_b/tools", None)
        .await;
    assert_eq!(status, StatusCode::OK);

    // Revoked tokens stop working; bearer calls need no CSRF while valid.
    let tokens = s
        .store
        .api_tokens(
            &s.store
                .account_by_email("staff@a.example")
                .await
                .unwrap()
                .unwrap()
                .id,
        )
        .await
        .unwrap();
    assert!(
        s.store
            .revoke_api_token(&tokens[0].id, None, 1)
            .await
            .unwrap()
    );
    let (status, _) = s
        .api(&token, "GET", "/console/api/b/biz_escape_tlv", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn policy_edits_are_validated_versioned_and_previewed() {
    let s = start().await;
    s.user("owner@a.example", "owner", Some(A)).await;
    let (_, token) = kav::console::admin::create_token(&s.store, "owner@a.example", "", 0)
        .await
        .unwrap();
    let path = "/console/api/b/biz_escape_tlv";
    let (_, view) = s.api(&token, "GET", path, None).await;
    let version = view["version"].as_i64().unwrap();
    let before: Vec<String> = view["slots"]["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["start_iso"].as_str().unwrap().to_string())
        .collect();
    assert!(!before.is_empty(), "{view}");

    // Closing before opening, slot size 0, overlapping hours: specific errors, nothing stored.
    let mut closes_early = week("09:00", "17:00");
    closes_early["tue"] = json!([["17:00", "09:00"]]);
    let (status, e) = s
        .api(
            &token,
            "POST",
            &format!("{path}/policy"),
            Some(policy_body(version, 60, closes_early)),
        )
        .await;
    assert_eq!(
        (status, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("close_tue")),
        "{e}"
    );
    assert!(
        e["reason"].as_str().unwrap().contains("closes at 09:00"),
        "{e}"
    );
    let (status, e) = s
        .api(
            &token,
            "POST",
            &format!("{path}/policy"),
            Some(policy_body(version, 0, week("09:00", "17:00"))),
        )
        .await;
    assert_eq!(
        (status, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("slot_size_min")),
        "{e}"
    );
    let mut overlapping = week("09:00", "17:00");
    overlapping["wed"] = json!([["09:00", "13:00"], ["12:00", "18:00"]]);
    let (status, e) = s
        .api(
            &token,
            "POST",
            &format!("{path}/policy"),
            Some(policy_body(version, 60, overlapping)),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(e["reason"].as_str().unwrap().contains("overlap"), "{e}");
    let mut bad_tz =
        json!({"version": version, "name": "X", "timezone": "Mars/Olympus", "language": "he"});
    let (status, e) = s
        .api(
            &token,
            "POST",
            &format!("{path}/basics"),
            Some(bad_tz.take()),
        )
        .await;
    assert_eq!(
        (status, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("timezone"))
    );
    assert_eq!(
        s.store.business(A).await.unwrap().unwrap().updated_at_ms,
        version
    );

    // A valid policy: half-hour slots from 09:00; the preview follows.
    let (status, saved) = s
        .api(
            &token,
            "POST",
            &format!("{path}/policy"),
            Some(policy_body(version, 30, week("09:00", "17:00"))),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let new_version = saved["version"].as_i64().unwrap();
    assert!(new_version > version);
    let (_, slots) = s
        .api(
            &token,
            "GET",
            &format!("{path}/slots?date=2026-11-24"),
            None,
        )
        .await;
    let after: Vec<&str> = slots["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["start_iso"].as_str().unwrap())
        .collect();
    assert_eq!(after[0], "2026-11-24T09:00:00+02:00", "{slots}");
    assert_eq!(after[1], "2026-11-24T09:30:00+02:00", "{slots}");
    assert_ne!(before.first().map(String::as_str), after.first().copied());

    // A stale version (someone else saved in between): 409, nothing overwritten.
    let (status, e) = s
        .api(
            &token,
            "POST",
            &format!("{path}/policy"),
            Some(policy_body(version, 45, week("10:00", "12:00"))),
        )
        .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::CONFLICT, Some("conflict"))
    );
    assert_eq!(
        s.store.business(A).await.unwrap().unwrap().slot_size_min,
        30
    );

    // HTML in a prompt is stored as typed, shown escaped, and reaches the agent's instructions.
    let evil = "Be kind. <script>alert('x')</script> <b>bold</b>";
    let (status, _) = s
        .api(
            &token,
            "POST",
            &format!("{path}/prompt"),
            Some(json!({"version": new_version, "channel": "phone", "prompt_phone": evil})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let b = s.login("owner@a.example").await;
    let html = s
        .get(&b, "/console/b/biz_escape_tlv")
        .await
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<script>alert"), "prompt must be escaped");
    assert!(
        html.contains("&lt;script&gt;alert("),
        "escaped prompt shown"
    );
    let (_, view) = s.api(&token, "GET", path, None).await;
    assert!(view["instructions_phone"].as_str().unwrap().contains(evil));
    assert!(
        view["instructions_phone"]
            .as_str()
            .unwrap()
            .contains("Rules you must always follow")
    );

    // A refused form keeps what was typed and says why (HTML).
    let (csrf, version) = s.form_tokens(&b, "/console/b/biz_escape_tlv").await;
    let r = s
        .post_form(
            &b,
            "/console/b/biz_escape_tlv/policy",
            &[
                ("csrf", &csrf),
                ("version", &version),
                ("open_mon", "18:00"),
                ("close_mon", "08:00"),
                ("slot_size_min", "25"),
                ("min_notice_min", "0"),
                ("booking_window_days", "30"),
                ("concurrency_scope", "resource"),
                ("concurrency_limit", "1"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"error-close_mon\""), "{html}");
    assert!(html.contains("name=\"open_mon\" id=\"open_mon\" value=\"18:00\""));
    assert!(html.contains("value=\"25\""), "typed slot size kept");
    // The same form with a stale version: a visible conflict message.
    let r = s
        .post_form(
            &b,
            "/console/b/biz_escape_tlv/policy",
            &[
                ("csrf", &csrf),
                ("version", "1"),
                ("open_mon", "08:00"),
                ("close_mon", "18:00"),
                ("slot_size_min", "25"),
                ("min_notice_min", "0"),
                ("booking_window_days", "30"),
                ("concurrency_scope", "resource"),
                ("concurrency_limit", "1"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert!(r.text().await.unwrap().contains("changed by someone else"));
}

#[tokio::test]
async fn staff_book_move_and_cancel_through_the_agent_tools() {
    let s = start().await;
    s.user("staff@a.example", "staff", Some(A)).await;
    let (_, token) = kav::console::admin::create_token(&s.store, "staff@a.example", "", 0)
        .await
        .unwrap();
    let bookings = "/console/api/b/biz_escape_tlv/bookings";
    // The policy's refusals come back as the tool's {ok:false, error, reason}.
    let (status, e) = s
        .api(&token, "POST", bookings, Some(json!({"start_iso": "2026-11-24T03:00", "resource": "Dubai", "customer_name": "Noa", "customer_phone": "0501234567"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["ok"], false);
    assert_eq!(e["error"], "outside_hours", "{e}");
    // Phone required by the business's policy.
    let (status, e) = s
        .api(&token, "POST", bookings, Some(json!({"start_iso": "2026-11-24T18:00", "resource": "Dubai", "customer_name": "Noa"})))
        .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("need_phone")),
        "{e}"
    );
    let (status, ok) = s
        .api(&token, "POST", bookings, Some(json!({"start_iso": "2026-11-24T18:00", "resource": "Dubai", "customer_name": "נועה", "customer_phone": "0501234567"})))
        .await;
    assert_eq!(status, StatusCode::OK, "{ok}");
    let id = ok["appointment_id"].as_str().unwrap().to_string();
    // The same room and time again: full.
    let (status, e) = s
        .api(&token, "POST", bookings, Some(json!({"start_iso": "2026-11-24T18:00", "resource": "Dubai", "customer_name": "Other", "customer_phone": "0507654321"})))
        .await;
    assert_eq!(
        (status, e["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("full")),
        "{e}"
    );
    // Move, then cancel.
    let (status, moved) = s
        .api(
            &token,
            "POST",
            &format!("{bookings}/{id}/move"),
            Some(json!({"start_iso": "2026-11-24T19:00"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{moved}");
    let a = s.store.appointment(&id).await.unwrap().unwrap();
    assert_eq!(
        a.start_ms - kav::testing::clock::monday_noon_ms(),
        (24 + 7) * 3_600_000
    );
    let (status, _) = s
        .api(
            &token,
            "POST",
            &format!("{bookings}/{id}/cancel"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        s.store.appointment(&id).await.unwrap().unwrap().status,
        kav::store::booking::AppointmentStatus::Cancelled
    );
    // The day view lists it, cancelled, with the Hebrew name as typed.
    let (_, day) = s
        .api(&token, "GET", &format!("{bookings}?date=2026-11-24"), None)
        .await;
    let rows = day["appointments"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{day}");
    assert_eq!(
        (
            rows[0]["status"].as_str(),
            rows[0]["customer_name"].as_str(),
            rows[0]["time"].as_str()
        ),
        (Some("cancelled"), Some("נועה"), Some("19:00"))
    );
    let (_, other_day) = s
        .api(&token, "GET", &format!("{bookings}?date=2026-11-25"), None)
        .await;
    assert_eq!(other_day["appointments"].as_array().unwrap().len(), 0);
    // The agent's traces record the staff actions like any tool call.
    let traces = s.store.tool_traces(&a.conversation_id).await.unwrap();
    assert!(!traces.is_empty());
}

#[tokio::test]
async fn metrics_can_move_to_their_own_listener() {
    let s = start_with(|c| c.server.metrics_listen = "127.0.0.1:0".into()).await;
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let s = start().await;
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let _ = &s.db_url;
}

#[tokio::test]
async fn accounts_are_checked_when_created() {
    let s = start().await;
    let make =
        |email: &'static str, role: &'static str, biz: Option<&'static str>, pw: &'static str| {
            let store = s.store.clone();
            async move { kav::console::admin::create_user(&store, email, role, biz, pw, 0).await }
        };
    let field = |r: Result<_, kav::console::ConsoleError>| match r {
        Err(kav::console::ConsoleError::Invalid { field, .. }) => field,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        field(make("x@y", "owner", None, PASSWORD).await),
        "business"
    );
    assert_eq!(
        field(make("x@y", "platform_admin", Some(A), PASSWORD).await),
        "business"
    );
    assert_eq!(
        field(make("x@y", "owner", Some("biz_nope"), PASSWORD).await),
        "business"
    );
    assert_eq!(field(make("x@y", "king", Some(A), PASSWORD).await), "role");
    assert_eq!(
        field(make("no-at-sign", "owner", Some(A), PASSWORD).await),
        "email"
    );
    assert_eq!(
        field(make("x@y", "owner", Some(A), "short").await),
        "password"
    );
    let a = make("x@y", "owner", Some(A), PASSWORD).await.unwrap();
    assert!(a.password_hash.starts_with("$argon2id$"));
    assert_eq!(
        field(make("X@Y", "staff", Some(A), PASSWORD).await),
        "email"
    );
}

/// The console tables on every backend (SQLite, and PostgreSQL when configured).
#[tokio::test]
async fn console_tables_on_every_backend() {
    for backend in backends::backends().await {
        let store = Store::connect(&backend.url).await.unwrap();
        let name = backend.name;
        let account =
            kav::console::admin::create_user(&store, "o@b.example", "owner", Some(A), PASSWORD, 10)
                .await
                .unwrap();
        assert_eq!(
            store
                .account_by_email("o@b.example")
                .await
                .unwrap()
                .unwrap()
                .id,
            account.id,
            "{name}"
        );
        store
            .insert_session("h1", &account.id, "csrf", 10, 100)
            .await
            .unwrap();
        assert!(
            store.live_session("h1", 99).await.unwrap().is_some(),
            "{name}"
        );
        assert!(
            store.live_session("h1", 100).await.unwrap().is_none(),
            "{name}: expired"
        );
        assert_eq!(
            store.delete_expired_sessions(100).await.unwrap(),
            1,
            "{name}"
        );
        let (row, token) = kav::console::admin::create_token(&store, "o@b.example", "t", 10)
            .await
            .unwrap();
        let hash = kav::console::auth::sha256_hex(&token);
        assert!(
            store.account_by_token(&hash).await.unwrap().is_some(),
            "{name}"
        );
        assert!(
            !store
                .revoke_api_token(&row.id, Some("someone else"), 11)
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            store
                .revoke_api_token(&row.id, Some(&account.id), 11)
                .await
                .unwrap(),
            "{name}"
        );
        assert!(
            store.account_by_token(&hash).await.unwrap().is_none(),
            "{name}"
        );
        let b = store.business(A).await.unwrap().unwrap();
        let cols = kav::store::console::PolicyColumns::of(&b);
        use kav::store::console::EditOutcome;
        let saved = store
            .edit_business_policy(A, b.updated_at_ms, &cols, 5)
            .await
            .unwrap();
        assert_eq!(
            saved,
            EditOutcome::Saved(b.updated_at_ms.max(5).max(b.updated_at_ms + 1)),
            "{name}"
        );
        assert_eq!(
            store
                .edit_business_policy(A, b.updated_at_ms, &cols, 6)
                .await
                .unwrap(),
            EditOutcome::Conflict,
            "{name}"
        );
        assert_eq!(
            store
                .edit_business_prompt("biz_nope", 0, None, "x", 6)
                .await
                .unwrap(),
            EditOutcome::NotFound,
            "{name}"
        );
        assert_eq!(store.businesses().await.unwrap().len(), 1, "{name}");
        console_data_on(&store, name).await;
        backend.cleanup().await;
    }
}

/// How many times `needle` occurs in `html`.
fn count(html: &str, needle: &str) -> usize {
    html.matches(needle).count()
}

#[tokio::test]
async fn calendar_shows_the_week_and_books_moves_and_cancels_from_its_slots() {
    let s = start().await;
    s.user("staff@a.example", "staff", Some(A)).await;
    let b = s.login("staff@a.example").await;
    let cal = "/console/b/biz_escape_tlv/calendar";
    // The clock is Monday 2026-11-23 12:00 in Jerusalem; a Wednesday asks for its Sunday week.
    let r = s.get(&b, &format!("{cal}?week=2026-11-25")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"calendar\""));
    assert_eq!(count(&html, "<th data-date="), 7, "seven days");
    assert!(html.contains("data-date=\"2026-11-22\"") && html.contains("data-date=\"2026-11-28\""));
    // Free slots follow the policy: Tuesday 10:00–22:00; Monday not before 13:00 (an hour's
    // notice after noon); Saturday 19:00–23:00 only.
    for free in [
        "2026-11-24T10:00",
        "2026-11-24T21:00",
        "2026-11-23T13:00",
        "2026-11-28T19:00",
    ] {
        assert!(
            html.contains(&format!("data-slot=\"{free}\"")),
            "{free} free"
        );
    }
    for not_free in [
        "2026-11-24T22:00",
        "2026-11-23T12:00",
        "2026-11-22T15:00",
        "2026-11-28T10:00",
    ] {
        assert!(
            !html.contains(&format!("data-slot=\"{not_free}\"")),
            "{not_free}"
        );
    }
    // A slot's link fills the new-booking form.
    let html = s
        .get(&b, &format!("{cal}?week=2026-11-22&start=2026-11-24T18:00"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains(
            "id=\"start_iso\" placeholder=\"2026-12-24T10:00\" value=\"2026-11-24T18:00\""
        )
    );
    let csrf = form_value(&html, "csrf").unwrap().to_string();
    // Book all three rooms at Tuesday 18:00 from the calendar: the slot is then full.
    let mut ids = Vec::new();
    for (room, name) in [
        ("Dubai", "נועה"),
        ("New York", "Dan"),
        ("Barcelona", "<b>Eve</b>"),
    ] {
        let r = s
            .post_form(
                &b,
                "/console/b/biz_escape_tlv/bookings",
                &[
                    ("csrf", &csrf),
                    ("calendar_week", "2026-11-22"),
                    ("start_iso", "2026-11-24T18:00"),
                    ("resource", room),
                    ("customer_name", name),
                    ("customer_phone", "0501234567"),
                ],
            )
            .await;
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{room}");
        let to = r.headers()["location"].to_str().unwrap().to_string();
        assert!(
            to.starts_with(&format!("{cal}?week=2026-11-22&msg=")),
            "{to}"
        );
    }
    let html = s
        .get(&b, &format!("{cal}?week=2026-11-22"))
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(count(&html, "class=\"booking\" data-id="), 3);
    assert!(!html.contains("data-slot=\"2026-11-24T18:00\""), "full");
    assert!(html.contains("data-slot=\"2026-11-24T19:00\""));
    assert!(html.contains("&lt;b&gt;Eve") && !html.contains("<b>Eve"));
    for a in s.store.appointments_for_business(A).await.unwrap() {
        ids.push(a.id);
    }
    assert_eq!(ids.len(), 3);
    // A move to a closed hour is refused with the policy's reason, on the calendar itself.
    let r = s
        .post_form(
            &b,
            &format!("/console/b/biz_escape_tlv/bookings/{}/move", ids[0]),
            &[
                ("csrf", &csrf),
                ("calendar_week", "2026-11-22"),
                ("start_iso", "2026-11-24T03:00"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("id=\"calendar\""));
    assert!(
        html.contains("id=\"error\"") && html.contains("outside_hours"),
        "{html}"
    );
    // A move to a free hour, then a cancel: the slot frees up again.
    let r = s
        .post_form(
            &b,
            &format!("/console/b/biz_escape_tlv/bookings/{}/move", ids[0]),
            &[
                ("csrf", &csrf),
                ("calendar_week", "2026-11-22"),
                ("start_iso", "2026-11-25T11:00"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    let r = s
        .post_form(
            &b,
            &format!("/console/b/biz_escape_tlv/bookings/{}/cancel", ids[1]),
            &[("csrf", &csrf), ("calendar_week", "2026-11-22")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    // The day view: one column, the moved booking at 11:00 with the customer's Hebrew name.
    let (_, token) = kav::console::admin::create_token(&s.store, "staff@a.example", "", 0)
        .await
        .unwrap();
    let (status, day) = s
        .api(
            &token,
            "GET",
            "/console/api/b/biz_escape_tlv/calendar?day=2026-11-25",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{day}");
    assert_eq!(day["mode"], "day");
    assert_eq!(day["days"].as_array().unwrap().len(), 1);
    let eleven = day["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["time"] == "11:00")
        .unwrap();
    assert_eq!(eleven["cells"][0]["bookings"][0]["customer_name"], "נועה");
    let html = s
        .get(&b, &format!("{cal}?week=2026-11-22"))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("data-slot=\"2026-11-24T18:00\""),
        "a room freed"
    );
    assert_eq!(count(&html, "class=\"booking\" data-id="), 2);
    // Hebrew UI: right-to-left, Hebrew labels; business content keeps dir=auto.
    let html = s
        .get(&b, &format!("{cal}?week=2026-11-22&lang=he"))
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("dir=\"rtl\"") && html.contains("יומן"));
    assert!(html.contains("<span dir=\"auto\" class=\"who\">נועה</span>"));
    // The platform admin sees the booking, its phone masked; the business's staff in full.
    assert_eq!(
        eleven["cells"][0]["bookings"][0]["customer_phone"],
        "+972501234567"
    );
    let (status, day) = s
        .api(
            ADMIN_TOKEN,
            "GET",
            "/console/api/b/biz_escape_tlv/calendar?day=2026-11-25",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let booking = day["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["time"] == "11:00")
        .unwrap()["cells"][0]["bookings"][0]
        .clone();
    assert_eq!(booking["customer_phone"], "+9725•••4567", "{booking}");
    assert_eq!(booking["customer_name"], "נועה");
    // Bad dates and other tenants.
    let r = s.get(&b, &format!("{cal}?week=2026-13-01")).await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let r = s.get(&b, "/console/b/biz_other/calendar").await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
}

/// The agent's own `business_info` tool for business A, as a turn starting now would build it.
async fn agent_documents(s: &Server) -> Value {
    let rt = BookingRuntime::new(
        s.store.clone(),
        Arc::new(SwitchableSender::new()),
        s.clock.clock(),
        BookingConfig::default(),
    );
    let settings = rt
        .settings(A, kav::providers::Channel::Whatsapp)
        .await
        .unwrap();
    let tools = kav::agent::tools::ToolContext {
        rt,
        settings,
        channel: kav::providers::Channel::Whatsapp,
        conversation_id: "docs-check".into(),
        turn: 1,
        caller_phone: None,
        this_turn: Default::default(),
    };
    let out = tools
        .call(kav::agent::tools::BUSINESS_INFO, r#"{"topic": "all"}"#)
        .await;
    assert!(out.ok, "{:?}", out.value);
    out.value["documents"].clone()
}

#[tokio::test]
async fn numbers_rooms_and_documents_are_edited_validated_and_reach_the_agent() {
    let s = start().await;
    s.user("owner@a.example", "owner", Some(A)).await;
    s.user("staff@a.example", "staff", Some(A)).await;
    let (_, owner) = kav::console::admin::create_token(&s.store, "owner@a.example", "", 0)
        .await
        .unwrap();
    let (_, staff) = kav::console::admin::create_token(&s.store, "staff@a.example", "", 0)
        .await
        .unwrap();
    let api = "/console/api/b/biz_escape_tlv";

    // Numbers: normalised, E.164 checked, another business's number refused, routed at once.
    let e = s
        .post_refused(
            &owner,
            &format!("{api}/numbers"),
            json!({"channel": "phone", "address": "050-1234567"}),
            "address",
        )
        .await;
    assert!(e["reason"].as_str().unwrap().contains("E.164"), "{e}");
    s.post_refused(
        &owner,
        &format!("{api}/numbers"),
        json!({"channel": "whatsapp", "address": "+1 555"}),
        "address",
    )
    .await;
    s.post_refused(
        &owner,
        &format!("{api}/numbers"),
        json!({"channel": "fax", "address": "+97235550199"}),
        "channel",
    )
    .await;
    let e = s
        .post_refused(
            &owner,
            &format!("{api}/numbers"),
            json!({"channel": "phone", "address": "+1 555 000 0001"}),
            "refused",
        )
        .await;
    assert!(
        e["reason"].as_str().unwrap().contains("another business"),
        "{e}"
    );
    assert_eq!(
        s.store
            .business_id_by_number("phone", "+15550000001")
            .await
            .unwrap()
            .as_deref(),
        Some("biz_other"),
        "the other business keeps its number"
    );
    let ok = s
        .post_ok(
            &owner,
            &format!("{api}/numbers"),
            json!({"channel": "phone", "address": "+972 3-555-0199"}),
        )
        .await;
    assert_eq!(ok["address"], "+97235550199");
    assert_eq!(
        s.store
            .business_id_by_number("phone", "+97235550199")
            .await
            .unwrap()
            .as_deref(),
        Some(A)
    );
    let (status, _) = s
        .api(
            &staff,
            "POST",
            &format!("{api}/numbers"),
            Some(json!({"channel": "whatsapp", "address": "123456789"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "staff do not configure");
    let _ = s
        .post_ok(
            &owner,
            &format!("{api}/numbers/remove"),
            json!({"channel": "phone", "address": "+97235550199"}),
        )
        .await;
    assert_eq!(
        s.store
            .business_id_by_number("phone", "+97235550199")
            .await
            .unwrap(),
        None
    );
    let (status, _) = s
        .api(
            &owner,
            "POST",
            "/console/api/b/biz_other/numbers/remove",
            Some(json!({"channel": "phone", "address": "+15550000001"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Rooms: a new room is bookable on the next tool call (the settings cache rebuilds).
    let e = s
        .post_refused(
            &owner,
            &format!("{api}/rooms"),
            json!({"room_name": "Tokyo", "room_aliases": "טוקיו, dubai"}),
            "room_name",
        )
        .await;
    assert!(e["reason"].as_str().unwrap().contains("Dubai"), "{e}");
    let ok = s
        .post_ok(
            &owner,
            &format!("{api}/rooms"),
            json!({"room_name": "Tokyo", "room_aliases": "טוקיו"}),
        )
        .await;
    let room = ok["id"].as_str().unwrap().to_string();
    let booked = s.post_ok(&staff, &format!("{api}/bookings"), json!({"start_iso": "2026-11-24T18:00", "resource": "טוקיו", "customer_name": "Noa", "customer_phone": "0501234567"})).await;
    let appointment = booked["appointment_id"].as_str().unwrap().to_string();
    assert_eq!(
        s.store
            .appointment(&appointment)
            .await
            .unwrap()
            .unwrap()
            .resource_id
            .as_deref(),
        Some(room.as_str())
    );
    // Not removed while it has an upcoming booking: the refusal counts them.
    let e = s
        .post_refused(
            &owner,
            &format!("{api}/rooms/{room}/remove"),
            json!({}),
            "refused",
        )
        .await;
    assert!(
        e["reason"].as_str().unwrap().contains("1 upcoming booking"),
        "{e}"
    );
    let _ = s
        .post_ok(
            &owner,
            &format!("{api}/rooms/{room}"),
            json!({"room_name": "Kyoto", "room_aliases": "קיוטו", "room_limit": 2}),
        )
        .await;
    s.post_refused(
        &owner,
        &format!("{api}/rooms/{room}"),
        json!({"room_name": "Kyoto", "room_limit": 0}),
        "room_limit",
    )
    .await;
    let _ = s
        .post_ok(
            &staff,
            &format!("{api}/bookings/{appointment}/cancel"),
            json!({}),
        )
        .await;
    let _ = s
        .post_ok(&owner, &format!("{api}/rooms/{room}/remove"), json!({}))
        .await;
    assert!(
        s.store
            .resources(A)
            .await
            .unwrap()
            .iter()
            .all(|r| r.id != room)
    );
    let (status, e) = s
        .api(&staff, "POST", &format!("{api}/bookings"), Some(json!({"start_iso": "2026-11-24T19:00", "resource": "Kyoto", "customer_name": "Noa", "customer_phone": "0501234567"})))
        .await;
    assert_ne!(
        status,
        StatusCode::OK,
        "a removed room is not bookable: {e}"
    );
    let (status, _) = s
        .api(
            &owner,
            "POST",
            "/console/api/b/biz_other/rooms/room_main/remove",
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = s
        .api(
            &owner,
            "POST",
            &format!("{api}/rooms/room_main/remove"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another business's room id");

    // Documents: the agent's tool answers from the edit at once; HTML is escaped; Hebrew RTL.
    s.post_refused(
        &owner,
        &format!("{api}/documents"),
        json!({"kind": "menu", "title": "x", "body": "y"}),
        "kind",
    )
    .await;
    s.post_refused(
        &owner,
        &format!("{api}/documents"),
        json!({"kind": "faq", "title": "big", "body": "א".repeat(20_001)}),
        "body",
    )
    .await;
    let ok = s.post_ok(&owner, &format!("{api}/documents"), json!({"kind": "faq", "title": "Pets <script>alert(1)</script>", "body": "כלבים מותרים בלובי בלבד."})).await;
    let doc = ok["id"].as_str().unwrap().to_string();
    let docs = agent_documents(&s).await;
    assert!(
        docs.to_string().contains("כלבים מותרים בלובי בלבד."),
        "{docs}"
    );
    let _ = s
        .post_ok(
            &owner,
            &format!("{api}/documents/{doc}"),
            json!({"kind": "faq", "title": "Pets", "body": "כלבים מותרים בכל המתחם."}),
        )
        .await;
    let docs = agent_documents(&s).await.to_string();
    assert!(
        docs.contains("בכל המתחם") && !docs.contains("בלובי"),
        "{docs}"
    );
    let b = s.login("owner@a.example").await;
    let _ = s.post_ok(&owner, &format!("{api}/documents/{doc}"), json!({"kind": "faq", "title": "<img src=x onerror=alert(1)>", "body": "שלום <b>עולם</b>"})).await;
    let html = s
        .get(&b, "/console/b/biz_escape_tlv")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !html.contains("<img src=x") && !html.contains("<b>עולם"),
        "escaped"
    );
    assert!(
        html.contains("&lt;img src=x") && html.contains("&lt;b&gt;עולם"),
        "{html}"
    );
    assert!(
        html.contains("<textarea name=\"body\" dir=\"rtl\">שלום"),
        "Hebrew RTL"
    );
    // Forms: a refused number keeps what was typed and says why, by the section.
    let csrf = form_value(&html, "csrf").unwrap().to_string();
    let r = s
        .post_form(
            &b,
            "/console/b/biz_escape_tlv/numbers",
            &[
                ("csrf", &csrf),
                ("channel", "phone"),
                ("address", "+15550000001"),
            ],
        )
        .await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("id=\"error-numbers\"") && html.contains("another business"),
        "{html}"
    );
    assert!(html.contains("value=\"+15550000001\""));
    let r = s
        .post_form(
            &b,
            &format!("/console/b/biz_escape_tlv/documents/{doc}/delete"),
            &[("csrf", &csrf)],
        )
        .await;
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(!agent_documents(&s).await.to_string().contains("עולם"));
    // Without the CSRF token nothing changes.
    let r = s
        .post_form(
            &b,
            "/console/b/biz_escape_tlv/rooms",
            &[("room_name", "Oslo")],
        )
        .await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(
        s.store
            .resources(A)
            .await
            .unwrap()
            .iter()
            .all(|r| r.name != "Oslo")
    );
}

#[tokio::test]
async fn outbox_lists_failures_and_a_retry_requeues_exactly_once() {
    let s = start().await;
    s.user("owner@a.example", "owner", Some(A)).await;
    s.user("staff@a.example", "staff", Some(A)).await;
    let (_, owner) = kav::console::admin::create_token(&s.store, "owner@a.example", "", 0)
        .await
        .unwrap();
    let (_, staff) = kav::console::admin::create_token(&s.store, "staff@a.example", "", 0)
        .await
        .unwrap();
    let api = "/console/api/b/biz_escape_tlv";
    let book = |at: &'static str| json!({"start_iso": at, "resource": "Dubai", "customer_name": "Noa", "customer_phone": "0501234567"});
    // One confirmation goes out; with WhatsApp down the next one fails, then dies.
    let (status, _) = s
        .api(
            &staff,
            "POST",
            &format!("{api}/bookings"),
            Some(book("2026-11-24T18:00")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    s.sender.set_down(true);
    let (status, _) = s
        .api(
            &staff,
            "POST",
            &format!("{api}/bookings"),
            Some(book("2026-11-25T18:00")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, view) = s.api(&staff, "GET", &format!("{api}/outbox"), None).await;
    let states: Vec<&str> = view["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["failed", "sent"], "{view}");
    assert!(
        view["events"][0]["last_error"]
            .as_str()
            .is_some_and(|e| !e.is_empty()),
        "{view}"
    );
    let failed = view["events"][0]["id"].as_str().unwrap().to_string();
    // A failed event waiting out its backoff can be pulled forward once.
    let _ = s
        .post_ok(&owner, &format!("{api}/outbox/{failed}/retry"), json!({}))
        .await;
    let e = s
        .post_refused(
            &owner,
            &format!("{api}/outbox/{failed}/retry"),
            json!({}),
            "refused",
        )
        .await;
    assert!(
        e["reason"].as_str().unwrap().contains("already queued"),
        "{e}"
    );
    // Attempts until the worker gives up.
    for _ in 0..30 {
        kav::booking::outbox::run_once(&s.rt).await.unwrap();
        s.clock.advance(3_600_000);
    }
    let (_, view) = s
        .api(&staff, "GET", &format!("{api}/outbox?state=dead"), None)
        .await;
    let dead = view["events"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{view}");
    assert_eq!(dead[0]["id"], failed.as_str());
    let attempts = dead[0]["attempts"].as_i64().unwrap();
    assert!(attempts >= 2, "{view}");
    // Staff see it but do not retry; the owner does, once.
    let (status, _) = s
        .api(
            &staff,
            "POST",
            &format!("{api}/outbox/{failed}/retry"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    s.sender.set_down(false);
    let sent_before = s.sender.delivered().len();
    s.post_ok(&owner, &format!("{api}/outbox/{failed}/retry"), json!({}))
        .await;
    let (status, _) = s
        .api(
            &owner,
            "POST",
            &format!("{api}/outbox/{failed}/retry"),
            Some(json!({})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a second retry does nothing"
    );
    for _ in 0..3 {
        kav::booking::outbox::run_once(&s.rt).await.unwrap();
        s.clock.advance(60_000);
    }
    assert_eq!(
        s.sender.delivered().len(),
        sent_before + 1,
        "delivered exactly once"
    );
    let (_, view) = s.api(&staff, "GET", &format!("{api}/outbox"), None).await;
    assert_eq!(view["events"][0]["state"], "sent", "{view}");
    assert_eq!(view["events"][0]["attempts"].as_i64(), Some(attempts + 1));
    let (status, e) = s
        .api(
            &owner,
            "POST",
            &format!("{api}/outbox/{failed}/retry"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    // Ids and filters of the wrong kind.
    let (status, _) = s
        .api(
            &owner,
            "POST",
            &format!("{api}/outbox/evt_nope/retry"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .api(&owner, "GET", "/console/api/b/biz_other/outbox", None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, e) = s
        .api(&owner, "GET", &format!("{api}/outbox?state=lost"), None)
        .await;
    assert_eq!(
        (status, e["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("state"))
    );
    // The page: the owner gets retry buttons for failures only, in Hebrew too.
    s.sender.set_down(true);
    let (status, _) = s
        .api(
            &staff,
            "POST",
            &format!("{api}/bookings"),
            Some(book("2026-11-26T18:00")),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let b = s.login("owner@a.example").await;
    let html = s
        .get(&b, "/console/b/biz_escape_tlv/outbox?lang=he")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(count(&html, "button class=\"retry\""), 1, "{html}");
    assert!(html.contains("dir=\"rtl\"") && html.contains("נכשל"));
    let b = s.login("staff@a.example").await;
    let html = s
        .get(&b, "/console/b/biz_escape_tlv/outbox")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(count(&html, "button class=\"retry\""), 0);
    assert_eq!(count(&html, "class=\"event "), 3);
}

/// A phone call of customer `phone` to business A as the call driver and the agent record it:
/// the call and its turns through the store's recorder, the agent's messages and a tool trace.
async fn record_call(s: &Server, sid: &str, phone: &str) {
    use kav::store::Record;
    use kav::voice::events::{CallEvent, InputKind, LatencyMarks, TurnRecord};
    let (recorder, task) = s.store.recorder(16);
    let at = s.clock.now_ms();
    recorder.record(Record::CallStarted {
        call_id: format!("{sid}-stream"),
        call_sid: sid.into(),
        stream_sid: "MZ1".into(),
        account_sid: "AC1".into(),
        at_ms: at,
        parameters_json: json!({"From": phone, "To": "+97235550100"}).to_string(),
    });
    for (turn, user, bot) in [
        (1, "", "שלום, הגעתם לאסקייפ"),
        (2, "אני רוצה את דובאי מחר <script>", "בשמחה, על איזה שם?"),
    ] {
        recorder.record(Record::Event {
            call_id: format!("{sid}-stream"),
            at_ms: at + turn as i64 * 1000,
            event: CallEvent::Turn(TurnRecord {
                turn,
                input: if turn == 1 {
                    InputKind::Greeting
                } else {
                    InputKind::Speech
                },
                user_text: user.into(),
                bot_text: bot.into(),
                interrupted: false,
                marks: LatencyMarks {
                    stt_final_ms: Some(310),
                    total_ms: Some(742),
                    ..Default::default()
                },
                rtt_ms: None,
            }),
        });
    }
    recorder.flush().await;
    drop(recorder);
    task.await.unwrap();
    s.store
        .insert_message(&kav::store::booking::ConversationMessage {
            business_id: A.into(),
            customer_id: None,
            customer_phone: Some(phone.into()),
            channel: "phone".into(),
            conversation_id: sid.into(),
            role: "user".into(),
            text: "אני רוצה את דובאי מחר".into(),
            at_ms: at + 2000,
        })
        .await
        .unwrap();
    s.store
        .insert_tool_trace(&kav::store::booking::ToolTraceRow {
            business_id: A.into(),
            conversation_id: sid.into(),
            channel: "phone".into(),
            turn: 2,
            tool: "calendar_find_slots".into(),
            args_json: r#"{"date":"2026-11-24"}"#.into(),
            ok: false,
            error: Some("closed_day".into()),
            reason: Some("closed that day".into()),
            latency_ms: 12,
            at_ms: at + 2000,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn customers_are_searched_and_show_calls_turns_tools_and_whatsapp_statuses() {
    let s = start().await;
    s.user("staff@a.example", "staff", Some(A)).await;
    s.user("staff@b.example", "staff", Some("biz_other")).await;
    s.user("root@kav.example", "platform_admin", None).await;
    let (_, staff) = kav::console::admin::create_token(&s.store, "staff@a.example", "", 0)
        .await
        .unwrap();
    let (_, root) = kav::console::admin::create_token(&s.store, "root@kav.example", "", 0)
        .await
        .unwrap();
    let api = "/console/api/b/biz_escape_tlv";
    let phone = "+972501234567";
    // A booking by staff makes the customer (the tools upsert the lead).
    s.post_ok(&staff, &format!("{api}/bookings"), json!({"start_iso": "2026-11-24T18:00", "resource": "Dubai", "customer_name": "נועה לוי", "customer_phone": "050-123-4567"})).await;
    s.store
        .upsert_customer(A, "+972509999999", Some("Dan"), "whatsapp", "lead", 1)
        .await
        .unwrap();
    record_call(&s, "CA100", phone).await;
    // Their WhatsApp thread: a question, our reply (two parts: delivered and failed).
    let key = kav::store::whatsapp::ConversationKey {
        business_id: A,
        customer_key: "972501234567",
        customer_phone: Some("972501234567"),
        customer_user_id: None,
        profile_name: Some("Noa"),
        channel: "whatsapp",
    };
    let conv = s.store.whatsapp_touch_conversation(&key, 10).await.unwrap();
    s.store
        .whatsapp_append_message(
            "wamid.in1",
            &conv,
            A,
            "972501234567",
            "user",
            "יש חניה?",
            10,
            Some("wamid.in1"),
            None,
        )
        .await
        .unwrap();
    s.store
        .whatsapp_append_message(
            "reply-1",
            &conv,
            A,
            "972501234567",
            "assistant",
            "כן, חניה חינם מאחורי הבניין.",
            11,
            None,
            Some("wamid.in1"),
        )
        .await
        .unwrap();
    for (part, pid) in [("wamid.in1:0", "wamid.out0"), ("wamid.in1:1", "wamid.out1")] {
        s.store
            .whatsapp_outbound_begin(part, &conv, A, "972501234567", "{}", 11)
            .await
            .unwrap();
        s.store
            .whatsapp_outbound_result(part, "{}", Ok(pid), 12)
            .await
            .unwrap();
    }
    s.store
        .whatsapp_apply_status("wamid.out0", "delivered", None, None, 13)
        .await
        .unwrap();
    s.store
        .whatsapp_apply_status(
            "wamid.out1",
            "failed",
            Some(131026),
            Some("undeliverable"),
            13,
        )
        .await
        .unwrap();

    // The list, searched by name, by a local phone number and by part of it.
    let (_, all) = s
        .api(&staff, "GET", &format!("{api}/customers"), None)
        .await;
    assert_eq!(all["customers"].as_array().unwrap().len(), 2, "{all}");
    for (q, want) in [
        ("נועה", Some("נועה לוי")),
        ("0501234567", Some("נועה לוי")),
        ("9999", Some("Dan")),
        ("dan", Some("Dan")),
        ("nobody", None),
    ] {
        let (_, found) = s
            .api(
                &staff,
                "GET",
                &format!(
                    "{api}/customers?q={}",
                    form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
                ),
                None,
            )
            .await;
        let names: Vec<&str> = found["customers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, want.into_iter().collect::<Vec<_>>(), "{q}");
    }
    let (_, noa) = s
        .api(
            &staff,
            "GET",
            &format!("{api}/customers?q=0501234567"),
            None,
        )
        .await;
    let id = noa["customers"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(noa["customers"][0]["phone"], phone);

    // The customer page: appointment, the call with its turns and the tool call of turn 2,
    // the WhatsApp thread with each reply part's delivery status.
    let (status, page) = s
        .api(&staff, "GET", &format!("{api}/customers/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["appointments"].as_array().unwrap().len(), 1);
    assert_eq!(page["appointments"][0]["customer_phone"], phone);
    let call = &page["calls"][0];
    assert_eq!(call["call_sid"], "CA100");
    let turns = call["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2, "{call}");
    assert_eq!(turns[1]["total_ms"], 742);
    assert_eq!(turns[1]["tools"][0]["tool"], "calendar_find_slots");
    assert_eq!(turns[1]["tools"][0]["error"], "closed_day");
    assert!(turns[0]["tools"].as_array().unwrap().is_empty());
    let thread = &page["threads"][0];
    let reply = &thread["messages"][1];
    assert_eq!(reply["role"], "assistant");
    let statuses: Vec<&str> = reply["delivery"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["delivered", "failed"], "{thread}");
    assert!(
        reply["delivery"][1]["error"]
            .as_str()
            .unwrap()
            .contains("131026")
    );

    // The page: escaped, Hebrew right-to-left, tool trace by its turn.
    let b = s.login("staff@a.example").await;
    let html = s
        .get(
            &b,
            &format!("/console/b/biz_escape_tlv/customers/{id}?lang=he"),
        )
        .await
        .text()
        .await
        .unwrap();
    assert!(html.contains("dir=\"rtl\""));
    assert!(html.contains("&lt;script&gt;") && !html.contains("מחר <script>"));
    assert!(
        html.contains("<p dir=\"rtl\">כן, חניה חינם"),
        "Hebrew message RTL"
    );
    assert!(html.contains("data-tool=\"calendar_find_slots\""));
    assert!(html.contains("data-status=\"failed\""));
    assert!(html.contains(phone));

    // Phones: masked for the platform admin, another business's staff get 403, another
    // business's customer id is 404.
    let (status, page) = s
        .api(&root, "GET", &format!("{api}/customers/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["customer"]["phone"], "+9725•••4567");
    assert!(!page.to_string().contains(phone), "{page}");
    let other = s.login("staff@b.example").await;
    assert_eq!(
        s.get(&other, "/console/b/biz_escape_tlv/customers")
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.get(&other, &format!("/console/b/biz_escape_tlv/customers/{id}"))
            .await
            .status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        s.get(&other, &format!("/console/b/biz_other/customers/{id}"))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
}

/// The store side of numbers, rooms, documents, outbox retry and customers on one backend.
async fn console_data_on(store: &Store, name: &str) {
    use kav::store::console::{AddressOutcome, RoomRemoval};
    assert_eq!(
        store
            .add_business_address(A, "phone", "+15550000009")
            .await
            .unwrap(),
        AddressOutcome::Added,
        "{name}"
    );
    assert_eq!(
        store
            .add_business_address(A, "phone", "+15550000009")
            .await
            .unwrap(),
        AddressOutcome::AlreadyThis,
        "{name}"
    );
    assert_eq!(
        store
            .add_business_address("biz_x", "phone", "+15550000009")
            .await
            .unwrap(),
        AddressOutcome::OwnedByAnother,
        "{name}"
    );
    assert!(
        store
            .remove_business_address(A, "phone", "+15550000009")
            .await
            .unwrap(),
        "{name}"
    );
    let before = store.business_version(A).await.unwrap().unwrap();
    let room = store
        .add_room(A, "Tokyo", &["טוקיו".into()], 1, 1)
        .await
        .unwrap();
    assert!(
        store.business_version(A).await.unwrap().unwrap() > before,
        "{name}: version moves"
    );
    assert!(
        store.edit_room(A, &room, "Kyoto", &[], 2, 1).await.unwrap(),
        "{name}"
    );
    assert!(
        !store
            .edit_room("biz_x", &room, "Kyoto", &[], 2, 1)
            .await
            .unwrap(),
        "{name}"
    );
    let noon = kav::testing::clock::monday_noon_ms();
    let appt = kav::store::booking::Appointment {
        id: "appt_room_check".into(),
        business_id: A.into(),
        resource_id: Some(room.clone()),
        customer_id: None,
        customer_name: "Noa".into(),
        customer_phone: Some("+972501234567".into()),
        start_ms: noon + 3_600_000,
        end_ms: noon + 7_200_000,
        status: kav::store::booking::AppointmentStatus::Booked,
        channel: "phone".into(),
        conversation_id: "CA1".into(),
        request_key: "k".into(),
        created_at_ms: noon,
    };
    let created = store
        .create_appointment(
            appt,
            kav::store::booking::CapacityRule::Business { limit: 10 },
            vec![],
        )
        .await
        .unwrap();
    assert!(
        matches!(created, kav::store::booking::CreateOutcome::Created(_)),
        "{name}"
    );
    assert_eq!(
        store.remove_room(A, &room, noon).await.unwrap(),
        RoomRemoval::HasFutureBookings(1),
        "{name}"
    );
    assert_eq!(
        store.remove_room(A, &room, noon + 7_200_000).await.unwrap(),
        RoomRemoval::Removed,
        "{name}"
    );
    assert_eq!(
        store.remove_room(A, &room, noon).await.unwrap(),
        RoomRemoval::NotFound,
        "{name}"
    );
    let doc = store
        .put_document(A, None, "faq", "Pets", "כלבים")
        .await
        .unwrap()
        .unwrap();
    assert!(
        store
            .put_document(A, Some(&doc), "faq", "Pets", "dogs")
            .await
            .unwrap()
            .is_some(),
        "{name}"
    );
    assert!(
        store
            .put_document("biz_x", Some(&doc), "faq", "x", "x")
            .await
            .unwrap()
            .is_none(),
        "{name}"
    );
    assert!(
        store
            .documents(A)
            .await
            .unwrap()
            .iter()
            .any(|d| d.id == doc && d.body == "dogs"),
        "{name}"
    );
    assert!(store.delete_document(A, &doc).await.unwrap(), "{name}");
    // Outbox: a dead event is requeued once.
    let ev = kav::store::booking::NewOutboxEvent {
        business_id: A.into(),
        kind: "whatsapp.send".into(),
        payload_json: "{}".into(),
        idempotency_key: "retry-check".into(),
        not_before_ms: 0,
    };
    store.enqueue(&ev, 1).await.unwrap();
    let row = store.outbox_by_key("retry-check").await.unwrap().unwrap();
    assert!(
        !store.outbox_retry(A, &row.id, 2).await.unwrap(),
        "{name}: pending, never failed"
    );
    store.outbox_failed(&row.id, "boom", None, 3).await.unwrap();
    assert!(
        !store.outbox_retry("biz_x", &row.id, 4).await.unwrap(),
        "{name}: other business"
    );
    assert!(store.outbox_retry(A, &row.id, 4).await.unwrap(), "{name}");
    assert!(
        !store.outbox_retry(A, &row.id, 4).await.unwrap(),
        "{name}: once"
    );
    assert_eq!(store.outbox_due(4, 10).await.unwrap().len(), 1, "{name}");
    assert_eq!(
        store.outbox_of_business(A, 10).await.unwrap().len(),
        1,
        "{name}"
    );
    // Customers and their conversations.
    store
        .upsert_customer(A, "+972501234567", Some("נועה"), "phone", "lead", 5)
        .await
        .unwrap();
    for q in ["", "נועה", "0501234567", "1234"] {
        assert_eq!(
            store.customers_of_business(A, q, 10).await.unwrap().len(),
            1,
            "{name}: {q:?}"
        );
    }
    assert!(
        store
            .customers_of_business(A, "dan", 10)
            .await
            .unwrap()
            .is_empty(),
        "{name}"
    );
    let c = &store.customers_of_business(A, "", 10).await.unwrap()[0];
    assert!(
        store
            .customer_of_business("biz_x", &c.id)
            .await
            .unwrap()
            .is_none(),
        "{name}"
    );
    assert_eq!(
        store
            .appointments_of_customer(A, &c.phone)
            .await
            .unwrap()
            .len(),
        1,
        "{name}"
    );
    assert!(
        store
            .customer_conversations(A, &c.phone, "phone")
            .await
            .unwrap()
            .is_empty(),
        "{name}"
    );
    assert_eq!(
        store
            .appointments_between(A, noon + 3_600_000, noon + 3_600_001)
            .await
            .unwrap()
            .len(),
        1,
        "{name}"
    );
    assert!(
        store
            .appointments_between(A, noon, noon + 3_600_000)
            .await
            .unwrap()
            .is_empty(),
        "{name}: end exclusive"
    );
    assert!(
        store
            .customer_whatsapp_threads(A, &c.phone)
            .await
            .unwrap()
            .is_empty(),
        "{name}"
    );
}
