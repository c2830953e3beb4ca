//! The demo app in a SQLite file, with no server: seeded by `herald seed`'s code into a file of
//! a temporary folder (removed after, whatever the outcome), then read back as Herald reads any
//! app, through `Source::connect("sqlite://…")` and `herald check`'s check.

use std::path::PathBuf;

use chrono::{DateTime, Duration, TimeZone, Utc};
use sqlx::SqlitePool;

use super::{Db, Demo, NewTask, NewUser, sqlite::instant};
use crate::{
    seed::{SEEDED_EMAILS, SeedReport, seed},
    source::{Source, UserFilter, UserRow, check::check},
};

/// A folder of its own, removed when dropped (a failed assertion included).
struct Folder(PathBuf);

impl Folder {
    fn new() -> Folder {
        let dir =
            std::env::temp_dir().join(format!("herald-demo-{}", uuid::Uuid::new_v4().simple()));
        Folder(dir)
    }

    /// The URL of the file `name` in the folder (which `Demo::connect` creates).
    fn url(&self, name: &str) -> String {
        format!("sqlite://{}", self.0.join(name).display())
    }
}

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().to_utc()
}

fn pool(demo: &Demo) -> &SqlitePool {
    match &demo.db {
        Db::Sqlite(pool) => pool,
        Db::Postgres(_) => unreachable!("these tests use SQLite"),
    }
}

async fn scalar(demo: &Demo, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool(demo)).await.unwrap()
}

/// Every active user the source gives, page after page.
async fn all_users(source: &Source) -> Vec<UserRow> {
    let mut pages = source.user_pages(UserFilter::default());
    let mut users = Vec::new();
    while let Some(page) = pages.recv().await {
        users.extend(page.unwrap());
    }
    users
}

/// A seed run at a fixed moment.
async fn seeded(demo: &Demo, count: usize, now: DateTime<Utc>) -> SeedReport {
    let report = seed(demo, count, 7, now).await.unwrap();
    assert_eq!(report.users, count);
    report
}

#[tokio::test]
async fn a_seeded_sqlite_file_reads_back_through_the_source() {
    let folder = Folder::new();
    let url = folder.url("nested/herald.db");
    let demo = Demo::connect(&url).await.unwrap();
    let now =
        Utc.with_ymd_and_hms(2026, 12, 6, 9, 30, 0).unwrap() + Duration::nanoseconds(123_456_789);
    let report = seeded(&demo, 120, now).await;
    assert!(report.tasks > 0 && report.focus_sessions > 0, "{report:?}");
    assert_eq!(demo.users_table(), "herald_demo_users");

    // Every instant is written in the one form the source compares in.
    let written: Vec<String> = sqlx::query_scalar(
        "SELECT due_at FROM herald_demo_tasks UNION ALL SELECT completed_at FROM herald_demo_tasks
         WHERE completed_at IS NOT NULL UNION ALL SELECT started_at FROM herald_demo_focus_sessions",
    )
    .fetch_all(pool(&demo))
    .await
    .unwrap();
    assert_eq!(written.len() as u64 - report.tasks, {
        scalar(
            &demo,
            "SELECT count(*) FROM herald_demo_tasks WHERE completed_at IS NOT NULL",
        )
        .await as u64
            + report.focus_sessions
    });
    for text in &written {
        assert_eq!(&instant(at(text)), text, "not in the fixed form");
        assert!(text.ends_with('Z') && text.len() == 24, "{text}");
    }

    // Two seeded users soft-deleted: the views leave them out.
    let source = Source::connect(&url, 2).await.unwrap();
    let users = all_users(&source).await;
    assert_eq!(users.len(), 120);
    let gone = [users[3].id.clone(), users[40].id.clone()];
    for id in &gone {
        demo.soft_delete_user(id).await.unwrap();
    }
    let users = all_users(&source).await;
    assert_eq!(users.len(), 118);
    assert!(users.iter().all(|u| !gone.contains(&u.id)));
    assert!(source.user(&gone[0]).await.unwrap().is_none());
    assert_eq!(
        demo.count_users().await.unwrap(),
        120,
        "soft-deleted users stay in the table"
    );
    let ids: Vec<String> = users.iter().map(|u| u.id.clone()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "in id order");
    assert!(users.iter().all(|u| u.email.ends_with("@example.com")));
    assert!(users.iter().all(|u| u.time_zone.is_some()));
    assert!(users.iter().any(|u| u.locale.is_none()) && users.iter().any(|u| u.locale.is_some()));

    // What the source reads agrees with the demo's tables, for the users it still gives.
    let open = source
        .open_tasks_due(&ids, now - Duration::days(30), now + Duration::days(30))
        .await
        .unwrap();
    let open_in_tables = scalar(
        &demo,
        "SELECT count(*) FROM herald_demo_tasks t JOIN herald_demo_users u ON u.id = t.owner_id
         WHERE t.completed_at IS NULL AND u.deleted_at IS NULL",
    )
    .await;
    assert_eq!(open.len() as i64, open_in_tables);
    assert!(
        open.iter()
            .all(|t| t.completed_at.is_none() && t.link_path == Some(format!("/tasks/{}", t.id)))
    );
    let overdue_or_done = source
        .open_due_or_completed(&ids, now, now - Duration::days(7), now)
        .await
        .unwrap();
    let overdue_or_done_in_tables = scalar(
        &demo,
        "SELECT count(*) FROM herald_demo_tasks t JOIN herald_demo_users u ON u.id = t.owner_id
         WHERE u.deleted_at IS NULL AND (
             (t.completed_at IS NULL AND t.due_at < '2026-12-06T09:30:00.123Z')
             OR (t.completed_at >= '2026-11-29T09:30:00.123Z' AND t.completed_at < '2026-12-06T09:30:00.123Z'))",
    )
    .await;
    assert_eq!(overdue_or_done.len() as i64, overdue_or_done_in_tables);
    let focus = source
        .focus_sessions(&ids, now - Duration::days(7), now)
        .await
        .unwrap();
    let focus_in_tables = scalar(
        &demo,
        "SELECT count(*) FROM herald_demo_focus_sessions f JOIN herald_demo_users u ON u.id = f.owner_id
         WHERE u.deleted_at IS NULL",
    )
    .await;
    assert_eq!(focus.len() as i64, focus_in_tables);
    assert!(focus.iter().all(|f| (15..=90).contains(&f.minutes)));

    // The seed's own promise, read through the source: each session started in the last week.
    assert!(
        focus
            .iter()
            .all(|f| f.started_at < now && f.started_at >= now - Duration::days(7))
    );

    source_closes(source).await;
    demo.close().await;
}

async fn source_closes(source: Source) {
    if let crate::source::Db::Sqlite(pool) = &source.db {
        pool.close().await;
    }
}

#[tokio::test]
async fn the_source_compares_the_demos_instants_at_their_boundaries() {
    let folder = Folder::new();
    let url = folder.url("herald.db");
    let demo = Demo::connect(&url).await.unwrap();
    demo.install().await.unwrap();
    let mut lea = NewUser::new("lea@app.test", "Léa", "Europe/Paris");
    lea.locale = Some("fr".into());
    let ids = demo.insert_users(&[lea]).await.unwrap();
    let lea = ids[0].clone();
    let (from, to) = (at("2026-12-07T09:00:00Z"), at("2026-12-08T09:00:00Z"));
    let ms = Duration::milliseconds(1);
    let task = |title: &str, due: DateTime<Utc>, completed: Option<DateTime<Utc>>| NewTask {
        owner_id: lea.clone(),
        title: title.into(),
        due_at: Some(due),
        completed_at: completed,
    };
    let task_ids = demo
        .insert_tasks(&[
            task("at from", from, None),
            task("just before to", to - ms, None),
            task("at to", to, None),
            task("just before from", from - ms, None),
            task("done in range", from + ms, Some(from)),
            task("done at to", from, Some(to)),
        ])
        .await
        .unwrap();
    assert_eq!(task_ids.len(), 6);
    assert!(
        task_ids
            .iter()
            .all(|id| id.parse::<i64>().unwrap() > lea.parse::<i64>().unwrap())
    );
    demo.insert_focus_sessions(&[(lea.clone(), from, 25), (lea.clone(), to, 50)])
        .await
        .unwrap();

    let source = Source::connect(&url, 1).await.unwrap();
    let owners = [lea.clone()];
    let titles =
        |rows: Vec<crate::source::TaskRow>| rows.into_iter().map(|t| t.title).collect::<Vec<_>>();
    assert_eq!(
        titles(source.open_tasks_due(&owners, from, to).await.unwrap()),
        ["at from", "just before to"]
    );
    assert_eq!(
        titles(
            source
                .open_due_or_completed(&owners, from, from, to)
                .await
                .unwrap()
        ),
        ["just before from", "done in range"]
    );
    let read = source.open_tasks_due(&owners, from, to).await.unwrap();
    assert_eq!(read[0].due_at, Some(from));
    assert_eq!(read[1].due_at, Some(to - ms));
    let focus = source.focus_sessions(&owners, from, to).await.unwrap();
    assert_eq!(focus.iter().map(|f| f.minutes).collect::<Vec<_>>(), [25]);
    assert_eq!(focus[0].started_at, from);
    let user = source.user(&lea).await.unwrap().unwrap();
    assert_eq!(
        (
            user.email.as_str(),
            user.display_name.as_str(),
            user.time_zone.as_deref(),
            user.locale.as_deref()
        ),
        ("lea@app.test", "Léa", Some("Europe/Paris"), Some("fr"))
    );
    source_closes(source).await;
    demo.close().await;
}

#[tokio::test]
async fn a_second_seed_adds_new_users_after_the_first() {
    let folder = Folder::new();
    let url = folder.url("herald.db");
    let demo = Demo::connect(&url).await.unwrap();
    let now = Utc::now();
    seeded(&demo, 25, now).await;
    assert_eq!(demo.max_seeded_index().await.unwrap(), 25);
    // An app user with another address does not count, nor one whose number has letters.
    demo.insert_users(&[
        NewUser::new("user999@example.org", "Not seeded", "UTC"),
        NewUser::new("user12a@example.com", "Not seeded either", "UTC"),
    ])
    .await
    .unwrap();
    assert_eq!(demo.max_seeded_index().await.unwrap(), 25);
    seeded(&demo, 10, now).await;
    assert_eq!(demo.max_seeded_index().await.unwrap(), 35);
    assert_eq!(demo.count_users().await.unwrap(), 37);
    let emails: Vec<String> =
        sqlx::query_scalar("SELECT email FROM herald_demo_users WHERE email LIKE 'user%@example.com' ORDER BY CAST(substr(email, 5) AS INTEGER)")
            .fetch_all(pool(&demo))
            .await
            .unwrap();
    let expected: Vec<String> = (1..=35).map(|n| format!("user{n}@example.com")).collect();
    assert_eq!(
        emails
            .iter()
            .filter(|e| *e != "user12a@example.com")
            .cloned()
            .collect::<Vec<_>>(),
        expected
    );
    // Ids are unique across the three tables, as PostgreSQL's one sequence makes them.
    let all = scalar(
        &demo,
        "SELECT count(*) FROM (SELECT id FROM herald_demo_users UNION ALL SELECT id FROM herald_demo_tasks
                                UNION ALL SELECT id FROM herald_demo_focus_sessions)",
    )
    .await;
    let distinct = scalar(
        &demo,
        "SELECT count(DISTINCT id) FROM (SELECT id FROM herald_demo_users UNION ALL SELECT id FROM herald_demo_tasks
                                UNION ALL SELECT id FROM herald_demo_focus_sessions)",
    )
    .await;
    assert_eq!(all, distinct);
    demo.close().await;
}

#[tokio::test]
async fn deleting_the_users_matching_a_pattern_takes_their_tasks_and_sessions_only() {
    let folder = Folder::new();
    let url = folder.url("herald.db");
    let demo = Demo::connect(&url).await.unwrap();
    let now = Utc::now();
    let report = seeded(&demo, 40, now).await;
    let ada = demo
        .insert_users(&[NewUser::new("ada@app.test", "Ada", "Europe/London")])
        .await
        .unwrap()
        .remove(0);
    demo.insert_tasks(&[NewTask {
        owner_id: ada.clone(),
        title: "Stay".into(),
        due_at: Some(now + Duration::hours(2)),
        completed_at: None,
    }])
    .await
    .unwrap();
    demo.insert_focus_sessions(&[(ada.clone(), now - Duration::hours(1), 30)])
        .await
        .unwrap();

    // A pattern that matches nobody deletes nothing; an invalid one is an error, not a match.
    assert_eq!(
        demo.delete_users_matching("^nobody@")
            .await
            .unwrap()
            .ids
            .len(),
        0
    );
    assert!(demo.delete_users_matching("^user[0-9+@").await.is_err());
    assert_eq!(demo.count_users().await.unwrap(), 41);

    let removed = demo.delete_users_matching(SEEDED_EMAILS).await.unwrap();
    assert_eq!(removed.ids.len(), 40);
    assert_eq!(removed.tasks, report.tasks);
    assert_eq!(removed.focus_sessions, report.focus_sessions);
    assert!(!removed.ids.contains(&ada));
    assert_eq!(demo.count_users().await.unwrap(), 1);
    assert_eq!(
        scalar(&demo, "SELECT count(*) FROM herald_demo_tasks").await,
        1
    );
    assert_eq!(
        scalar(&demo, "SELECT count(*) FROM herald_demo_focus_sessions").await,
        1
    );

    let source = Source::connect(&url, 1).await.unwrap();
    let users = all_users(&source).await;
    assert_eq!(
        users.iter().map(|u| u.id.as_str()).collect::<Vec<_>>(),
        [ada.as_str()]
    );
    assert_eq!(
        source
            .open_tasks_due(
                &removed.ids,
                now - Duration::days(30),
                now + Duration::days(30)
            )
            .await
            .unwrap()
            .len(),
        0
    );
    // A new seed starts again from user1.
    assert_eq!(demo.max_seeded_index().await.unwrap(), 0);
    source_closes(source).await;
    demo.close().await;
}

#[tokio::test]
async fn herald_check_passes_on_the_seeded_file_and_names_a_missing_column() {
    let folder = Folder::new();
    let url = folder.url("herald.db");
    let demo = Demo::connect(&url).await.unwrap();
    assert!(!demo.has_views().await.unwrap());
    seeded(&demo, 5, Utc::now()).await;
    assert!(demo.has_views().await.unwrap());
    demo.install().await.unwrap(); // again: nothing changes
    // Once the demo's connection is closed the file has no `-wal` or `-shm`: a read-only source opens it all the same.
    demo.close().await;
    let source = Source::connect(&url, 1).await.unwrap();
    assert_eq!(check(&source).await.unwrap(), []);
    source_closes(source).await;

    // The app's team rewrites herald_tasks and forgets link_path; installing the demo again
    // leaves their view as it is.
    let demo = Demo::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "DROP VIEW herald_tasks;
         CREATE VIEW herald_tasks AS SELECT id, owner_id AS user_id, title, due_at, completed_at
             FROM herald_demo_tasks;",
    )
    .execute(pool(&demo))
    .await
    .unwrap();
    demo.install().await.unwrap();
    let source = Source::connect(&url, 1).await.unwrap();
    let problems = check(&source).await.unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].at, "herald_tasks.link_path");
    assert!(
        problems[0]
            .to_string()
            .starts_with("herald_tasks.link_path: missing column link_path"),
        "{}",
        problems[0]
    );
    source_closes(source).await;
    demo.close().await;
}

#[tokio::test]
async fn the_demo_shares_the_embedded_modes_file_with_heralds_state() {
    let folder = Folder::new();
    let path = folder.0.join("herald.db");
    let url = format!("sqlite://{}", path.display());
    let source = Source::connect(&url, 1).await.unwrap();
    let store = crate::store::Store::open_embedded(&path, source)
        .await
        .unwrap();
    assert_eq!(store.url(), url);
    // As `herald seed` does: the demo where the state is, while the state's writer is open.
    let demo = Demo::connect(store.url()).await.unwrap();
    let report = seeded(&demo, 30, Utc::now()).await;
    assert!(report.tasks > 0);
    let state_tables = scalar(
        &demo,
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('deliveries', 'herald_migrations')",
    )
    .await;
    assert_eq!(state_tables, 2, "Herald's state is still there");
    assert_eq!(check(&store.source).await.unwrap(), []);
    assert_eq!(all_users(&store.source).await.len(), 30);
    demo.close().await;
    source_closes(store.source.clone()).await;
    drop(store);
}
