//! The operator console in a real browser (issue 12, item 6): a real `kav serve` on a temporary
//! SQLite database, accounts made with `kav admin create-user`, and headless chromium driven over
//! WebDriver (`tests/browser`). Every step acts as a user does — typing, clicking, reading what
//! the page shows — and waits for the page rather than for a fixed time.
//!
//! Its own harness (`harness = false`): one server and one browser session serve every scenario
//! in turn, and are killed when the run ends, also after a failure. Scenarios are named like
//! tests: `cargo test --test console_browser -- policy` runs the matching ones, `-- --list` lists
//! them. Screenshots for the README: `KAV_SCREENSHOTS=docs/screenshots cargo test --test
//! console_browser -- screenshots`.

mod browser;
mod kav_process;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use browser::Browser;
use futures_util::FutureExt;
use kav_process::{KavProcess, kav_admin, spawn_kav};

const A: &str = "biz_escape_tlv";
const B: &str = "biz_harbour_yoga";
const OWNER_A: &str = "owner@escape.example";
const STAFF_A: &str = "desk@escape.example";
const OWNER_B: &str = "owner@harbour.example";
const PASSWORD: &str = "correct horse battery staple";

struct World {
    kav: KavProcess,
    b: Browser,
    /// `KAV_SCREENSHOTS`: where the screenshots scenario writes its PNGs.
    shots: Option<PathBuf>,
    _dir: tempfile::TempDir,
}

/// A scenario still running after this has failed (each of its waits gives up sooner).
const SCENARIO_LIMIT: Duration = Duration::from_secs(120);

type Run = fn(Arc<World>) -> Pin<Box<dyn Future<Output = ()>>>;

/// The scenarios, run in this order on one server and one browser.
const SCENARIOS: &[(&str, Run)] = &[
    ("sign_in_and_out", |w| Box::pin(sign_in_and_out(w))),
    ("policy_edit_changes_the_slot_preview", |w| {
        Box::pin(policy_edit_changes_the_slot_preview(w))
    }),
    ("book_and_cancel_from_the_bookings_list", |w| {
        Box::pin(book_and_cancel_from_the_bookings_list(w))
    }),
    ("book_and_cancel_from_the_calendar", |w| {
        Box::pin(book_and_cancel_from_the_calendar(w))
    }),
    ("live_call_in_the_ops_view_and_its_waterfall", |w| {
        Box::pin(live_call_in_the_ops_view_and_its_waterfall(w))
    }),
    ("another_business_is_forbidden_in_pages_and_api", |w| {
        Box::pin(another_business_is_forbidden_in_pages_and_api(w))
    }),
    ("screenshots", |w| Box::pin(screenshots(w))),
];

// ------------------------------------------------------------------ scenarios

/// Signing in: a wrong password shows an error and opens no session; the right one lands on the
/// index with only the account's business. Signing out ends the session on the server: the old
/// cookie, put back, no longer opens anything.
async fn sign_in_and_out(w: Arc<World>) {
    let b = &w.b;
    b.forget_cookies().await;
    b.goto("/console/").await;
    b.find("#sign-in").await;
    assert!(
        b.path().await.starts_with("/console/login"),
        "{}",
        b.path().await
    );

    b.type_into("#email", OWNER_A).await;
    b.type_into("#password", "not the password at all").await;
    b.submit("#sign-in").await;
    let error = b.text("#login-error").await;
    assert!(!error.is_empty());
    assert!(
        b.path().await.starts_with("/console/login"),
        "{}",
        b.path().await
    );
    assert_eq!(
        b.cookie("kav_session").await,
        None,
        "no session for a bad password"
    );

    b.type_into("#email", OWNER_A).await;
    b.type_into("#password", PASSWORD).await;
    b.submit("#sign-in").await;
    let listed = b.text("#businesses").await;
    assert_eq!(b.path().await, "/console/");
    assert!(listed.contains("Escape TLV"), "{listed}");
    assert!(
        !listed.contains("Harbour"),
        "another business listed: {listed}"
    );
    let session = b.cookie("kav_session").await.expect("a session cookie");
    let with_session = async || {
        reqwest::Client::new()
            .get(w.kav.url(&format!("/console/api/b/{A}")))
            .header("cookie", format!("kav_session={session}"))
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(with_session().await, 200);

    b.submit("#sign-out").await;
    b.find("#sign-in").await;
    b.goto("/console/").await;
    b.find("#sign-in").await;
    assert!(b.path().await.starts_with("/console/login"));

    // The old session id, replayed: the server has forgotten it. (WebDriver's add-cookie refuses
    // host-only cookies on an IP address; the page's script can set it.)
    b.client
        .execute(
            "document.cookie = 'kav_session=' + arguments[0] + '; path=/'",
            vec![session.clone().into()],
        )
        .await
        .unwrap();
    assert_eq!(
        b.cookie("kav_session").await.as_deref(),
        Some(session.as_str())
    );
    b.goto("/console/").await;
    b.find("#sign-in").await;
    assert!(b.path().await.starts_with("/console/login"));
    assert_eq!(with_session().await, 401);
}

/// The owner edits the booking policy: a slot size of 0 is refused with the field's error and
/// the typed value kept; 45 minutes is saved and the "next free slots" preview changes to a
/// 45-minute grid.
async fn policy_edit_changes_the_slot_preview(w: Arc<World>) {
    let b = &w.b;
    sign_in(b, OWNER_A).await;
    b.submit(&format!("#businesses a[href^='/console/b/{A}?']"))
        .await;
    let before = slot_starts(b).await;
    assert_eq!(smallest_same_day_gap(&before), Some(60), "{before:?}");

    b.type_into("#slot_size_min", "0").await;
    b.submit("#save-policy").await;
    b.find("#error-slot_size_min").await;
    let kept = b.find("#slot_size_min").await.prop("value").await.unwrap();
    assert_eq!(kept.as_deref(), Some("0"), "the typed value is kept");

    b.type_into("#slot_size_min", "45").await;
    b.submit("#save-policy").await;
    b.find("#saved").await;
    let after = slot_starts(b).await;
    assert_ne!(after, before);
    assert_eq!(smallest_same_day_gap(&after), Some(45), "{after:?}");
    for pair in same_day_pairs(&after) {
        assert_eq!(pair % 45, 0, "off the 45-minute grid: {after:?}");
    }
}

/// Staff of business A book from the bookings page: a time outside the opening hours is refused
/// with the reason and the form kept; the first free slot of the preview is booked and appears in
/// the list; cancelling it changes its row to cancelled.
async fn book_and_cancel_from_the_bookings_list(w: Arc<World>) {
    let b = &w.b;
    sign_in(b, STAFF_A).await;
    b.goto(&format!("/console/b/{A}")).await;
    let free = slot_starts(b).await;
    // `2026-12-24T10:00:00+02:00`: the staff member types `2026-12-24T10:00`.
    let start = free.first().expect("a free slot in the preview")[..16].to_string();
    let day = &start[..10];
    b.submit(&format!("a[href^='/console/b/{A}/bookings']"))
        .await;

    // 03:00 the next day: in the future, and no day opens before 09:00.
    let next_day = day
        .parse::<jiff::civil::Date>()
        .unwrap()
        .tomorrow()
        .unwrap();
    book(
        b,
        Some(&format!("{next_day}T03:00")),
        "נועה כהן",
        "050-123-4567",
    )
    .await;
    let refused = b.text("#error").await;
    assert!(refused.contains("outside_hours"), "{refused}");
    let name = b.find("#customer_name").await.prop("value").await.unwrap();
    assert_eq!(name.as_deref(), Some("נועה כהן"), "the form is kept");

    b.type_into("#start_iso", &start).await;
    b.submit("#book").await;
    b.text_contains("#message", "booked").await;
    let row = booked_row(b, "נועה כהן").await;
    let id = row.attr("data-id").await.unwrap().expect("a data-id");
    let text = row.text().await.unwrap();
    assert!(
        text.contains(day) && text.contains(&start[11..16]),
        "{start}: {text}"
    );

    let cancel = row
        .find(fantoccini::Locator::Css("button.cancel"))
        .await
        .unwrap();
    b.click_and_load(cancel).await;
    b.text_contains("#message", "cancelled").await;
    let row = b.find(&format!("tr.appointment[data-id='{id}']")).await;
    assert_eq!(
        row.attr("class").await.unwrap().as_deref(),
        Some("appointment cancelled")
    );
    assert!(
        row.find_all(fantoccini::Locator::Css("button.cancel"))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Staff book and cancel from the week calendar: a free slot fills the new-booking form, the
/// booking shows in the calendar, and cancelling it takes it off.
async fn book_and_cancel_from_the_calendar(w: Arc<World>) {
    let b = &w.b;
    sign_in(b, STAFF_A).await;
    b.goto(&format!("/console/b/{A}/bookings")).await;
    b.submit(&format!("a[href^='/console/b/{A}/calendar']"))
        .await;
    b.find("#calendar").await;
    // Late in the week (Saturday evening) this week has no free slot left: staff go to the next.
    if b.all("#calendar [data-slot]").await.is_empty() {
        b.submit("a#next").await;
    }
    let slot = b.find("#calendar [data-slot]").await;
    let start = slot.attr("data-slot").await.unwrap().expect("data-slot");
    b.click_and_load(slot).await;
    let filled = b.find("input#start_iso").await.prop("value").await.unwrap();
    assert_eq!(
        filled.as_deref(),
        Some(start.as_str()),
        "the slot fills the form"
    );
    book(b, None, "Yael Bar", "052-555-0101").await;
    b.text_contains("#message", "booked").await;
    let card = b
        .until("the booking in the calendar", async || {
            for card in b.all("#calendar .booking[data-id]").await {
                if card.text().await.ok()?.contains("Yael Bar") {
                    return Some(card);
                }
            }
            None
        })
        .await;
    let id = card.attr("data-id").await.unwrap().expect("data-id");
    let text = card.text().await.unwrap();
    assert!(text.contains(&start[11..16]), "{start}: {text}");

    let cancel = card
        .find(fantoccini::Locator::Css("button.cancel"))
        .await
        .unwrap();
    b.click_and_load(cancel).await;
    b.text_contains("#message", "cancelled").await;
    assert!(
        b.all(&format!("#calendar .booking[data-id='{id}']"))
            .await
            .is_empty(),
        "a cancelled booking is off the calendar"
    );
}

/// A simulated call placed while the ops view is open appears in its live table without a
/// reload (server-sent events), and leaves it when it ends; its page then draws each turn's
/// latency marks as bars to one scale.
async fn live_call_in_the_ops_view_and_its_waterfall(w: Arc<World>) {
    let b = &w.b;
    sign_in(b, OWNER_A).await;
    b.goto("/console/ops").await;
    b.find("table#live-calls").await;
    let page = b.find("html").await;

    let (mut call, row, sid) = place_call(&w).await;
    assert!(sid.starts_with("CA"), "{sid}");
    assert_eq!(row.attr("data-business").await.unwrap().as_deref(), Some(A));
    // The same document, updated in place: the page was not reloaded.
    page.tag_name()
        .await
        .expect("the ops page was not reloaded");
    // Live: its duration counts up while the call goes on.
    let first = b.text(".live-call .duration").await;
    b.until("the duration to count up", async || {
        let now = b
            .client
            .find(fantoccini::Locator::Css(".live-call .duration"))
            .await
            .ok()?;
        (now.text().await.ok()? != first).then_some(())
    })
    .await;

    assert!(call.wait().await.unwrap().success(), "kav call finished");
    b.until("the ended call to leave the live table", async || {
        b.all(".live-call").await.is_empty().then_some(())
    })
    .await;
    page.tag_name()
        .await
        .expect("the ops page was not reloaded");

    b.goto(&format!("/console/calls/{sid}")).await;
    let waterfall = b.find("#waterfall").await;
    let scale: f64 = waterfall
        .attr("data-scale-ms")
        .await
        .unwrap()
        .expect("data-scale-ms")
        .parse()
        .unwrap();
    let turns = b.all("#waterfall .turn[data-turn]").await;
    assert_eq!(turns.len(), 2, "one waterfall per spoken turn");
    for turn in turns {
        let bars = turn
            .find_all(fantoccini::Locator::Css(".bar[data-mark]"))
            .await
            .unwrap();
        let mut marks = Vec::new();
        for bar in bars {
            let mark = bar.attr("data-mark").await.unwrap().unwrap();
            let ms: f64 = bar
                .attr("data-ms")
                .await
                .unwrap()
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("{mark}: no ms"));
            let track = bar.find(fantoccini::Locator::XPath("..")).await.unwrap();
            let (_, _, bar_px, _) = bar.rectangle().await.unwrap();
            let (_, _, track_px, _) = track.rectangle().await.unwrap();
            let drawn = bar_px / track_px;
            assert!(
                (drawn - ms / scale).abs() < 0.02,
                "{mark}: {ms} ms of {scale} drawn as {drawn:.3} of the track"
            );
            marks.push(mark);
        }
        assert_eq!(
            marks,
            [
                "stt_first_partial",
                "stt_final",
                "ai_latency",
                "tts_ready",
                "total"
            ]
        );
    }
    b.text_contains("#transcript", "Is the Dubai room free tomorrow at 10?")
        .await;
}
/// Staff of business A open business B's pages: 403. A's own API token (made on the index page)
/// reads A's API and gets 403 from B's.
async fn another_business_is_forbidden_in_pages_and_api(w: Arc<World>) {
    let b = &w.b;
    sign_in(b, STAFF_A).await;
    for path in [
        format!("/console/b/{B}"),
        format!("/console/b/{B}/bookings"),
    ] {
        b.goto(&path).await;
        let said = b.text("h1").await;
        assert_eq!(b.status().await, 403, "{path}: {said}");
        assert!(said.contains("403"), "{path}: {said}");
    }
    b.goto("/console/").await;
    b.type_into("input[name=label]", "nightly export").await;
    b.submit("form[action='/console/tokens'] button").await;
    let token = b.text("#token").await;
    assert!(token.starts_with("kav_"), "{token}");
    let http = reqwest::Client::new();
    let get = async |biz: &str| {
        http.get(w.kav.url(&format!("/console/api/b/{biz}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .status()
    };
    assert_eq!(get(A).await, 200, "the token works for its own business");
    assert_eq!(get(B).await, 403);
}

/// With `KAV_SCREENSHOTS=dir`: PNGs of the main pages for the README. The seeded business is
/// Hebrew, so its pages show right-to-left content; one page is also in the Hebrew UI.
async fn screenshots(w: Arc<World>) {
    let Some(dir) = w.shots.clone() else {
        println!("    (set KAV_SCREENSHOTS=dir to write the screenshots)");
        return;
    };
    let b = &w.b;
    // Tall enough for the policy form and its preview; an element's shot stops at the window.
    b.client.set_window_size(1000, 1400).await.unwrap();
    b.forget_cookies().await;
    b.goto("/console/login").await;
    b.screenshot("main", &dir, "login").await;
    sign_in(b, OWNER_A).await;
    b.screenshot("main", &dir, "index").await;
    b.goto(&format!("/console/b/{A}")).await;
    b.screenshot("#policy", &dir, "policy").await;
    b.goto(&format!("/console/b/{A}?lang=he")).await;
    b.screenshot("main", &dir, "business-he").await;
    let start = slot_starts(b).await[3][..16].to_string();
    b.goto(&format!("/console/b/{A}/bookings")).await;
    book(b, Some(&start), "Dana Levi", "+972 50 765 4321").await;
    b.text_contains("#message", "booked").await;
    b.screenshot("main", &dir, "bookings").await;
    b.goto(&format!("/console/b/{A}/calendar")).await;
    // Next week: this one may be mostly past.
    b.submit("#next").await;
    b.screenshot("main", &dir, "calendar").await;
    // The ops view during a call, then the call's waterfall.
    b.goto("/console/ops").await;
    let (mut call, _, sid) = place_call(&w).await;
    b.screenshot("main", &dir, "ops").await;
    assert!(call.wait().await.unwrap().success(), "kav call finished");
    b.goto(&format!("/console/calls/{sid}")).await;
    b.find("#waterfall .turn").await;
    b.screenshot("main", &dir, "call").await;
}

// ------------------------------------------------------------------ steps

/// Signs `email` in through the form, from a browser with no cookies.
async fn sign_in(b: &Browser, email: &str) {
    b.forget_cookies().await;
    b.goto("/console/login").await;
    b.type_into("#email", email).await;
    b.type_into("#password", PASSWORD).await;
    b.submit("#sign-in").await;
    b.find("#businesses").await;
}

/// Fills the new-booking form (`start`: typed into `#start_iso`, else left as the page filled
/// it) and presses `#book`.
async fn book(b: &Browser, start: Option<&str>, customer: &str, phone: &str) {
    if let Some(start) = start {
        b.type_into("#start_iso", start).await;
    }
    b.type_into("#customer_name", customer).await;
    b.type_into("#customer_phone", phone).await;
    b.submit("#book").await;
}

/// Places a simulated two-turn Twilio call (`kav call`, about 10 s) to the seeded business
/// while the ops view is open, and waits for its row in the live table: the caller process, the
/// row and the call sid.
async fn place_call(w: &World) -> (tokio::process::Child, fantoccini::elements::Element, String) {
    let call = tokio::process::Command::new(env!("CARGO_BIN_EXE_kav"))
        .args(["--config", "/nonexistent/kav.toml", "call"])
        .args(["--server", &w.kav.url("")])
        .arg("--say=audio-samples/book_en.wav=Is the Dubai room free tomorrow at 10?")
        .arg("--say=audio-samples/thanks_en.wav=thanks, bye")
        .env("KAV_ADMIN_TOKEN", kav_process::ADMIN_TOKEN)
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kav call starts");
    let row = w.b.find("#live-calls tr.live-call[data-call-sid]").await;
    let sid = row.attr("data-call-sid").await.unwrap();
    (call, row, sid.expect("data-call-sid"))
}

/// The starts (`YYYY-MM-DDTHH:MM…`) in the page's "next free slots" preview.
async fn slot_starts(b: &Browser) -> Vec<String> {
    b.find("#slots").await;
    let mut out = Vec::new();
    for li in b.all("#slots li.slot").await {
        out.push(li.attr("data-start").await.unwrap().expect("data-start"));
    }
    assert!(!out.is_empty(), "no free slots in the preview");
    out
}

/// Minutes between consecutive starts on the same day.
fn same_day_pairs(starts: &[String]) -> Vec<u32> {
    let minute = |s: &str| -> u32 {
        let (h, m) = s[11..16].split_once(':').expect("HH:MM");
        h.parse::<u32>().unwrap() * 60 + m.parse::<u32>().unwrap()
    };
    starts
        .windows(2)
        .filter(|p| p[0][..10] == p[1][..10])
        .map(|p| minute(&p[1]) - minute(&p[0]))
        .collect()
}

fn smallest_same_day_gap(starts: &[String]) -> Option<u32> {
    same_day_pairs(starts).into_iter().min()
}

/// The booked row of `customer` in the appointments table.
async fn booked_row(b: &Browser, customer: &str) -> fantoccini::elements::Element {
    b.until(&format!("a booked row for {customer}"), async || {
        for row in b.all("#appointments tr.appointment.booked").await {
            if row.text().await.ok()?.contains(customer) {
                return Some(row);
            }
        }
        None
    })
    .await
}

// ------------------------------------------------------------------ the world

/// Business B: a second tenant for the isolation checks.
async fn add_business_b(db_url: &str) {
    // Migrations first (the store does them), then the row beside the seeded business.
    drop(kav::store::Store::connect(db_url).await.unwrap());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(db_url).await.unwrap();
    sqlx::query(
        "INSERT INTO businesses (id, name, timezone, language, prompt_default, \
         opening_hours_json, allow_24_7, slot_size_min, min_notice_min, booking_window_days, \
         require_phone_before_booking, concurrency_scope, concurrency_limit, trace_log_pii, \
         updated_at_ms) VALUES ($1, 'Harbour Yoga', 'Europe/London', 'en', \
         'You answer for Harbour Yoga.', '{\"mon\":[\"07:00\",\"21:00\"]}', 0, 60, 60, 30, 0, \
         'business', 8, 0, 0)",
    )
    .bind(B)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}

async fn world() -> Result<World, String> {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("kav.db").display());
    add_business_b(&db_url).await;
    for (email, role, business) in [
        (OWNER_A, "owner", A),
        (STAFF_A, "staff", A),
        (OWNER_B, "owner", B),
    ] {
        let out = kav_admin(
            &db_url,
            &[
                "create-user",
                "--email",
                email,
                "--role",
                role,
                "--business",
                business,
            ],
            &format!("{PASSWORD}\n"),
        )
        .await;
        assert!(out.starts_with(&format!("created {email}")), "{out}");
    }
    // Confirmations go to the log stand-in: nothing here talks to WhatsApp. Loop-lag admission
    // is off: on a loaded 2-core machine (chromium, the build) the server's timers run late and
    // the test call would get the overflow TwiML; tests/limits.rs covers that check.
    let kav = spawn_kav(
        &db_url,
        "http://127.0.0.1:9",
        &[
            ("KAV_WHATSAPP_MOCK_SENDS", "true"),
            ("KAV_LIMITS_MAX_LOOP_LAG_MS", "0"),
        ],
    )
    .await;
    let b = browser::launch(&kav.url(""), 1100, 850).await?;
    Ok(World {
        kav,
        b,
        shots: std::env::var_os("KAV_SCREENSHOTS").map(PathBuf::from),
        _dir: dir,
    })
}

// ------------------------------------------------------------------ the harness

struct Args {
    list: bool,
    exact: bool,
    filters: Vec<String>,
    skip: Vec<String>,
    ignored_only: bool,
}

/// libtest's arguments as far as they matter here (the rest, e.g. `--nocapture`, are accepted
/// and ignored: scenarios always print).
fn args() -> Args {
    let mut a = Args {
        list: false,
        exact: false,
        filters: Vec::new(),
        skip: Vec::new(),
        ignored_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--list" => a.list = true,
            "--exact" => a.exact = true,
            "--ignored" => a.ignored_only = true,
            "--skip" => a.skip.extend(it.next()),
            "--test-threads" | "--color" | "--format" | "--logfile" | "--shuffle-seed" | "-Z" => {
                it.next();
            }
            s if s.starts_with('-') => {}
            s => a.filters.push(s.to_string()),
        }
    }
    a
}

fn main() {
    let args = args();
    let selected: Vec<_> = SCENARIOS
        .iter()
        .filter(|(name, _)| {
            let hit = |f: &String| {
                if args.exact {
                    name == f
                } else {
                    name.contains(f.as_str())
                }
            };
            (args.filters.is_empty() || args.filters.iter().any(hit))
                && !args.skip.iter().any(|s| name.contains(s.as_str()))
        })
        .collect();
    if args.list {
        for (name, _) in &selected {
            println!("{name}: test");
        }
        println!("\n{} tests, 0 benchmarks", selected.len());
        return;
    }
    // No scenario is `#[ignore]`d: `-- --ignored` runs none of them.
    if args.ignored_only || selected.is_empty() {
        println!("\nrunning 0 tests\n\ntest result: ok. 0 passed; 0 failed");
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let failed = rt.block_on(async {
        let world = match world().await {
            Ok(w) => Arc::new(w),
            Err(reason) => {
                println!("console_browser: SKIPPED, no browser here: {reason}");
                return None;
            }
        };
        println!("\nrunning {} tests", selected.len());
        let mut failed = Vec::new();
        for (name, run) in &selected {
            let started = Instant::now();
            // A panic ends its scenario, not the run: the next one starts from a fresh page.
            let ok = tokio::time::timeout(
                SCENARIO_LIMIT,
                AssertUnwindSafe(run(world.clone())).catch_unwind(),
            )
            .await
            .map_err(|_| println!("{name}: still running after {SCENARIO_LIMIT:?}"))
            .is_ok_and(|r| r.is_ok());
            let took = started.elapsed().as_secs_f32();
            println!(
                "test {name} ... {} ({took:.1} s)",
                if ok { "ok" } else { "FAILED" }
            );
            if !ok {
                failed.push(*name);
            }
        }
        if let Ok(world) = Arc::try_unwrap(world) {
            world.b.close().await;
        }
        Some(failed)
    });
    let Some(failed) = failed else {
        println!(
            "\ntest result: ok. 0 passed; 0 failed; {} ignored",
            selected.len()
        );
        return;
    };
    let passed = selected.len() - failed.len();
    if failed.is_empty() {
        println!("\ntest result: ok. {passed} passed; 0 failed");
    } else {
        println!(
            "\nfailures: {}\ntest result: FAILED. {passed} passed; {} failed",
            failed.join(", "),
            failed.len()
        );
        std::process::exit(101);
    }
}
