//! The dashboard's queries: counts, the failed set with its filters and bulk actions, search,
//! lists, waits, fires and triggers. The same rows are answered alike in both homes
//! ([`both_homes_answer_the_dashboard_alike`]).

use chrono::{DateTime, TimeZone, Utc};
use herald::{
    domain::ErrorClass,
    store::{
        AttemptOutcome, DeliveryStatus, NewDelivery, Recording, Store,
        ui::{FailedFilter, LastTry},
        ui_browse::Browse,
    },
};
use serde_json::{Value, json};

use super::{LEASE, sent};

/// An instant of a day long past, so that every row is due whatever the clock says.
fn then(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2020, 1, 6, h, m, 0).unwrap()
}

fn row(key: &str, planned_for: DateTime<Utc>, due_at: DateTime<Utc>) -> NewDelivery {
    NewDelivery {
        status: DeliveryStatus::Queued,
        note: None,
        kind: "task_reminders".into(),
        user_id: format!("user-{key}"),
        dedup_key: key.into(),
        recipient: format!("{key}@example.com"),
        payload: format!(r#"{{"key":"{key}"}}"#),
        planned_for,
        due_at,
    }
}

/// The rows, by key: `a` sent, `b` failed (permanent, 550), `c` failed with no try (to
/// `C@Other.Example`), `d` queued and due, `e` queued for later, `s` skipped: the 09:00 fire.
/// `m1` sent and `m2` queued: a manual trigger at 08:00; `MANUAL:x`, not one (case counts).
async fn seed(store: &Store) -> Vec<i64> {
    let fire = then(9, 0);
    let mut c = row("c", fire, fire);
    c.recipient = "C@Other.Example".into();
    let mut s = row("s", fire, fire);
    s.status = DeliveryStatus::Skipped;
    let rows = vec![
        row("a", fire, fire),
        row("b", fire, fire),
        c,
        row("d", fire, fire),
        row("e", fire, then(23, 0)),
        s,
        row("manual:1:u1", then(8, 0), then(8, 0)),
        row("manual:1:u2", then(8, 0), then(8, 0)),
        row("MANUAL:x", then(8, 30), then(8, 30)),
    ];
    let ids = store.insert_deliveries(&rows).await.unwrap();
    assert_eq!(ids.len(), rows.len());
    let picked = [ids[0], ids[1], ids[2], ids[6]];
    let (claimed, _) = store
        .claim_many(&picked, LEASE, "example.com", 5, then(9, 30), None)
        .await
        .unwrap();
    let by_id = |id| claimed.iter().find(|c| c.id == id).unwrap();
    let mut b = sent(ids[1], by_id(ids[1]).claim_token, 1);
    b.status = DeliveryStatus::Failed;
    b.tries[0].outcome = AttemptOutcome::Failed(ErrorClass::Permanent);
    b.tries[0].code = Some(550);
    b.last_error = Some("550 no such user".into());
    let mut c: Recording = b.clone();
    c.id = ids[2];
    c.claim_token = by_id(ids[2]).claim_token;
    c.tries.clear();
    c.provider = None;
    let outcomes = [
        sent(ids[0], by_id(ids[0]).claim_token, 1),
        b,
        c,
        sent(ids[6], by_id(ids[6]).claim_token, 1),
    ];
    assert_eq!(store.record_many(&outcomes).await.unwrap(), [true; 4]);
    ids
}

fn filter(f: impl FnOnce(&mut FailedFilter)) -> FailedFilter {
    let mut filter = FailedFilter::default();
    f(&mut filter);
    filter
}

async fn failed_ids(store: &Store, f: &FailedFilter) -> (Vec<i64>, i64) {
    let (rows, total) = store.ui_failed(f, 10).await.unwrap();
    (rows.into_iter().map(|r| r.id).collect(), total)
}

/// The ids the dashboard's `list` shows, at most `limit`, in its order.
async fn browse_ids(store: &Store, list: Browse, limit: i64) -> Vec<i64> {
    let rows = store.ui_browse(list, limit).await.unwrap();
    rows.into_iter().map(|r| r.id).collect()
}

pub async fn the_dashboard_counts_lists_and_finds(store: &Store) {
    let ids = seed(store).await;
    let id = |k: usize| ids[k];
    let (rows, total) = store.ui_failed(&FailedFilter::default(), 10).await.unwrap();
    assert_eq!(total, 2);
    let rows: Vec<_> = rows.iter().map(|r| (r.id, r.class, r.code)).collect();
    assert_eq!(
        rows,
        [
            (id(2), None, None),
            (
                id(1),
                Some(AttemptOutcome::Failed(ErrorClass::Permanent)),
                Some(550)
            )
        ],
        "newest first, then by id"
    );
    let cases = [
        (filter(|f| f.class = Some(LastTry::NoTry)), vec![id(2)]),
        (
            filter(|f| f.class = Some(LastTry::Failed(ErrorClass::Permanent))),
            vec![id(1)],
        ),
        (
            filter(|f| f.domain = Some("other.EXAMPLE".into())),
            vec![id(2)],
        ),
        (filter(|f| f.provider = Some("smtp".into())), vec![id(1)]),
        (filter(|f| f.kind = Some("weekly_report".into())), vec![]),
        (
            filter(|f| f.since = Some(Utc::now() + chrono::Duration::hours(1))),
            vec![],
        ),
        (
            filter(|f| f.until = Some(Utc::now() + chrono::Duration::hours(1))),
            vec![id(2), id(1)],
        ),
    ];
    for (f, want) in cases {
        let n = want.len() as i64;
        assert_eq!(failed_ids(store, &f).await, (want, n), "{f:?}");
    }
    let facets = store.ui_failed_facets().await.unwrap();
    let facets: Vec<(&str, &str)> = facets
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        facets,
        [
            ("class", "permanent"),
            ("kind", "task_reminders"),
            ("provider", "smtp")
        ]
    );

    let found = |q: &'static str| async move {
        let rows = store.ui_search(q, 10).await.unwrap();
        rows.into_iter().map(|r| r.id).collect::<Vec<_>>()
    };
    assert_eq!(found("user-a").await, [id(0)]);
    assert_eq!(
        found("A@EXAMPLE.COM").await,
        [id(0)],
        "the address in any case"
    );
    assert_eq!(found("b").await, [id(1)], "a dedup key");
    assert!(found("nobody").await.is_empty());
    let detail = store.ui_delivery(id(0)).await.unwrap().unwrap();
    assert_eq!(detail.payload, Some(json!({"key": "a"})));
    assert!(store.ui_delivery(id(8) + 100).await.unwrap().is_none());

    let listed = |list| async move {
        let rows = store.ui_browse(list, 10).await.unwrap();
        rows.into_iter().map(|r| r.id).collect::<Vec<_>>()
    };
    assert_eq!(listed(Browse::Failed).await, [id(2), id(1)]);
    assert_eq!(
        listed(Browse::Queued).await,
        [id(7), id(8), id(3), id(4)],
        "soonest due first"
    );
    assert!(listed(Browse::Sending).await.is_empty());
    assert!(listed(Browse::Retrying).await.is_empty());
    assert_eq!(store.ui_browse(Browse::Recent, 3).await.unwrap().len(), 3);

    let active = store.ui_active(then(9, 30)).await.unwrap();
    assert_eq!(
        (active.due, active.later, active.retrying, active.sending),
        (3, 1, 0, 0)
    );
    let fire = store.ui_last_fire("task_reminders").await.unwrap().unwrap();
    assert_eq!(
        (
            fire.planned_for,
            fire.planned,
            fire.skipped,
            fire.sent,
            fire.failed
        ),
        (then(9, 0), 5, 1, 1, 2)
    );
    assert!(store.ui_last_fire("weekly_report").await.unwrap().is_none());
    let trigger = store
        .ui_last_trigger("task_reminders")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            trigger.planned_for,
            trigger.planned,
            trigger.sent,
            trigger.failed
        ),
        (then(8, 0), 2, 1, 0),
        "`MANUAL:x` is no trigger"
    );

    // Everything finished within the last minute or so.
    let now = Utc::now();
    let mut outcomes: Vec<_> = store
        .ui_outcomes(now + chrono::Duration::minutes(30))
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.provider, o.status, o.last_hour, o.last_day))
        .collect();
    outcomes.sort_by_key(|o| (o.0.clone(), o.1.as_str()));
    let (failed, sent_) = (DeliveryStatus::Failed, DeliveryStatus::Sent);
    assert_eq!(
        outcomes,
        [
            ("".into(), failed, 1, 1),
            ("smtp".into(), failed, 1, 1),
            ("smtp".into(), sent_, 2, 2)
        ]
    );
    let later = store
        .ui_outcomes(now + chrono::Duration::hours(2))
        .await
        .unwrap();
    assert!(later.iter().all(|o| o.last_hour == 0 && o.last_day > 0));
    let mut minutes: Vec<_> = store
        .ui_throughput(now + chrono::Duration::seconds(90))
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.minutes_ago, m.status, m.n))
        .collect();
    minutes.sort_by_key(|m| m.1.as_str());
    assert_eq!(minutes, [(1, failed, 2), (1, sent_, 2)]);

    let waits = store.ui_waits(now).await.unwrap();
    let secs = |d: chrono::Duration| d.num_microseconds().unwrap() as f64 / 1e6;
    assert_eq!(waits.oldest_due_s, Some(secs(now - then(8, 0))));
    let ids = &ids;
    let lag = |k: usize| async move {
        let r = store.delivery(ids[k]).await.unwrap().unwrap();
        secs(r.sent_at.unwrap() - r.due_at)
    };
    let (lo, hi) = {
        let (x, y) = (lag(0).await, lag(6).await);
        (x.min(y), x.max(y))
    };
    let close = |got: Option<f64>, want: f64| (got.unwrap() - want).abs() < 1e-6;
    assert!(close(waits.lag_p50_s, lo + (hi - lo) * 0.5), "{waits:?}");
    assert!(close(waits.lag_p95_s, lo + (hi - lo) * 0.95), "{waits:?}");
}

pub async fn the_dashboard_retries_and_purges_the_failed_set(store: &Store) {
    let ids = seed(store).await;
    let start = then(12, 0);
    let none: &[i64] = &[];
    assert_eq!(
        store
            .ui_retry_failed(&FailedFilter::default(), Some(none), start, 1)
            .await
            .unwrap(),
        (0, None)
    );
    // Oldest failure first (b and c failed together: by id), one a second.
    assert_eq!(
        store
            .ui_retry_failed(&FailedFilter::default(), None, start, 1)
            .await
            .unwrap(),
        (2, Some(start + chrono::Duration::seconds(1)))
    );
    let b = store.delivery(ids[1]).await.unwrap().unwrap();
    let c = store.delivery(ids[2]).await.unwrap().unwrap();
    assert_eq!((b.status, b.due_at), (DeliveryStatus::Queued, start));
    assert_eq!(c.due_at, start + chrono::Duration::seconds(1));
    assert_eq!(
        store.ui_browse(Browse::Retrying, 10).await.unwrap().len(),
        2,
        "queued again after a try"
    );

    // Fail them again, then purge only the one that matches.
    let (claimed, _) = store
        .claim_many(&ids[1..3], LEASE, "example.com", 5, then(13, 0), None)
        .await
        .unwrap();
    let failing: Vec<Recording> = claimed
        .iter()
        .map(|c| {
            let mut r = sent(c.id, c.claim_token, c.attempts);
            r.status = DeliveryStatus::Failed;
            r.tries[0].outcome = AttemptOutcome::Failed(ErrorClass::Permanent);
            r
        })
        .collect();
    store.record_many(&failing).await.unwrap();
    let f = filter(|f| f.domain = Some("example.com".into()));
    assert_eq!(
        store.ui_purge_failed(&f, Some(&ids[2..3])).await.unwrap(),
        0
    );
    assert_eq!(store.ui_purge_failed(&f, None).await.unwrap(), 1);
    assert!(store.delivery(ids[1]).await.unwrap().is_none());
    assert!(store.attempts(ids[1]).await.unwrap().is_empty());
    let twice = store
        .ui_retry_failed(&FailedFilter::default(), Some(&ids), start, 10)
        .await
        .unwrap();
    assert_eq!(twice, (1, Some(start)));
}

/// Queued rows sit in two of the dispatcher's indexes, pushed to Redis or not: the Queued list
/// merges them in due order (ties by id, across the two), a page at a time; the counts and the
/// oldest due email count both; a retrying row already pushed is listed as retrying.
pub async fn the_queued_list_merges_pushed_and_waiting_rows_in_due_order(store: &Store) {
    let rows = [
        ("x1", then(9, 0)),
        ("x2", then(9, 0)),
        ("x3", then(9, 0)),
        ("d", then(8, 50)),
        ("f", then(8, 55)),
        ("c", then(10, 0)),
        ("r", then(8, 40)),
    ];
    let new: Vec<NewDelivery> = rows.iter().map(|(k, due)| row(k, *due, *due)).collect();
    let ids = store.insert_deliveries(&new).await.unwrap();
    let id = |key: &str| ids[rows.iter().position(|(k, _)| *k == key).unwrap()];
    // `r` was tried once and given back by a dead worker: queued again, retrying.
    let (claimed, _) = store
        .claim_many(&[id("r")], LEASE, "example.com", 5, then(9, 5), Some("w1"))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(browse_ids(store, Browse::Sending, 10).await, [id("r")]);
    assert_eq!(store.release_claims_of(&["w1".into()]).await.unwrap(), 1);
    // Everything due is pushed to Redis; then `x2` and `f` come back (a failed push).
    assert_eq!(store.take_due(100, then(9, 5)).await.unwrap().len(), 6);
    store.untake(&[id("x2"), id("f")]).await.unwrap();

    let order = ["r", "d", "f", "x1", "x2", "x3", "c"].map(id);
    for limit in 1..=order.len() + 1 {
        let listed = browse_ids(store, Browse::Queued, limit as i64).await;
        let want = &order[..limit.min(order.len())];
        assert_eq!(
            listed, want,
            "the first {limit}, soonest due first, then by id"
        );
    }
    assert_eq!(browse_ids(store, Browse::Retrying, 10).await, [id("r")]);
    assert!(
        store
            .ui_browse(Browse::Sending, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let active = store.ui_active(then(9, 30)).await.unwrap();
    assert_eq!(
        (active.due, active.later, active.retrying, active.sending),
        (6, 1, 1, 0)
    );
    // The oldest due email is `r`, pushed to Redis.
    let waits = store.ui_waits(then(9, 30)).await.unwrap();
    assert_eq!(waits.oldest_due_s, Some(50.0 * 60.0));
}

/// The dashboard's answers as JSON, without what the clock or chance wrote (the times rows were
/// written, Message-IDs).
async fn answers(store: &Store) -> Value {
    let now = Utc::now();
    let mut throughput = serde_json::to_value(
        store
            .ui_throughput(now + chrono::Duration::seconds(90))
            .await
            .unwrap(),
    )
    .unwrap();
    if let Value::Array(rows) = &mut throughput {
        rows.sort_by_key(|r| r.to_string());
    }
    let mut all = json!({
        "failed": store.ui_failed(&FailedFilter::default(), 10).await.unwrap().0,
        "facets": store.ui_failed_facets().await.unwrap(),
        "search": store.ui_search("a@example.com", 10).await.unwrap(),
        "delivery": store.ui_delivery(1).await.unwrap(),
        "browse": [
            store.ui_browse(Browse::Recent, 20).await.unwrap(),
            store.ui_browse(Browse::Queued, 20).await.unwrap(),
            store.ui_browse(Browse::Failed, 20).await.unwrap(),
        ],
        "active": store.ui_active(then(9, 30)).await.unwrap(),
        "fire": store.ui_last_fire("task_reminders").await.unwrap(),
        "trigger": store.ui_last_trigger("task_reminders").await.unwrap(),
        "outcomes": store.ui_outcomes(now + chrono::Duration::minutes(30)).await.unwrap(),
        "throughput": throughput,
        "oldest_due_s": store.ui_waits(then(10, 0)).await.unwrap().oldest_due_s,
    });
    strip(&mut all);
    all
}

fn strip(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for key in ["updated_at", "sent_at", "created_at", "message_id"] {
                map.remove(key);
            }
            map.values_mut().for_each(strip);
        }
        Value::Array(items) => items.iter_mut().for_each(strip),
        _ => {}
    }
}

#[tokio::test]
async fn both_homes_answer_the_dashboard_alike() {
    skip_without_servers!();
    let (pg, lite) = (super::postgres().await, super::sqlite().await);
    seed(&pg.store).await;
    seed(&lite.store).await;
    let (a, b) = (answers(&pg.store).await, answers(&lite.store).await);
    drop(lite.store);
    (pg.gone)().await;
    (lite.gone)().await;
    assert_eq!(a, b);
}
