//! Persistence through sqlx: SQLite embedded by default, PostgreSQL with the same migrations.
//! OWNER: store helper. Writes happen off the audio path through a bounded channel.
//!
//! One code path serves both backends: the sqlx `Any` driver with runtime queries (`$1`
//! placeholders, which SQLite accepts too) and the embedded migrations in `migrations/`.
//!
//! * [`Store`] is the handle: connect (runs migrations), read back calls, turns and events.
//! * [`Recorder`] is what call sessions hold: [`Recorder::record`] never blocks or awaits. Records
//!   go through a bounded queue to a single writer task which commits whatever is queued (up to
//!   [`MAX_BATCH`] records) in one transaction, so a burst of calls ending at once costs a few
//!   commits, not one fsync each. When the queue is full the record is dropped and counted.
//!
//! Shutdown: drop every `Recorder` clone (or call [`Recorder::flush`] first); the writer drains
//! what is queued, commits it and its `JoinHandle` completes.
//!
//! Duplicate turns: `turns` has primary key `(call_id, turn)`; a second record for the same turn is
//! ignored (first write wins, `ON CONFLICT DO NOTHING`) and counted in [`Recorder::failed`]. This
//! also makes retries idempotent.

pub mod booking;
/// Operator console tables (migration 0009) and versioned business edits.
pub mod console;
/// Ops view reads (issue 12 item 4): turns in a time window, WhatsApp health.
pub mod ops;
pub mod privacy;
pub mod staff;
/// Staff assistant chat and prompts (migration 0016).
pub mod staff_chat;
pub mod value;

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::json;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::MigrateDatabase;
use sqlx::{AnyConnection, AnyPool, Executor};
use tokio::sync::{mpsc, oneshot};

use crate::voice::events::{CallEvent, InputKind, LatencyMarks, TurnRecord};
use value::{Count, Flag};

/// WhatsApp channel tables (migration 0003).
pub mod whatsapp;

/// Most records the writer commits in one transaction.
pub const MAX_BATCH: usize = 256;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store database error: {0}")]
    Db(sqlx::Error),
    #[error("store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A value read from (or meant for) a column that its type cannot hold, e.g. an appointment
    /// status the code does not know.
    #[error("unexpected value in store column {column}: {value:?} is not {expected}")]
    BadValue {
        column: String,
        value: String,
        expected: &'static str,
    },
}

/// A decode error that carries a [`value::UnexpectedValue`] becomes [`StoreError::BadValue`]
/// with its column; every other sqlx error is [`StoreError::Db`].
impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match value::unexpected_in(&e) {
            Some((column, bad)) => StoreError::BadValue {
                column,
                value: bad.value.clone(),
                expected: bad.expected,
            },
            None => StoreError::Db(e),
        }
    }
}

/// A row type with its one column list: every module reads the shape through
/// `select::<T>("FROM …")`, so two readers of one table cannot drift apart.
pub(crate) trait Columns: for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow> {
    /// The `SELECT` list, in the names the row's `FromRow` reads.
    const COLUMNS: &'static str;
}

/// `SELECT {T::COLUMNS} {rest}`, ready for binds.
pub(crate) fn select<'q, T: Columns>(
    rest: &str,
) -> sqlx::query::QueryAs<'q, sqlx::Any, T, sqlx::any::AnyArguments> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT {} {rest}", T::COLUMNS)))
}

/// Handle to the database. Cheap to clone (a connection pool inside).
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
}

/// One row of `calls`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct CallRow {
    pub id: String,
    pub call_sid: String,
    pub stream_sid: String,
    pub account_sid: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub end_reason: Option<String>,
    pub parameters_json: String,
    pub counters_json: Option<String>,
}

impl Columns for CallRow {
    const COLUMNS: &'static str = "id, call_sid, stream_sid, account_sid, started_at_ms, \
         ended_at_ms, end_reason, parameters_json, counters_json";
}

/// One row of `turns`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct TurnRow {
    pub call_id: String,
    #[sqlx(try_from = "Count")]
    pub turn: u32,
    pub input_kind: InputKind,
    pub user_text: String,
    pub bot_text: String,
    #[sqlx(try_from = "Flag")]
    pub interrupted: bool,
    #[serde(flatten)]
    #[sqlx(flatten, try_from = "MarkColumns")]
    pub marks: LatencyMarks,
    pub at_ms: i64,
}

/// Of `turns t` (joins name the table `t`).
impl Columns for TurnRow {
    const COLUMNS: &'static str = "t.call_id, t.turn, t.input_kind, t.user_text, t.bot_text, \
         t.interrupted, t.stt_first_partial_ms, t.stt_final_ms, t.ai_latency_ms, t.tts_ready_ms, \
         t.total_ms, t.ai_total_ms, t.tts_total_ms, t.at_ms";
}

/// The latency mark columns of `turns` (the engine's [`LatencyMarks`] knows no database).
#[derive(sqlx::FromRow)]
struct MarkColumns {
    stt_first_partial_ms: Option<Count>,
    stt_final_ms: Option<Count>,
    ai_latency_ms: Option<Count>,
    tts_ready_ms: Option<Count>,
    total_ms: Option<Count>,
    ai_total_ms: Option<Count>,
    tts_total_ms: Option<Count>,
}

impl From<MarkColumns> for LatencyMarks {
    fn from(m: MarkColumns) -> Self {
        let ms = |c: Option<Count>| c.map(u32::from);
        LatencyMarks {
            stt_first_partial_ms: ms(m.stt_first_partial_ms),
            stt_final_ms: ms(m.stt_final_ms),
            ai_latency_ms: ms(m.ai_latency_ms),
            tts_ready_ms: ms(m.tts_ready_ms),
            total_ms: ms(m.total_ms),
            ai_total_ms: ms(m.ai_total_ms),
            tts_total_ms: ms(m.tts_total_ms),
        }
    }
}

/// One row of `call_events` (everything but turns).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, sqlx::FromRow)]
pub struct EventRow {
    pub call_id: String,
    pub at_ms: i64,
    /// `CallEvent::kind`: `barge_in`, `digits`, or a warning's own label.
    pub kind: String,
    pub detail_json: String,
}

/// What a call reports for persistence. `call_id` is an opaque text key chosen by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    CallStarted {
        call_id: String,
        call_sid: String,
        stream_sid: String,
        account_sid: String,
        at_ms: i64,
        parameters_json: String,
    },
    /// `CallEvent::Turn` goes to `turns`, everything else to `call_events`.
    Event {
        call_id: String,
        at_ms: i64,
        event: CallEvent,
    },
    /// The providers serving the call (`stt/agent/tts`), for per-provider latency in the ops view.
    CallProviders { call_id: String, providers: String },
    /// Updates the call's row; counted as failed if its `CallStarted` never reached the database.
    CallEnded {
        call_id: String,
        at_ms: i64,
        reason: String,
        counters_json: String,
    },
}

const SQLITE_PRAGMAS: &[&str] = &[
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = NORMAL",
    "PRAGMA busy_timeout = 5000",
];

/// PostgreSQL's counterpart of SQLite's busy timeout: a statement waiting on a lock another
/// session holds fails after 5 s instead of waiting for as long as it is held (a webhook stuck
/// there holds its pool connection and is never answered; failing lets the vendor retry).
const POSTGRES_SESSION: &[&str] = &["SET lock_timeout = '5s'"];

impl Store {
    pub fn is_postgres(&self) -> bool {
        is_postgres(&self.pool)
    }

    /// A transaction that writes: see [`begin_write`].
    pub(crate) async fn begin_write(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        begin_write(&self.pool).await
    }

    /// Connects (`sqlite://path`, `sqlite::memory:`, `postgres://…`) and runs the migrations.
    /// A missing SQLite file is created. SQLite runs in WAL mode, `synchronous=NORMAL`, with a
    /// 5 s busy timeout; PostgreSQL with a 5 s `lock_timeout`. Migrations are idempotent and safe
    /// to run from several instances at once.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        Self::connect_with_session_sql(url, &[]).await
    }

    /// [`Store::connect`], then `extra` statements on every connection after the defaults (SQLite
    /// pragmas, or PostgreSQL `SET`s), without running the migrations (connect once with
    /// [`Store::connect`] first). Fault-injection tests use it: `PRAGMA query_only = 1` or
    /// `SET default_transaction_read_only = on` (a read-only database), `PRAGMA max_page_count =
    /// N` (a full disk: SQLITE_FULL).
    pub async fn connect_with_session_sql(
        url: &str,
        extra: &[String],
    ) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let sqlite = url.starts_with("sqlite:");
        // Each `Any` connection parses the URL again, and `:memory:` gets a fresh database per
        // connection: keep exactly one connection alive for ever.
        let memory = sqlite && (url.contains(":memory:") || url.contains("mode=memory"));
        if sqlite && !memory && !sqlx::Sqlite::database_exists(url).await? {
            sqlx::Sqlite::create_database(url).await?;
        }
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(5));
        if memory {
            options = options
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
        } else if sqlite {
            // One writer at a time anyway; a few readers alongside thanks to WAL.
            options = options.max_connections(4);
        }
        let migrate = extra.is_empty();
        let extra: Arc<[String]> = extra.into();
        let pool = options
            .after_connect(move |conn, _meta| {
                let extra = extra.clone();
                Box::pin(async move {
                    let defaults = if conn.backend_name().eq_ignore_ascii_case("sqlite") {
                        SQLITE_PRAGMAS
                    } else {
                        POSTGRES_SESSION
                    };
                    for statement in defaults {
                        (&mut *conn).execute(*statement).await?;
                    }
                    for statement in extra.iter() {
                        (&mut *conn)
                            .execute(sqlx::AssertSqlSafe(statement.clone()))
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        if migrate {
            MIGRATOR.run(&pool).await?;
        }
        Ok(Store { pool })
    }

    /// Spawns the single writer task (call inside a tokio runtime). `capacity` is the queue length
    /// (`StoreConfig::writer_queue`); at least 1. The task ends once every `Recorder` clone is
    /// dropped and the queue is drained.
    pub fn recorder(&self, capacity: usize) -> (Recorder, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let stats = Arc::new(Stats::default());
        let writer = Writer {
            pool: self.pool.clone(),
            stats: stats.clone(),
            ids: EventIds::new(),
        };
        let handle = tokio::spawn(writer.run(rx));
        (
            Recorder {
                inner: Arc::new(RecorderInner { tx, stats }),
            },
            handle,
        )
    }

    /// One round trip to the database (readiness).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Turns of every stream of this call sid, in call start then turn order.
    pub async fn call_turns(&self, call_sid: &str) -> Result<Vec<TurnRow>, StoreError> {
        Ok(select::<TurnRow>(
            "FROM turns t JOIN calls c ON c.id = t.call_id \
             WHERE c.call_sid = $1 ORDER BY c.started_at_ms, c.id, t.turn",
        )
        .bind(call_sid)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The `limit` most recent turns of any call, newest first.
    pub async fn recent_turns(&self, limit: u32) -> Result<Vec<TurnRow>, StoreError> {
        Ok(select::<TurnRow>(
            "FROM turns t ORDER BY t.at_ms DESC, t.call_id, t.turn DESC \
             LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The call with this sid (the most recently started stream if there were several).
    pub async fn call(&self, call_sid: &str) -> Result<Option<CallRow>, StoreError> {
        Ok(select::<CallRow>(
            "FROM calls WHERE call_sid = $1 \
             ORDER BY started_at_ms DESC, id DESC LIMIT 1",
        )
        .bind(call_sid)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Non-turn events of every stream of this call sid, oldest first.
    pub async fn call_events(&self, call_sid: &str) -> Result<Vec<EventRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT e.call_id, e.at_ms, e.kind, e.detail_json \
             FROM call_events e JOIN calls c ON c.id = e.call_id \
             WHERE c.call_sid = $1 ORDER BY e.at_ms, e.id",
        )
        .bind(call_sid)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Hands records to the writer task. Cheap to clone; `record` never blocks.
#[derive(Clone, Debug)]
pub struct Recorder {
    inner: Arc<RecorderInner>,
}

#[derive(Debug)]
struct RecorderInner {
    tx: mpsc::Sender<Msg>,
    stats: Arc<Stats>,
}

#[derive(Debug, Default)]
struct Stats {
    dropped: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
}

#[derive(Debug)]
enum Msg {
    Record(Record),
    Flush(oneshot::Sender<()>),
}

impl Recorder {
    /// Queues `rec` without blocking or awaiting. If the queue is full (the writer fell behind) or
    /// the writer is gone, the record is dropped and counted in [`Recorder::dropped`].
    pub fn record(&self, rec: Record) {
        if self.inner.tx.try_send(Msg::Record(rec)).is_err() {
            self.inner.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records dropped because the queue was full (or the writer had stopped).
    pub fn dropped(&self) -> u64 {
        self.inner.stats.dropped.load(Ordering::Relaxed)
    }

    /// Rows committed.
    pub fn written(&self) -> u64 {
        self.inner.stats.written.load(Ordering::Relaxed)
    }

    /// Records that reached the writer but were not stored: the write failed (logged with
    /// `tracing::warn!`), a duplicate turn or call start was ignored, or a `CallEnded` named a call
    /// with no row.
    pub fn failed(&self) -> u64 {
        self.inner.stats.failed.load(Ordering::Relaxed)
    }

    /// Waits until everything queued before this call has been through the writer (committed, or
    /// counted as failed). Waits for queue space if the queue is full. Returns at once if the
    /// writer has stopped.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.inner.tx.send(Msg::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// Text ids for `call_events`: a random per-writer prefix and a zero-padded counter, so ids from
/// one writer sort in write order and several instances sharing a database never collide.
struct EventIds {
    prefix: String,
    next: u64,
}

/// 64 random bits for id prefixes (std's per-instance random hasher keys, the time and the
/// process id), so ids from several writers or instances sharing one database never collide.
pub(crate) fn id_random() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

impl EventIds {
    fn new() -> Self {
        Self {
            prefix: format!("{:016x}", id_random()),
            next: 0,
        }
    }

    fn next(&mut self) -> String {
        self.next += 1;
        format!("{}-{:016x}", self.prefix, self.next)
    }
}

/// A record with its event id fixed before the first attempt, so a retry writes the same row.
struct Pending {
    rec: Record,
    event_id: Option<String>,
}

enum Applied {
    Row,
    Rejected(&'static str),
}

#[derive(Default)]
struct Outcome {
    written: u64,
    rejected: u64,
    first_rejection: Option<&'static str>,
}

enum BatchError {
    /// A statement failed: retrying row by row can isolate the bad record.
    Statement(sqlx::Error),
    /// No connection, or begin/commit failed: retrying would not help.
    Transaction(sqlx::Error),
}

struct Writer {
    pool: AnyPool,
    stats: Arc<Stats>,
    ids: EventIds,
}

/// Begins a transaction that writes. On SQLite it takes the write lock at the start (`BEGIN
/// IMMEDIATE`, which waits up to the busy timeout): a deferred transaction that reads and then
/// writes fails at once with "database is locked" when another connection committed after its
/// read, and the busy timeout does not cover that case. PostgreSQL's `BEGIN` is right as is.
async fn begin_write(pool: &AnyPool) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
    if is_postgres(pool) {
        pool.begin().await
    } else {
        pool.begin_with("BEGIN IMMEDIATE").await
    }
}

fn is_postgres(pool: &AnyPool) -> bool {
    pool.connect_options()
        .database_url
        .scheme()
        .starts_with("postgres")
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut msgs = Vec::with_capacity(MAX_BATCH);
        let mut batch = Vec::with_capacity(MAX_BATCH);
        let mut flushes = Vec::new();
        while rx.recv_many(&mut msgs, MAX_BATCH).await > 0 {
            for msg in msgs.drain(..) {
                match msg {
                    Msg::Record(rec) => {
                        let event_id = match &rec {
                            Record::Event { event, .. } if !matches!(event, CallEvent::Turn(_)) => {
                                Some(self.ids.next())
                            }
                            _ => None,
                        };
                        batch.push(Pending { rec, event_id });
                    }
                    Msg::Flush(done) => flushes.push(done),
                }
            }
            if !batch.is_empty() {
                self.write(&batch).await;
                batch.clear();
            }
            for done in flushes.drain(..) {
                let _ = done.send(());
            }
        }
    }

    async fn write(&self, batch: &[Pending]) {
        let n = batch.len() as u64;
        match self.try_batch(batch).await {
            Ok(outcome) => self.account(outcome),
            Err(BatchError::Transaction(e)) => {
                self.stats.failed.fetch_add(n, Ordering::Relaxed);
                tracing::warn!(error = %e, rows = n, "store: batch write failed; rows lost");
            }
            Err(BatchError::Statement(e)) => {
                tracing::warn!(error = %e, rows = n, "store: batch write failed; retrying row by row");
                let mut failed = 0u64;
                let mut first_error = None;
                for pending in batch {
                    match self.try_batch(std::slice::from_ref(pending)).await {
                        Ok(outcome) => self.account(outcome),
                        Err(BatchError::Statement(e) | BatchError::Transaction(e)) => {
                            failed += 1;
                            first_error.get_or_insert(e);
                        }
                    }
                }
                if let Some(e) = first_error {
                    self.stats.failed.fetch_add(failed, Ordering::Relaxed);
                    tracing::warn!(error = %e, rows = failed, "store: rows failed to write");
                }
            }
        }
    }

    fn account(&self, outcome: Outcome) {
        self.stats
            .written
            .fetch_add(outcome.written, Ordering::Relaxed);
        if let Some(reason) = outcome.first_rejection {
            self.stats
                .failed
                .fetch_add(outcome.rejected, Ordering::Relaxed);
            tracing::warn!(rows = outcome.rejected, reason, "store: records not stored");
        }
    }

    async fn try_batch(&self, batch: &[Pending]) -> Result<Outcome, BatchError> {
        let mut tx = begin_write(&self.pool)
            .await
            .map_err(BatchError::Transaction)?;
        let mut outcome = Outcome::default();
        for pending in batch {
            match write_one(&mut tx, pending)
                .await
                .map_err(BatchError::Statement)?
            {
                Applied::Row => outcome.written += 1,
                Applied::Rejected(reason) => {
                    outcome.rejected += 1;
                    outcome.first_rejection.get_or_insert(reason);
                }
            }
        }
        tx.commit().await.map_err(BatchError::Transaction)?;
        Ok(outcome)
    }
}

async fn write_one(conn: &mut AnyConnection, pending: &Pending) -> Result<Applied, sqlx::Error> {
    let affected = match &pending.rec {
        Record::CallStarted { call_id, call_sid, stream_sid, account_sid, at_ms, parameters_json } => {
            sqlx::query(
                "INSERT INTO calls (id, call_sid, stream_sid, account_sid, started_at_ms, parameters_json) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
            )
            .bind(call_id.as_str())
            .bind(call_sid.as_str())
            .bind(stream_sid.as_str())
            .bind(account_sid.as_str())
            .bind(*at_ms)
            .bind(parameters_json.as_str())
            .execute(&mut *conn)
            .await?
            .rows_affected()
        }
        Record::CallProviders { call_id, providers } => {
            let n = sqlx::query("UPDATE calls SET providers = $2 WHERE id = $1")
                .bind(call_id.as_str())
                .bind(providers.as_str())
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if n == 0 {
                return Ok(Applied::Rejected("call providers but its start was never stored"));
            }
            n
        }
        Record::CallEnded { call_id, at_ms, reason, counters_json } => {
            let n = sqlx::query("UPDATE calls SET ended_at_ms = $2, end_reason = $3, counters_json = $4 WHERE id = $1")
                .bind(call_id.as_str())
                .bind(*at_ms)
                .bind(reason.as_str())
                .bind(counters_json.as_str())
                .execute(&mut *conn)
                .await?
                .rows_affected();
            if n == 0 {
                return Ok(Applied::Rejected("call ended but its start was never stored"));
            }
            n
        }
        Record::Event { call_id, at_ms, event: CallEvent::Turn(t) } => {
            let n = insert_turn(conn, call_id, *at_ms, t).await?;
            if n == 0 {
                return Ok(Applied::Rejected("duplicate turn ignored"));
            }
            n
        }
        Record::Event { call_id, at_ms, event } => {
            let detail = match event {
                CallEvent::Turn(_) => unreachable!("turns are matched above"),
                CallEvent::BargeIn { turn, heard_chars, speech_ms } => {
                    json!({ "turn": turn, "heard_chars": heard_chars, "speech_ms": speech_ms })
                }
                CallEvent::Digits { digits, committed_by } => {
                    json!({ "digits": digits, "committed_by": committed_by })
                }
                CallEvent::Warning { detail, .. } => json!({ "warning": true, "detail": detail }),
                CallEvent::Timer { reason, late_ms } => {
                    json!({ "reason": reason.as_str(), "late_ms": late_ms })
                }
            };
            sqlx::query(
                "INSERT INTO call_events (id, call_id, at_ms, kind, detail_json) VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(pending.event_id.as_deref().unwrap_or_default())
            .bind(call_id.as_str())
            .bind(*at_ms)
            .bind(event.kind())
            .bind(detail.to_string())
            .execute(&mut *conn)
            .await?
            .rows_affected()
        }
    };
    Ok(if affected == 0 {
        Applied::Rejected("duplicate record ignored")
    } else {
        Applied::Row
    })
}

async fn insert_turn(
    conn: &mut AnyConnection,
    call_id: &str,
    at_ms: i64,
    t: &TurnRecord,
) -> Result<u64, sqlx::Error> {
    let mark = |m: Option<u32>| m.map(i64::from);
    Ok(sqlx::query(
        "INSERT INTO turns (call_id, turn, input_kind, user_text, bot_text, interrupted, \
                            stt_first_partial_ms, stt_final_ms, ai_latency_ms, tts_ready_ms, total_ms, \
                            ai_total_ms, tts_total_ms, at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (call_id, turn) DO NOTHING",
    )
    .bind(call_id)
    .bind(i64::from(t.turn))
    .bind(t.input.as_str())
    .bind(t.user_text.as_str())
    .bind(t.bot_text.as_str())
    .bind(i32::from(t.interrupted))
    .bind(mark(t.marks.stt_first_partial_ms))
    .bind(mark(t.marks.stt_final_ms))
    .bind(mark(t.marks.ai_latency_ms))
    .bind(mark(t.marks.tts_ready_ms))
    .bind(mark(t.marks.total_ms))
    .bind(mark(t.marks.ai_total_ms))
    .bind(mark(t.marks.tts_total_ms))
    .bind(at_ms)
    .execute(&mut *conn)
    .await?
    .rows_affected())
}
