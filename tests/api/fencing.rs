//! Fenced claims: a worker whose lease ran out cannot overwrite the next owner's record, a slow
//! batch renews its leases instead of being taken over, one row that cannot be recorded does
//! not stop the rest of its batch, and a batch whose outcome is unknown goes again only whole.
//! In both homes, but for the row PostgreSQL refuses to record (a trigger of its own).

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::Utc;
use herald::{
    kinds::Kind,
    mail::Provider,
    render::Templates,
    store::{AttemptOutcome, AttemptRecord, DeliveryStatus, NewDelivery, Next, Recording, Store},
    worker::{WorkerDeps, process_job},
};

use crate::helpers::*;
use crate::resend_stub::{Reply, ResendStub};

/// One due overdue summary per address; returns the deliveries' ids, in the order given.
pub(crate) async fn due_deliveries(store: &Store, emails: &[&str]) -> Vec<i64> {
    let mut ids = Vec::new();
    for email in emails {
        let user_id = add_user(store, email, "UTC", &[("Late", at(LATE), None)]).await;
        let now = Utc::now();
        let inserted = store
            .insert_deliveries(&[NewDelivery {
                status: DeliveryStatus::Queued,
                note: None,
                kind: overdue().name().to_owned(),
                user_id: user_id.to_string(),
                dedup_key: format!("fencing:{user_id}"),
                recipient: (*email).to_owned(),
                payload: overdue().samples().remove(0).payload.into_json(),
                planned_for: now,
                due_at: now - chrono::Duration::minutes(1),
            }])
            .await
            .unwrap();
        ids.extend(inserted);
    }
    assert_eq!(ids.len(), emails.len());
    ids
}

/// The provider delivery `id` is held by (after an unknown outcome), if any.
pub(crate) async fn held_by(store: &Store, id: i64) -> Option<String> {
    store
        .sql_scalar("SELECT held_by FROM deliveries WHERE id = $1", &[id.into()])
        .await
}

/// Delivery `id`'s lease ran out a second ago: recovery may take it back.
async fn lease_ran_out(store: &Store, id: i64) {
    let past = Utc::now() - chrono::Duration::seconds(1);
    store
        .sql_execute(
            "UPDATE deliveries SET lease_until = $2 WHERE id = $1",
            &[id.into(), past.into()],
        )
        .await;
}

/// Every delivery due a second ago: a retry comes due without waiting for its delay.
pub(crate) async fn all_due_now(store: &Store) {
    let due = Utc::now() - chrono::Duration::seconds(1);
    store
        .sql_execute("UPDATE deliveries SET due_at = $1", &[due.into()])
        .await;
}

/// One try that SMTP accepted, and the delivery moving on to `sent`: what a worker records.
fn sent_over_smtp() -> (AttemptRecord<'static>, Next<'static>) {
    let sent = AttemptRecord {
        provider: "smtp",
        outcome: AttemptOutcome::Sent,
        code: Some(250),
        error: None,
    };
    let next = Next::Sent {
        provider: "smtp",
        provider_id: None,
    };
    (sent, next)
}

/// The worker's dependencies as `herald run` builds them from these settings, in their home:
/// the gate in Redis, or in the process.
pub(crate) async fn worker_deps(env: &Env, store: Store) -> WorkerDeps {
    let settings = env.settings();
    let gate = match env.folder {
        None => {
            let redis = herald::queue::connect(&redis_url()).await.unwrap();
            herald::startup::gate(redis, &settings)
        }
        Some(_) => herald::startup::in_process_gate(&settings),
    };
    WorkerDeps {
        recorder: herald::recorder::Recorder::start(store.clone()),
        in_hand: herald::worker::InHand::new(settings.queue.concurrency),
        store,
        templates: Arc::new(
            Templates::from_settings(&settings, &herald::kinds::samples()).unwrap(),
        ),
        providers: Provider::build_all(&settings.mail).unwrap(),
        gate,
        retry_delays: settings.queue.retry_delays.clone(),
        max_attempts: settings.queue.max_attempts as i32,
        lease: settings.queue.lease,
        message_id_domain: settings.mail.from.domain().to_owned(),
        clock: herald::clock::Clock::System,
        health: Default::default(),
        metrics: Default::default(),
        links: herald::unsubscribe::Links::from_settings(&settings),
    }
}

fn outcomes(attempts: &[herald::store::AttemptRow]) -> Vec<(&str, &str, Option<i32>)> {
    attempts
        .iter()
        .map(|a| (a.provider.as_str(), a.outcome.as_str(), a.code))
        .collect()
}

/// The stand-in delivered one email to each of `emails`, and no copy.
fn assert_delivered_once(stub: &ResendStub, emails: &[&str]) {
    let delivered = tally(stub.delivered().iter().map(crate::resend_stub::recipient));
    assert_eq!(delivered.len(), emails.len(), "{delivered:?}");
    assert!(delivered.values().all(|&n| n == 1), "{delivered:?}");
}

async fn status(store: &Store, id: i64) -> DeliveryStatus {
    store.delivery(id).await.unwrap().unwrap().status
}

/// How many times each address appears, duplicates counted.
fn tally<I: IntoIterator<Item = String>>(addresses: I) -> HashMap<String, usize> {
    let mut n = HashMap::new();
    for a in addresses {
        *n.entry(a).or_insert(0) += 1;
    }
    n
}

async fn a_claim_taken_over_after_its_lease_ran_out_cannot_record(home: Home) {
    let smtp = SmtpServer::start().await;
    let env = home.env(&smtp);
    let (store, _guard) = bare_store(&env).await;
    let id = due_deliveries(&store, &["stale@example.com"]).await[0];
    let lease = Duration::from_secs(60);

    let old = store
        .claim_many(&[id], lease, "example.com", 10, chrono::Utc::now(), None)
        .await
        .unwrap()
        .0;
    let old = &old[0];
    // The first worker stalls past its lease; recovery takes the row back.
    lease_ran_out(&store, id).await;
    assert_eq!(
        store
            .recover(Duration::from_secs(300), chrono::Utc::now())
            .await
            .unwrap(),
        (1, 0)
    );
    assert!(
        store
            .renew(&[(id, old.claim_token)], lease)
            .await
            .unwrap()
            .is_empty(),
        "a recovered claim is not renewed"
    );
    let new = store
        .claim_many(&[id], lease, "example.com", 10, chrono::Utc::now(), None)
        .await
        .unwrap()
        .0;
    let new = &new[0];
    assert_ne!(new.claim_token, old.claim_token);
    assert_eq!(new.message_id, old.message_id);

    // The first worker wakes up and records its send: nothing is written.
    let (sent_by_old, next) = sent_over_smtp();
    assert!(
        !store
            .record(&Recording::new(old, &[sent_by_old], &next))
            .await
            .unwrap()
    );
    assert_eq!(status(&store, id).await, DeliveryStatus::Sending);
    assert!(store.attempts(id).await.unwrap().is_empty());

    // The new owner renews its lease and records.
    assert_eq!(
        store
            .renew(&[(id, new.claim_token)], Duration::from_secs(3600))
            .await
            .unwrap(),
        [id]
    );
    let lease_until: chrono::DateTime<Utc> = store
        .sql_scalar(
            "SELECT lease_until FROM deliveries WHERE id = $1",
            &[id.into()],
        )
        .await;
    assert!(lease_until > Utc::now() + chrono::Duration::minutes(30));
    let (sent_by_new, _) = sent_over_smtp();
    assert!(
        store
            .record(&Recording::new(new, &[sent_by_new], &next))
            .await
            .unwrap()
    );
    let delivery = store.delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Sent);
    assert_eq!(delivery.attempts, 2);
    assert_eq!(
        outcomes(&store.attempts(id).await.unwrap()),
        [("smtp", "sent", Some(250))]
    );

    // A late failure report from the first worker changes nothing either.
    assert!(
        !store
            .record(&Recording::new(old, &[], &Next::Failed))
            .await
            .unwrap()
    );
    assert_eq!(status(&store, id).await, DeliveryStatus::Sent);
    assert_eq!(store.attempts(id).await.unwrap().len(), 1);
    crate::homes::close(&store).await;
}

async fn a_known_send_is_recorded_when_its_lease_was_recovered_but_nobody_claimed_it_again(
    home: Home,
) {
    let smtp = SmtpServer::start().await;
    let env = home.env(&smtp);
    let (store, _guard) = bare_store(&env).await;
    let id = due_deliveries(&store, &["recovered@example.com"]).await[0];
    let lease = Duration::from_secs(60);
    let old = store
        .claim_many(&[id], lease, "example.com", 10, Utc::now(), None)
        .await
        .unwrap()
        .0;
    let old = &old[0];
    // The worker stalls past its lease; recovery makes the row queued again, with no token.
    lease_ran_out(&store, id).await;
    assert_eq!(
        store
            .recover(Duration::from_secs(300), Utc::now())
            .await
            .unwrap(),
        (1, 0)
    );
    assert_eq!(status(&store, id).await, DeliveryStatus::Queued);

    // A late failure report is still refused: the row goes out again, as it should.
    assert!(
        !store
            .record(&Recording::new(old, &[], &Next::Failed))
            .await
            .unwrap()
    );
    assert_eq!(status(&store, id).await, DeliveryStatus::Queued);

    // The worker wakes up and records its send: nobody claimed the row since, so it is kept.
    let (sent, next) = sent_over_smtp();
    assert!(
        store
            .record(&Recording::new(old, &[sent], &next))
            .await
            .unwrap()
    );
    let delivery = store.delivery(id).await.unwrap().unwrap();
    assert_eq!(delivery.status, DeliveryStatus::Sent);
    assert_eq!(delivery.attempts, 1);
    assert_eq!(
        outcomes(&store.attempts(id).await.unwrap()),
        [("smtp", "sent", Some(250))]
    );

    // The job the recovery made due again finds nothing to send: no copy reaches the server.
    let deps = worker_deps(&env, store.clone()).await;
    assert!(process_job(&deps, &[id]).await.unwrap().is_empty());
    assert_eq!(smtp.total(), 0);
    assert_eq!(status(&store, id).await, DeliveryStatus::Sent);
    crate::homes::close(&store).await;
}

async fn a_group_commit_writes_each_row_only_under_its_own_claim(home: Home) {
    let smtp = SmtpServer::start().await;
    let env = home.env(&smtp);
    let (store, _guard) = bare_store(&env).await;
    let ids = due_deliveries(
        &store,
        &["g0@example.com", "g1@example.com", "g2@example.com"],
    )
    .await;
    let lease = Duration::from_secs(60);
    let claimed = store
        .claim_many(&ids, lease, "example.com", 10, Utc::now(), None)
        .await
        .unwrap()
        .0;
    assert_eq!(claimed.iter().map(|c| c.id).collect::<Vec<_>>(), ids);
    // A second claim of the same job finds nothing: a duplicate job is harmless.
    assert!(
        store
            .claim_many(&ids, lease, "example.com", 10, Utc::now(), None)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    // The middle row's lease runs out and another worker takes it over.
    lease_ran_out(&store, ids[1]).await;
    store
        .recover(Duration::from_secs(300), Utc::now())
        .await
        .unwrap();
    let retaken = store
        .claim_many(&ids[1..2], lease, "example.com", 10, Utc::now(), None)
        .await
        .unwrap()
        .0;
    assert_eq!(retaken.len(), 1);

    let (sent, next) = sent_over_smtp();
    let sent = [sent];
    let group: Vec<Recording> = claimed
        .iter()
        .map(|d| Recording::new(d, &sent, &next))
        .collect();
    // One write for the three: the taken-over row is skipped, with nothing written for it.
    assert_eq!(
        store.record_many(&group).await.unwrap(),
        [true, false, true]
    );
    for (id, expected) in [
        (ids[0], DeliveryStatus::Sent),
        (ids[1], DeliveryStatus::Sending),
        (ids[2], DeliveryStatus::Sent),
    ] {
        assert_eq!(status(&store, id).await, expected, "delivery {id}");
    }
    assert_eq!(
        outcomes(&store.attempts(ids[0]).await.unwrap()),
        [("smtp", "sent", Some(250))]
    );
    assert!(store.attempts(ids[1]).await.unwrap().is_empty());
    // The new owner records its own.
    assert_eq!(
        store
            .record_many(&[Recording::new(&retaken[0], &sent, &next)])
            .await
            .unwrap(),
        [true]
    );
    assert_eq!(status(&store, ids[1]).await, DeliveryStatus::Sent);
    crate::homes::close(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_cannot_be_recorded_does_not_stop_the_rest_of_its_batch() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    let mut env = Env::new(&smtp).with_resend(&stub.url);
    env.set("HERALD__MAIL__PROVIDERS", r#"["resend"]"#);
    let (store, _guard) = bare_store(&env).await;
    let emails = [
        "b0@example.com",
        "b1@example.com",
        "b2@example.com",
        "b3@example.com",
        "b4@example.com",
    ];
    let ids = due_deliveries(&store, &emails).await;
    let bad = ids[2];
    // PostgreSQL refuses to move that one row out of `sending`: every try at recording it fails.
    sqlx::query(
        "CREATE FUNCTION fencing_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN RAISE EXCEPTION 'test: refusing to record delivery %', NEW.id; END $$",
    )
    .execute(store.pg())
    .await
    .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TRIGGER fencing_refuse_one BEFORE UPDATE ON deliveries FOR EACH ROW
         WHEN (NEW.id = {bad} AND NEW.status <> 'sending') EXECUTE FUNCTION fencing_refuse()"
    )))
    .execute(store.pg())
    .await
    .unwrap();

    let deps = worker_deps(&env, store.clone()).await;
    // One job carries the five: the dispatcher pushes deliveries due together as one job.
    let error = process_job(&deps, &ids)
        .await
        .expect_err("one row could not be recorded");
    let text = format!("{error:#}");
    assert!(
        text.contains(&format!(
            "cannot record the outcome of 1 of the 5 deliveries claimed together (ids {bad})"
        )) && text.contains(&format!(
            "cannot record the attempt of delivery {bad} (3 tries)"
        )) && text.contains("test: refusing to record delivery"),
        "{text}"
    );

    // One batch request carried the five emails, each once.
    let requests = stub.requests();
    assert_eq!(requests.len(), 1, "{requests:?}");
    assert_eq!(requests[0].path, "/emails/batch");
    assert_delivered_once(&stub, &emails);

    // Every other row is recorded sent, with exactly one attempt; the bad one wrote nothing.
    for &id in ids.iter().filter(|&&id| id != bad) {
        assert_eq!(
            status(&store, id).await,
            DeliveryStatus::Sent,
            "delivery {id}"
        );
        assert_eq!(
            outcomes(&store.attempts(id).await.unwrap()),
            [("resend", "sent", Some(200))],
            "delivery {id}"
        );
    }
    assert_eq!(status(&store, bad).await, DeliveryStatus::Sending);
    assert!(store.attempts(bad).await.unwrap().is_empty());
    crate::homes::close(&store).await;
}

async fn a_batch_slower_than_its_lease_keeps_its_claims(home: Home) {
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    // Resend refuses the batch as a whole (503: not taken); its emails then go one by one over
    // SMTP at one a second: 14 emails take about 14 s, more than two leases of 6 s.
    stub.script(&[("*", &[Reply::Status(503, "service_unavailable")])]);
    let mut env = home.env(&smtp).with_resend(&stub.url);
    env.set("HERALD__MAIL__SMTP__MESSAGES_PER_SECOND", "1");
    env.set("HERALD__MAIL__TIMEOUT", "2s");
    env.set("HERALD__MAIL__RESEND__TIMEOUT", "2s");
    env.set("HERALD__MAIL__CONNECT_TIMEOUT", "500ms");
    env.set("HERALD__QUEUE__LEASE", "6s");
    let app = spawn_with(env).await;
    let n = 14;
    for i in 0..n {
        app.add_late_user(&format!("slow{i}@example.com")).await;
    }
    let ids = app.trigger_overdue().await;
    assert_eq!(ids.len(), n);

    app.wait_for_status("sent", n as i64, Duration::from_secs(90))
        .await;
    // Had a lease run out, recovery would have given rows to other workers, whose batch Resend
    // (answering again) would have accepted: a second copy of those emails.
    let received = tally(smtp.messages().iter().map(|m| m.to().to_owned()));
    assert_eq!(received.len(), n, "{received:?}");
    assert!(received.values().all(|&c| c == 1), "{received:?}");
    assert!(stub.delivered().is_empty(), "{:?}", stub.delivered());
    assert_eq!(stub.requests().len(), 1);
    for id in ids {
        let delivery = app.store.delivery(id).await.unwrap().unwrap();
        assert_eq!(delivery.attempts, 1, "delivery {id} was claimed again");
        assert_eq!(
            outcomes(&app.store.attempts(id).await.unwrap()),
            [
                ("resend", "transient", Some(503)),
                ("smtp", "sent", Some(250))
            ],
            "delivery {id}"
        );
    }
    drop(smtp);
    app.finish().await;
}

async fn a_part_of_a_batch_of_unknown_outcome_waits_for_the_rest_and_they_go_whole(home: Home) {
    let smtp = SmtpServer::start().await;
    let stub = ResendStub::start().await;
    // Resend takes the batch but answers after Herald's timeout: the outcome is unknown.
    stub.script(&[("b0@example.com", &[Reply::Hang(Duration::from_secs(2))])]);
    let mut env = home.env(&smtp).with_resend(&stub.url);
    env.set("HERALD__MAIL__PROVIDERS", r#"["resend"]"#);
    env.set("HERALD__MAIL__RESEND__TIMEOUT", "1s");
    env.set("HERALD__MAIL__CONNECT_TIMEOUT", "500ms");
    let (store, _guard) = bare_store(&env).await;
    let emails = ["b0@example.com", "b1@example.com", "b2@example.com"];
    let ids = due_deliveries(&store, &emails).await;
    let deps = worker_deps(&env, store.clone()).await;
    process_job(&deps, &ids).await.unwrap();
    let first = store.delivery(ids[0]).await.unwrap().unwrap();
    assert_eq!(first.status, DeliveryStatus::Queued);
    all_due_now(&store).await;

    // Another job claimed the third at the same moment as this one claimed the first two.
    store
        .sql_execute(
            "UPDATE deliveries SET status = 'sending', claim_token = $2 WHERE id = $1",
            &[ids[2].into(), uuid::Uuid::new_v4().into()],
        )
        .await;
    let attempts_before = store.delivery(ids[0]).await.unwrap().unwrap().attempts;
    process_job(&deps, &ids[..2]).await.unwrap();
    assert_eq!(stub.requests().len(), 1, "the part went alone");
    for &id in &ids[..2] {
        let d = store.delivery(id).await.unwrap().unwrap();
        assert_eq!(d.status, DeliveryStatus::Queued, "delivery {id}");
        assert!(
            d.due_at > Utc::now() - chrono::Duration::seconds(1),
            "delivery {id} waits"
        );
        assert_eq!(
            store.attempts(id).await.unwrap().len(),
            1,
            "waiting for the rest is no attempt"
        );
    }
    assert_eq!(
        store.delivery(ids[0]).await.unwrap().unwrap().attempts,
        attempts_before,
        "the claim is given back with the rows"
    );

    // The other job gave its part back too; the first part, when due, brings it along.
    store
        .sql_execute(
            "UPDATE deliveries SET status = 'queued', claim_token = NULL WHERE id = $1",
            &[ids[2].into()],
        )
        .await;
    // Past the 2 s Resend takes to answer the first request (until then it answers 409).
    tokio::time::sleep(Duration::from_secs(2)).await;
    all_due_now(&store).await;
    process_job(&deps, &ids[..1]).await.unwrap();
    for &id in &ids {
        assert_eq!(
            status(&store, id).await,
            DeliveryStatus::Sent,
            "delivery {id}"
        );
    }
    // Every request under the batch's key carried the same three emails, and each was
    // delivered once.
    let requests = stub.requests();
    assert_eq!(requests.len(), 2, "{requests:?}");
    assert_eq!(
        requests[0].header("idempotency-key"),
        requests[1].header("idempotency-key")
    );
    assert_eq!(requests[0].recipients(), requests[1].recipients());
    assert_delivered_once(&stub, &emails);
    crate::homes::close(&store).await;
}

fn overdue() -> Kind {
    Kind::find("overdue_summary").expect("a registered kind")
}

in_both_homes!(
    a_claim_taken_over_after_its_lease_ran_out_cannot_record,
    a_known_send_is_recorded_when_its_lease_was_recovered_but_nobody_claimed_it_again,
    a_group_commit_writes_each_row_only_under_its_own_claim,
    a_batch_slower_than_its_lease_keeps_its_claims,
    a_part_of_a_batch_of_unknown_outcome_waits_for_the_rest_and_they_go_whole,
);
