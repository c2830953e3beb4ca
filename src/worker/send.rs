//! The send step of [`super::process_job`]: ask the gate, render each email as its send begins,
//! and send through the providers in order, one by one or as a batch kept whole across retries.

use super::*;

/// A claimed delivery as a job, not rendered yet ([`Content`]).
pub(super) fn job(deps: &WorkerDeps, mut d: Claimed) -> Job {
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
    Job {
        d,
        content: Content::NotYet,
        list_unsubscribe: None,
        tries: Vec::new(),
        waits: Vec::new(),
        stopped: false,
        settled: false,
    }
}

impl Job {
    /// Renders the email unless it is already: its HTML, text and unsubscribe header; the
    /// payload is let go (nothing reads it after). A template that fails makes the job failed
    /// ([`Content::Failed`]), and no provider is tried.
    pub(super) fn render(&mut self, deps: &WorkerDeps) {
        if !matches!(self.content, Content::NotYet) {
            return;
        }
        let started = std::time::Instant::now();
        let d = &self.d;
        let now = deps.clock.now();
        let url = deps.links.as_ref().map(|l| l.url(&d.user_id, &d.kind, now));
        let content = Kind::from_str(&d.kind)
            .map_err(anyhow::Error::msg)
            .and_then(|kind| {
                deps.templates
                    .render_with(kind.name(), &d.payload, now, url.as_deref())
                    .map_err(anyhow::Error::from)
            });
        deps.metrics.rendered(&d.kind, started.elapsed());
        self.content = match content {
            Ok(rendered) => Content::Ready(rendered),
            Err(e) => Content::Failed(format!("cannot render: {}", crate::telemetry::chain(&e))),
        };
        self.list_unsubscribe = deps.links.as_ref().zip(url).map(|(l, u)| l.header(&u));
        self.d.payload = serde_json::Value::Null;
    }
}

/// Tries each provider in order with the emails that are still open and that it may send, and
/// records each email as soon as no later provider will take it. An email whose claim was taken
/// over meanwhile is left to its new owner. At a provider with batches, the members of a stored
/// batch go together under its key; an email this provider holds after it went alone (under its
/// own dedup key, its outcome unknown) goes alone again under that key, whatever else its job
/// carries; the others go in new batches. At one without, the emails go out side by side, as
/// many at once as the gate allows. Returns the emails recorded.
pub(super) async fn deliver(
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
        // A batch's members are written down before its request goes: all of them are rendered
        // first, so that one whose template fails never joins a batch.
        for job in jobs.iter_mut().filter(|j| takes(j)) {
            job.render(deps);
        }
        let open: Vec<usize> = (0..jobs.len()).filter(|&i| takes(&jobs[i])).collect();
        let mut stored: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        let mut fresh = Vec::new();
        let mut alone = Vec::new();
        for i in open {
            match &jobs[i].d.batch_key {
                Some(key) => stored.entry(key.clone()).or_default().push(i),
                // Sent alone under its own key and held here: only that key is safe.
                None if jobs[i].d.held_by.as_deref() == Some(provider.name()) => alone.push(i),
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
                alone.push(chunk[0]);
            }
        }
        let one_by_one: Vec<&mut Job> = jobs
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| alone.contains(i))
            .map(|(_, j)| j)
            .collect();
        if !one_by_one.is_empty() {
            settled.extend(send_each(deps, provider, one_by_one, later, claims).await);
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
pub(super) fn taken_over(claims: &Mutex<Claims>, id: i64) -> bool {
    claims.lock().expect("not poisoned").lost.contains(&id)
}

/// Whether no later provider will take this email: its outcome can be recorded now.
pub(super) fn is_final(job: &Job, later: &[Provider]) -> bool {
    !job.open() || !later.iter().any(|p| job.fits(p))
}

/// Sends each email on its own through `p`, side by side, asking the gate once for all of them
/// (one Redis round trip per group, not per email); those it cannot take now wait. Records each
/// email that is final as soon as its answer is in.
pub(super) async fn send_each(
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
pub(super) async fn permit(deps: &WorkerDeps, p: &Provider, wanted: usize) -> Permit {
    let acquired = deps.gate.acquire(p, wanted, WAIT_BUDGET).await;
    let acquired = deps.health.check(
        Dependency::Queue,
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
pub(super) async fn feedback(
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
        Dependency::Queue,
        result.map_err(|e| crate::telemetry::chain(&e)),
    );
    result.unwrap_or_else(|e| {
        tracing::debug!(
            provider = p.name(),
            error = e,
            "cannot share the provider's state in Redis"
        );
        // The pause this process keeps to itself, cut as the gate would cut it.
        error
            .and_then(|e| e.wait)
            .map(|w| w.min(deps.gate.pauses().max))
    })
}

/// Sends one email through `p`, under a permit the gate gave, unless its claim was taken over.
pub(super) async fn send_one(
    deps: &WorkerDeps,
    p: &Provider,
    job: &mut Job,
    probe: bool,
    claims: &Mutex<Claims>,
) {
    if taken_over(claims, job.d.id) {
        return;
    }
    job.render(deps);
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
pub(super) async fn send_batch(
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
pub(super) async fn apart_from_its_batch(
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
