//! `herald seed` says how many users exist, and `--reset` removes the seeded users and all that
//! is theirs, saying exactly what, while other users stay.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

/// How many rows of `table` belong to the seeded users (through `user_column`).
async fn seeded_rows(app: &TestApp, table: &str, user_column: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM {table} t JOIN herald_demo.users u ON u.id = t.{user_column}
         WHERE u.email ~ $1"
    )))
    .bind(herald::seed::SEEDED_EMAILS)
    .fetch_one(app.store.pg())
    .await
    .unwrap()
}

async fn count(app: &TestApp, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(app.store.pg())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_counts_the_users_and_reset_removes_only_the_seeded_ones() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let keep = app.add_late_user("keep@example.com").await;

    let out = herald_ok(&app.env, &["seed", "--users", "8"]);
    assert!(out.contains("seeded 8 users"), "{out}");
    assert!(out.contains("9 demo users now exist"), "{out}");

    // The seeded users get email too, and one opts out of a kind.
    let seeded: Vec<String> =
        sqlx::query_scalar("SELECT id FROM herald_demo.users WHERE id <> $1 ORDER BY id")
            .bind(keep.to_string())
            .fetch_all(app.store.pg())
            .await
            .unwrap();
    app.store
        .opt_out(&seeded[0], "weekly_report")
        .await
        .unwrap();
    let (status, report) = app.trigger("overdue_summary", json!({ "ids": true })).await;
    assert_eq!(status, 202, "{report}");
    let planned = report["planned"].as_i64().unwrap();
    app.wait_for_status("sent", planned, Duration::from_secs(60))
        .await;
    let expected = [
        (
            "tasks",
            seeded_rows(&app, "herald_demo.tasks", "owner_id").await,
        ),
        (
            "focus sessions",
            seeded_rows(&app, "herald_demo.focus_sessions", "owner_id").await,
        ),
        (
            "opt-outs",
            seeded_rows(&app, "email_opt_outs", "user_id").await,
        ),
        (
            "deliveries",
            seeded_rows(&app, "deliveries", "user_id").await,
        ),
    ];
    let attempts: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id
         WHERE d.user_id <> $1",
    )
    .bind(keep.to_string())
    .fetch_one(app.store.pg())
    .await
    .unwrap();
    // Seed 1 gives these users overdue tasks: there is something of each kind to remove.
    assert!(expected.iter().all(|(_, n)| *n > 0), "{expected:?}");
    assert!(attempts > 0);

    let out = herald_ok(&app.env, &["seed", "--reset", "--users", "3"]);
    let said = format!(
        "removed 8 seeded users (user<N>@example.com) and their {} tasks, {} focus sessions, \
         {} opt-outs, {} deliveries with {attempts} attempts, and 0 batch records left empty",
        expected[0].1, expected[1].1, expected[2].1, expected[3].1
    );
    assert!(out.contains(&said), "{out}\nexpected: {said}");
    assert!(out.contains("seeded 3 users"), "{out}");
    assert!(out.contains("4 demo users now exist"), "{out}");

    // What was removed is gone; the user who was not seeded keeps everything.
    assert_eq!(count(&app, "herald_demo.users").await, 4);
    let kept: Vec<String> =
        sqlx::query_scalar("SELECT email FROM herald_demo.users WHERE email !~ $1")
            .bind(herald::seed::SEEDED_EMAILS)
            .fetch_all(app.store.pg())
            .await
            .unwrap();
    assert_eq!(kept, ["keep@example.com"]);
    assert_eq!(count(&app, "email_opt_outs").await, 0);
    let keeps: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM herald_demo.tasks WHERE owner_id = $1),
                (SELECT count(*) FROM deliveries WHERE user_id = $1)",
    )
    .bind(keep.to_string())
    .fetch_one(app.store.pg())
    .await
    .unwrap();
    assert_eq!(keeps, (1, 1));
    // The three new seeded users are all there is besides: no delivery of the old ones is left.
    assert_eq!(count(&app, "deliveries").await, 1);
    drop(smtp);
    app.finish().await;
}
