//! The harness: a real SMTP server in the test process, a fresh database and Redis queue per
//! test (on `DATABASE_URL`'s and `REDIS_URL`'s servers when set), and the real application
//! booted on port 0.

use std::{
    ops::Deref,
    path::{Path, PathBuf},
    time::Duration,
};

// Only tests/api names each of these.
#[allow(unused_imports)]
pub use crate::homes::{Home, StateSql, herald_beside, herald_ok_beside};
use chrono::{DateTime, Utc};
use herald::{
    config::Settings,
    queue::{self, Queue},
    startup::Application,
    store::Store,
};
use serde_json::Value;
use tokio::{sync::oneshot, task::JoinHandle};

#[path = "../support/smtp_sink.rs"]
mod smtp_sink;

// The harness's other parts, beside this file in every crate that includes it.
#[path = "demo_data.rs"]
mod demo_data;
#[path = "processes.rs"]
mod processes;
#[path = "test_urls.rs"]
mod test_urls;
pub use demo_data::*;
pub use processes::*;
pub use test_urls::*;

// Not every test crate that includes these helpers names `Received`.
#[allow(unused_imports)]
pub use smtp_sink::Received;
use smtp_sink::SmtpSink;

/// A task as `(title, due_at, completed_at)`.
pub type TaskSpec<'a> = (&'a str, DateTime<Utc>, Option<DateTime<Utc>>);

/// A task due before the standard tick, and that tick: the overdue summary has one email for
/// every user added with [`TestApp::add_late_user`].
pub const LATE: &str = "2026-11-20T10:00:00Z";
pub const TICK: &str = "2026-11-23T07:00:00Z";

pub const TOKEN: &str = "test-token-0123456789abcdef";
/// The API key tests give Herald for the Resend stand-in.
pub const RESEND_KEY: &str = "re_test_0123456789";
/// The tests' SMTP server: an [`SmtpSink`] in the test process that keeps every message it
/// accepts, one per test. Everything else (script, counts, stop) is [`SmtpSink`]'s.
pub struct SmtpServer(SmtpSink);

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        SmtpServer::start_on(0).await
    }

    /// Starts the server on this port (0: any free one).
    pub async fn start_on(port: u16) -> SmtpServer {
        SmtpServer(SmtpSink::recording_on(port).await)
    }
}

impl Deref for SmtpServer {
    type Target = SmtpSink;

    fn deref(&self) -> &SmtpSink {
        &self.0
    }
}

/// Everything a test needs to boot Herald against its own database and queue: on PostgreSQL
/// and Redis ([`Env::new`]), or in a state file of its own ([`Env::embedded`](crate::homes)).
#[derive(Clone, Debug)]
pub struct Env {
    /// The test's database on PostgreSQL; in the embedded home, only the test's name.
    pub database: String,
    pub vars: Vec<(String, String)>,
    /// The embedded home's folder, which holds the state file (`None` on the servers).
    pub folder: Option<PathBuf>,
}

impl Env {
    /// A database of its own on PostgreSQL and a queue name of its own on Redis.
    pub fn new(smtp: &SmtpServer) -> Env {
        crate::shared_servers::assert_guarded("Env::new");
        crate::homes::assert_on_servers("Env::new");
        let mut env = Env::common(smtp);
        env.set("DATABASE_URL", &database_url(&env.database));
        env.set("REDIS_URL", &redis_url());
        env
    }

    /// What the test's settings are in either home: the SMTP sink, the token, a port of its
    /// own, a name of its own (the database's and the queue's), no cron ticks.
    pub(crate) fn common(smtp: &SmtpServer) -> Env {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("herald_test_{id}");
        let queue = format!("herald-test-{id}");
        let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let vars = [
            ("SMTP_URL", smtp.url()),
            ("MAIL_FROM", "Herald <herald@example.com>".to_owned()),
            ("HERALD_API_TOKEN", TOKEN.to_owned()),
            ("HERALD_HTTP_ADDR", "127.0.0.1:0".to_owned()),
            ("HERALD__QUEUE__NAME", queue.clone()),
            ("HERALD__TEMPLATES__DIR", templates.display().to_string()),
            ("HERALD__DATABASE__MAX_CONNECTIONS", "8".to_owned()),
            // Tests trigger fixed dates in November 2026: keep deliveries long enough that a
            // trigger at those dates is never refused as older than the retention allows.
            ("HERALD__RETENTION__SENT", "3650d".to_owned()),
            ("HERALD__RETENTION__FAILED", "3650d".to_owned()),
            ("HERALD__RETENTION__SKIPPED", "3650d".to_owned()),
            ("HERALD__RETENTION__PAYLOAD", "3650d".to_owned()),
            // The cron ticks stay off: tests plan through the trigger endpoint, at chosen
            // instants, or switch one schedule back on.
            ("HERALD__SCHEDULES__ENABLED", "false".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Env {
            database,
            vars,
            folder: None,
        }
    }

    /// Sends through the Resend stand-in (first), then SMTP.
    pub fn with_resend(mut self, url: &str) -> Env {
        self.set("RESEND_API_KEY", RESEND_KEY);
        self.set("HERALD__MAIL__RESEND__BASE_URL", url);
        self
    }

    pub fn set(&mut self, key: &str, value: &str) {
        self.vars.retain(|(k, _)| k != key);
        self.vars.push((key.to_owned(), value.to_owned()));
    }

    pub fn settings(&self) -> Settings {
        Settings::load_from(&herald::kinds::defaults(), None, &self.vars)
            .expect("test settings are valid")
    }

    /// Drops the database and the queue's Redis keys; in the embedded home, removes the folder.
    pub async fn cleanup(&self) {
        if let Some(folder) = &self.folder {
            crate::homes::remove_folder(folder);
            return;
        }
        self.cleanup_database().await;
        let queue = Queue::new(
            queue::connect(&redis_url()).await.unwrap(),
            &self.settings().queue,
        );
        queue.delete_all_keys().await.unwrap();
    }

    pub async fn cleanup_database(&self) {
        let admin = Store::connect(&database_url("postgres"), 1, false)
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.database
        )))
        .execute(admin.pg())
        .await
        .unwrap();
        admin.pg().close().await;
    }
}

/// A running Herald inside the test process.
pub struct TestApp {
    pub address: String,
    pub env: Env,
    pub store: Store,
    pub queue: Queue,
    pub http: reqwest::Client,
    pub clock: herald::clock::Clock,
    pub planner: herald::schedule::Planner,
    /// The running app's shared state: health, faults, settings.
    pub state: herald::http::AppState,
    /// Whether dropping this app removes the database and Redis keys (one owner per env).
    pub owns_env: bool,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app(smtp: &SmtpServer) -> TestApp {
    spawn_with(Env::new(smtp)).await
}

pub async fn spawn_with(env: Env) -> TestApp {
    spawn_with_clock(env, herald::clock::Clock::System).await
}

/// Boots the app with a clock the test moves; the planner is nudged by [`TestApp::advance`].
pub async fn spawn_with_clock(env: Env, clock: herald::clock::Clock) -> TestApp {
    init_logs();
    let app = Application::build_with_clock(env.settings(), clock.clone())
        .await
        .expect("the app builds");
    let planner = app.state().planner.clone();
    let state = app.state().clone();
    let address = format!("http://{}", app.address());
    let store = app.state().store.clone();
    let queue = app.state().queue.clone();
    // The home the settings chose, and none other: an embedded env never reaches the servers.
    assert_eq!(
        store.is_embedded(),
        env.folder.is_some(),
        "the app's state is not in the home its Env names"
    );
    let (tx, rx) = oneshot::channel();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    TestApp {
        address,
        env,
        store,
        queue,
        http: reqwest::Client::new(),
        clock,
        planner,
        state,
        owns_env: true,
        stop: Some(tx),
        handle: Some(handle),
    }
}

impl TestApp {
    /// Moves the clock to `t`, wakes the planner and waits until every enabled schedule has
    /// planned up to `t`.
    pub async fn advance(&self, t: DateTime<Utc>) {
        self.clock.set(t);
        self.planner.nudge();
        let names: Vec<_> = self
            .env
            .settings()
            .schedules
            .iter()
            .filter(|s| s.enabled)
            .map(|s| s.name.clone())
            .collect();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        for name in names {
            while self
                .store
                .watermark(&name)
                .await
                .unwrap()
                .is_none_or(|w| w < t)
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{name} did not plan up to {t}"
                );
                self.planner.nudge();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }

    /// Adds a user with one task overdue since before the standard tick ([`TICK`]).
    pub async fn add_late_user(&self, email: &str) -> i64 {
        self.add_user(email, "UTC", &[("Late", at(LATE), None)])
            .await
    }

    /// Adds `n` users `<prefix><i>@example.com`, each with one task overdue since before the
    /// standard tick, in two statements; returns their ids.
    pub async fn add_late_users(&self, prefix: &str, n: usize) -> Vec<i64> {
        let users: Vec<_> = (0..n)
            .map(|i| NewUser {
                email: format!("{prefix}{i}@example.com"),
                display_name: format!("User {i}"),
                timezone: "UTC".into(),
            })
            .collect();
        let ids = self.store.insert_users(&users).await.unwrap();
        let tasks: Vec<_> = ids
            .iter()
            .map(|&owner_id| NewTask {
                owner_id,
                title: "Late".into(),
                due_at: Some(at(LATE)),
                completed_at: None,
            })
            .collect();
        self.store.insert_tasks(&tasks).await.unwrap();
        ids
    }

    /// Plans the overdue summary at the standard tick; returns the new deliveries' ids.
    pub async fn trigger_overdue(&self) -> Vec<i64> {
        let (status, report) = self
            .trigger(
                "overdue_summary",
                serde_json::json!({ "at": at(TICK), "ids": true }),
            )
            .await;
        assert_eq!(status, 202, "{report}");
        report["delivery_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_i64().unwrap())
            .collect()
    }

    /// Triggers the overdue summary of each of `users` on its own, so that each email goes to
    /// Redis as a job of its own (or a few together) and every process's workers can take one.
    pub async fn trigger_overdue_each(&self, users: &[i64]) {
        for id in users {
            let (status, report) = self
                .trigger(
                    "overdue_summary",
                    serde_json::json!({ "at": at(TICK), "user_id": id }),
                )
                .await;
            assert_eq!(
                (status, &report["planned"]),
                (202, &serde_json::json!(1)),
                "{report}"
            );
        }
    }

    /// How many deliveries each worker claimed (`deliveries.claimed_by`, which the outcome
    /// leaves in place), by worker name.
    pub async fn claims_by_worker(&self) -> Vec<(String, i64)> {
        self.store
            .sql_rows(
                "SELECT claimed_by, count(*) FROM deliveries WHERE claimed_by IS NOT NULL
                 GROUP BY claimed_by ORDER BY claimed_by",
                &[],
            )
            .await
    }

    pub async fn trigger(&self, schedule: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/api/schedules/{schedule}/trigger"), body)
            .await
    }

    /// `POST` of a JSON body with the token.
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.address))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.address))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `GET /metrics` as text.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.address))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Adds a user with tasks `(title, due_at, completed_at)`; returns the user id.
    pub async fn add_user(&self, email: &str, tz: &str, tasks: &[TaskSpec<'_>]) -> i64 {
        add_user(&self.store, email, tz, tasks).await
    }

    pub async fn count_status(&self, status: &str) -> i64 {
        let counts = self.store.status_counts().await.unwrap();
        counts
            .iter()
            .find(|(s, _)| s.as_str() == status)
            .map_or(0, |(_, n)| *n)
    }

    /// Waits until `n` deliveries have this status (the bound only stops a hung test).
    pub async fn wait_for_status(&self, status: &str, n: i64, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.count_status(status).await;
            if got >= n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {got} of {n} deliveries are {status}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the app gracefully; returns what `run_until_stopped` returned.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.handle.take() {
            Some(h) => h.await.unwrap(),
            None => Ok(()),
        }
    }

    /// Stops this app and boots another one on the same database and queue with `env`, as an
    /// operator restarting Herald with a corrected configuration.
    pub async fn restart_with(mut self, env: Env) -> TestApp {
        self.stop().await.expect("the app stops cleanly");
        crate::homes::close(&self.store).await;
        self.owns_env = false;
        drop(self);
        spawn_with(env).await
    }

    /// The delivery's `round_attempts`: attempts used in this round of retries.
    pub async fn round_attempts(&self, id: i64) -> i32 {
        self.store
            .sql_scalar(
                "SELECT round_attempts FROM deliveries WHERE id = $1",
                &[id.into()],
            )
            .await
    }

    /// Stops the app cleanly; dropping it then removes its database and Redis keys.
    pub async fn finish(mut self) {
        self.stop().await.expect("the app stops cleanly");
        crate::homes::close(&self.store).await;
    }
}

impl Drop for TestApp {
    /// Removes the test's database and Redis keys, also when the test panicked. Runs on a
    /// thread of its own because the test's runtime may be the one unwinding.
    fn drop(&mut self) {
        if !self.owns_env {
            return;
        }
        drop(EnvGuard(self.env.clone()));
    }
}

/// A migrated store of its own for `env`, in its home, with no Herald running on it: the test
/// drives the store, the planner or the worker step itself. Dropping the guard removes the
/// database and Redis keys, or the embedded home's folder.
pub async fn bare_store(env: &Env) -> (Store, EnvGuard) {
    init_logs();
    let guard = EnvGuard(env.clone());
    let store = Store::open(&env.settings().home, 8).await.unwrap();
    let store = herald::store::prepare(store, None).await.unwrap();
    (store, guard)
}

/// Removes an [`Env`]'s database and Redis keys when dropped, also when the test panicked. Runs
/// on a thread of its own because the test's runtime may be the one unwinding. Tests that run
/// `herald` processes hold one; declare it before the daemons so it is dropped after them.
pub struct EnvGuard(pub Env);

impl Drop for EnvGuard {
    fn drop(&mut self) {
        let env = self.0.clone();
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for cleanup")
                .block_on(env.cleanup())
        })
        .join();
    }
}

#[cfg(test)]
mod urls {
    use super::test_urls::{database_url_from, redis_url_from};
    use super::*;

    #[test]
    fn without_database_url_each_test_database_is_on_the_local_server() {
        assert_eq!(
            database_url_from(None, "herald_test_1").unwrap(),
            "postgres://postgres@127.0.0.1:5432/herald_test_1"
        );
    }

    #[test]
    fn database_url_gives_the_server_user_and_options_and_each_test_its_own_database() {
        let base = "postgresql://ci:pw@db.internal:6543/herald?sslmode=disable";
        assert_eq!(
            database_url_from(Some(base), "herald_test_1").unwrap(),
            "postgresql://ci:pw@db.internal:6543/herald_test_1?sslmode=disable"
        );
        assert_eq!(
            database_url_from(Some("postgres://ci@db.internal"), "postgres").unwrap(),
            "postgres://ci@db.internal/postgres"
        );
    }

    #[test]
    fn a_database_url_that_is_not_postgresql_is_refused_without_its_password() {
        for bad in ["mysql://u:hunter2@h/db", "not a url"] {
            let e = database_url_from(Some(bad), "x").unwrap_err();
            assert!(
                e.starts_with("DATABASE_URL ") && e.contains(LOCAL_PG),
                "{e}"
            );
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn redis_url_is_used_with_its_database_or_database_0() {
        assert_eq!(redis_url_from(None).unwrap(), "redis://127.0.0.1:6379/0");
        assert_eq!(
            redis_url_from(Some("redis://:pw@cache:6380/3")).unwrap(),
            "redis://:pw@cache:6380/3"
        );
        assert_eq!(
            redis_url_from(Some("redis://cache:6380")).unwrap(),
            "redis://cache:6380/0"
        );
        assert_eq!(
            redis_url_from(Some("redis+unix:///run/redis.sock?db=2")).unwrap(),
            "redis+unix:///run/redis.sock?db=2"
        );
    }

    #[test]
    fn redis_databases_11_to_15_and_bad_urls_are_refused() {
        for db in 11..=15 {
            let e = redis_url_from(Some(&format!("redis://:hunter2@cache/{db}"))).unwrap_err();
            assert!(
                e.contains(&format!("database {db}")) && e.contains("11 to 15"),
                "{e}"
            );
            assert!(!e.contains("hunter2"), "{e}");
        }
        let e = redis_url_from(Some("unix:///run/redis.sock?db=12")).unwrap_err();
        assert!(e.contains("database 12"), "{e}");
        let e = redis_url_from(Some("redis://cache/zero")).unwrap_err();
        assert!(e.contains("\"zero\", which is not a number"), "{e}");
        let e = redis_url_from(Some("127.0.0.1:6379")).unwrap_err();
        assert!(e.contains("is not a Redis URL"), "{e}");
    }

    #[test]
    fn with_password_adds_a_password_and_a_user_when_there_is_none() {
        assert_eq!(
            with_password("redis://127.0.0.1:6379/0", "default", "s3cr3t"),
            "redis://default:s3cr3t@127.0.0.1:6379/0"
        );
        assert_eq!(
            with_password("postgres://postgres@h:5432/db", "x", "s3cr3t"),
            "postgres://postgres:s3cr3t@h:5432/db"
        );
    }
}
