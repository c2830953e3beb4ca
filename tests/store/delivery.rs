//! The delivery path: planning, dispatch, claims and their fences, leases, caps, batches, the
//! schedule lock, the failed set.

use std::time::Duration;

use chrono::Utc;
use herald::{
    domain::ErrorClass,
    store::{AttemptOutcome, DeliveryStatus, Recording, Store},
};

use super::{LEASE, at, planned, sent};

pub async fn planning_is_idempotent_and_dispatch_takes_only_due_rows(store: &Store) {
    let rows = vec![
        planned("a", at(9, 0)),
        planned("b", at(9, 0)),
        planned("c", at(10, 0)),
    ];
    let ids = store.insert_deliveries(&rows).await.unwrap();
    assert_eq!(ids.len(), 3);
    assert!(
        store.insert_deliveries(&rows).await.unwrap().is_empty(),
        "a second plan inserts nothing"
    );
    let keys: Vec<String> = ["a", "c", "z"].map(String::from).to_vec();
    let mut found: Vec<String> = store
        .existing_keys(&keys)
        .await
        .unwrap()
        .into_iter()
        .collect();
    found.sort();
    assert_eq!(found, ["a", "c"]);

    assert_eq!(store.next_due().await.unwrap(), Some(at(9, 0)));
    let mut due = store.take_due(10, at(9, 30)).await.unwrap();
    due.sort();
    assert_eq!(due, ids[..2], "only the rows due at 09:30");
    assert!(
        store.take_due(10, at(9, 30)).await.unwrap().is_empty(),
        "taken once"
    );
    assert_eq!(store.next_due().await.unwrap(), Some(at(10, 0)));
    store.untake(&due[..1]).await.unwrap();
    assert_eq!(store.take_due(10, at(9, 30)).await.unwrap(), due[..1]);
    assert_eq!(store.redispatch_all().await.unwrap(), 2);
    let counts = store.status_counts().await.unwrap();
    assert_eq!(counts, [(DeliveryStatus::Queued, 3)]);
}

pub async fn a_claim_fences_out_every_earlier_holder(store: &Store) {
    let ids = store
        .insert_deliveries(&[planned("a", at(9, 0))])
        .await
        .unwrap();
    let (claimed, capped) = store
        .claim_many(&ids, LEASE, "example.com", 5, at(9, 0), Some("worker-1"))
        .await
        .unwrap();
    assert!(capped.is_empty());
    let first = &claimed[0];
    assert_eq!(
        (first.id, first.attempts, first.opted_out, first.suppressed),
        (ids[0], 1, false, false)
    );
    assert!(
        first.message_id.starts_with(&format!("<{}.", ids[0]))
            && first.message_id.ends_with("@example.com>"),
        "{}",
        first.message_id
    );
    assert_eq!(first.payload, serde_json::json!({"key": "a"}));
    let (again, _) = store
        .claim_many(&ids, LEASE, "example.com", 5, at(9, 0), Some("worker-2"))
        .await
        .unwrap();
    assert!(again.is_empty(), "a row being sent is not claimed twice");
    assert_eq!(
        store
            .renew(&[(first.id, first.claim_token)], LEASE)
            .await
            .unwrap(),
        ids
    );
    // Another worker's token records nothing, attempts included.
    let stranger = sent(first.id, uuid::Uuid::new_v4(), 1);
    assert_eq!(store.record_many(&[stranger]).await.unwrap(), [false]);
    assert!(store.attempts(first.id).await.unwrap().is_empty());
    assert!(
        store
            .record(&sent(first.id, first.claim_token, 1))
            .await
            .unwrap()
    );
    let row = store.delivery(first.id).await.unwrap().unwrap();
    assert_eq!(
        (row.status, row.attempts, row.provider.as_deref()),
        (DeliveryStatus::Sent, 1, Some("smtp"))
    );
    assert!(row.sent_at.is_some());
    let tries = store.attempts(first.id).await.unwrap();
    assert_eq!(tries.len(), 1);
    assert_eq!(
        (tries[0].outcome, tries[0].code),
        (AttemptOutcome::Sent, Some(250))
    );
    assert!(
        !store
            .record(&sent(first.id, first.claim_token, 1))
            .await
            .unwrap(),
        "recorded once"
    );
}

pub async fn an_expired_lease_comes_back_and_a_late_sent_is_still_recorded(store: &Store) {
    let ids = store
        .insert_deliveries(&[planned("a", at(9, 0)), planned("b", at(9, 0))])
        .await
        .unwrap();
    let (claimed, _) = store
        .claim_many(
            &ids,
            Duration::ZERO,
            "example.com",
            5,
            at(9, 0),
            Some("worker-1"),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 2);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let (leases, stale) = store
        .recover(Duration::from_secs(600), at(9, 5))
        .await
        .unwrap();
    assert_eq!((leases, stale), (2, 0));
    assert!(
        store
            .renew(&[(claimed[0].id, claimed[0].claim_token)], LEASE)
            .await
            .unwrap()
            .is_empty(),
        "the old holder cannot renew"
    );
    // A retry from the old holder is refused; its `sent` is recorded (the email is out).
    let mut retry = sent(claimed[0].id, claimed[0].claim_token, 1);
    retry.status = DeliveryStatus::Queued;
    retry.due_at = Some(at(9, 10));
    assert_eq!(
        store
            .record_many(&[retry, sent(claimed[1].id, claimed[1].claim_token, 1)])
            .await
            .unwrap(),
        [false, true]
    );
    let a = store.delivery(claimed[0].id).await.unwrap().unwrap();
    assert_eq!((a.status, a.due_at), (DeliveryStatus::Queued, at(9, 0)));
    let b = store.delivery(claimed[1].id).await.unwrap().unwrap();
    assert_eq!(b.status, DeliveryStatus::Sent);
    // Claims of a worker found dead come back at once.
    let (again, _) = store
        .claim_many(&ids[..1], LEASE, "example.com", 5, at(9, 5), Some("dead"))
        .await
        .unwrap();
    assert_eq!(again[0].attempts, 2, "the attempt of the lost claim counts");
    assert_eq!(
        store.release_claims_of(&["dead".to_owned()]).await.unwrap(),
        1
    );
    assert_eq!(
        store.delivery(ids[0]).await.unwrap().unwrap().status,
        DeliveryStatus::Queued
    );
}

pub async fn a_row_claimed_max_attempts_times_fails_instead_of_going_out_again(store: &Store) {
    let ids = store
        .insert_deliveries(&[planned("a", at(9, 0))])
        .await
        .unwrap();
    for n in 1..=2 {
        let (claimed, capped) = store
            .claim_many(&ids, Duration::ZERO, "example.com", 2, at(9, 0), None)
            .await
            .unwrap();
        assert_eq!((claimed.len(), capped.len()), (1, 0), "claim {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
        store
            .recover(Duration::from_secs(600), at(9, 0))
            .await
            .unwrap();
    }
    let (claimed, capped) = store
        .claim_many(&ids, LEASE, "example.com", 2, at(9, 0), None)
        .await
        .unwrap();
    assert_eq!((claimed.len(), capped.len()), (0, 1));
    let row = store.delivery(ids[0]).await.unwrap().unwrap();
    assert_eq!((row.status, row.attempts), (DeliveryStatus::Failed, 2));
    assert!(row.last_error.unwrap().contains("queue.max_attempts"));
}

pub async fn a_batch_keeps_its_members_and_goes_when_they_leave(store: &Store) {
    let ids = store
        .insert_deliveries(&[planned("a", at(9, 0)), planned("b", at(9, 0))])
        .await
        .unwrap();
    let (claimed, _) = store
        .claim_many(&ids, LEASE, "example.com", 5, at(9, 0), None)
        .await
        .unwrap();
    let members: Vec<(i64, uuid::Uuid)> = claimed.iter().map(|c| (c.id, c.claim_token)).collect();
    assert!(
        !store
            .start_batch("batch-0", "resend", &[(ids[0], uuid::Uuid::new_v4())])
            .await
            .unwrap(),
        "not our claim: nothing written"
    );
    assert!(
        store
            .start_batch("batch-1", "resend", &members)
            .await
            .unwrap()
    );
    assert_eq!(
        store.batch_live_members("batch-1").await.unwrap(),
        (2, Some(ids[0]))
    );
    // A retry of one member brings its batch-mate along, due or not, to the same request.
    let mut retry = sent(ids[0], members[0].1, 1);
    retry.status = DeliveryStatus::Queued;
    retry.due_at = Some(at(9, 1));
    let mut other = retry.clone();
    other.id = ids[1];
    other.claim_token = members[1].1;
    other.due_at = Some(at(11, 0));
    assert_eq!(
        store.record_many(&[retry, other]).await.unwrap(),
        [true, true]
    );
    let (claimed, _) = store
        .claim_many(&ids[..1], LEASE, "example.com", 5, at(9, 2), None)
        .await
        .unwrap();
    assert_eq!(claimed.iter().map(|c| c.id).collect::<Vec<_>>(), ids);
    assert!(
        claimed
            .iter()
            .all(|c| c.batch_key.as_deref() == Some("batch-1") && c.batch_size == Some(2))
    );
    assert!(
        store
            .skip_claimed(claimed[0].id, claimed[0].claim_token, "opted out")
            .await
            .unwrap()
    );
    assert_eq!(
        store.batch_live_members("batch-1").await.unwrap(),
        (1, Some(ids[1]))
    );
    assert!(
        store
            .record(&sent(claimed[1].id, claimed[1].claim_token, 2))
            .await
            .unwrap()
    );
    assert_eq!(
        store.batch_live_members("batch-1").await.unwrap(),
        (0, None)
    );
    let skipped = store.delivery(ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (skipped.status, skipped.attempts),
        (DeliveryStatus::Skipped, 1)
    );
}

pub async fn the_schedule_lock_is_exclusive_until_the_watermark_moves(store: &Store) {
    assert_eq!(store.watermark("weekly_report").await.unwrap(), None);
    let lock = store
        .try_lock_schedule("weekly_report")
        .await
        .unwrap()
        .expect("free");
    assert!(
        store
            .try_lock_schedule("weekly_report")
            .await
            .unwrap()
            .is_none(),
        "held"
    );
    let other = store.try_lock_schedule("task_reminders").await.unwrap();
    assert!(other.is_some(), "another schedule's lock is its own");
    store
        .advance_watermark(lock, "weekly_report", at(9, 0))
        .await
        .unwrap();
    let lock = store
        .try_lock_schedule("weekly_report")
        .await
        .unwrap()
        .expect("released");
    // The watermark never moves back.
    store
        .advance_watermark(lock, "weekly_report", at(8, 0))
        .await
        .unwrap();
    assert_eq!(
        store.watermark("weekly_report").await.unwrap(),
        Some(at(9, 0))
    );
}

pub async fn failed_deliveries_retry_and_purge(store: &Store) {
    let ids = store
        .insert_deliveries(&[planned("a", at(9, 0)), planned("b", at(9, 0))])
        .await
        .unwrap();
    let (claimed, _) = store
        .claim_many(&ids, LEASE, "example.com", 5, at(9, 0), None)
        .await
        .unwrap();
    let failed: Vec<Recording> = claimed
        .iter()
        .map(|c| {
            let mut r = sent(c.id, c.claim_token, 1);
            r.status = DeliveryStatus::Failed;
            r.tries[0].outcome = AttemptOutcome::Failed(ErrorClass::Permanent);
            r.tries[0].error = Some("550 no such user\0".into());
            r.last_error = Some("550 no such user".into());
            r
        })
        .collect();
    assert_eq!(store.record_many(&failed).await.unwrap(), [true, true]);
    let listed = store
        .failed(Some("task_reminders"), None, 10)
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        store.attempts(ids[0]).await.unwrap()[0].error.as_deref(),
        Some("550 no such user"),
        "NUL bytes are dropped"
    );
    assert!(
        store
            .failed(Some("weekly_report"), None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.retry_failed(Some(&ids[..1]), at(8, 0)).await.unwrap(),
        ids[..1]
    );
    let retried = store.delivery(ids[0]).await.unwrap().unwrap();
    assert_eq!(
        (retried.status, retried.due_at),
        (DeliveryStatus::Queued, at(8, 0))
    );
    assert_eq!(
        store
            .purge_failed(Utc::now() + chrono::Duration::hours(1))
            .await
            .unwrap(),
        1
    );
    assert!(store.delivery(ids[1]).await.unwrap().is_none());
    assert!(
        store.attempts(ids[1]).await.unwrap().is_empty(),
        "attempts go with their delivery"
    );
}
