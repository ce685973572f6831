//! The databases a store test runs on: a fresh SQLite file always, and PostgreSQL too when
//! `KAV_TEST_POSTGRES_URL` is set (see `scripts/ci-postgres.sh`). Each PostgreSQL run gets its
//! own schema, dropped by `cleanup`, so tests can run in parallel on one database.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{AnyPool, AssertSqlSafe};

pub struct Backend {
    pub name: &'static str,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
    pg: Option<(String, String)>,
}

impl Backend {
    /// A database the test made itself at `url` (`name`: "sqlite" or "postgres"); `cleanup`
    /// leaves it to its maker.
    pub fn at(name: &'static str, url: String) -> Self {
        Self {
            name,
            url,
            _dir: None,
            pg: None,
        }
    }

    /// A second, independent pool on the same database (for poking at it behind the store's back).
    pub async fn side_pool(&self) -> AnyPool {
        sqlx::any::install_default_drivers();
        AnyPool::connect(&self.url).await.unwrap()
    }

    pub async fn cleanup(self) {
        if let Some((base, schema)) = &self.pg {
            let pool = sqlx::PgPool::connect(base).await.unwrap();
            sqlx::query(AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
                .execute(&pool)
                .await
                .unwrap();
        }
    }
}

pub async fn backends() -> Vec<Backend> {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kav.db").display());
    let mut out = vec![Backend {
        name: "sqlite",
        url,
        _dir: Some(dir),
        pg: None,
    }];
    match std::env::var("KAV_TEST_POSTGRES_URL") {
        Ok(base) if !base.is_empty() => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .subsec_nanos();
            let schema = format!(
                "kav_test_{}_{}_{}",
                std::process::id(),
                SEQ.fetch_add(1, Ordering::Relaxed),
                nanos
            );
            let pool = sqlx::PgPool::connect(&base)
                .await
                .expect("KAV_TEST_POSTGRES_URL must be reachable");
            sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA \"{schema}\"")))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            let sep = if base.contains('?') { '&' } else { '?' };
            let url = format!("{base}{sep}options=-c%20search_path%3D{schema}");
            eprintln!("note: also testing PostgreSQL (schema {schema})");
            out.push(Backend {
                name: "postgres",
                url,
                _dir: None,
                pg: Some((base, schema)),
            });
        }
        _ => eprintln!(
            "note: KAV_TEST_POSTGRES_URL unset; PostgreSQL backend skipped (scripts/ci-postgres.sh)"
        ),
    }
    out
}

/// `SELECT COUNT(*) …` with text binds, on a side pool.
pub async fn count(pool: &AnyPool, sql: &str, binds: &[&str]) -> i64 {
    let mut q = sqlx::query(AssertSqlSafe(sql.to_string()));
    for b in binds {
        q = q.bind(b.to_string());
    }
    sqlx::Row::try_get(&q.fetch_one(pool).await.unwrap(), 0).unwrap()
}

/// Adds business `id` (name `name`, English) as a copy of the seeded `biz_escape_tlv`'s settings,
/// so one tenant can try another's ids.
pub async fn add_business_like_seeded(url: &str, id: &str, name: &str) {
    sqlx::any::install_default_drivers();
    let pool = AnyPool::connect(url).await.unwrap();
    sqlx::query(
        "INSERT INTO businesses (id, name, timezone, language, prompt_default, prompt_phone, \
         prompt_whatsapp, opening_hours_json, allow_24_7, slot_size_min, min_notice_min, \
         booking_window_days, require_phone_before_booking, concurrency_scope, \
         concurrency_limit, trace_log_pii, updated_at_ms) \
         SELECT $1, $2, timezone, 'en', prompt_default, prompt_phone, \
         prompt_whatsapp, opening_hours_json, allow_24_7, slot_size_min, min_notice_min, \
         booking_window_days, require_phone_before_booking, concurrency_scope, \
         concurrency_limit, trace_log_pii, updated_at_ms FROM businesses WHERE id = 'biz_escape_tlv'",
    )
    .bind(id)
    .bind(name)
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;
}
