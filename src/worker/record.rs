//! The record step of [`super::process_job`]: where each email goes after its tries (sent,
//! retried after 2/4/8 s, given back untried, failed), decided by [`decide`] and handed to the
//! recorder, tried again until the claim's lease is nearly spent.

use super::*;

/// Records one job's outcome (unless its claim was taken over: then its new owner does), once.
/// A sent email is recorded even when the lease renewal found its claim gone: while no other
/// worker has claimed the row since, [`Store::record`] still takes a `sent` (and refuses it
/// otherwise), so a known send is never thrown away to go out again.
pub(super) async fn settle(
    deps: &WorkerDeps,
    job: &mut Job,
    claims: &Mutex<Claims>,
) -> (i64, anyhow::Result<Outcome>) {
    job.settled = true;
    let id = job.d.id;
    let taken_over = claims.lock().expect("not poisoned").lost.contains(&id);
    let sent = job.tries.last().is_some_and(|t| t.result.is_ok());
    let result = if !records_it(taken_over, sent) {
        tracing::warn!(
            delivery_id = id,
            "claim was taken over; another worker owns it now (this worker records nothing for it)"
        );
        Ok(Outcome::NotQueued)
    } else {
        finish(deps, job, claims).await
    };
    job.content = Content::NotYet;
    // Only now does the row leave the renewal: while its record is being written (and tried
    // again through an outage) its lease must not run out, or it would be sent again.
    claims
        .lock()
        .expect("not poisoned")
        .held
        .retain(|h| h.0 != id);
    (id, result)
}

/// Tries at recording an outcome that PostgreSQL refuses because of the row's own values.
const ROW_ERROR_TRIES: u32 = 3;

/// Records one delivery, trying again after a failed write (every [`RECORD_RETRY_FIRST`],
/// doubling up to [`RECORD_RETRY_MAX`]) for as long as the claim's lease lasts, less
/// [`record_margin`]: a PostgreSQL restart of a few seconds then costs no copy. The lease is this
/// worker's own reckoning, from the last claim or renewal PostgreSQL answered (renewals go on
/// while the row is being recorded). Returns whether the claim was still ours (false: nothing
/// was written).
pub(super) async fn record_retrying(
    deps: &WorkerDeps,
    d: &Claimed,
    tries: &[AttemptRecord<'_>],
    next: &Next<'_>,
    claims: &Mutex<Claims>,
) -> anyhow::Result<bool> {
    let mut failures = 0;
    let mut pause = RECORD_RETRY_FIRST;
    let margin = record_margin(deps.lease);
    let recording = Recording::new(d, tries, next);
    loop {
        match deps.recorder.record(recording.clone()).await {
            Ok(true) => {
                if failures > 0 {
                    deps.health.up(Dependency::State);
                }
                return Ok(true);
            }
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
            Err(e) => {
                failures += 1;
                let lease_until = claims.lock().expect("not poisoned").lease_until;
                let next_try_ends = tokio::time::Instant::now() + pause + margin;
                let row = crate::recorder::belongs_to_a_row(&e);
                if let Some(why) = gives_up(row, failures, next_try_ends, lease_until) {
                    let until = match why {
                        // The row's own values are refused: trying until the lease runs out
                        // would not change that. Left `sending`, it is claimed again after its
                        // lease, and failed once it has been claimed `queue.max_attempts` times.
                        GiveUp::RowRefused => "",
                        GiveUp::LeaseSpent => ", until its lease was nearly spent",
                    };
                    return Err(anyhow::Error::new(e).context(format!(
                        "cannot record the attempt of delivery {} ({failures} tries{until})",
                        d.id
                    )));
                }
                tracing::debug!(delivery_id = d.id, error = %e, retry_in = %humantime::format_duration(pause), "cannot record the attempt; retrying");
                if !row {
                    // PostgreSQL going away: the outage is logged once, by `health`.
                    deps.health.down(Dependency::State, &e);
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(RECORD_RETRY_MAX);
            }
        }
    }
}

/// Records a job's tries and where its delivery goes next.
pub(super) async fn finish(
    deps: &WorkerDeps,
    job: &Job,
    claims: &Mutex<Claims>,
) -> anyhow::Result<Outcome> {
    let id = job.d.id;
    if let Content::Failed(error) = &job.content {
        tracing::error!(delivery_id = id, error, "delivery failed");
        let provider = deps.providers.first().map_or("none", |p| p.name());
        let record = AttemptRecord {
            provider,
            outcome: AttemptOutcome::Failed(ErrorClass::Permanent),
            code: None,
            error: Some(error),
        };
        let records = [record];
        if !record_retrying(deps, &job.d, &records, &Next::Failed, claims).await? {
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
    if !record_retrying(deps, &job.d, &records, &next, claims).await? {
        return Ok(Outcome::NotQueued);
    }
    deps.metrics.recorded(&job.d, &records, &next);
    if let (Next::Failed, Some(Err(e))) = (&next, job.tries.last().map(|t| &t.result))
        && let Some(answer) = crate::mail::error::refuses_mailbox(e)
    {
        match deps
            .store
            .suppress(
                &job.d.recipient,
                "bounced",
                &answer,
                Some(&e.message),
                Some(id),
            )
            .await
        {
            Ok(true) => {
                deps.metrics.suppressed("bounced");
                tracing::info!(delivery_id = id, address = %job.d.recipient, answer, "address suppressed: the server refused the mailbox");
            }
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(delivery_id = id, error = %err, "cannot suppress an address the server refused; the next email to it will try again")
            }
        }
    }
    if let (Next::Sent { provider, .. }, Some(last)) = (&next, job.tries.last()) {
        let ms = last.took.as_millis() as u64;
        tracing::info!(delivery_id = id, kind = %job.d.kind, provider, ms, "sent");
    }
    Ok(outcome)
}

/// The `last_error` of a delivery whose retries after an unknown outcome are used up: what the
/// provider said last, and that a copy may have been delivered, with what marks it.
pub(super) fn unknown_exhausted(d: &Claimed, provider: &str, e: &SendError) -> String {
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

/// Whether this worker writes its row's outcome: not when the lease renewal found the row taken
/// over by another worker (the new owner does), unless the email was sent, which is always
/// offered ([`Store::record`] takes it only while no other worker has claimed the row since).
pub fn records_it(taken_over: bool, sent: bool) -> bool {
    !taken_over || sent
}

/// Why `record_retrying` stops trying to write an outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// PostgreSQL refused the row's own values `ROW_ERROR_TRIES` times.
    RowRefused,
    /// The next try, and the margin, would end past the claim's lease.
    LeaseSpent,
}

/// After `tries` failed writes of an outcome (`row`: the last error was about the row's own
/// values), whether to stop: the next try would end (with its pause and the margin) at
/// `next_try_ends`, and the claim's lease lasts until `lease_until`.
pub fn gives_up(
    row: bool,
    tries: u32,
    next_try_ends: tokio::time::Instant,
    lease_until: tokio::time::Instant,
) -> Option<GiveUp> {
    if row && tries >= ROW_ERROR_TRIES {
        return Some(GiveUp::RowRefused);
    }
    (next_try_ends >= lease_until).then_some(GiveUp::LeaseSpent)
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
    fn a_row_taken_over_is_recorded_by_its_new_owner_unless_it_was_sent() {
        assert!(records_it(false, false));
        assert!(records_it(false, true));
        assert!(!records_it(true, false));
        assert!(records_it(true, true));
    }

    #[test]
    fn recording_stops_after_three_refusals_of_the_row_or_at_the_end_of_the_lease() {
        let now = tokio::time::Instant::now();
        let lease_until = now + secs(60);
        let ends = |s| now + secs(s);
        // The row's own values: three tries, however long the lease.
        assert_eq!(gives_up(true, 1, ends(1), lease_until), None);
        assert_eq!(gives_up(true, 2, ends(1), lease_until), None);
        assert_eq!(
            gives_up(true, 3, ends(1), lease_until),
            Some(GiveUp::RowRefused)
        );
        // PostgreSQL away: as long as the next try ends before the lease.
        assert_eq!(gives_up(false, 30, ends(59), lease_until), None);
        assert_eq!(
            gives_up(false, 1, ends(60), lease_until),
            Some(GiveUp::LeaseSpent)
        );
        assert_eq!(
            gives_up(true, 1, ends(61), lease_until),
            Some(GiveUp::LeaseSpent)
        );
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

    fn claimed(batch_key: Option<&str>) -> Claimed {
        let t = chrono::DateTime::UNIX_EPOCH;
        Claimed {
            id: 42,
            claim_token: uuid::Uuid::nil(),
            kind: "overdue_summary".into(),
            user_id: "7".into(),
            created_at: t,
            dedup_key: "overdue_summary:7:2026-11-23".into(),
            recipient: "a@example.com".into(),
            payload: serde_json::Value::Null,
            attempts: 4,
            round_attempts: 4,
            message_id: "<42@example.com>".into(),
            batch_key: batch_key.map(str::to_owned),
            batch_size: batch_key.map(|_| 2),
            held_by: None,
            due_at: t,
            opted_out: false,
            suppressed: false,
            over_cap: false,
        }
    }

    #[test]
    fn an_unknown_outcome_used_up_names_what_marks_the_copy() {
        let e = SendError::new(ErrorClass::Unknown, Some(502), "Resend answered 502");
        assert_eq!(
            unknown_exhausted(&claimed(None), "resend", &e),
            "Resend answered 502. The outcome at resend stayed unknown after 4 attempts: a copy \
             may have been delivered (Resend idempotency key overdue_summary:7:2026-11-23, \
             Message-ID <42@example.com>, X-Herald-Delivery overdue_summary:7:2026-11-23). Check \
             with the provider before `herald failed retry`, which sends it to resend again."
        );
        // Sent in a batch: the batch's key is the one Resend knows.
        let batch = unknown_exhausted(&claimed(Some("batch-9")), "resend", &e);
        assert!(
            batch.contains("(Resend idempotency key batch-9, Message-ID"),
            "{batch}"
        );
        // SMTP has no idempotency key: the Message-ID is what marks the copy.
        let smtp = unknown_exhausted(&claimed(None), "smtp", &e);
        assert!(
            smtp.contains("delivered (Message-ID <42@example.com>"),
            "{smtp}"
        );
    }
}
