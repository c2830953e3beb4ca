//! The planner over many pages of users: every user counted once, the ids in user order, a plan
//! run twice inserting nothing, and planning never waiting for the connections the workers hold.

use herald::{
    clock::Clock,
    config::Settings,
    schedule::{PlanOptions, PlanReport, plan},
    store::{RESERVED_CONNECTIONS, Store},
};

use crate::helpers::*;

/// Adds users `<prefix><i>@example.com` for `i` in `range`: each has one task overdue at
/// [`TICK`], except every 7th, who has nothing to hear about; every 10th opted out of the
/// overdue summary.
async fn add_users(store: &Store, prefix: &str, range: std::ops::Range<usize>) {
    let users: Vec<_> = range
        .clone()
        .map(|i| NewUser {
            email: format!("{prefix}{i}@example.com"),
            display_name: format!("User {i}"),
            timezone: "UTC".into(),
        })
        .collect();
    let ids = store.insert_users(&users).await.unwrap();
    let tasks: Vec<_> = range
        .clone()
        .zip(&ids)
        .filter(|(i, _)| i % 7 != 0)
        .map(|(_, &owner_id)| NewTask {
            owner_id,
            title: "Late".into(),
            due_at: Some(at(LATE)),
            completed_at: None,
        })
        .collect();
    store.insert_tasks(&tasks).await.unwrap();
    for (_, &id) in range.zip(&ids).filter(|(i, _)| i % 10 == 0) {
        store
            .opt_out(&id.to_string(), "overdue_summary")
            .await
            .unwrap();
    }
}

/// Plans the overdue summary by hand at `at`, listing the new deliveries' ids.
async fn plan_overdue(store: &Store, settings: &Settings, at_: &str) -> PlanReport {
    let schedule = settings.schedule("overdue_summary").unwrap();
    let opts = PlanOptions {
        at: at(at_),
        user_id: None,
        dry_run: false,
        ids: true,
    };
    plan(
        store,
        schedule,
        &opts,
        &Clock::manual(at(at_)),
        &settings.retention,
    )
    .await
    .unwrap()
}

/// The ids of the deliveries planned for the local date `date`, by user.
async fn ids_on(store: &Store, date: &str) -> Vec<i64> {
    sqlx::query_scalar(
        "SELECT id FROM deliveries WHERE dedup_key LIKE 'manual:overdue_summary:%:' || $1 ORDER BY user_id",
    )
    .bind(date)
    .fetch_all(store.pg())
    .await
    .unwrap()
}

#[tokio::test]
async fn pages_planned_at_once_count_every_user_once_and_list_the_ids_in_user_order() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let env = Env::new(&smtp);
    let (store, _guard) = bare_store(&env).await;
    let settings = env.settings();
    let store = store.reserved();
    // Two full pages of 1,000: the planner learns that there is no third from an empty read.
    add_users(&store, "a", 0..2000).await;
    let wanted = |n: usize| (0..n).filter(|i| i % 7 != 0 && i % 10 != 0).count();

    let r = plan_overdue(&store, &settings, "2026-11-23T07:00:00Z").await;
    assert_eq!(r.planned, wanted(2000), "{r:?}");
    assert_eq!(r.opted_out, 200, "{r:?}");
    assert_eq!(r.skipped, 2000 - wanted(2000), "{r:?}");
    assert_eq!(r.already_planned, 0, "{r:?}");
    let ids = r.delivery_ids.unwrap();
    assert_eq!(ids, ids_on(&store, "2026-11-23").await);

    // The same instant again: every key exists, nothing new.
    let r = plan_overdue(&store, &settings, "2026-11-23T07:00:00Z").await;
    assert_eq!((r.planned, r.already_planned), (0, wanted(2000)), "{r:?}");
    assert_eq!(r.delivery_ids.unwrap(), Vec::<i64>::new());

    // 2,345 users: the last page is short, and is the last read.
    add_users(&store, "b", 2000..2345).await;
    let r = plan_overdue(&store, &settings, "2026-11-24T07:00:00Z").await;
    assert_eq!(r.planned, wanted(2345), "{r:?}");
    assert_eq!(r.opted_out, 235, "{r:?}");
    assert_eq!(r.skipped, 2345 - wanted(2345), "{r:?}");
    assert_eq!(r.delivery_ids.unwrap(), ids_on(&store, "2026-11-24").await);
}

/// Logs, for every row written to `deliveries`, which pool's connection wrote it (its
/// `application_name`, see `herald::store::application_name`), into `pool_log`.
async fn log_which_pool_writes(store: &Store) {
    for statement in [
        "CREATE TABLE pool_log (op text, old_status text, new_status text, dispatched bool, app text)",
        "CREATE FUNCTION pool_log() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO pool_log VALUES (TG_OP,
                 CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END, NEW.status,
                 CASE WHEN TG_OP = 'UPDATE' THEN OLD.dispatched_at IS NULL
                     AND NEW.dispatched_at IS NOT NULL END,
                 current_setting('application_name'));
             RETURN NULL;
         END $$",
        "CREATE TRIGGER pool_log AFTER INSERT OR UPDATE ON deliveries
         FOR EACH ROW EXECUTE FUNCTION pool_log()",
    ] {
        sqlx::query(statement).execute(store.pg()).await.unwrap();
    }
}

/// The pools (by `application_name`) that wrote the rows of `pool_log` matching `filter`, each
/// with its count of rows.
async fn writers(store: &Store, filter: &str) -> Vec<(String, i64)> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT app, count(*) FROM pool_log WHERE {filter} GROUP BY app ORDER BY app"
    )))
    .fetch_all(store.pg())
    .await
    .unwrap()
}

/// This database's connections in `pg_stat_activity`, by `application_name`.
async fn connections_by_name(store: &Store) -> Vec<(String, i64)> {
    sqlx::query_as(
        "SELECT application_name, count(*) FROM pg_stat_activity
         WHERE datname = current_database() GROUP BY 1 ORDER BY 1",
    )
    .fetch_all(store.pg())
    .await
    .unwrap()
}

#[tokio::test]
async fn planning_never_waits_for_the_connections_the_workers_hold() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let env = Env::new(&smtp);
    let (store, _guard) = bare_store(&env).await;
    let settings = env.settings();
    add_users(&store, "w", 0..30).await;
    log_which_pool_writes(&store).await;
    // Every connection of the workers' pool taken, as by workers busy sending. Planning on the
    // main pool would fail here after the acquire timeout.
    let workers = store.pg().options().get_max_connections();
    let mut held = Vec::new();
    for _ in 0..workers {
        held.push(store.pg().acquire().await.unwrap());
    }
    let reserved = store.reserved();
    let r = plan_overdue(&reserved, &settings, "2026-11-23T07:00:00Z").await;
    let wanted = (0..30).filter(|i| i % 7 != 0 && i % 10 != 0).count();
    assert_eq!(r.planned, wanted);
    // Every delivery was written by a reserved connection, none by a worker's.
    assert_eq!(
        writers(&reserved, "op = 'INSERT'").await,
        [("herald reserved".to_owned(), wanted as i64)]
    );
    // The workers' connections are the ones held, all of them, under their own name.
    let names = connections_by_name(&reserved).await;
    assert!(
        names.contains(&("herald workers".to_owned(), i64::from(workers))),
        "{names:?}"
    );
    assert!(
        names.iter().any(|(name, _)| name == "herald reserved"),
        "{names:?}"
    );
    drop(held);
}

#[tokio::test]
async fn the_daemons_own_parts_run_on_the_reserved_connections() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    // The state the planner, the dispatcher and the API use; the workers have their own.
    let store = &app.state.store;
    let name: String = sqlx::query_scalar("SELECT current_setting('application_name')")
        .fetch_one(store.pg())
        .await
        .unwrap();
    assert_eq!(name, "herald reserved");
    assert_eq!(
        store.pg().options().get_max_connections(),
        RESERVED_CONNECTIONS
    );

    // One email through every part: planned by the API, dispatched, claimed, sent, recorded.
    log_which_pool_writes(store).await;
    app.add_late_user("pools@example.com").await;
    assert_eq!(app.trigger_overdue().await.len(), 1);
    app.wait_for_status("sent", 1, std::time::Duration::from_secs(20))
        .await;
    let names = async |filter: &str| -> Vec<String> {
        writers(store, filter)
            .await
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    };
    // The API's planning and the dispatcher on the reserved connections...
    assert_eq!(names("op = 'INSERT'").await, ["herald reserved"]);
    assert_eq!(names("dispatched").await, ["herald reserved"]);
    // ...the claim, the lease's renewals and the recorder on the workers'.
    assert_eq!(
        names("new_status IN ('sending', 'sent')").await,
        ["herald workers"]
    );
    // What an operator sees: each pool by its name, the source's too (the app's data is in
    // Herald's own database here).
    let names: Vec<_> = connections_by_name(store)
        .await
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    for pool in ["herald reserved", "herald source", "herald workers"] {
        assert!(names.iter().any(|n| n == pool), "{pool}: {names:?}");
    }
    app.finish().await;
}
