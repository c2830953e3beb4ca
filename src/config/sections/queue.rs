//! `[queue]`: the apalis-redis queue, the dispatcher and the claims' lease.

use std::time::Duration;

use serde::Deserialize;

use super::{Problems, duration};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawQueue {
    pub name: String,
    pub concurrency: usize,
    pub batch_size: usize,
    pub heartbeat: String,
    pub high_water: usize,
    pub dispatch_chunk: usize,
    pub dispatch_interval: String,
    pub redispatch_after: String,
    pub lease: String,
    pub retry_delays: Vec<String>,
    pub max_attempts: u32,
}

#[derive(Debug, Clone)]
pub struct QueueSettings {
    pub name: String,
    pub concurrency: usize,
    pub batch_size: usize,
    pub heartbeat: Duration,
    pub high_water: usize,
    pub dispatch_chunk: usize,
    pub dispatch_interval: Duration,
    pub redispatch_after: Duration,
    pub lease: Duration,
    pub retry_delays: Vec<Duration>,
    /// Claims one delivery may use in a round of retries; at the next it is failed, not sent.
    pub max_attempts: u32,
}

/// The longest `queue.dispatch_interval`: it is also how late a retry may be.
pub const MAX_DISPATCH_INTERVAL: Duration = Duration::from_secs(60);

/// The shortest `queue.redispatch_after`: jobs waiting their turn in Redis must not be pushed again.
pub const MIN_REDISPATCH_AFTER: Duration = Duration::from_secs(10);

/// How much longer than the longest send timeout a lease must be.
pub const LEASE_MARGIN: Duration = Duration::from_secs(4);

/// The rule for `queue.lease`, in the words the README uses too (a test compares them).
pub const LEASE_RULE: &str = "at least the longest send timeout (mail.timeout, and mail.resend.timeout when Resend is a provider) + 4 s, so that a claim outlives its send: the send itself, up to 2 s waiting for a provider and 2 s to spare";

/// Checks `[queue]` but its lease, which depends on `[mail]` ([`check_lease`]).
pub(super) fn check(q: &RawQueue, p: &mut Problems) -> QueueSettings {
    if q.name.trim().is_empty() {
        p.key(
            "queue.name",
            "is empty; set a queue name such as \"herald:deliveries\"",
        );
    }
    check_sizes(q, p);
    let heartbeat = duration("queue.heartbeat", &q.heartbeat, p);
    if heartbeat == Some(Duration::ZERO) {
        p.key("queue.heartbeat", "is 0; use something like \"1s\"");
    }
    let dispatch_interval = duration("queue.dispatch_interval", &q.dispatch_interval, p);
    check_dispatch_interval(dispatch_interval, p);
    let redispatch_after = duration("queue.redispatch_after", &q.redispatch_after, p);
    check_redispatch_after(redispatch_after, p);
    let retry_delays = q
        .retry_delays
        .iter()
        .enumerate()
        .map(|(i, d)| duration(&format!("queue.retry_delays[{i}]"), d, p).unwrap_or_default())
        .collect();
    check_max_attempts(q, p);
    QueueSettings {
        name: q.name.clone(),
        concurrency: q.concurrency,
        batch_size: q.batch_size,
        heartbeat: heartbeat.unwrap_or_default(),
        high_water: q.high_water,
        dispatch_chunk: q.dispatch_chunk,
        dispatch_interval: dispatch_interval.unwrap_or_default(),
        redispatch_after: redispatch_after.unwrap_or_default(),
        lease: duration("queue.lease", &q.lease, p).unwrap_or_default(),
        retry_delays,
        max_attempts: q.max_attempts,
    }
}

/// The counts: at least 1 each, and within what apalis-redis can move at once.
fn check_sizes(q: &RawQueue, p: &mut Problems) {
    for (key, value) in [
        ("queue.concurrency", q.concurrency),
        ("queue.batch_size", q.batch_size),
        ("queue.high_water", q.high_water),
        ("queue.dispatch_chunk", q.dispatch_chunk),
    ] {
        if value == 0 {
            p.key(key, "is 0; it must be at least 1");
        }
    }
    if q.high_water > 5000 {
        p.key(
            "queue.high_water",
            format!(
                "is {}; apalis-redis 1.0.0 fails to fetch once about 8,000 jobs are due at once, keep it at 5000 or less",
                q.high_water
            ),
        );
    }
    if q.batch_size > 500 {
        p.key(
            "queue.batch_size",
            format!(
                "is {}; apalis-redis moves a fetched batch with one Lua unpack, which fails above about 8,000 ids, and a dead worker's batch is recovered the same way: keep it at 500 or less (near queue.concurrency)",
                q.batch_size
            ),
        );
    }
}

/// The most `queue.max_attempts` may be (it is stored as a PostgreSQL `int`).
pub const MAX_MAX_ATTEMPTS: u32 = 1_000_000;

/// `queue.max_attempts` must leave every retry of `queue.retry_delays` its claim: a delivery
/// gets one attempt more than there are delays.
fn check_max_attempts(q: &RawQueue, p: &mut Problems) {
    let needed = q.retry_delays.len() as u64 + 1;
    if u64::from(q.max_attempts) < needed {
        p.key(
            "queue.max_attempts",
            format!(
                "is {}; with {} queue.retry_delays a delivery gets up to {needed} attempts, and it would be failed at claim before its retries are used up. Use at least {needed}, e.g. {}",
                q.max_attempts,
                q.retry_delays.len(),
                (needed + 6).max(10)
            ),
        );
    } else if q.max_attempts > MAX_MAX_ATTEMPTS {
        p.key(
            "queue.max_attempts",
            format!(
                "is {}; use at most {MAX_MAX_ATTEMPTS}, e.g. 10 (a delivery whose outcome cannot be recorded is sent again at each of them)",
                q.max_attempts
            ),
        );
    }
}

fn check_dispatch_interval(interval: Option<Duration>, p: &mut Problems) {
    match interval {
        Some(Duration::ZERO) => p.key(
            "queue.dispatch_interval",
            "is 0s; the dispatcher would query PostgreSQL without a pause. Use something like \"200ms\"",
        ),
        Some(d) if d > MAX_DISPATCH_INTERVAL => p.key(
            "queue.dispatch_interval",
            format!(
                "is {}; the dispatcher also runs the retries' clock, so a retry due in 2 s would wait up to that long. Use at most {}, e.g. \"200ms\"",
                humantime::format_duration(d),
                humantime::format_duration(MAX_DISPATCH_INTERVAL)
            ),
        ),
        _ => {}
    }
}

fn check_redispatch_after(after: Option<Duration>, p: &mut Problems) {
    if let Some(d) = after.filter(|d| *d < MIN_REDISPATCH_AFTER) {
        p.key(
            "queue.redispatch_after",
            format!(
                "is {}; a delivery that is only waiting its turn in Redis would be pushed again and again, filling the queue with duplicate jobs. Use at least {}, e.g. \"5m\" (it only matters when Redis loses jobs)",
                humantime::format_duration(d),
                humantime::format_duration(MIN_REDISPATCH_AFTER)
            ),
        );
    }
}

/// A claim must outlive its send: a lease that expires mid-send makes the row due again and
/// another worker sends a second copy. (Workers renew their leases every lease / 3, but one
/// send, which no renewal can interrupt, must fit in one lease.) Skipped unless both parse.
/// `send_timeout` is the longest send timeout and the key that sets it.
pub(super) fn check_lease(
    lease: Option<Duration>,
    send_timeout: Option<(&str, Duration)>,
    p: &mut Problems,
) {
    let (Some(lease), Some((key, timeout))) = (lease, send_timeout) else {
        return;
    };
    let floor = timeout + LEASE_MARGIN;
    let what_then = if lease.is_zero() {
        "every claim would expire at once and another worker would send the same email again"
    } else if lease < floor {
        "a send could outlive its claim and go out twice"
    } else {
        return;
    };
    p.key(
        "queue.lease",
        format!(
            "is {}; {what_then}. A lease must be {LEASE_RULE}. With {key} at {}, use at least {}",
            humantime::format_duration(lease),
            humantime::format_duration(timeout),
            humantime::format_duration(floor),
        ),
    );
}
