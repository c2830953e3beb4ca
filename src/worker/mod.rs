//! `process_job`: claim the deliveries of one job, render each as its send begins, send through
//! the providers in order, record every try.
//!
//! An apalis job carries the ids of up to `queue::JOB_SIZE` deliveries that fell due
//! together; everything else is read from PostgreSQL, so a duplicate job, a job that survived a
//! crash, or a retry from the failed set all go through the same claim, and a delivery already
//! sent is never sent again. Per job, not per email: one claim statement, one question to the
//! gate, one ack. The emails of a job go out side by side (at most `mail.pool_size` requests at
//! once per provider), and each outcome goes to the [`Recorder`] as soon as it is known, which
//! commits the outcomes of every worker together.
//!
//! # Batches
//!
//! When the first provider takes batches (Resend, `mail.resend.batch_size` > 1), a job holds one
//! batch's worth of deliveries (`queue::job_size`): the dispatcher cuts a burst into
//! full jobs, so 250 emails of one tick become requests of 100, 100 and 50.
//!
//! A batch is the same batch on every retry. Before its request goes out, a new batch's key (its
//! `Idempotency-Key`) and members are written to PostgreSQL ([`Store::start_batch`]). Until the
//! batch is done, a claim of any member claims every member still queued, and the request reuses
//! the stored key with the members in the same order, so Resend recognises it: after a failure as
//! a whole, a timeout, or a crash between the request and the record, Resend replays its first
//! answer instead of sending again. Members leave the batch when they are sent or failed. A batch
//! that lost members (some were sent by another provider after a failover) is sent under a new
//! key, unless its outcome was unknown, when only the same key is safe.
//!
//! # Unknown outcomes
//!
//! A try whose outcome Herald cannot tell ([`ErrorClass::Unknown`]: a timeout, a lost connection
//! after the request left) never fails over: the provider may have the email. The delivery is
//! held by that provider (`deliveries.held_by`) and retried there only, with the same idempotency
//! key or Message-ID, using an attempt each time. An email that went to Resend alone, under its
//! own dedup key, goes alone again under that key even when its retry shares a job with others.
//! When the retries are used up it fails, and its `last_error` says a copy may have been
//! delivered.
//!
//! # Waiting for a provider
//!
//! Before each request the worker asks the [`Gate`] (shared through Redis). A wait that fits in
//! [`WAIT_BUDGET`] is slept through; a longer one gives the claim back with `due_at` at the end of
//! the wait and without using up an attempt, so no worker slot is held while a provider is paused.
//!
//! # Fenced claims
//!
//! A claim carries a lease and a token. While its emails are sent and recorded, the worker renews
//! the lease of every row it holds every `lease / 3` (one statement for all of them), so a batch
//! sent one by one after a failover, slower than one lease, keeps its rows. Should a lease run out
//! anyway (a stalled process), [`Store::recover`] clears the token and the row goes to another
//! worker; the first one then records nothing for it: a renewal that no longer finds the row
//! skips it, and [`Store::record`] only writes while the token is still there.
//!
//! # Recording
//!
//! Each row is handed to the [`Recorder`] once no later provider will take it, and tried again
//! through a PostgreSQL outage for as long as its lease lasts ([`record_margin`]); its lease is
//! renewed until its record commits. A row that cannot be recorded does not stop the others.
//! `process_job` fails, naming those rows, only after trying every one: they stay `sending`
//! until their lease runs out and then go out again. The job is acked in Redis only after.

mod record;
mod send;

pub use record::*;
use send::*;

use std::{
    collections::{BTreeMap, HashSet},
    convert::Infallible,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;

use crate::{
    gate::{Gate, Permit, Why},
    health::Dependency,
    kinds::Kind,
    mail::{ErrorClass, Outgoing, Provider, Receipt, SendError, resend::new_batch_key},
    recorder::Recorder,
    render::{Rendered, Templates},
    store::{AttemptOutcome, AttemptRecord, Claimed, Next, Recording, Store},
};

/// How soon the part of a held batch holding its smallest id is claimed again, and the other
/// parts ([`apart_from_its_batch`]).
const REUNITE_FIRST: Duration = Duration::from_millis(250);
const REUNITE_THEN: Duration = Duration::from_secs(1);

/// The longest a worker waits in-process for a provider before giving its claim back.
pub const WAIT_BUDGET: Duration = Duration::from_secs(2);

/// An email held back by a configuration pause is looked at again this often (the pause itself
/// lasts `mail.configuration_pause`), so that a process restarted with the right credentials,
/// which the old pause does not hold, sends it within seconds.
pub const CONFIGURATION_RECHECK: Duration = Duration::from_secs(5);

/// The first wait before trying again to record an outcome; it doubles up to
/// [`RECORD_RETRY_MAX`], and the tries go on until the claim's lease is nearly spent.
pub const RECORD_RETRY_FIRST: Duration = Duration::from_millis(100);
pub const RECORD_RETRY_MAX: Duration = Duration::from_secs(1);

/// How much of its lease a claim keeps when its worker stops trying to record it: a tenth
/// (at least 200 ms), room for the last write to land before [`Store::recover`] may take the
/// row back.
pub fn record_margin(lease: Duration) -> Duration {
    (lease / 10).max(Duration::from_millis(200))
}

/// What the worker step needs, shared by every worker of the process.
#[derive(Debug)]
pub struct WorkerDeps {
    pub store: Store,
    /// Writes the outcomes of every worker of the process together (group commit).
    pub recorder: Recorder,
    /// The emails this process may hold at once (claimed, being sent or being recorded):
    /// `queue.concurrency` permits, one per delivery of a job, taken before the claim. What a
    /// killed process leaves sent but unrecorded is at most this many (plus the rest of a stored
    /// Resend batch a claim brings along).
    pub in_hand: InHand,
    pub templates: Arc<Templates>,
    /// In the order to try them.
    pub providers: Vec<Provider>,
    pub gate: Gate,
    /// Waits before the 2nd, 3rd, … attempt of a transient failure.
    pub retry_delays: Vec<Duration>,
    /// `queue.max_attempts`: a delivery claimed this many times in one round without an outcome
    /// recorded is failed at its next claim instead of sent again.
    pub max_attempts: i32,
    pub lease: Duration,
    /// The domain for Message-IDs (the sender's).
    pub message_id_domain: String,
    /// When retries fall due.
    pub clock: crate::clock::Clock,
    /// Where a Redis failure is reported (logged once per outage, not once per email).
    pub health: crate::health::Health,
    /// What `/metrics` counts: outcomes once recorded, render and send times.
    pub metrics: crate::metrics::Metrics,
    /// Writes each email's unsubscribe link; `None` without `http.public_url`.
    pub links: Option<crate::unsubscribe::Links>,
}

/// The emails a process may hold at once, shared by all its jobs.
#[derive(Debug, Clone)]
pub struct InHand {
    permits: Arc<tokio::sync::Semaphore>,
    limit: usize,
}

impl InHand {
    pub fn new(limit: usize) -> InHand {
        let limit = limit.max(1);
        InHand {
            permits: Arc::new(tokio::sync::Semaphore::new(limit)),
            limit,
        }
    }

    /// Waits until `emails` more may be held (a job larger than the limit takes all of it).
    async fn take(&self, emails: usize) -> tokio::sync::SemaphorePermit<'_> {
        let n = u32::try_from(emails.clamp(1, self.limit)).unwrap_or(u32::MAX);
        self.permits.acquire_many(n).await.expect("never closed")
    }
}

/// What happened to the job's own delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// A transient failure; the delivery is due again after this wait.
    RetryScheduled(Duration),
    /// A provider asked to wait (rate limit, pause, circuit); due again after this wait, with the
    /// attempt given back.
    Deferred(Duration),
    Failed,
    /// Not sent: the app no longer has the user (see [`crate::recipients`]).
    Skipped,
    /// The delivery was not queued (already sent, failed, or being sent): nothing was done. Also
    /// when this worker's claim was taken over mid-send: another worker owns the row and records
    /// it; this one recorded nothing.
    NotQueued,
}

/// One claimed delivery on its way through the providers.
struct Job {
    d: Claimed,
    content: Content,
    /// `List-Unsubscribe`'s value, when emails carry an unsubscribe link (set as it is rendered).
    list_unsubscribe: Option<String>,
    tries: Vec<Try>,
    /// Waits asked by providers that were not tried.
    waits: Vec<Duration>,
    /// A provider asked this email to wait for it (a rate limit): no other provider is tried.
    stopped: bool,
    /// Its outcome was recorded (or left to the worker that took its claim over).
    settled: bool,
}

/// An email's text, rendered as its send begins (its payload let go then), and let go itself
/// once the email's outcome is recorded ([`record::settle`]), rather than rendered for the whole
/// job at its claim and kept until the job ends. The embedded bench's peak RSS was about 1.5 MB
/// lower for it, at the same speed (BENCHMARKS.md, "One file under 40 MB").
enum Content {
    /// Not rendered yet, or no longer needed.
    NotYet,
    Ready(Rendered),
    /// The templates could not render it: it is failed, not sent.
    Failed(String),
}

struct Try {
    provider: &'static str,
    result: Result<Receipt, SendError>,
    /// How long the request took (the whole batch's, for a batch).
    took: Duration,
    /// How long the provider is paused for everyone after this error, if it is.
    pause: Option<Duration>,
}

impl Job {
    /// Whether the email should go to the next provider.
    fn open(&self) -> bool {
        !matches!(self.content, Content::Failed(_))
            && !self.stopped
            && match self.tries.last() {
                None => true,
                Some(t) => matches!(&t.result, Err(e) if e.class.fails_over()),
            }
    }

    fn hold(&mut self, wait: Duration, why: &Why) {
        let configuration = matches!(
            why,
            Why::Paused {
                class: ErrorClass::Configuration,
                ..
            }
        );
        self.waits.push(if configuration {
            wait.min(CONFIGURATION_RECHECK)
        } else {
            wait
        });
        if !why.fails_over() {
            self.stopped = true;
        }
    }

    /// Gives the email back to be claimed again after `wait`, untried and with no later
    /// provider trying it meanwhile (no attempt is used).
    fn wait_untried(&mut self, wait: Duration) {
        self.waits.push(wait);
        self.stopped = true;
    }

    /// Whether this provider may send it: any, unless a provider holds it.
    fn fits(&self, p: &Provider) -> bool {
        self.d.held_by.as_deref().is_none_or(|h| h == p.name())
    }

    fn outgoing(&self) -> Option<Outgoing<'_>> {
        let Content::Ready(content) = &self.content else {
            return None;
        };
        Some(Outgoing {
            to: &self.d.recipient,
            message_id: &self.d.message_id,
            delivery_key: &self.d.dedup_key,
            content,
            list_unsubscribe: self.list_unsubscribe.as_deref(),
        })
    }
}

/// Processes one delivery: [`process_job`] for a job of one id, with that delivery's outcome
/// (`NotQueued` when it was not claimed).
pub async fn process_one(deps: &WorkerDeps, delivery_id: i64) -> anyhow::Result<Outcome> {
    let outcomes = process_job(deps, &[delivery_id]).await?;
    Ok(outcomes
        .into_iter()
        .find(|(id, _)| *id == delivery_id)
        .map_or(Outcome::NotQueued, |(_, o)| o))
}

/// Processes the deliveries of one job (and the members of their batches): one claim for all of
/// them, the sends, and each outcome recorded as soon as it is known. Returns the outcome of
/// each delivery that was claimed. An `Err` means Herald could not record what happened to some
/// of them (PostgreSQL is down, say), after recording all the others; those claims' leases then
/// expire and the deliveries become due again.
pub async fn process_job(deps: &WorkerDeps, ids: &[i64]) -> anyhow::Result<Vec<(i64, Outcome)>> {
    process_job_as(deps, ids, None).await
}

/// [`process_job`] run by the apalis worker `worker`, whose name the claims carry: should the
/// worker die, the process that finds it dead gives its claims back at once
/// ([`Store::release_claims_of`]).
pub async fn process_job_as(
    deps: &WorkerDeps,
    ids: &[i64],
    worker: Option<&str>,
) -> anyhow::Result<Vec<(i64, Outcome)>> {
    let _in_hand = deps.in_hand.take(ids.len()).await;
    // The lease is counted from before the claim is asked for: never later than PostgreSQL's.
    let claimed_at = tokio::time::Instant::now();
    let (claimed, capped) = deps
        .store
        .claim_many(
            ids,
            deps.lease,
            &deps.message_id_domain,
            deps.max_attempts,
            deps.clock.now(),
            worker,
        )
        .await
        .with_context(|| format!("cannot claim deliveries {}", list(ids)))?;
    let capped: Vec<(i64, Outcome)> = capped
        .iter()
        .map(|d| {
            deps.metrics.recorded(d, &[], &Next::Failed);
            tracing::error!(
                delivery_id = d.id,
                kind = %d.kind,
                max_attempts = deps.max_attempts,
                "delivery failed at claim: its attempts reached queue.max_attempts without an outcome being recorded"
            );
            (d.id, Outcome::Failed)
        })
        .collect();
    if claimed.is_empty() {
        if capped.is_empty() {
            tracing::debug!(deliveries = %list(ids), "no delivery of the job is queued; nothing to do");
        }
        return Ok(capped);
    }
    let (claimed, unwanted) =
        crate::recipients::split_unwanted(&deps.store.source, claimed, deps.clock.now()).await;
    let mut skipped = capped;
    for (d, why) in &unwanted {
        let reason = why.reason(d);
        let done = deps
            .store
            .skip_claimed(d.id, d.claim_token, &reason)
            .await
            .with_context(|| format!("cannot record delivery {} as skipped", d.id))?;
        if done {
            deps.metrics.skipped_at_claim(&d.kind, why.label());
            tracing::info!(delivery_id = d.id, user_id = %d.user_id, "{reason}");
            skipped.push((d.id, Outcome::Skipped));
        }
    }
    if claimed.is_empty() {
        return Ok(skipped);
    }
    let claims = Mutex::new(Claims {
        held: claimed.iter().map(|d| (d.id, d.claim_token)).collect(),
        lost: HashSet::new(),
        phase: "sending through the providers",
        lease_until: claimed_at + deps.lease,
    });
    let mut jobs: Vec<Job> = claimed.into_iter().map(|d| job(deps, d)).collect();
    let claims_ref = &claims;
    let work = async {
        let mut settled = deliver(deps, &mut jobs, claims_ref).await;
        set_phase(claims_ref, "recording the outcome in PostgreSQL");
        let rest = jobs
            .iter_mut()
            .filter(|j| !j.settled)
            .map(|j| settle(deps, j, claims_ref));
        settled.extend(futures::future::join_all(rest).await);
        summarise(settled, jobs.len())
    };
    let max_hold = max_hold(deps.lease);
    let first = ids.first().copied().unwrap_or_default();
    // Renews the leases until `max_hold`, then gives the claims up (the leases run out and the
    // rows go again) while the work goes on: an answer that still comes is recorded, a `sent`
    // even after the lease ran out as long as no other worker claimed the row. One lease later
    // the claims are surely gone, and the job stops waiting.
    let holding = async {
        tokio::select! {
            never = keep_leases(deps, &claims) => match never {},
            () = tokio::time::sleep(max_hold) => {}
        }
        let phase = claims.lock().expect("not poisoned").phase;
        tracing::error!(
            delivery_id = first,
            deliveries = ids.len(),
            held_for = %humantime::format_duration(max_hold),
            phase,
            "a delivery is taking far longer than its lease; giving its claim up so that it is sent again when the lease runs out (an answer that still comes is recorded)"
        );
        tokio::time::sleep(deps.lease).await;
        phase
    };
    tokio::select! {
        result = work => result.map(|mut outcomes| {
            outcomes.extend(skipped);
            outcomes
        }),
        phase = holding => Err(anyhow::anyhow!(
            "deliveries {} were still {phase} after {}; their claims are given up",
            list(ids),
            humantime::format_duration(max_hold + deps.lease)
        )),
    }
}

/// Ids for a log line or an error: all of them up to ten, then how many more.
fn list(ids: &[i64]) -> String {
    let mut text: Vec<String> = ids.iter().take(10).map(i64::to_string).collect();
    if ids.len() > 10 {
        text.push(format!("and {} more", ids.len() - 10));
    }
    text.join(", ")
}

/// The outcomes of a job, or an error naming the deliveries that could not be recorded.
fn summarise(
    settled: Vec<(i64, anyhow::Result<Outcome>)>,
    claimed: usize,
) -> anyhow::Result<Vec<(i64, Outcome)>> {
    let mut outcomes = Vec::with_capacity(settled.len());
    let mut unrecorded: Vec<(i64, anyhow::Error)> = Vec::new();
    for (id, result) in settled {
        match result {
            Ok(outcome) => outcomes.push((id, outcome)),
            Err(e) => unrecorded.push((id, e)),
        }
    }
    if unrecorded.is_empty() {
        return Ok(outcomes);
    }
    let ids: Vec<i64> = unrecorded.iter().map(|(id, _)| *id).collect();
    let errors: Vec<String> = unrecorded
        .iter()
        .map(|(id, e)| format!("delivery {id}: {}", crate::telemetry::chain(e)))
        .collect();
    Err(anyhow::anyhow!(
        "cannot record the outcome of {} of the {claimed} deliveries claimed together (ids {}); the others were recorded. \
         These stay `sending` until their lease (queue.lease) runs out, then go out again. {}",
        ids.len(),
        list(&ids),
        errors.join("; ")
    ))
}

/// Notes what the worker is doing now, for the log line of [`max_hold`].
fn set_phase(claims: &Mutex<Claims>, phase: &'static str) {
    claims.lock().expect("not poisoned").phase = phase;
}

/// How long one claim may be held, renewals included, before the worker gives it up: five
/// leases. Renewal keeps a slow batch's claims (a Resend batch failing over to SMTP one email at
/// a time), but a send stuck on something that never answers must not hold its row for ever:
/// once the worker stops renewing, the lease runs out and the row is sent again. The work goes
/// on meanwhile, so an answer that comes after all is still recorded (see `process_job_as`). A
/// lifecycle run saw one such row, claimed in the second between a Redis restart and a
/// PostgreSQL restart, renewed for minutes while its send never finished (an SMTP connection
/// dropped mid-transaction, since fixed in `mail::smtp::send`).
pub fn max_hold(lease: Duration) -> Duration {
    lease * 5
}

/// The rows of one claim: those whose lease is still renewed, and those found taken over.
struct Claims {
    /// (id, claim token) of the rows not recorded yet.
    held: Vec<(i64, uuid::Uuid)>,
    lost: HashSet<i64>,
    /// What the worker is doing, for the log line when a claim is held too long.
    phase: &'static str,
    /// When the lease of the rows held runs out, as this worker knows it: the last claim or
    /// renewal PostgreSQL answered, plus `queue.lease`, counted from before it was asked.
    lease_until: tokio::time::Instant,
}

/// Renews the lease of every row still held every `lease / 3`, until dropped. A row the renewal
/// no longer finds (its lease ran out and [`Store::recover`] took it back) is moved to `lost`.
async fn keep_leases(deps: &WorkerDeps, claims: &Mutex<Claims>) -> Infallible {
    let every = (deps.lease / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        let asked = claims.lock().expect("not poisoned").held.clone();
        if asked.is_empty() {
            continue;
        }
        let asked_at = tokio::time::Instant::now();
        match deps.store.renew(&asked, deps.lease).await {
            Ok(kept) => {
                deps.health.up(Dependency::State);
                let kept: HashSet<i64> = kept.into_iter().collect();
                let mut c = claims.lock().expect("not poisoned");
                c.lease_until = asked_at + deps.lease;
                // A row recorded meanwhile has left `held`, or leaves it as soon as its record
                // returns: its missing token is no takeover, and marking it lost changes nothing
                // for a row whose record has its answer.
                let gone: Vec<i64> = c
                    .held
                    .iter()
                    .map(|h| h.0)
                    .filter(|id| asked.iter().any(|a| a.0 == *id) && !kept.contains(id))
                    .collect();
                c.held.retain(|h| !gone.contains(&h.0));
                c.lost.extend(gone);
            }
            // An outage is logged once, by `health`, not by every worker at every renewal.
            Err(e) => {
                tracing::debug!(
                    deliveries = asked.len(),
                    error = %e,
                    "cannot renew the lease of claimed deliveries; trying again"
                );
                deps.health.down(Dependency::State, &e);
            }
        }
    }
}
