//! The app's data where it lives: the two worked examples (`examples/`), each created from
//! scratch (a NestJS-style schema on PostgreSQL, a Laravel schema on MariaDB), get their emails
//! through their own views, with string ids, soft deletes and time zones stored their way;
//! `herald check` names what a view lacks; a user deleted in the app is skipped at claim; the
//! preferences API reads and writes the opt-outs the planner honours; an install from before the
//! state schema keeps its state.

use std::{collections::BTreeSet, time::Duration};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use herald::{domain, source::Source, store::DeliveryStatus, worker::process_job};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::helpers::*;
use crate::mariadb::TestMariaDb;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples");

fn example(path: &str) -> String {
    std::fs::read_to_string(format!("{EXAMPLES}/{path}")).unwrap()
}

/// A PostgreSQL database of the app's own, dropped at the end (also on panic).
struct AppDatabase {
    name: String,
}

impl AppDatabase {
    async fn create() -> AppDatabase {
        let name = format!("herald_app_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&database_url("postgres"))
            .await
            .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        AppDatabase { name }
    }

    fn url(&self) -> String {
        database_url(&self.name)
    }

    async fn run(&self, sql: &str) {
        let mut conn = PgConnection::connect(&self.url()).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .unwrap();
    }

    async fn count(&self, sql: &str) -> i64 {
        let mut conn = PgConnection::connect(&self.url()).await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
            .fetch_one(&mut conn)
            .await
            .unwrap()
    }
}

impl Drop for AppDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(async {
                    let mut admin = PgConnection::connect(&database_url("postgres"))
                        .await
                        .unwrap();
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await
                    .unwrap();
                })
        })
        .join()
        .unwrap();
    }
}

/// The NestJS example's tables and views, in a new PostgreSQL database of its own.
async fn nestjs_app() -> AppDatabase {
    let app_db = AppDatabase::create().await;
    app_db.run(&example("nestjs-postgres/schema.sql")).await;
    app_db.run(&example("nestjs-postgres/views.sql")).await;
    app_db
}

/// The Laravel example's tables and views, in a new MariaDB database of its own; `None` when
/// MariaDB is not there (the test says it skipped).
async fn laravel_app() -> Option<TestMariaDb> {
    let maria = TestMariaDb::create().await?;
    maria
        .execute_script(&example("laravel-mariadb/schema.sql"))
        .await;
    maria
        .execute_script(&example("laravel-mariadb/views.sql"))
        .await;
    Some(maria)
}

/// An instant inside "tomorrow" in `tz`, as seen at `now`: 10:00 local.
fn tomorrow_at_ten(tz: Tz, now: DateTime<Utc>) -> DateTime<Utc> {
    let (date, _, _) = domain::tomorrow(tz, now);
    domain::local_day(tz, date).0 + chrono::Duration::hours(10)
}

/// `(user_id, task titles)` of every planned task reminder, by user id.
async fn planned_reminders(app: &TestApp) -> Vec<(String, Vec<String>)> {
    let rows: Vec<(String, Value)> = sqlx::query_as(
        "SELECT user_id, payload::json FROM deliveries WHERE kind = 'task_reminders' ORDER BY user_id",
    )
    .fetch_all(app.store.pg())
    .await
    .unwrap();
    rows.into_iter()
        .map(|(id, p)| {
            let titles = p["tasks"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["title"].as_str().unwrap().to_owned())
                .collect();
            (id, titles)
        })
        .collect()
}

/// Herald reading the app at `source_url`, with the task reminders planned at `now`: two emails.
async fn remind_two_users(source_url: &str, now: DateTime<Utc>) -> (SmtpServer, TestApp) {
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("SOURCE_URL", source_url);
    let app = spawn_with(env).await;
    let (status, report) = app
        .trigger("task_reminders", json!({ "at": now.to_rfc3339() }))
        .await;
    assert_eq!(status, 202, "{report}");
    assert_eq!(report["planned"], 2, "{report}");
    (smtp, app)
}

#[tokio::test]
async fn a_nestjs_app_on_postgresql_gets_its_emails_through_its_own_views() {
    skip_without_servers!();
    let app_db = nestjs_app().await;
    let now = Utc::now();
    let paris = chrono_tz::Europe::Paris;
    let tokyo = chrono_tz::Asia::Tokyo;
    let uuid = "3f1c2b9e-7a4d-4e21-9c1a-2b7f9d0e5a11";
    let cuid = "ckx3h2k9p0000qz8l4b7d2f1m";
    let due = |tz: Tz| tomorrow_at_ten(tz, now).to_rfc3339();
    app_db
        .run(&format!(
            r#"
            INSERT INTO "User" ("id", "email", "name", "timeZone", "locale", "isActive", "deletedAt") VALUES
              ('{uuid}', 'amelie@example.com', 'Amélie', 'Europe/Paris', 'fr-FR', true, NULL),
              ('{cuid}', 'kenji@example.com', 'Kenji', 'Asia/Tokyo', NULL, true, NULL),
              ('gone-user', 'gone@example.com', 'Gone', 'UTC', NULL, true, now()),
              ('paused-user', 'paused@example.com', 'Paused', 'UTC', NULL, false, NULL);
            INSERT INTO "Task" ("id", "userId", "title", "dueDate", "completedAt", "deletedAt") VALUES
              ('t1', '{uuid}', 'Appeler la banque', '{paris}', NULL, NULL),
              ('t2', '{uuid}', 'Deleted in the app', '{paris}', NULL, now()),
              ('t3', '{cuid}', 'Ship v2', '{tokyo}', NULL, NULL),
              ('t4', 'gone-user', 'Never announced', '{utc}', NULL, NULL),
              ('t5', 'paused-user', 'Never announced either', '{utc}', NULL, NULL);
            "#,
            paris = due(paris),
            tokyo = due(tokyo),
            utc = due(chrono_tz::UTC),
        ))
        .await;

    let (smtp, app) = remind_two_users(&app_db.url(), now).await;

    // String ids, as the app has them; the soft-deleted task, the soft-deleted user and the
    // inactive one left out.
    assert_eq!(
        planned_reminders(&app).await,
        [
            (uuid.to_owned(), vec!["Appeler la banque".to_owned()]),
            (cuid.to_owned(), vec!["Ship v2".to_owned()]),
        ]
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    smtp.wait_for_total(2, Duration::from_secs(20)).await;
    assert_eq!(smtp.counts().recipient("amelie@example.com"), 1);
    assert_eq!(smtp.counts().recipient("kenji@example.com"), 1);
    assert_eq!(
        smtp.counts().recipient("gone@example.com") + smtp.counts().recipient("paused@example.com"),
        0
    );

    // The source's sessions are read-only: a write through them fails.
    let source = Source::connect(&app_db.url(), 1).await.unwrap();
    let herald::source::Db::Postgres(pool) = &source.db else {
        unreachable!()
    };
    let write = sqlx::query(r#"UPDATE "User" SET "name" = 'x'"#)
        .execute(pool)
        .await;
    assert!(write.is_err(), "a write through the source succeeded");
    pool.close().await;

    // Herald wrote nothing into the app's database: its state is in its own.
    assert_eq!(
        app_db
            .count("SELECT count(*) FROM information_schema.schemata WHERE schema_name IN ('herald', 'herald_demo')")
            .await,
        0
    );
    app.finish().await;
}

#[tokio::test]
async fn a_laravel_app_on_mariadb_gets_its_emails_through_its_own_views() {
    skip_without_servers!();
    let Some(maria) = laravel_app().await else {
        return;
    };
    let now = Utc::now();
    // Laravel stores DATETIME in UTC (the app's timezone).
    let due = |tz: Tz| {
        tomorrow_at_ten(tz, now)
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    maria
        .execute_script(&format!(
            "INSERT INTO users (id, name, email, timezone, locale, password, deleted_at) VALUES
               (1, 'Léa', 'lea@example.com', 'Europe/Paris', 'fr', 'x', NULL),
               (2, 'Sam', 'sam@example.com', NULL, NULL, 'x', NULL),
               (3, 'Old', 'old@example.com', 'UTC', NULL, 'x', UTC_TIMESTAMP());
             INSERT INTO tasks (id, user_id, title, due_at, completed_at, deleted_at) VALUES
               (10, 1, 'Payer le loyer', '{paris}', NULL, NULL),
               (11, 1, 'Soft-deleted task', '{paris}', NULL, UTC_TIMESTAMP()),
               (12, 2, 'Renew the domain', '{utc}', NULL, NULL),
               (13, 3, 'Never announced', '{utc}', NULL, NULL);",
            paris = due(chrono_tz::Europe::Paris),
            utc = due(chrono_tz::UTC),
        ))
        .await;

    let (smtp, app) = remind_two_users(&maria.url, now).await;
    assert_eq!(
        planned_reminders(&app).await,
        vec![
            ("1".to_owned(), vec!["Payer le loyer".to_owned()]),
            ("2".to_owned(), vec!["Renew the domain".to_owned()]),
        ]
    );
    smtp.wait_for_total(2, Duration::from_secs(20)).await;
    assert_eq!(smtp.counts().recipient("lea@example.com"), 1);
    assert_eq!(smtp.counts().recipient("sam@example.com"), 1);
    assert_eq!(smtp.counts().recipient("old@example.com"), 0);

    // The user whose zone is NULL (the app's default, UTC) was planned in UTC; the Paris user's
    // task time is written in Paris time.
    let (_, payload): (String, Value) =
        sqlx::query_as("SELECT user_id, payload::json FROM deliveries WHERE user_id = '1'")
            .fetch_one(app.store.pg())
            .await
            .unwrap();
    assert_eq!(payload["user"]["timezone"], "Europe/Paris");
    assert_eq!(payload["user"]["locale"], "fr");
    // The instant as stored in the app (DATETIME in UTC), which the templates write at 10:00.
    let due = payload["tasks"][0]["due_at"].as_str().unwrap();
    let due = DateTime::parse_from_rfc3339(due).unwrap();
    assert_eq!(
        due.with_timezone(&chrono_tz::Europe::Paris)
            .format("%H:%M")
            .to_string(),
        "10:00"
    );
    assert_eq!(payload["tasks"][0]["path"], "/tasks/10");

    // The source is read-only: Herald's session cannot write even if it tried.
    let source = Source::connect(&maria.url, 1).await.unwrap();
    let herald::source::Db::MySql(pool) = &source.db else {
        unreachable!()
    };
    let write = sqlx::query("UPDATE users SET name = 'x' WHERE id = 1")
        .execute(pool)
        .await;
    assert!(write.is_err(), "a write through the source succeeded");
    app.finish().await;
}

#[tokio::test]
async fn a_laravel_app_on_sqlite_gets_its_emails_through_its_own_views() {
    skip_without_servers!();
    // Laravel's default database: one file, instants as 'YYYY-MM-DD HH:MM:SS' text in UTC.
    let dir =
        std::env::temp_dir().join(format!("herald-laravel-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("database.sqlite").display());
    let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
    let app_db = sqlx::SqlitePool::connect_with(options.create_if_missing(true))
        .await
        .unwrap();
    let now = Utc::now();
    let laravel = |at: DateTime<Utc>| at.format("%Y-%m-%d %H:%M:%S").to_string();
    let due = |tz: Tz| laravel(tomorrow_at_ten(tz, now));
    let script = format!(
        "{schema}\n{views}\n
         INSERT INTO users (id, name, email, timezone, locale, password, deleted_at) VALUES
           (1, 'Léa', 'lea@example.com', 'Europe/Paris', 'fr', 'x', NULL),
           (2, 'Sam', 'sam@example.com', NULL, NULL, 'x', NULL),
           (3, 'Old', 'old@example.com', 'UTC', NULL, 'x', '{now}');
         INSERT INTO tasks (id, user_id, title, due_at, completed_at, deleted_at) VALUES
           (10, 1, 'Payer le loyer', '{paris}', NULL, NULL),
           (11, 1, 'Soft-deleted task', '{paris}', NULL, '{now}'),
           (12, 2, 'Renew the domain', '{utc}', NULL, NULL),
           (13, 3, 'Never announced', '{utc}', NULL, NULL);
         INSERT INTO focus_sessions (user_id, started_at, minutes) VALUES (2, '{now}', 25);",
        schema = example("laravel-sqlite/schema.sql"),
        views = example("laravel-sqlite/views.sql"),
        now = laravel(now),
        paris = due(chrono_tz::Europe::Paris),
        utc = due(chrono_tz::UTC),
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(script))
        .execute(&app_db)
        .await
        .unwrap();

    let (smtp, app) = remind_two_users(&url, now).await;
    assert_eq!(
        planned_reminders(&app).await,
        vec![
            ("1".to_owned(), vec!["Payer le loyer".to_owned()]),
            ("2".to_owned(), vec!["Renew the domain".to_owned()]),
        ]
    );
    smtp.wait_for_total(2, Duration::from_secs(20)).await;
    assert_eq!(smtp.counts().recipient("lea@example.com"), 1);
    assert_eq!(smtp.counts().recipient("sam@example.com"), 1);
    assert_eq!(smtp.counts().recipient("old@example.com"), 0);

    // Laravel's text instants compare as instants: a task due exactly at a page's end is in
    // `(from, to]`, one due exactly at its start is not, whatever the text form.
    let source = Source::connect(&url, 1).await.unwrap();
    let at = tomorrow_at_ten(chrono_tz::UTC, now);
    let page = |from: DateTime<Utc>, to: DateTime<Utc>| herald::source::TaskPage {
        from,
        to,
        owner: Some("2"),
        after: None,
        limit: 10,
    };
    let hour = chrono::Duration::hours(1);
    let ids =
        |rows: Vec<herald::source::TaskRow>| rows.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(
        ids(source
            .open_tasks_due_between(&page(at - hour, at))
            .await
            .unwrap()),
        ["12"]
    );
    assert!(
        source
            .open_tasks_due_between(&page(at, at + hour))
            .await
            .unwrap()
            .is_empty()
    );
    let focus = source
        .focus_sessions(&["2".to_owned()], now - hour, now + hour)
        .await
        .unwrap();
    assert_eq!(focus.iter().map(|f| f.minutes).collect::<Vec<_>>(), [25]);
    // Read-only: a write through the source's connection fails.
    let herald::source::Db::Sqlite(pool) = &source.db else {
        unreachable!()
    };
    let write = sqlx::query("UPDATE users SET name = 'x' WHERE id = 1")
        .execute(pool)
        .await;
    assert!(write.is_err(), "a write through the source succeeded");
    pool.close().await;
    app.finish().await;
    app_db.close().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn herald_check_names_a_missing_column_a_wrong_type_and_duplicate_ids() {
    skip_without_servers!();
    let app_db = nestjs_app().await;
    // The app's team forgot link_path, and left the focus sessions' minutes as text.
    app_db
        .run(
            r#"DROP VIEW herald_tasks;
               CREATE VIEW herald_tasks AS SELECT "id", "userId" AS user_id, "title", "dueDate" AS due_at,
                   "completedAt" AS completed_at FROM "Task";
               DROP VIEW herald_focus_sessions;
               CREATE VIEW herald_focus_sessions AS SELECT "id", "userId" AS user_id,
                   "startedAt" AS started_at, "durationMinutes"::text AS minutes FROM "FocusSession";"#,
        )
        .await;
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("SOURCE_URL", &app_db.url());
    let out = herald_cmd(&env).arg("check").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("FAIL  source herald_tasks.link_path: missing column link_path")
            && stdout.contains("NULL AS link_path"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "FAIL  source herald_focus_sessions.minutes: is text, the contract wants integer"
        ),
        "{stdout}"
    );
    // And `herald run` refuses to start on it, with the same list.
    let build = herald::startup::Application::build(env.settings()).await;
    let Err(error) = build else {
        panic!("the daemon started on a source without link_path");
    };
    let error = format!("{error:#}");
    assert!(
        error.contains("herald_tasks.link_path: missing column"),
        "{error}"
    );
    env.cleanup().await;

    // On MariaDB: a view that gives one user twice (a join gone wrong).
    let Some(maria) = laravel_app().await else {
        return;
    };
    maria
        .execute_script(
            "INSERT INTO users (id, name, email, password) VALUES (1, 'A', 'a@example.com', 'x');
             CREATE OR REPLACE VIEW herald_users AS
               SELECT CAST(u.id AS CHAR) AS id, u.email, u.name AS display_name, u.timezone AS time_zone,
                      u.locale, TRUE AS active FROM users u JOIN (SELECT 1 UNION ALL SELECT 2) twice;",
        )
        .await;
    let source = Source::connect(&maria.url, 1).await.unwrap();
    let problems = herald::source::check::check(&source).await.unwrap();
    let text: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(text.len(), 1, "{text:?}");
    assert!(
        text[0].starts_with("herald_users.id: ids are not unique (1 appear"),
        "{text:?}"
    );
}

#[tokio::test]
async fn a_user_deleted_in_the_app_after_planning_is_skipped_at_claim_with_the_reason() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let env = Env::new(&smtp);
    let (store, _guard) = bare_store(&env).await;
    let ids =
        crate::fencing::due_deliveries(&store, &["stays@example.com", "leaves@example.com"]).await;
    let user: String = sqlx::query_scalar("SELECT user_id FROM deliveries WHERE id = $1")
        .bind(ids[1])
        .fetch_one(store.pg())
        .await
        .unwrap();
    store.demo().await.soft_delete_user(&user).await.unwrap();
    // Planned a while ago (an email claimed within a minute of planning is not looked up).
    sqlx::query("UPDATE deliveries SET created_at = now() - interval '5 minutes'")
        .execute(store.pg())
        .await
        .unwrap();

    let deps = crate::fencing::worker_deps(&env, store.clone()).await;
    process_job(&deps, &ids).await.unwrap();
    let metrics = deps.metrics.encode(&herald::metrics::Live {
        names: herald::health::Names::SERVERS,
        postgres: None,
        redis: None,
        parts: Default::default(),
    });
    assert!(
        metrics.contains(
            r#"herald_plan_skipped_total{schedule="overdue_summary",trigger="claim",reason="user_gone"} 1"#
        ),
        "{metrics}"
    );
    smtp.wait_for_total(1, Duration::from_secs(10)).await;
    assert_eq!(smtp.counts().recipient("stays@example.com"), 1);
    assert_eq!(smtp.counts().recipient("leaves@example.com"), 0);
    let gone = store.delivery(ids[1]).await.unwrap().unwrap();
    assert_eq!(gone.status, DeliveryStatus::Skipped);
    assert_eq!(gone.attempts, 0, "a skipped email was never tried");
    assert!(
        gone.last_error
            .as_deref()
            .unwrap_or_default()
            .contains(&format!(
                "user {user} is no longer an active user in herald_users"
            )),
        "{gone:?}"
    );
}

#[tokio::test]
async fn the_apps_settings_page_reads_and_writes_preferences_that_the_planner_honours() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let id = app.add_late_user("prefs@example.com").await;
    let url = format!("{}/api/users/{id}/preferences", app.address);
    let call = |method: reqwest::Method, body: Option<Value>| {
        let mut r = app.http.request(method, &url).bearer_auth(TOKEN);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = call(reqwest::Method::GET, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], id.to_string());
    assert_eq!(body["kinds"]["overdue_summary"], true, "{body}");
    assert_eq!(
        body["kinds"].as_object().unwrap().len(),
        herald::kinds::KINDS.len()
    );

    let (status, body) = call(
        reqwest::Method::PUT,
        Some(json!({ "kinds": { "overdue_summary": false } })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kinds"]["overdue_summary"], false);
    assert_eq!(body["kinds"]["task_reminders"], true);
    let (_, report) = app
        .trigger("overdue_summary", json!({ "at": at(TICK) }))
        .await;
    assert_eq!(
        (report["planned"].as_i64(), report["opted_out"].as_i64()),
        (Some(0), Some(1)),
        "{report}"
    );

    // Bad input names the field and the fix; an unknown user is a 404.
    let (status, body) = call(
        reqwest::Method::PUT,
        Some(json!({ "kinds": { "daily_digest": false } })),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("\"daily_digest\" is not a kind of email; the kinds are task_reminders"),
        "{body}"
    );
    let (status, body) = call(
        reqwest::Method::PUT,
        Some(json!({ "kinds": { "weekly_report": "no" } })),
    )
    .await;
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("send JSON like"),
        "{body}"
    );
    let missing = app
        .http
        .get(format!(
            "{}/api/users/no-such-user/preferences",
            app.address
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 404);

    let (status, body) = call(reqwest::Method::DELETE, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["kinds"]["overdue_summary"], true);
    app.finish().await;
}

#[tokio::test]
async fn an_install_from_before_the_state_schema_keeps_its_deliveries_and_opt_outs() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let env = Env::new(&smtp);
    let _guard = EnvGuard(env.clone());
    let url = env
        .settings()
        .servers()
        .expect("tests run on PostgreSQL and Redis")
        .database_url
        .expose()
        .to_owned();
    // The layout of c8c3890: migrations 0001 to 0007 in `public`, with users and state side by side.
    let old = std::env::temp_dir().join(format!("herald-old-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&old).unwrap();
    for entry in std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.as_str() < "0008" {
            std::fs::copy(&path, old.join(name)).unwrap();
        }
    }
    {
        use sqlx::migrate::MigrateDatabase;
        sqlx::Postgres::create_database(&url).await.unwrap();
        let mut conn = PgConnection::connect(&url).await.unwrap();
        sqlx::migrate::Migrator::new(old.as_path())
            .await
            .unwrap()
            .run(&mut conn)
            .await
            .unwrap();
        sqlx::raw_sql(
            "INSERT INTO users (id, email, display_name) VALUES (7, 'old@example.com', 'Old');
             INSERT INTO email_opt_outs (user_id, kind) VALUES (7, 'weekly_report');
             INSERT INTO deliveries (kind, user_id, dedup_key, status, payload, recipient, planned_for, due_at)
             VALUES ('overdue_summary', 7, 'overdue_summary:7:2026-11-23', 'sent', '{}', 'old@example.com', now(), now());",
        )
        .execute(&mut conn)
        .await
        .unwrap();
    }
    std::fs::remove_dir_all(&old).unwrap();

    let store = herald::store::Store::connect(&url, 2, false).await.unwrap();
    store.migrate().await.unwrap();
    let moved: (String, String) =
        sqlx::query_as("SELECT user_id, dedup_key FROM herald.deliveries")
            .fetch_one(store.pg())
            .await
            .unwrap();
    assert_eq!(
        moved,
        ("7".to_owned(), "overdue_summary:7:2026-11-23".to_owned())
    );
    assert_eq!(store.opt_outs("7").await.unwrap(), ["weekly_report"]);
    let left: (bool, bool, i64) = sqlx::query_as(
        "SELECT to_regclass('public.deliveries') IS NULL, to_regclass('public.users') IS NOT NULL,
                (SELECT count(*) FROM herald._sqlx_migrations)",
    )
    .fetch_one(store.pg())
    .await
    .unwrap();
    let migrations = herald::store::MIGRATOR.iter().count() as i64;
    assert_eq!(
        left,
        (true, true, migrations),
        "(public.deliveries gone, public.users kept, migrations)"
    );
    // Migrating again changes nothing.
    store.migrate().await.unwrap();
    store.pg().close().await;
}
