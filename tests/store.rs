//! The state store's promises, each scenario written once and run against both of its homes:
//! PostgreSQL (a database of its own per test, dropped after) and the embedded SQLite file (a
//! folder of its own per test, removed after). Planning is idempotent, dispatch takes only due
//! rows, a claim fences out every earlier holder, an expired lease comes back, a capped row
//! fails instead of going out again, batches keep their members, the schedule lock is exclusive.
//! Without PostgreSQL the PostgreSQL half skips loudly (`HERALD_REQUIRE_SERVERS=1`: fails).

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use herald::{
    source::Source,
    store::{AttemptOutcome, DeliveryStatus, NewDelivery, Recording, Store, TryRecording},
};

#[path = "support/shared_servers.rs"]
#[macro_use]
mod shared_servers;

#[path = "store/dashboard.rs"]
mod dashboard;
#[path = "store/delivery.rs"]
mod delivery;
#[path = "store/operators.rs"]
mod operators;

use dashboard::*;
use delivery::*;
use operators::*;

/// A store of one kind, and how to take it down.
struct Home {
    store: Store,
    gone: Box<dyn FnOnce() -> futures::future::BoxFuture<'static, ()> + Send>,
}

fn pg_url(database: &str) -> String {
    let base = std::env::var("DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut url = url::Url::parse(&base).expect("DATABASE_URL is a URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

async fn postgres() -> Home {
    let name = format!("herald_store_{}", uuid::Uuid::new_v4().simple());
    let store = Store::connect(&pg_url(&name), 4, true).await.unwrap();
    store.migrate().await.unwrap();
    Home {
        store,
        gone: Box::new(move || {
            Box::pin(async move {
                let admin = Store::connect(&pg_url("postgres"), 1, false).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(admin.pg())
                .await
                .unwrap();
            })
        }),
    }
}

async fn sqlite() -> Home {
    let dir = std::env::temp_dir().join(format!("herald-store-{}", uuid::Uuid::new_v4().simple()));
    // These scenarios never read the app's data: a source that is never connected to.
    let source = Source::connect("postgres://127.0.0.1:9/unused", 1)
        .await
        .unwrap();
    let store = Store::open_embedded(&dir.join("herald.db"), source)
        .await
        .unwrap();
    Home {
        store,
        gone: Box::new(move || {
            Box::pin(async move {
                std::fs::remove_dir_all(&dir).unwrap();
            })
        }),
    }
}

/// Each scenario as one test per home.
macro_rules! in_both_homes {
    ($($scenario:ident),* $(,)?) => {
        mod postgres {
            $(#[tokio::test]
            async fn $scenario() {
                skip_without_servers!();
                let home = super::postgres().await;
                super::$scenario(&home.store).await;
                (home.gone)().await;
            })*
        }
        mod sqlite {
            $(#[tokio::test]
            async fn $scenario() {
                let home = super::sqlite().await;
                assert!(home.store.is_embedded());
                super::$scenario(&home.store).await;
                drop(home.store);
                (home.gone)().await;
            })*
        }
    };
}

in_both_homes!(
    planning_is_idempotent_and_dispatch_takes_only_due_rows,
    a_claim_fences_out_every_earlier_holder,
    an_expired_lease_comes_back_and_a_late_sent_is_still_recorded,
    a_row_claimed_max_attempts_times_fails_instead_of_going_out_again,
    a_batch_keeps_its_members_and_goes_when_they_leave,
    the_schedule_lock_is_exclusive_until_the_watermark_moves,
    failed_deliveries_retry_and_purge,
    opt_outs_are_set_cleared_and_forgotten,
    suppressions_are_listed_lifted_and_counted,
    events_are_recorded_once_and_listed,
    a_pause_holds_until_resumed,
    the_session_key_is_made_once_and_rotated,
    retention_deletes_expired_rows_by_status_with_their_attempts,
    gauges_count_deliveries_by_state_and_list_watermarks,
    the_dashboard_counts_lists_and_finds,
    the_dashboard_retries_and_purges_the_failed_set,
    the_queued_list_merges_pushed_and_waiting_rows_in_due_order,
);

pub const LEASE: Duration = Duration::from_secs(60);

pub fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 6, h, m, 0).unwrap()
}

pub fn planned(key: &str, due_at: DateTime<Utc>) -> NewDelivery {
    NewDelivery {
        status: DeliveryStatus::Queued,
        note: None,
        kind: "task_reminders".into(),
        user_id: format!("user-{key}"),
        dedup_key: key.into(),
        recipient: format!("{key}@example.com"),
        payload: format!(r#"{{"key":"{key}"}}"#),
        planned_for: at(9, 0),
        due_at,
    }
}

pub fn sent(id: i64, token: uuid::Uuid, attempt: i32) -> Recording {
    Recording {
        id,
        claim_token: token,
        attempt,
        status: DeliveryStatus::Sent,
        due_at: None,
        give_back: false,
        untried: false,
        last_error: None,
        provider: Some("smtp".into()),
        provider_id: None,
        held_by: None,
        tries: vec![TryRecording {
            provider: "smtp".into(),
            outcome: AttemptOutcome::Sent,
            code: Some(250),
            error: None,
        }],
    }
}
