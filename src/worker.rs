//! `process_job`: claim the deliveries of one job, render, send through the providers in order,
//! record every try.
//!
//! An apalis job carries the ids of up to [`crate::queue::JOB_SIZE`] deliveries that fell due
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
//! batch's worth of deliveries ([`crate::queue::job_size`]): the dispatcher cuts a burst into
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
//! key or Message-ID, using an attempt each time. When the retries are used up it fails, and its
//! `last_error` says a copy may have been delivered.
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
//! Each row is handed to the [`Recorder`] once no later provider will take it, with a few quick
//! retries ([`RECORD_BACKOFF`]); a row that cannot be recorded does not stop the others.
//! `process_job` fails, naming those rows, only after trying every one: they stay `sending`
//! until their lease runs out and then go out again. The job is acked in Redis only after.

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

/// The waits between tries at recording one delivery's outcome (three tries in all).
pub const RECORD_BACKOFF: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(400)];

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
    pub lease: Duration,
    /// The domain for Message-IDs (the sender's).
    pub message_id_domain: String,
    /// When retries fall due.
    pub clock: crate::clock::Clock,
    /// Where a Redis failure is reported (logged once per outage, not once per email).
    pub health: crate::health::Health,
    /// What `/metrics` counts: outcomes once recorded, render and send times.
    pub metrics: crate::metrics::Metrics,
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
    content: Result<Rendered, String>,
    tries: Vec<Try>,
    /// Waits asked by providers that were not tried.
    waits: Vec<Duration>,
    /// A provider asked this email to wait for it (a rate limit): no other provider is tried.
    stopped: bool,
    /// Its outcome was recorded (or left to the worker that took its claim over).
    settled: bool,
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
        self.content.is_ok()
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
        let content = self.content.as_ref().ok()?;
        Some(Outgoing {
            to: &self.d.recipient,
            message_id: &self.d.message_id,
            delivery_key: &self.d.dedup_key,
            content,
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
    let _in_hand = deps.in_hand.take(ids.len()).await;
    let claimed = deps
        .store
        .claim_many(ids, deps.lease, &deps.message_id_domain, deps.clock.now())
        .await
        .with_context(|| format!("cannot claim deliveries {}", list(ids)))?;
    if claimed.is_empty() {
        tracing::debug!(deliveries = %list(ids), "no delivery of the job is queued; nothing to do");
        return Ok(Vec::new());
    }
    let (claimed, gone) =
        crate::recipients::split_gone(&deps.store.source, claimed, deps.clock.now()).await;
    let mut skipped = Vec::with_capacity(gone.len());
    for d in &gone {
        let reason = crate::recipients::gone_reason(&d.user_id);
        let done = deps
            .store
            .skip_claimed(d.id, d.claim_token, &reason)
            .await
            .with_context(|| format!("cannot record delivery {} as skipped", d.id))?;
        if done {
            deps.metrics.skipped_at_claim(&d.kind);
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
    });
    let mut jobs: Vec<Job> = claimed.into_iter().map(|d| render(deps, d)).collect();
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
    tokio::select! {
        result = work => result.map(|mut outcomes| {
            outcomes.extend(skipped);
            outcomes
        }),
        never = keep_leases(deps, &claims) => match never {},
        () = tokio::time::sleep(max_hold) => {
            let phase = claims.lock().expect("not poisoned").phase;
            tracing::error!(
                delivery_id = first,
                deliveries = ids.len(),
                held_for = %humantime::format_duration(max_hold),
                phase,
                "a delivery is taking far longer than its lease; giving its claim up so that it is sent again when the lease runs out"
            );
            Err(anyhow::anyhow!(
                "deliveries {} were still {phase} after {}; their claims are given up",
                list(ids),
                humantime::format_duration(max_hold)
            ))
        }
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
/// once the worker stops renewing, the lease runs out and the row is sent again. A lifecycle run
/// saw one such row, claimed in the second between a Redis restart and a PostgreSQL restart,
/// renewed for minutes while its send never finished; what it waited on is not known yet.
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
        match deps.store.renew(&asked, deps.lease).await {
            Ok(kept) => {
                deps.health.up(Dependency::Postgres);
                let kept: HashSet<i64> = kept.into_iter().collect();
                let mut c = claims.lock().expect("not poisoned");
                // A row recorded meanwhile has left `held`: its missing token is no takeover.
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
                deps.health.down(Dependency::Postgres, &e);
            }
        }
    }
}

/// Records one job's outcome (unless its claim was taken over: then its new owner does), once.
async fn settle(
    deps: &WorkerDeps,
    job: &mut Job,
    claims: &Mutex<Claims>,
) -> (i64, anyhow::Result<Outcome>) {
    job.settled = true;
    let id = job.d.id;
    let taken_over = {
        let mut c = claims.lock().expect("not poisoned");
        c.held.retain(|h| h.0 != id);
        c.lost.contains(&id)
    };
    if taken_over {
        tracing::warn!(
            delivery_id = id,
            "claim was taken over; another worker owns it now (this worker records nothing for it)"
        );
        return (id, Ok(Outcome::NotQueued));
    }
    (id, finish(deps, job).await)
}

/// Records one delivery, retrying a failed write after each of [`RECORD_BACKOFF`]. Returns
/// whether the claim was still ours (false: nothing was written).
async fn record_retrying(
    deps: &WorkerDeps,
    d: &Claimed,
    tries: &[AttemptRecord<'_>],
    next: &Next<'_>,
) -> anyhow::Result<bool> {
    let mut failures = 0;
    let recording = Recording::new(d, tries, next);
    loop {
        match deps.recorder.record(recording.clone()).await {
            Ok(true) => return Ok(true),
            Ok(false) if failures > 0 => {
                tracing::warn!(
                    delivery_id = d.id,
                    "the claim is not ours any more: a try that reported an error may have recorded it after all, or another worker owns it now"
                );
                return Ok(false);
            }
            Ok(false) => {
                tracing::warn!(
                    delivery_id = d.id,
                    "claim was taken over; another worker owns it now (this worker records nothing for it)"
                );
                return Ok(false);
            }
            Err(e) => match RECORD_BACKOFF.get(failures) {
                Some(&pause) => {
                    failures += 1;
                    // Usually PostgreSQL going away: the outage is logged once, by `health`.
                    tracing::debug!(delivery_id = d.id, error = %e, retry_in = %humantime::format_duration(pause), "cannot record the attempt; retrying");
                    deps.health.down(Dependency::Postgres, &e);
                    tokio::time::sleep(pause).await;
                }
                None => {
                    return Err(anyhow::Error::new(e).context(format!(
                        "cannot record the attempt of delivery {} ({} tries)",
                        d.id,
                        failures + 1
                    )));
                }
            },
        }
    }
}

fn render(deps: &WorkerDeps, mut d: Claimed) -> Job {
    let started = std::time::Instant::now();
    if let Some(held) = d.held_by.as_deref()
        && !deps.providers.iter().any(|p| p.name() == held)
    {
        tracing::warn!(
            delivery_id = d.id,
            provider = held,
            "the delivery is held by a provider that is not configured any more (mail.providers); \
             it goes to the configured ones, and a copy may be delivered"
        );
        d.held_by = None;
    }
    let content = Kind::from_str(&d.kind)
        .map_err(anyhow::Error::msg)
        .and_then(|kind| {
            deps.templates
                .render(kind.name(), &d.payload)
                .map_err(anyhow::Error::from)
        })
        .map_err(|e| format!("cannot render: {}", crate::telemetry::chain(&e)));
    deps.metrics.rendered(&d.kind, started.elapsed());
    Job {
        d,
        content,
        tries: Vec::new(),
        waits: Vec::new(),
        stopped: false,
        settled: false,
    }
}

/// Tries each provider in order with the emails that are still open and that it may send, and
/// records each email as soon as no later provider will take it. An email whose claim was taken
/// over meanwhile is left to its new owner. At a provider with batches, the members of a stored
/// batch go together under its key; the others in new batches. At one without, the emails go
/// out side by side, as many at once as the gate allows. Returns the emails recorded.
async fn deliver(
    deps: &WorkerDeps,
    jobs: &mut [Job],
    claims: &Mutex<Claims>,
) -> Vec<(i64, anyhow::Result<Outcome>)> {
    let mut settled = Vec::new();
    for (n, provider) in deps.providers.iter().enumerate() {
        let later = &deps.providers[n + 1..];
        let takes =
            |j: &Job| !j.settled && j.open() && j.fits(provider) && !taken_over(claims, j.d.id);
        if provider.batch_size <= 1 {
            let open: Vec<&mut Job> = jobs.iter_mut().filter(|j| takes(j)).collect();
            settled.extend(send_each(deps, provider, open, later, claims).await);
            continue;
        }
        let open: Vec<usize> = (0..jobs.len()).filter(|&i| takes(&jobs[i])).collect();
        let mut stored: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut fresh = Vec::new();
        for i in open {
            match &jobs[i].d.batch_key {
                Some(key) => stored.entry(key.clone()).or_default().push(i),
                None => fresh.push(i),
            }
        }
        for members in stored.values() {
            send_batch(deps, provider, jobs, members, claims).await;
        }
        for chunk in fresh.chunks(provider.batch_size) {
            if chunk.len() > 1 {
                send_batch(deps, provider, jobs, chunk, claims).await;
            } else {
                let one = vec![&mut jobs[chunk[0]]];
                settled.extend(send_each(deps, provider, one, later, claims).await);
            }
        }
        let done = jobs
            .iter_mut()
            .filter(|j| !j.settled && is_final(j, later))
            .map(|j| settle(deps, j, claims));
        settled.extend(futures::future::join_all(done).await);
    }
    settled
}

/// Whether the lease renewal found this row taken over by another worker.
fn taken_over(claims: &Mutex<Claims>, id: i64) -> bool {
    claims.lock().expect("not poisoned").lost.contains(&id)
}

/// Whether no later provider will take this email: its outcome can be recorded now.
fn is_final(job: &Job, later: &[Provider]) -> bool {
    !job.open() || !later.iter().any(|p| job.fits(p))
}

/// Sends each email on its own through `p`, side by side, asking the gate once for all of them
/// (one Redis round trip per group, not per email); those it cannot take now wait. Records each
/// email that is final as soon as its answer is in.
async fn send_each(
    deps: &WorkerDeps,
    p: &Provider,
    jobs: Vec<&mut Job>,
    later: &[Provider],
    claims: &Mutex<Claims>,
) -> Vec<(i64, anyhow::Result<Outcome>)> {
    let mut settled = Vec::new();
    let mut waiting: std::collections::VecDeque<&mut Job> = jobs.into();
    while !waiting.is_empty() {
        set_phase(claims, "asking the gate in Redis whether to send");
        match permit(deps, p, waiting.len()).await {
            Permit::Wait { wait, why } => {
                for job in waiting.drain(..) {
                    job.hold(wait, &why);
                }
            }
            Permit::Go { probe, count } => {
                let go: Vec<&mut Job> = waiting.drain(..count.min(waiting.len())).collect();
                set_phase(claims, "waiting for the provider's answers");
                let sends = go.into_iter().map(|job| async move {
                    send_one(deps, p, job, probe, claims).await;
                    if is_final(job, later) {
                        Some(settle(deps, job, claims).await)
                    } else {
                        None
                    }
                });
                settled.extend(futures::future::join_all(sends).await.into_iter().flatten());
            }
        }
    }
    settled
}

/// Asks the gate; a Redis failure counts as a short wait (nothing is sent uncoordinated).
async fn permit(deps: &WorkerDeps, p: &Provider, wanted: usize) -> Permit {
    let acquired = deps.gate.acquire(p, wanted, WAIT_BUDGET).await;
    let acquired = deps.health.check(
        Dependency::Redis,
        acquired.map_err(|e| crate::telemetry::chain(&e)),
    );
    acquired.unwrap_or_else(|e| {
        tracing::debug!(
            provider = p.name(),
            error = e,
            "cannot reach the shared rate limit; waiting"
        );
        Permit::Wait {
            wait: Duration::from_secs(1),
            why: Why::Rate,
        }
    })
}

/// Tells the gate how a request went; returns the pause it set for everyone, if any.
async fn feedback(
    deps: &WorkerDeps,
    p: &Provider,
    error: Option<&SendError>,
    probe: bool,
) -> Option<Duration> {
    let result = match error {
        None => deps.gate.answered(p, probe).await.map(|()| None),
        Some(e) => deps.gate.failed(p, e, probe).await,
    };
    let result = deps.health.check(
        Dependency::Redis,
        result.map_err(|e| crate::telemetry::chain(&e)),
    );
    result.unwrap_or_else(|e| {
        tracing::debug!(
            provider = p.name(),
            error = e,
            "cannot share the provider's state in Redis"
        );
        error.and_then(|e| e.wait)
    })
}

/// Sends one email through `p`, under a permit the gate gave, unless its claim was taken over.
async fn send_one(
    deps: &WorkerDeps,
    p: &Provider,
    job: &mut Job,
    probe: bool,
    claims: &Mutex<Claims>,
) {
    if taken_over(claims, job.d.id) {
        return;
    }
    let Some(email) = job.outgoing() else { return };
    let started = std::time::Instant::now();
    let result = p.send(&email).await;
    let took = started.elapsed();
    deps.metrics.requested(p.name(), took);
    let pause = feedback(deps, p, result.as_ref().err(), probe).await;
    job.tries.push(Try {
        provider: p.name(),
        result,
        took,
        pause,
    });
}

/// Sends `chunk` as one batch request. Its members are in id order, so a retried batch is the
/// same request byte for byte. A chunk that is a stored batch (all its members, or all that is
/// left of a batch whose outcome was unknown) reuses the stored key; a part of such a batch whose
/// other members are on their way waits for them ([`apart_from_its_batch`]); any other chunk is
/// written as a new batch first ([`Store::start_batch`]) and not sent when that fails.
async fn send_batch(
    deps: &WorkerDeps,
    p: &Provider,
    jobs: &mut [Job],
    chunk: &[usize],
    claims: &Mutex<Claims>,
) {
    let mut chunk = chunk.to_vec();
    chunk.sort_by_key(|&i| jobs[i].d.id);
    if let Some(wait) = apart_from_its_batch(deps, p, jobs, &chunk, claims).await {
        for &i in &chunk {
            jobs[i].wait_untried(wait);
        }
        return;
    }
    set_phase(claims, "asking the gate in Redis whether to send a batch");
    let probe = match permit(deps, p, 1).await {
        Permit::Go { probe, .. } => probe,
        Permit::Wait { wait, why } => {
            for &i in &chunk {
                jobs[i].hold(wait, &why);
            }
            return;
        }
    };
    let first = &jobs[chunk[0]].d;
    let same = chunk
        .iter()
        .all(|&i| jobs[i].d.batch_key == first.batch_key);
    let whole = first.batch_size == Some(chunk.len() as i32);
    let held = first.held_by.as_deref() == Some(p.name());
    let key = match &first.batch_key {
        Some(key) if same && (whole || held) => key.clone(),
        _ => {
            let key = new_batch_key();
            let members: Vec<(i64, uuid::Uuid)> = chunk
                .iter()
                .map(|&i| (jobs[i].d.id, jobs[i].d.claim_token))
                .collect();
            set_phase(claims, "writing the batch to PostgreSQL");
            let started = deps.store.start_batch(&key, p.name(), &members).await;
            if !matches!(started, Ok(true)) {
                match started {
                    Err(e) => {
                        tracing::warn!(provider = p.name(), emails = chunk.len(), error = %e, "cannot write the batch before sending it; it waits")
                    }
                    _ => tracing::warn!(
                        provider = p.name(),
                        emails = chunk.len(),
                        "a claim of the batch was taken over before its request; it waits"
                    ),
                }
                for &i in &chunk {
                    jobs[i].wait_untried(Duration::from_secs(1));
                }
                return;
            }
            let size = chunk.len() as i32;
            for &i in &chunk {
                jobs[i].d.batch_key = Some(key.clone());
                jobs[i].d.batch_size = Some(size);
            }
            key
        }
    };
    let emails: Vec<Outgoing<'_>> = chunk.iter().filter_map(|&i| jobs[i].outgoing()).collect();
    set_phase(claims, "waiting for the provider's answer to a batch");
    let started = std::time::Instant::now();
    let result = p.send_batch(&emails, &key).await;
    let took = started.elapsed();
    deps.metrics.requested(p.name(), took);
    drop(emails);
    match result {
        Ok(items) => {
            feedback(deps, p, None, probe).await;
            for (&i, item) in chunk.iter().zip(items) {
                jobs[i].tries.push(Try {
                    provider: p.name(),
                    result: item,
                    took,
                    pause: None,
                });
            }
        }
        Err(e) => {
            let pause = feedback(deps, p, Some(&e), probe).await;
            tracing::info!(provider = p.name(), emails = chunk.len(), batch = %key, error = %e, "a batch failed as a whole");
            for &i in &chunk {
                jobs[i].tries.push(Try {
                    provider: p.name(),
                    result: Err(e.clone()),
                    took,
                    pause,
                });
            }
        }
    }
}

/// Whether `chunk` is part of a batch held at `p` (its outcome there unknown) whose other
/// members are on their way elsewhere: claimed by another job at the same moment, or queued.
/// Resend answers a key it knows with its first answer only for the same body, so the part must
/// not go alone: it waits to be claimed with the rest ([`Store::claim_many`] brings a batch's
/// queued members along). The part holding the batch's smallest id comes back first
/// ([`REUNITE_FIRST`]) and brings the others, which wait a little longer ([`REUNITE_THEN`]).
/// `None` sends it: the chunk is the whole batch, or all of it that is left.
async fn apart_from_its_batch(
    deps: &WorkerDeps,
    p: &Provider,
    jobs: &[Job],
    chunk: &[usize],
    claims: &Mutex<Claims>,
) -> Option<Duration> {
    let first = &jobs[chunk[0]].d;
    let key = first.batch_key.as_deref()?;
    let held = first.held_by.as_deref() == Some(p.name());
    if !held || first.batch_size == Some(chunk.len() as i32) {
        return None;
    }
    set_phase(claims, "looking for the rest of the batch in PostgreSQL");
    match deps.store.batch_live_members(key).await {
        Ok((live, smallest)) if live > chunk.len() as i64 => {
            let leads = smallest == Some(first.id);
            tracing::debug!(
                provider = p.name(),
                batch = key,
                emails = chunk.len(),
                live,
                "part of a batch was claimed apart from the rest; it waits to go with them"
            );
            Some(if leads { REUNITE_FIRST } else { REUNITE_THEN })
        }
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(provider = p.name(), batch = key, error = %e, "cannot look for the rest of the batch; it waits");
            Some(REUNITE_THEN)
        }
    }
}

/// Records a job's tries and where its delivery goes next.
async fn finish(deps: &WorkerDeps, job: &Job) -> anyhow::Result<Outcome> {
    let id = job.d.id;
    if let Err(error) = &job.content {
        tracing::error!(delivery_id = id, error, "delivery failed");
        let provider = deps.providers.first().map_or("none", |p| p.name());
        let record = AttemptRecord {
            provider,
            outcome: AttemptOutcome::Failed(ErrorClass::Permanent),
            code: None,
            error: Some(error),
        };
        let records = [record];
        if !record_retrying(deps, &job.d, &records, &Next::Failed).await? {
            return Ok(Outcome::NotQueued);
        }
        deps.metrics.recorded(&job.d, &records, &Next::Failed);
        return Ok(Outcome::Failed);
    }
    let views: Vec<TryView> = job
        .tries
        .iter()
        .map(|t| match &t.result {
            Ok(_) => TryView::SENT,
            Err(e) => TryView {
                class: Some(e.class),
                unreachable: e.unreachable,
                wait: t.pause.or(e.wait).map(|w| match e.class {
                    ErrorClass::Configuration => w.min(CONFIGURATION_RECHECK),
                    _ => w,
                }),
            },
        })
        .collect();
    let decision = decide(&views, &job.waits, job.d.round_attempts, &deps.retry_delays);
    let last_error = job.tries.last().and_then(|t| t.result.as_ref().err());
    // The provider that may have the email, if a try's outcome was unknown.
    let unknown_at = job
        .tries
        .iter()
        .find(|t| matches!(&t.result, Err(e) if e.class == ErrorClass::Unknown))
        .map(|t| t.provider);
    let exhausted = match (decision, unknown_at, last_error) {
        (Decision::Failed, Some(provider), Some(e)) => Some(unknown_exhausted(&job.d, provider, e)),
        _ => None,
    };
    let last = job.tries.len().saturating_sub(1);
    let records: Vec<AttemptRecord<'_>> = job
        .tries
        .iter()
        .enumerate()
        .map(|(n, t)| match &t.result {
            Ok(r) => AttemptRecord {
                provider: t.provider,
                outcome: AttemptOutcome::Sent,
                code: r.code,
                error: None,
            },
            Err(e) => AttemptRecord {
                provider: t.provider,
                outcome: AttemptOutcome::Failed(e.class),
                code: e.code,
                error: Some(match &exhausted {
                    Some(note) if n == last => note,
                    _ => &e.message,
                }),
            },
        })
        .collect();
    let (next, outcome) = match decision {
        Decision::Sent => {
            let last = job.tries.last().expect("a sent job has a try");
            let provider_id = last
                .result
                .as_ref()
                .ok()
                .and_then(|r| r.provider_id.as_deref());
            (
                Next::Sent {
                    provider: last.provider,
                    provider_id,
                },
                Outcome::Sent,
            )
        }
        Decision::Failed => {
            let error = exhausted
                .as_deref()
                .or(last_error.map(|e| e.message.as_str()))
                .unwrap_or("");
            tracing::warn!(delivery_id = id, kind = %job.d.kind, attempt = job.d.attempts, error, "delivery failed");
            (Next::Failed, Outcome::Failed)
        }
        Decision::Retry { after, counts } => {
            let due_at = deps.clock.now() + chrono::Duration::from_std(after).unwrap_or_default();
            let next = Next::Retry {
                due_at,
                counts,
                held_by: unknown_at,
            };
            let error = last_error.map_or("", |e| e.message.as_str());
            let retry_in = humantime::format_duration(after);
            if let Some(provider) = unknown_at {
                tracing::warn!(delivery_id = id, kind = %job.d.kind, provider, attempt = job.d.attempts, error, retry_in = %retry_in, "outcome unknown; will retry on the same provider only");
                (next, Outcome::RetryScheduled(after))
            } else if counts {
                tracing::info!(delivery_id = id, kind = %job.d.kind, attempt = job.d.attempts, error, retry_in = %retry_in, "transient failure; will retry");
                (next, Outcome::RetryScheduled(after))
            } else {
                tracing::debug!(delivery_id = id, wait = %humantime::format_duration(after), "providers asked to wait; the attempt is given back");
                (next, Outcome::Deferred(after))
            }
        }
    };
    if !record_retrying(deps, &job.d, &records, &next).await? {
        return Ok(Outcome::NotQueued);
    }
    deps.metrics.recorded(&job.d, &records, &next);
    if let (Next::Sent { provider, .. }, Some(last)) = (&next, job.tries.last()) {
        let ms = last.took.as_millis() as u64;
        tracing::info!(delivery_id = id, kind = %job.d.kind, provider, ms, "sent");
    }
    Ok(outcome)
}

/// The `last_error` of a delivery whose retries after an unknown outcome are used up: what the
/// provider said last, and that a copy may have been delivered, with what marks it.
fn unknown_exhausted(d: &Claimed, provider: &str, e: &SendError) -> String {
    let key = match &d.batch_key {
        Some(batch) => format!("Resend idempotency key {batch}, "),
        None if provider == "resend" => format!("Resend idempotency key {}, ", d.dedup_key),
        None => String::new(),
    };
    format!(
        "{}. The outcome at {provider} stayed unknown after {} attempts: a copy may have been \
         delivered ({key}Message-ID {}, X-Herald-Delivery {}). Check with the provider before \
         `herald failed retry`, which sends it to {provider} again.",
        e.message, d.attempts, d.message_id, d.dedup_key
    )
}

/// One try as [`decide`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TryView {
    /// `None` when the email was sent.
    pub class: Option<ErrorClass>,
    pub unreachable: bool,
    /// How long the provider asked to be left alone.
    pub wait: Option<Duration>,
}

impl TryView {
    pub const SENT: TryView = TryView {
        class: None,
        unreachable: false,
        wait: None,
    };
}

/// Where a delivery goes after its tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Sent,
    Failed,
    /// Due again after `after`; `counts` is false when the attempt is given back.
    Retry {
        after: Duration,
        counts: bool,
    },
}

/// Decides from the tries at each provider and the waits of providers not tried:
/// sent by the last one; a permanent failure fails it; a transient failure (the email's, not an
/// unreachable provider's) or an unknown outcome uses an attempt and backs off (failed once the
/// retries are used up); anything else (rate limit, quota,
/// configuration, circuit) waits for the first provider to be free again, without using one.
pub fn decide(
    tries: &[TryView],
    waits: &[Duration],
    round_attempts: i32,
    delays: &[Duration],
) -> Decision {
    if tries.last().is_some_and(|t| t.class.is_none()) {
        return Decision::Sent;
    }
    if tries.iter().any(|t| t.class == Some(ErrorClass::Permanent)) {
        return Decision::Failed;
    }
    if tries.iter().any(|t| {
        t.class == Some(ErrorClass::Unknown)
            || (t.class == Some(ErrorClass::Transient) && !t.unreachable)
    }) {
        return match retry_delay(delays, round_attempts) {
            Some(after) => Decision::Retry {
                after,
                counts: true,
            },
            None => Decision::Failed,
        };
    }
    let after = tries
        .iter()
        .filter_map(|t| t.wait)
        .chain(waits.iter().copied())
        .min()
        .unwrap_or(Duration::from_secs(1));
    Decision::Retry {
        after,
        counts: false,
    }
}

/// The wait before the next attempt, after `attempts_so_far` attempts in this round; `None` when
/// the retries are used up. With delays [2s, 4s, 8s] a delivery gets at most 4 attempts.
pub fn retry_delay(delays: &[Duration], attempts_so_far: i32) -> Option<Duration> {
    usize::try_from(attempts_so_far)
        .ok()?
        .checked_sub(1)
        .and_then(|i| delays.get(i))
        .copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn failed(class: ErrorClass, wait: Option<u64>) -> TryView {
        TryView {
            class: Some(class),
            unreachable: false,
            wait: wait.map(secs),
        }
    }

    #[test]
    fn delays_follow_the_list_then_stop() {
        let d = [2, 4, 8].map(Duration::from_secs);
        let got: Vec<_> = (1..=4).map(|n| retry_delay(&d, n)).collect();
        assert_eq!(got, [Some(d[0]), Some(d[1]), Some(d[2]), None]);
        assert_eq!(retry_delay(&[], 1), None);
        assert_eq!(retry_delay(&d, 0), None);
    }

    #[test]
    fn decisions() {
        use ErrorClass::*;
        let delays = [2, 4, 8].map(Duration::from_secs);
        let decide =
            |tries: &[TryView], waits: &[Duration], round| decide(tries, waits, round, &delays);
        let retry = |after, counts| Decision::Retry {
            after: secs(after),
            counts,
        };
        // Failed over from Resend (500) to SMTP, which sent it.
        assert_eq!(
            decide(&[failed(Transient, None), TryView::SENT], &[], 1),
            Decision::Sent
        );
        // A permanent answer fails at once, whatever else happened.
        assert_eq!(
            decide(&[failed(Quota, Some(60)), failed(Permanent, None)], &[], 1),
            Decision::Failed
        );
        // A transient one backs off and uses the attempt; the last one fails.
        assert_eq!(decide(&[failed(Transient, None)], &[], 1), retry(2, true));
        assert_eq!(decide(&[failed(Transient, None)], &[], 4), Decision::Failed);
        // An unknown outcome too: it never fails over, so it is the last try.
        assert_eq!(decide(&[failed(Unknown, None)], &[], 1), retry(2, true));
        assert_eq!(decide(&[failed(Unknown, None)], &[], 4), Decision::Failed);
        // Waiting for a provider does not use an attempt, even the last one.
        assert_eq!(
            decide(&[failed(RateLimited, Some(3))], &[], 4),
            retry(3, false)
        );
        assert_eq!(
            decide(&[failed(Configuration, Some(60))], &[secs(5)], 1),
            retry(5, false)
        );
        assert_eq!(decide(&[], &[secs(7)], 1), retry(7, false));
        let down = TryView {
            class: Some(Transient),
            unreachable: true,
            wait: Some(secs(2)),
        };
        assert_eq!(decide(&[down], &[], 4), retry(2, false));
    }
}
