//! `process_one`: claim one delivery, render it, send it, record the outcome.
//!
//! The apalis job only carries a delivery id; everything else is read from PostgreSQL, so a
//! duplicate job, a job that survived a crash, or a retry from the failed set all go through the
//! same claim, and a delivery already sent is never sent again.

use std::{str::FromStr, sync::Arc, time::Duration};

use anyhow::Context;

use crate::{
    domain::Kind,
    mail::{ErrorClass, Outgoing, Transport},
    render::Templates,
    store::{AttemptRecord, Store},
};

/// What the worker step needs, shared by every worker of the process.
#[derive(Debug)]
pub struct WorkerDeps {
    pub store: Store,
    pub templates: Arc<Templates>,
    pub transport: Transport,
    /// Waits before the 2nd, 3rd, … attempt of a transient failure.
    pub retry_delays: Vec<Duration>,
    pub lease: Duration,
    /// The domain for Message-IDs (the sender's).
    pub message_id_domain: String,
    /// When retries fall due.
    pub clock: crate::clock::Clock,
}

/// What happened to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// A transient failure; the delivery is due again after this wait.
    RetryScheduled(Duration),
    Failed,
    /// The delivery was not queued (already sent, failed, or being sent): nothing was done.
    NotQueued,
}

/// Processes one delivery. An `Err` means Herald could not record what happened (PostgreSQL is
/// down, say); the delivery's lease then expires and it becomes due again.
pub async fn process_one(deps: &WorkerDeps, delivery_id: i64) -> anyhow::Result<Outcome> {
    let message_id = format!(
        "<{}.{}@{}>",
        delivery_id,
        uuid::Uuid::new_v4().simple(),
        deps.message_id_domain
    );
    let Some(d) = deps
        .store
        .claim(delivery_id, deps.lease, &message_id)
        .await
        .with_context(|| format!("cannot claim delivery {delivery_id}"))?
    else {
        tracing::debug!(delivery_id, "delivery is not queued; nothing to do");
        return Ok(Outcome::NotQueued);
    };
    let provider = deps.transport.provider();

    let rendered = Kind::from_str(&d.kind)
        .map_err(anyhow::Error::msg)
        .and_then(|kind| {
            deps.templates
                .render(kind, &d.payload)
                .map_err(anyhow::Error::from)
        });
    let rendered = match rendered {
        Ok(r) => r,
        Err(e) => {
            let error = format!("cannot render: {e:#}");
            tracing::error!(delivery_id, error, "delivery failed");
            let record = AttemptRecord {
                provider,
                code: None,
                error: Some(&error),
            };
            deps.store.record_failed(&d, "permanent", &record).await?;
            return Ok(Outcome::Failed);
        }
    };

    let email = Outgoing {
        to: &d.recipient,
        message_id: &d.message_id,
        delivery_key: &d.dedup_key,
        content: &rendered,
    };
    match deps.transport.send(&email).await {
        Ok(receipt) => {
            let record = AttemptRecord {
                provider,
                code: receipt.code,
                error: None,
            };
            deps.store
                .record_sent(&d, &record)
                .await
                .context("sent, but cannot record it")?;
            tracing::debug!(delivery_id, attempt = d.attempts, "sent");
            Ok(Outcome::Sent)
        }
        Err(e) => {
            let record = AttemptRecord {
                provider,
                code: e.code,
                error: Some(&e.message),
            };
            let delay = retry_delay(&deps.retry_delays, d.round_attempts);
            match (e.class, delay) {
                (ErrorClass::Transient, Some(delay)) => {
                    let due =
                        deps.clock.now() + chrono::Duration::from_std(delay).unwrap_or_default();
                    deps.store.record_retry(&d, &record, due).await?;
                    tracing::info!(delivery_id, attempt = d.attempts, error = %e, retry_in = ?delay, "transient failure; will retry");
                    Ok(Outcome::RetryScheduled(delay))
                }
                (class, _) => {
                    deps.store
                        .record_failed(&d, class.as_str(), &record)
                        .await?;
                    tracing::warn!(delivery_id, attempt = d.attempts, error = %e, class = class.as_str(), "delivery failed");
                    Ok(Outcome::Failed)
                }
            }
        }
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

    #[test]
    fn delays_follow_the_list_then_stop() {
        let d = [2, 4, 8].map(Duration::from_secs);
        let got: Vec<_> = (1..=4).map(|n| retry_delay(&d, n)).collect();
        assert_eq!(got, [Some(d[0]), Some(d[1]), Some(d[2]), None]);
        assert_eq!(retry_delay(&[], 1), None);
        assert_eq!(retry_delay(&d, 0), None);
    }
}
