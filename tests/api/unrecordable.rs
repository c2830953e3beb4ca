//! Rows that could never be recorded: provider text PostgreSQL refuses is cleaned before it is
//! stored, so such an email is recorded once instead of sent again every lease; and a row that
//! used `queue.max_attempts` claims in its round is failed at its next claim, not sent.

use std::time::Duration;

use chrono::Utc;
use herald::{
    store::{DeliveryStatus, Store, capped_reason},
    worker::{Outcome, process_job},
};

use crate::fencing::{due_deliveries, worker_deps};
use crate::helpers::*;

/// What `herald run` does when a worker's lease runs out: the row is due again.
async fn expire_leases(store: &Store) {
    sqlx::query(
        "UPDATE deliveries SET lease_until = now() - interval '1 second' WHERE status = 'sending'",
    )
    .execute(store.pg())
    .await
    .unwrap();
    store
        .recover(Duration::from_secs(300), Utc::now())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_with_a_nul_byte_is_recorded_once_and_not_sent_every_lease() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let env = Env::new(&smtp);
    let (store, _guard) = bare_store(&env).await;
    let to = "nul@example.com";
    // The server's reply carries a NUL byte, which a PostgreSQL text column refuses.
    let refusal = "550 5.1.1 <nul@example.com>: no such user\0 here";
    smtp.script(&[(to, &[refusal, refusal, refusal])]);
    let id = due_deliveries(&store, &[to]).await[0];
    let deps = worker_deps(&env, store.clone()).await;

    // Three leases: had the outcome not been recorded, each would send the email again.
    for _ in 0..3 {
        let _ = process_job(&deps, &[id]).await;
        expire_leases(&store).await;
    }
    assert_eq!(smtp.counts().offered(to), 1, "copies sent to the server");
    let delivery = store.delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(delivery.attempts, 1);
    let error = delivery.last_error.unwrap();
    assert!(
        error.contains("no such user here") && !error.contains('\0'),
        "{error:?}"
    );
    let attempts = store.attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 1);
    assert!(!attempts[0].error.as_deref().unwrap_or("").contains('\0'));
    store.pg().close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_at_max_attempts_is_failed_at_claim_and_not_sent() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("HERALD__QUEUE__MAX_ATTEMPTS", "5");
    let (store, _guard) = bare_store(&env).await;
    let to = "capped@example.com";
    let id = due_deliveries(&store, &[to]).await[0];
    // Five claims of this round went by without an outcome recorded.
    sqlx::query("UPDATE deliveries SET attempts = 5, round_attempts = 5 WHERE id = $1")
        .bind(id)
        .execute(store.pg())
        .await
        .unwrap();
    let deps = worker_deps(&env, store.clone()).await;

    assert_eq!(
        process_job(&deps, &[id]).await.unwrap(),
        [(id, Outcome::Failed)]
    );
    assert_eq!(smtp.counts().offered(to), 0, "nothing was sent");
    let delivery = store.delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Failed);
    assert_eq!(delivery.attempts, 5);
    let error = delivery.last_error.unwrap();
    assert_eq!(error, capped_reason(5));
    assert!(error.contains("queue.max_attempts"), "{error}");
    assert!(store.attempts(id).await.unwrap().is_empty());

    // The operator retries it from the failed set: a new round, and it goes out once.
    assert_eq!(
        store.retry_failed(Some(&[id]), Utc::now()).await.unwrap(),
        [id]
    );
    assert_eq!(
        process_job(&deps, &[id]).await.unwrap(),
        [(id, Outcome::Sent)]
    );
    assert_eq!(smtp.counts().offered(to), 1);
    assert_eq!(
        store.delivery(id).await.unwrap().unwrap().status,
        DeliveryStatus::Sent
    );
    store.pg().close().await;
}
