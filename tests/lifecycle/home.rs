//! Where a lifecycle run keeps Herald's state and queue: a private PostgreSQL and Redis, or one
//! SQLite file in a temporary folder. Each home gives the process's variables, prepares the
//! demo app's users, and reads what the test checks in the state ([`State`]: the same questions,
//! asked in each home's SQL).

use std::{
    path::{Path, PathBuf},
    process::Command,
    str::FromStr,
};

use chrono::{DateTime, Utc};
use herald::{
    source::demo::{Demo, NewTask, NewUser},
    store::Store,
};
use sqlx::{
    SqlitePool,
    sqlite::{SqliteConnectOptions, SqlitePoolOptions},
};

use crate::{
    blocking,
    fires::HomeKind,
    servers::{PrivatePostgres, PrivateRedis},
};

/// The home of a run, and what it runs on.
pub enum Home {
    Servers {
        redis: PrivateRedis,
        pg: PrivatePostgres,
    },
    /// The state file `file` in the folder `dir`, removed with the home unless the run failed
    /// (as its logs are; or `HERALD_LIFECYCLE_KEEP_LOGS` is set).
    Embedded { dir: PathBuf, file: PathBuf },
}

impl Drop for Home {
    fn drop(&mut self) {
        if let Home::Embedded { dir, .. } = self {
            if std::thread::panicking() || std::env::var_os("HERALD_LIFECYCLE_KEEP_LOGS").is_some()
            {
                eprintln!("the state file is kept in {}", dir.display());
            } else {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

impl Home {
    pub fn start(kind: HomeKind) -> Home {
        match kind {
            HomeKind::Servers => Home::Servers {
                redis: blocking(PrivateRedis::start),
                pg: blocking(PrivatePostgres::start),
            },
            HomeKind::Embedded => {
                let dir = std::env::temp_dir().join(format!(
                    "herald-lifecycle-file-{}",
                    uuid::Uuid::new_v4().simple()
                ));
                std::fs::create_dir_all(&dir).unwrap();
                let file = dir.join("herald.db");
                Home::Embedded { dir, file }
            }
        }
    }

    pub fn kind(&self) -> HomeKind {
        match self {
            Home::Servers { .. } => HomeKind::Servers,
            Home::Embedded { .. } => HomeKind::Embedded,
        }
    }

    /// The variables that choose this home (nothing else sets `DATABASE_URL` or `REDIS_URL`:
    /// the processes start with a cleared environment).
    pub fn vars(&self) -> Vec<(&'static str, String)> {
        match self {
            Home::Servers { redis, pg } => vec![
                ("DATABASE_URL", pg.url("herald")),
                ("REDIS_URL", redis.url()),
                ("HERALD__DATABASE__MAX_CONNECTIONS", "16".into()),
            ],
            Home::Embedded { file, .. } => {
                vec![("HERALD__STATE__FILE", file.display().to_string())]
            }
        }
    }

    /// The private servers (`None` embedded).
    pub fn servers(&mut self) -> Option<(&mut PrivateRedis, &mut PrivatePostgres)> {
        match self {
            Home::Servers { redis, pg } => Some((redis, pg)),
            Home::Embedded { .. } => None,
        }
    }

    /// The state's database (created and migrated on the servers; the file is created by the
    /// demo and migrated by the first process), and the demo app's tables in it with `n` users,
    /// each with a task overdue since `late`. `vars` are the process's, for `herald migrate`.
    pub async fn prepare(&self, vars: &[(String, String)], n: usize, late: DateTime<Utc>) -> State {
        let demo_url = match self {
            Home::Servers { pg, .. } => {
                let migrate = Command::new(env!("CARGO_BIN_EXE_herald"))
                    .env_clear()
                    .env("PATH", std::env::var("PATH").unwrap_or_default())
                    .envs(vars.iter().map(|(k, v)| (k, v)))
                    .arg("migrate")
                    .output()
                    .unwrap();
                assert!(
                    migrate.status.success(),
                    "herald migrate: {}",
                    String::from_utf8_lossy(&migrate.stderr)
                );
                pg.url("herald")
            }
            Home::Embedded { file, .. } => format!("sqlite://{}", file.display()),
        };
        let demo = Demo::connect(&demo_url).await.unwrap();
        demo.install().await.unwrap();
        for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
            let users: Vec<_> = chunk
                .iter()
                .map(|i| NewUser::new(&format!("life{i}@example.com"), &format!("Life {i}"), "UTC"))
                .collect();
            let ids = demo.insert_users(&users).await.unwrap();
            let tasks: Vec<_> = ids
                .iter()
                .map(|owner_id| NewTask {
                    owner_id: owner_id.clone(),
                    title: "Late".into(),
                    due_at: Some(late),
                    completed_at: None,
                })
                .collect();
            demo.insert_tasks(&tasks).await.unwrap();
        }
        demo.close().await;
        match self {
            Home::Servers { pg, .. } => {
                State::Pg(Store::connect(&pg.url("herald"), 4, false).await.unwrap())
            }
            Home::Embedded { file, .. } => {
                // The test only reads; Herald's lock on the file is for Herald's processes.
                let options = SqliteConnectOptions::from_str("sqlite://")
                    .unwrap()
                    .filename(file)
                    .busy_timeout(std::time::Duration::from_secs(10));
                let pool = SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(options)
                    .await
                    .unwrap();
                State::Lite {
                    pool,
                    file: file.clone(),
                }
            }
        }
    }
}

/// The state, as the test reads it: Herald's PostgreSQL schema, or the SQLite file. A list goes
/// to PostgreSQL as an array and to SQLite as one JSON parameter (`json_each`).
pub enum State {
    Pg(Store),
    Lite { pool: SqlitePool, file: PathBuf },
}

fn json<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap()
}

impl State {
    /// The `X-Herald-Delivery` each delivery carries: its dedup key.
    pub async fn dedup_keys(&self, ids: &[i64]) -> Vec<String> {
        match self {
            State::Pg(store) => {
                sqlx::query_scalar("SELECT dedup_key FROM deliveries WHERE id = ANY($1)")
                    .bind(ids)
                    .fetch_all(store.pg())
                    .await
            }
            State::Lite { pool, .. } => {
                sqlx::query_scalar(
                    "SELECT dedup_key FROM deliveries WHERE id IN (SELECT value FROM json_each(?))",
                )
                .bind(json(ids))
                .fetch_all(pool)
                .await
            }
        }
        .unwrap()
    }

    /// How many of `ids` are recorded as sent.
    pub async fn sent(&self, ids: &[i64]) -> sqlx::Result<i64> {
        match self {
            State::Pg(store) => {
                sqlx::query_scalar(
                    "SELECT count(*) FROM deliveries WHERE id = ANY($1) AND status = 'sent'",
                )
                .bind(ids)
                .fetch_one(store.pg())
                .await
            }
            State::Lite { pool, .. } => {
                sqlx::query_scalar(
                    "SELECT count(*) FROM deliveries
                     WHERE id IN (SELECT value FROM json_each(?)) AND status = 'sent'",
                )
                .bind(json(ids))
                .fetch_one(pool)
                .await
            }
        }
    }

    /// Deliveries of any fire not recorded as sent.
    pub async fn not_sent(&self) -> i64 {
        let sql = "SELECT count(*) FROM deliveries WHERE status <> 'sent'";
        match self {
            State::Pg(store) => sqlx::query_scalar(sql).fetch_one(store.pg()).await,
            State::Lite { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .unwrap()
    }

    /// Up to 20 of the deliveries of `keys`, each as a line of JSON (for a failure's message).
    pub async fn rows(&self, keys: &[&str]) -> Vec<String> {
        match self {
            State::Pg(store) => {
                sqlx::query_scalar(
                    "SELECT json_build_object('id', id, 'status', status, 'attempts', attempts,
                    'last_error', last_error, 'dispatched_at', dispatched_at,
                    'lease_until', lease_until, 'updated_at', updated_at)::text
             FROM deliveries WHERE dedup_key = ANY($1) LIMIT 20",
                )
                .bind(keys)
                .fetch_all(store.pg())
                .await
            }
            State::Lite { pool, .. } => {
                sqlx::query_scalar(
                    "SELECT json_object('id', id, 'status', status, 'attempts', attempts,
                    'last_error', last_error, 'dispatched_at', dispatched_at,
                    'lease_until', lease_until, 'updated_at', updated_at)
             FROM deliveries WHERE dedup_key IN (SELECT value FROM json_each(?)) LIMIT 20",
                )
                .bind(json(keys))
                .fetch_all(pool)
                .await
            }
        }
        .unwrap_or_default()
    }

    /// The attempts of the delivery among `ids` recorded last, each with its time after
    /// `event`: what the slowest email of a fire went through.
    pub async fn last_recorded(&self, ids: &[i64], event: DateTime<Utc>) -> String {
        let line = match self {
            State::Pg(store) => sqlx::query_scalar(
                "WITH last AS (SELECT id FROM deliveries WHERE id = ANY($1) ORDER BY updated_at DESC LIMIT 1)
                 SELECT string_agg(format('%s %s %s +%ss%s', a.provider, a.outcome, coalesce(a.code::text, '-'),
                            round(extract(epoch FROM a.at - $2)::numeric, 1),
                            coalesce(' (' || left(a.error, 80) || ')', '')), '; ' ORDER BY a.attempt)
                 FROM delivery_attempts a JOIN last ON a.delivery_id = last.id",
            )
            .bind(ids)
            .bind(event)
            .fetch_one(store.pg())
            .await,
            State::Lite { pool, .. } => sqlx::query_scalar(
                "SELECT group_concat(line, '; ') FROM (
                   SELECT printf('%s %s %s +%.1fs%s', a.provider, a.outcome, coalesce(a.code, '-'),
                            (julianday(a.at) - julianday(?2)) * 86400,
                            coalesce(' (' || substr(a.error, 1, 80) || ')', '')) AS line
                   FROM delivery_attempts a
                   WHERE a.delivery_id = (SELECT id FROM deliveries
                                          WHERE id IN (SELECT value FROM json_each(?1))
                                          ORDER BY updated_at DESC LIMIT 1)
                   ORDER BY a.attempt)",
            )
            .bind(json(ids))
            .bind(event)
            .fetch_one(pool)
            .await,
        };
        line.unwrap_or_else(|e| Some(format!("cannot read: {e}")))
            .unwrap_or_default()
    }

    /// The deliveries the schedule's cron planned (not by hand: those keys say `manual`).
    pub async fn planned_by_cron(&self) -> Vec<i64> {
        let sql = "SELECT id FROM deliveries WHERE dedup_key LIKE 'overdue_summary:%' ORDER BY id";
        match self {
            State::Pg(store) => sqlx::query_scalar(sql).fetch_all(store.pg()).await,
            State::Lite { pool, .. } => sqlx::query_scalar(sql).fetch_all(pool).await,
        }
        .unwrap_or_default()
    }

    /// Whether `schedule` has planned its first round (its watermark is set).
    pub async fn has_watermark(&self, schedule: &str) -> bool {
        match self {
            State::Pg(store) => store
                .watermarks()
                .await
                .unwrap_or_default()
                .iter()
                .any(|(s, _)| s == schedule),
            State::Lite { pool, .. } => sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM schedule_watermarks WHERE schedule = ?)",
            )
            .bind(schedule)
            .fetch_one(pool)
            .await
            .unwrap_or(false),
        }
    }

    /// The file's queue and claims, and its size (`None` on the servers).
    pub async fn file_figures(&self, queue: &str) -> Option<sqlx::Result<FileFigures>> {
        let State::Lite { pool, file } = self else {
            return None;
        };
        Some(file_figures(pool, file, queue).await)
    }

    pub async fn close(&self) {
        match self {
            State::Pg(store) => store.pg().close().await,
            State::Lite { pool, .. } => pool.close().await,
        }
    }
}

/// What a fire may leave in the state file: jobs, claims, workers, and the file's size.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileFigures {
    /// Rows of the queue in apalis-sqlite's `Jobs` (any status; the dead letters aside).
    pub jobs: u64,
    /// Deliveries claimed (`sending`).
    pub sending: u64,
    /// Rows of the queue in `Workers`.
    pub workers: u64,
    pub db_bytes: u64,
    pub wal_bytes: u64,
}

async fn file_figures(pool: &SqlitePool, file: &Path, queue: &str) -> sqlx::Result<FileFigures> {
    let (jobs, sending, workers): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM Jobs WHERE job_type = ?1),
                (SELECT count(*) FROM deliveries WHERE status = 'sending'),
                (SELECT count(*) FROM Workers WHERE worker_type = ?1)",
    )
    .bind(queue)
    .fetch_one(pool)
    .await?;
    let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut wal = file.as_os_str().to_owned();
    wal.push("-wal");
    Ok(FileFigures {
        jobs: jobs as u64,
        sending: sending as u64,
        workers: workers as u64,
        db_bytes: size(file.to_path_buf()),
        wal_bytes: size(PathBuf::from(wal)),
    })
}
