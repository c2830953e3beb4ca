//! What operators and the app write besides deliveries: opt-outs, suppressions and the
//! provider's events, pauses, the dashboard's session key, retention, the metrics' gauges.

use std::collections::HashSet;

use chrono::Utc;
use herald::store::{Cutoffs, Deleted, DeliveryStatus, Forgotten, NewEvent, Recording, Store};

use super::{LEASE, at, planned, sent};

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn set(items: &[&str]) -> HashSet<String> {
    strings(items).into_iter().collect()
}

pub async fn opt_outs_are_set_cleared_and_forgotten(store: &Store) {
    let prefs = |kinds: &[(&str, bool)]| -> Vec<(String, bool)> {
        kinds.iter().map(|(k, on)| ((*k).to_owned(), *on)).collect()
    };
    store
        .set_preferences(
            "u1",
            &prefs(&[("weekly_report", false), ("task_reminders", false)]),
        )
        .await
        .unwrap();
    assert_eq!(
        store.opt_outs("u1").await.unwrap(),
        ["task_reminders", "weekly_report"]
    );
    store
        .set_preferences("u1", &prefs(&[("weekly_report", true)]))
        .await
        .unwrap();
    store.opt_out("u1", "task_reminders").await.unwrap();
    assert_eq!(store.opt_outs("u1").await.unwrap(), ["task_reminders"]);
    assert_eq!(
        store
            .opted_out_among("task_reminders", &strings(&["u1", "u2", "u3"]))
            .await
            .unwrap(),
        set(&["u1"])
    );
    assert!(
        store
            .opted_out_among("task_reminders", &[])
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.ui_opted_out("task_reminders").await.unwrap(), 1);
    store.opt_out("u2", "weekly_report").await.unwrap();
    assert_eq!(store.clear_preferences("u2").await.unwrap(), 1);
    assert!(store.opt_outs("u2").await.unwrap().is_empty());

    // Forgetting users takes their deliveries, attempts, batches and opt-outs.
    let ids = store
        .insert_deliveries(&[
            planned("a", at(9, 0)),
            planned("b", at(9, 0)),
            planned("c", at(9, 0)),
        ])
        .await
        .unwrap();
    let (claimed, _) = store
        .claim_many(&ids[..2], LEASE, "example.com", 5, at(9, 0), None)
        .await
        .unwrap();
    assert!(
        store
            .start_batch(
                "batch-a",
                "resend",
                &[(claimed[0].id, claimed[0].claim_token)]
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .record(&sent(claimed[1].id, claimed[1].claim_token, 1))
            .await
            .unwrap()
    );
    store.opt_out("user-a", "weekly_report").await.unwrap();
    let gone = store
        .forget_users(&strings(&["user-a", "user-b", "user-nobody"]))
        .await
        .unwrap();
    assert_eq!(
        gone,
        Forgotten {
            deliveries: 2,
            attempts: 1,
            batches: 1,
            opt_outs: 1,
        }
    );
    assert!(store.delivery(ids[0]).await.unwrap().is_none());
    assert!(
        store.delivery(ids[2]).await.unwrap().is_some(),
        "other users stay"
    );
    assert_eq!(store.opt_outs("u1").await.unwrap(), ["task_reminders"]);
}

pub async fn suppressions_are_listed_lifted_and_counted(store: &Store) {
    let since = Utc::now() - chrono::Duration::minutes(1);
    assert!(
        store
            .suppress(
                "Bob@Example.com",
                "bounced",
                "email.bounced",
                Some("550\0 gone"),
                None
            )
            .await
            .unwrap()
    );
    assert!(
        !store
            .suppress(
                "bob@example.com",
                "complained",
                "email.complained",
                None,
                None
            )
            .await
            .unwrap(),
        "the first reason stays"
    );
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    assert!(
        store
            .suppress(
                "carol@example.com",
                "complained",
                "email.complained",
                None,
                Some(7)
            )
            .await
            .unwrap()
    );
    assert_eq!(
        store
            .suppressed_among(&strings(&["BOB@example.com", "dave@example.com"]))
            .await
            .unwrap(),
        set(&["bob@example.com"])
    );
    assert!(store.suppressed_among(&[]).await.unwrap().is_empty());
    let bob = store.suppression("BOB@EXAMPLE.COM").await.unwrap().unwrap();
    assert_eq!(
        (
            bob.address.as_str(),
            bob.reason.as_str(),
            bob.event.as_str()
        ),
        ("bob@example.com", "bounced", "email.bounced")
    );
    assert_eq!(
        bob.detail.as_deref(),
        Some("550 gone"),
        "NUL bytes are dropped"
    );
    let listed: Vec<String> = store
        .suppressions(10)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.address)
        .collect();
    assert_eq!(
        listed,
        ["carol@example.com", "bob@example.com"],
        "newest first"
    );
    assert_eq!(store.suppressions(1).await.unwrap().len(), 1);

    // One email sent: the rates count it with the suppressions since then.
    let ids = store
        .insert_deliveries(&[planned("a", at(9, 0))])
        .await
        .unwrap();
    let (claimed, _) = store
        .claim_many(&ids, LEASE, "example.com", 5, at(9, 0), None)
        .await
        .unwrap();
    store
        .record(&sent(claimed[0].id, claimed[0].claim_token, 1))
        .await
        .unwrap();
    let rates = store.suppression_rates(since).await.unwrap();
    assert_eq!((rates.sent, rates.bounced, rates.complained), (1, 1, 1));
    let later = store
        .suppression_rates(Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!((later.sent, later.bounced, later.complained), (0, 0, 0));

    assert!(store.lift_suppression("bob@EXAMPLE.com").await.unwrap());
    assert!(!store.lift_suppression("bob@example.com").await.unwrap());
    assert!(
        store
            .suppression("bob@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

/// A delivery sent with the provider's id `re_1`.
async fn sent_with_provider_id(store: &Store) -> i64 {
    let ids = store
        .insert_deliveries(&[planned("a", at(9, 0))])
        .await
        .unwrap();
    let (claimed, _) = store
        .claim_many(&ids, LEASE, "example.com", 5, at(9, 0), None)
        .await
        .unwrap();
    let mut r: Recording = sent(claimed[0].id, claimed[0].claim_token, 1);
    r.provider_id = Some("re_1".into());
    assert!(store.record(&r).await.unwrap());
    ids[0]
}

pub async fn events_are_recorded_once_and_listed(store: &Store) {
    let id = sent_with_provider_id(store).await;
    let event = |svix_id, provider_id| NewEvent {
        svix_id,
        kind: "email.delivered",
        provider_id,
        payload: r#"{"type": "email.delivered"}"#,
    };
    assert_eq!(
        store
            .record_event(&event("msg_1", Some("re_1")))
            .await
            .unwrap(),
        Some(Some(id))
    );
    assert_eq!(
        store
            .record_event(&event("msg_1", Some("re_1")))
            .await
            .unwrap(),
        None,
        "a replay"
    );
    assert_eq!(
        store
            .record_event(&event("msg_2", Some("re_unknown")))
            .await
            .unwrap(),
        Some(None)
    );
    let mut bad = event("msg_3", None);
    bad.payload = "not json";
    assert!(
        store.record_event(&bad).await.is_err(),
        "the payload is JSON"
    );
    let events = store.events(id).await.unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| (e.svix_id.as_str(), e.kind.as_str()))
            .collect::<Vec<_>>(),
        [("msg_1", "email.delivered")]
    );
}

pub async fn a_pause_holds_until_resumed(store: &Store) {
    assert!(
        store
            .schedule_pause("weekly_report")
            .await
            .unwrap()
            .is_none()
    );
    let first = store
        .pause_schedule("weekly_report", Some("migration"))
        .await
        .unwrap();
    assert_eq!(
        (first.schedule.as_str(), first.reason.as_deref()),
        ("weekly_report", Some("migration"))
    );
    let again = store.pause_schedule("weekly_report", None).await.unwrap();
    assert_eq!(
        (again.paused_at, again.reason.as_deref()),
        (first.paused_at, Some("migration")),
        "an existing pause keeps its time and reason"
    );
    let stored = store
        .schedule_pause("weekly_report")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.paused_at, first.paused_at);
    let all = store.schedule_pauses().await.unwrap();
    assert_eq!(all.keys().collect::<Vec<_>>(), ["weekly_report"]);
    assert!(store.resume_schedule("weekly_report").await.unwrap());
    assert!(!store.resume_schedule("weekly_report").await.unwrap());
    assert!(
        store
            .schedule_pause("weekly_report")
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn the_session_key_is_made_once_and_rotated(store: &Store) {
    let key = store.session_key().await.unwrap();
    assert_eq!(key.len(), 64);
    assert_eq!(
        store.session_key().await.unwrap(),
        key,
        "the same key twice"
    );
    let before = Utc::now() - chrono::Duration::seconds(5);
    let rotated_at = store.rotate_session_key().await.unwrap();
    assert!(rotated_at >= before && rotated_at <= Utc::now() + chrono::Duration::seconds(5));
    let new = store.session_key().await.unwrap();
    assert_ne!(new, key, "rotating changes it");
    assert_eq!(store.session_key().await.unwrap(), new);
}

pub async fn retention_deletes_expired_rows_by_status_with_their_attempts(store: &Store) {
    let ids = store
        .insert_deliveries(&["a", "b", "c", "d"].map(|k| planned(k, at(9, 0))))
        .await
        .unwrap();
    let (claimed, _) = store
        .claim_many(&ids, LEASE, "example.com", 5, at(9, 0), None)
        .await
        .unwrap();
    let mut a = sent(claimed[0].id, claimed[0].claim_token, 1);
    a.provider_id = Some("re_1".into());
    let mut b = sent(claimed[1].id, claimed[1].claim_token, 1);
    b.status = DeliveryStatus::Failed;
    assert_eq!(store.record_many(&[a, b]).await.unwrap(), [true, true]);
    assert!(
        store
            .skip_claimed(claimed[2].id, claimed[2].claim_token, "opted out")
            .await
            .unwrap()
    );
    store
        .record_event(&NewEvent {
            svix_id: "msg_1",
            kind: "email.delivered",
            provider_id: Some("re_1"),
            payload: "{}",
        })
        .await
        .unwrap();
    let past = Utc::now() - chrono::Duration::hours(1);
    let future = Utc::now() + chrono::Duration::hours(1);

    // Payloads of sent and skipped rows go; failed rows keep theirs for a retry.
    assert_eq!(store.prune_payloads(future, 1).await.unwrap(), 2);
    let payload = |id| async move { store.ui_delivery(id).await.unwrap().unwrap().payload };
    assert!(payload(ids[0]).await.is_none());
    assert!(payload(ids[1]).await.is_some());
    assert!(payload(ids[2]).await.is_none());
    assert!(payload(ids[3]).await.is_some(), "a row being sent keeps it");
    assert_eq!(
        store.prune_payloads(future, 1).await.unwrap(),
        0,
        "done up to there"
    );

    let cut = |sent, failed, skipped| Cutoffs {
        sent,
        failed,
        skipped,
        payload: past,
    };
    assert_eq!(
        store
            .delete_expired(&cut(past, future, past), 1)
            .await
            .unwrap(),
        Deleted {
            failed: 1,
            ..Deleted::default()
        }
    );
    assert!(store.delivery(ids[1]).await.unwrap().is_none());
    assert!(
        store.attempts(ids[1]).await.unwrap().is_empty(),
        "attempts go too"
    );
    assert_eq!(
        store
            .delete_expired(&cut(future, future, future), 1)
            .await
            .unwrap(),
        Deleted {
            sent: 1,
            skipped: 1,
            events: 1,
            ..Deleted::default()
        }
    );
    assert!(store.attempts(ids[0]).await.unwrap().is_empty());
    assert_eq!(
        store.status_counts().await.unwrap(),
        [(DeliveryStatus::Sending, 1)],
        "a row on its way stays"
    );
}

pub async fn gauges_count_deliveries_by_state_and_list_watermarks(store: &Store) {
    let now = at(9, 30);
    store
        .insert_deliveries(&[
            planned("a", at(9, 0)),
            planned("b", at(9, 1)),
            planned("c", at(9, 2)),
            planned("d", at(10, 0)),
        ])
        .await
        .unwrap();
    let first = store.take_due(1, now).await.unwrap();
    store
        .claim_many(&first, LEASE, "example.com", 5, now, None)
        .await
        .unwrap();
    store.take_due(1, now).await.unwrap();
    let g = store.delivery_gauges(now).await.unwrap();
    assert_eq!(
        (g.due, g.waiting, g.dispatched, g.in_flight, g.failed),
        (1, 1, 1, 1, 0)
    );
    for (schedule, to) in [("weekly_report", at(9, 0)), ("task_reminders", at(8, 0))] {
        let lock = store.try_lock_schedule(schedule).await.unwrap().unwrap();
        store.advance_watermark(lock, schedule, to).await.unwrap();
    }
    assert_eq!(
        store.watermarks().await.unwrap(),
        [
            ("task_reminders".to_owned(), at(8, 0)),
            ("weekly_report".to_owned(), at(9, 0))
        ]
    );
}
