//! Growing out of the embedded mode: `herald migrate-state --to postgres://…` moves a state that
//! looks lived in (emails sent, one failed and its address suppressed, one waiting for a retry,
//! a fire planned and in the queue with two of its deliveries claimed by a process that died,
//! an opt-out) into a fresh PostgreSQL database; Herald on PostgreSQL and Redis then sends what
//! was waiting, and every email reaches its user once over the whole life, counted at the SMTP
//! server. Also: a running embedded Herald, a target that holds a state already and a row that
//! cannot be converted are each refused, the last leaving nothing behind.

#[macro_use]
#[path = "support/shared_servers.rs"]
mod shared_servers;
#[path = "support/smtp_sink.rs"]
mod smtp_sink;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use chrono::{DateTime, Utc};
use herald::{
    clock::Clock,
    config::Settings,
    queue::Embedded,
    source::{
        Source,
        demo::{Demo, NewTask, NewUser},
    },
    startup::Application,
    store::Store,
};
use serde_json::{Value, json};
use smtp_sink::SmtpSink;
use tokio::sync::oneshot;

const TOKEN: &str = "migrate-state-test-token-0123456789";
const USERS: usize = 8;
/// Bounds that only stop a hung test.
const HUNG: Duration = Duration::from_secs(60);

/// A folder and a PostgreSQL database of the test's own, removed at the end (also when the test
/// fails), with the Redis keys of its queue.
struct Place {
    dir: PathBuf,
    database: String,
    queue: String,
}

impl Place {
    fn new() -> Place {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = std::env::temp_dir().join(format!("herald-migrate-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        Place {
            dir,
            database: format!("herald_test_migrate_{id}"),
            queue: format!("herald-test-migrate-{id}"),
        }
    }

    fn db(&self) -> PathBuf {
        self.dir.join("herald.db")
    }

    /// The test's database on the tests' PostgreSQL server.
    fn pg_url(&self) -> String {
        let base = server_url("DATABASE_URL", shared_servers::DEFAULT_PG);
        let mut url = url::Url::parse(&base).unwrap();
        url.set_path(&format!("/{}", self.database));
        url.into()
    }

    /// The embedded settings file (the state file, one retry an hour later) and the variables
    /// both homes share.
    fn embedded(&self, smtp: &SmtpSink) -> (PathBuf, Vec<(String, String)>) {
        let file = self.dir.join("herald.toml");
        let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
        std::fs::write(
            &file,
            format!(
                "[database]\nurl = \"\"\n[redis]\nurl = \"\"\n[state]\nfile = \"{}\"\n\
                 [templates]\ndir = \"{templates}\"\n[queue]\nretry_delays = [\"1h\"]\n",
                self.db().display()
            ),
        )
        .unwrap();
        (file, common_vars(smtp))
    }

    fn embedded_settings(&self, smtp: &SmtpSink) -> Settings {
        let (file, vars) = self.embedded(smtp);
        Settings::load_from(&herald::kinds::defaults(), file.to_str(), &vars).unwrap()
    }

    /// Herald on the test's database and its own queue in Redis.
    fn servers_settings(&self, smtp: &SmtpSink) -> Settings {
        let mut vars = common_vars(smtp);
        vars.extend([
            ("DATABASE_URL".to_owned(), self.pg_url()),
            (
                "REDIS_URL".to_owned(),
                server_url("REDIS_URL", shared_servers::DEFAULT_REDIS),
            ),
            ("HERALD__QUEUE__NAME".to_owned(), self.queue.clone()),
            (
                "HERALD__TEMPLATES__DIR".to_owned(),
                concat!(env!("CARGO_MANIFEST_DIR"), "/templates").to_owned(),
            ),
        ]);
        Settings::load_from(&herald::kinds::defaults(), None, &vars).unwrap()
    }

    /// `herald migrate-state ARGS` (the real binary) on the embedded settings.
    fn migrate_state(&self, smtp: &SmtpSink, args: &[&str]) -> std::process::Output {
        let (file, vars) = self.embedded(smtp);
        herald(&file, &vars)
            .arg("migrate-state")
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let (database, queue) = (self.database.clone(), self.queue.clone());
        let admin = {
            let mut url = url::Url::parse(&self.pg_url()).unwrap();
            url.set_path("/postgres");
            String::from(url)
        };
        let redis = server_url("REDIS_URL", shared_servers::DEFAULT_REDIS);
        // Drop runs inside the test's runtime: the cleanup gets a runtime of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                if let Ok(admin) = Store::connect(&admin, 1, false).await {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
                    )))
                    .execute(admin.pg())
                    .await;
                }
                if let Ok(mut conn) = herald::queue::connect(&redis).await {
                    let _ = herald::queue::delete_queue_keys(&mut conn, &queue).await;
                }
            })
        })
        .join();
    }
}

fn server_url(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

fn common_vars(smtp: &SmtpSink) -> Vec<(String, String)> {
    [
        ("SMTP_URL", smtp.url()),
        ("MAIL_FROM", "Herald <herald@example.com>".to_owned()),
        ("HERALD_API_TOKEN", TOKEN.to_owned()),
        ("HERALD_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("HERALD__SCHEDULES__ENABLED", "false".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The real `herald` binary with only these settings.
fn herald(config: &Path, vars: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HERALD_CONFIG", config)
        .envs(vars.iter().map(|(k, v)| (k, v)));
    cmd
}

fn text(out: &std::process::Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A running Herald and how to stop it.
struct Running {
    address: String,
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Running {
    async fn start(settings: Settings, clock: Clock) -> Running {
        let app = Application::build_with_clock(settings, clock)
            .await
            .expect("the app builds");
        let address = format!("http://{}", app.address());
        let (stop, rx) = oneshot::channel();
        let handle = tokio::spawn(app.run_until_stopped(async move {
            let _ = rx.await;
        }));
        Running {
            address,
            stop,
            handle,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = reqwest::Client::new()
            .request(method, format!("{}/api{path}", self.address))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    async fn trigger(&self, at: DateTime<Utc>) -> Value {
        let body = json!({ "at": at.to_rfc3339() });
        self.call(
            reqwest::Method::POST,
            "/schedules/overdue_summary/trigger",
            Some(body),
        )
        .await
    }

    /// Waits until `path`'s list under `key` has `n` entries.
    async fn wait_for_list(&self, path: &str, key: Option<&str>, n: usize) -> Value {
        let deadline = tokio::time::Instant::now() + HUNG;
        loop {
            let v = self.get(path).await;
            let list = key.map_or(&v, |k| &v[k]).as_array().unwrap().clone();
            if list.len() >= n {
                return Value::Array(list);
            }
            assert!(tokio::time::Instant::now() < deadline, "{path}: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn finish(self) {
        let _ = self.stop.send(());
        self.handle.await.unwrap().unwrap();
    }
}

/// The demo app in the state file: `USERS` users in UTC, each with a task overdue for days.
async fn seed(place: &Place, now: DateTime<Utc>) -> Vec<(String, String)> {
    let demo = Demo::connect(&format!("sqlite://{}", place.db().display()))
        .await
        .unwrap();
    demo.install().await.unwrap();
    let users: Vec<NewUser> = (0..USERS)
        .map(|i| {
            NewUser::new(
                &format!("mover{i}@example.com"),
                &format!("Mover {i}"),
                "UTC",
            )
        })
        .collect();
    let ids = demo.insert_users(&users).await.unwrap();
    let tasks: Vec<NewTask> = ids
        .iter()
        .map(|id| NewTask {
            owner_id: id.clone(),
            title: "File the report".to_owned(),
            due_at: Some(now - chrono::Duration::days(3)),
            completed_at: None,
        })
        .collect();
    demo.insert_tasks(&tasks).await.unwrap();
    demo.close().await;
    ids.into_iter()
        .zip(users.into_iter().map(|u| u.email))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lived_in_state_moves_to_postgresql_and_every_email_arrives_once_over_its_life() {
    skip_without_servers!();
    let place = Place::new();
    let smtp = SmtpSink::recording().await;
    let now = Utc::now();
    let users = seed(&place, now).await;
    let (bounced, retried, opted_out) = (&users[0], &users[1], &users[3]);
    smtp.script(&[
        (bounced.1.as_str(), &["550 5.1.1 No such user"][..]),
        (retried.1.as_str(), &["451 4.7.1 Try again later"][..]),
    ]);

    // The embedded Herald sends today's summaries: one bounces (failed, suppressed), one waits
    // an hour for its retry, the others arrive.
    let embedded = Running::start(place.embedded_settings(&smtp), Clock::System).await;
    assert_eq!(embedded.trigger(now).await["planned"], USERS as u64);
    smtp.wait_for_total(USERS as u64 - 2, HUNG).await;
    embedded.wait_for_list("/failed", Some("failed"), 1).await;
    embedded.wait_for_list("/suppressions", None, 1).await;
    let deadline = tokio::time::Instant::now() + HUNG;
    while smtp.counts().offered(&retried.1) == 0 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    embedded.finish().await;

    // What a process killed mid-flight leaves: yesterday's fire planned (by the real CLI),
    // dispatched into the embedded queue's jobs, two of its deliveries claimed by a worker that
    // is gone; and an opt-out recorded after it was planned.
    let yesterday = now - chrono::Duration::days(1);
    let (config, vars) = place.embedded(&smtp);
    let out = herald(&config, &vars)
        .args([
            "trigger",
            "overdue_summary",
            "--at",
            &yesterday.to_rfc3339(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let planned_yesterday: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The bounced address is suppressed: the planner leaves it out.
    assert_eq!(
        planned_yesterday["planned"],
        USERS as u64 - 1,
        "{}",
        text(&out)
    );
    {
        let url = format!("sqlite://{}", place.db().display());
        let store = Store::open_embedded(&place.db(), Source::connect(&url, 2).await.unwrap())
            .await
            .unwrap();
        let ids = store.take_due(1000, Utc::now()).await.unwrap();
        assert_eq!(ids.len(), USERS - 1);
        let settings = place.embedded_settings(&smtp);
        let queue = Embedded::open(store.lite().unwrap(), &settings.queue)
            .await
            .unwrap();
        queue.push(&ids, 3).await.unwrap();
        let (claimed, _) = store
            .claim_many(
                &ids[..2],
                Duration::from_secs(3600),
                "example.com",
                5,
                Utc::now(),
                Some("a-worker-that-was-killed"),
            )
            .await
            .unwrap();
        assert_eq!(claimed.len(), 2);
        store
            .set_preferences(&opted_out.0, &[("overdue_summary".to_owned(), false)])
            .await
            .unwrap();
    }

    // The move, by the real binary.
    let out = place.migrate_state(&smtp, &["--to", &place.pg_url()]);
    assert!(out.status.success(), "{}", text(&out));
    // The file is marked: an embedded Herald started on it again refuses, naming where it went.
    let (config, vars) = place.embedded(&smtp);
    let again = herald(&config, &vars).arg("run").output().unwrap();
    assert!(!again.status.success(), "{}", text(&again));
    assert!(
        text(&again).contains("was moved into PostgreSQL"),
        "{}",
        text(&again)
    );
    let printed = String::from_utf8_lossy(&out.stdout);
    let expected_deliveries = (2 * USERS - 1).to_string();
    let row = printed
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|words| words.first() == Some(&"herald.deliveries"));
    assert_eq!(
        row,
        Some(vec![
            "herald.deliveries",
            &expected_deliveries,
            &expected_deliveries
        ]),
        "{printed}"
    );
    for line in [
        "DATABASE_URL=",
        "REDIS_URL=",
        "state.file is no longer read",
        "backup",
    ] {
        assert!(printed.contains(line), "no {line:?} in:\n{printed}");
    }

    // Herald on PostgreSQL and Redis, two hours on (the retry is due): what waited goes out.
    let clock = Clock::manual(now + chrono::Duration::hours(2));
    let servers = Running::start(place.servers_settings(&smtp), clock).await;
    // Today's: all but the bounced; yesterday's: all but the bounced (suppressed) and the one
    // who opted out since.
    let expected = (USERS as u64 - 1) + (USERS as u64 - 2);
    smtp.wait_for_total(expected, HUNG).await;
    // The same fires again find everything planned.
    for at in [now, yesterday] {
        let again = servers.trigger(at).await;
        assert_eq!(again["planned"], 0, "{again}");
    }
    // Every delivery is final: nothing more can leave.
    let pg = sqlx::PgPool::connect(&place.pg_url()).await.unwrap();
    let deadline = tokio::time::Instant::now() + HUNG;
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM herald.deliveries WHERE status IN ('queued', 'sending')",
        )
        .fetch_one(&pg)
        .await
        .unwrap();
        if waiting == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{waiting} waiting");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pg.close().await;

    // Counted at the SMTP server, never deduplicated: each email once.
    let counts = smtp.counts();
    assert_eq!(counts.duplicates(), 0);
    assert_eq!(counts.total, expected);
    assert_eq!(counts.offered(&bounced.1), 1, "the bounced address, once");
    assert_eq!(counts.recipient(&bounced.1), 0);
    assert_eq!(
        counts.recipient(&retried.1),
        2,
        "today's after its retry, and yesterday's"
    );
    assert_eq!(counts.recipient(&opted_out.1), 1, "today's only");
    for (_, email) in [&users[2]].into_iter().chain(&users[4..]) {
        assert_eq!(counts.recipient(email), 2, "{email}");
    }

    // The failed set, the suppression and the opt-out came along.
    let failed = servers.get("/failed").await;
    assert_eq!(failed["failed"].as_array().unwrap().len(), 1, "{failed}");
    assert_eq!(failed["failed"][0]["recipient"], bounced.1.as_str());
    let suppressions = servers.get("/suppressions").await;
    assert_eq!(
        suppressions[0]["address"],
        bounced.1.as_str(),
        "{suppressions}"
    );
    let preferences = servers
        .get(&format!("/users/{}/preferences", opted_out.0))
        .await;
    assert_eq!(
        preferences["kinds"]["overdue_summary"], false,
        "{preferences}"
    );
    servers.finish().await;
}

#[tokio::test]
async fn a_running_embedded_herald_is_named_and_the_move_refused() {
    skip_without_servers!();
    let place = Place::new();
    let smtp = SmtpSink::start().await;
    // The lock an embedded Herald holds for its life, held here by this process.
    let held = herald::store::lite::StateLock::take(&place.db()).unwrap();
    std::fs::write(place.db(), b"").unwrap();
    let out = place.migrate_state(&smtp, &["--to", &place.pg_url()]);
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("pid {}", std::process::id())) && stderr.contains("stop it first"),
        "{stderr}"
    );
    drop(held);
    // Nothing was created on the server.
    let admin = sqlx::PgPool::connect(&server_url("DATABASE_URL", shared_servers::DEFAULT_PG))
        .await
        .unwrap();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&place.database)
            .fetch_one(&admin)
            .await
            .unwrap();
    admin.close().await;
    assert!(!exists);
}

/// A state file with two deliveries, an opt-out recorded at `opted_out_at` and a watermark with
/// nine fraction digits. The opt-out is copied after the deliveries.
async fn small_state(place: &Place, opted_out_at: &str) {
    let lite = herald::store::lite::Lite::open(&place.db()).await.unwrap();
    for (id, due_at) in [
        (1, "2026-12-06T09:00:00.123+00:00"),
        (2, "2026-12-06 09:00:00"),
    ] {
        sqlx::query(
            "INSERT INTO deliveries (id, kind, user_id, dedup_key, status, payload, recipient,
                                     planned_for, due_at)
             VALUES (?, 'overdue_summary', ?, ?, 'sent', '{}', 'a@example.com', ?, ?)",
        )
        .bind(id)
        .bind(id.to_string())
        .bind(format!("overdue_summary:{id}:2026-12-06"))
        .bind("2026-12-06T09:00:00+00:00")
        .bind(due_at)
        .execute(&lite.writer)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO email_opt_outs (user_id, kind, created_at) VALUES ('1', 'weekly_report', ?)",
    )
    .bind(opted_out_at)
    .execute(&lite.writer)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO schedule_watermarks (schedule, planned_up_to)
         VALUES ('overdue_summary', '2026-12-06T07:00:00.123456789+00:00')",
    )
    .execute(&lite.writer)
    .await
    .unwrap();
    lite.writer.close().await;
}

async fn target_deliveries(place: &Place) -> i64 {
    let pg = sqlx::PgPool::connect(&place.pg_url()).await.unwrap();
    let n = sqlx::query_scalar("SELECT count(*) FROM herald.deliveries")
        .fetch_one(&pg)
        .await
        .unwrap();
    pg.close().await;
    n
}

#[tokio::test]
async fn a_row_that_cannot_be_converted_is_named_and_nothing_is_written() {
    skip_without_servers!();
    let place = Place::new();
    small_state(&place, "next tuesday").await;
    let refused = herald::store::migrate_state::migrate_state(&place.db(), &place.pg_url(), true)
        .await
        .unwrap_err();
    let refused = format!("{refused:#}");
    assert!(
        refused.contains(
            "email_opt_outs with user and kind 1 weekly_report: its created_at \"next tuesday\" \
             is not an instant"
        ),
        "{refused}"
    );
    // The deliveries, copied before the opt-outs, were rolled back with them.
    assert_eq!(target_deliveries(&place).await, 0, "all or nothing");
}

#[tokio::test]
async fn a_target_that_holds_a_state_is_refused_and_left_as_it_was() {
    skip_without_servers!();
    let place = Place::new();
    let smtp = SmtpSink::start().await;
    small_state(&place, "2026-12-06T08:00:00Z").await;
    // A servers home started once on the empty target wrote a watermark and a housekeeping
    // mark: no state yet, and replaced by the file's (its watermark, no mark).
    let target = Store::connect(&place.pg_url(), 1, true).await.unwrap();
    target.migrate().await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO schedule_watermarks (schedule, planned_up_to) VALUES ('weekly_report', now());
         INSERT INTO housekeeping_marks (name, up_to) VALUES ('payloads', now());",
    )
    .execute(target.pg())
    .await
    .unwrap();
    target.pg().close().await;
    drop(target);
    let out = place.migrate_state(&smtp, &["--to", &place.pg_url()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(target_deliveries(&place).await, 2);
    let pg = sqlx::PgPool::connect(&place.pg_url()).await.unwrap();
    let (watermarks, marks): (Vec<String>, i64) = sqlx::query_as(
        "SELECT (SELECT array_agg(schedule || ' ' || to_char(planned_up_to AT TIME ZONE 'UTC',
                                                      'YYYY-MM-DD HH24:MI:SS.US'))
                   FROM herald.schedule_watermarks),
                (SELECT count(*) FROM herald.housekeeping_marks)",
    )
    .fetch_one(&pg)
    .await
    .unwrap();
    pg.close().await;
    assert_eq!(
        (watermarks, marks),
        (
            vec!["overdue_summary 2026-12-06 07:00:00.123456".to_owned()],
            0
        ),
        "the target's own marks are replaced by the file's, to the microsecond"
    );

    let out = place.migrate_state(&smtp, &["--to", &place.pg_url()]);
    assert!(!out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("already holds Herald state (herald.deliveries has 2 rows")
            && stderr.contains("never merges"),
        "{stderr}"
    );
    assert_eq!(target_deliveries(&place).await, 2);
}
