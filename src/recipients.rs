//! At claim: an email whose user the app no longer has (deleted, soft-deleted, or no longer
//! active in `herald_users`) is skipped with the reason recorded, never sent and never an error.
//! No foreign key runs from Herald's state into the app's data, so this is where a deletion in
//! the app reaches a queued email. So is an email whose user opted out of its kind after it was
//! planned (an unsubscribe link clicked a minute ago): the claim itself says so, from Herald's
//! own opt-outs.
//!
//! An email claimed within [`FRESH`] of being planned is not looked up: the planner read its
//! user from `herald_users` moments before, and a burst right after a fire (thousands of jobs of
//! a few emails) would otherwise ask the app's database once per job for nothing (measured: 12 %
//! of the delivery path's rate). What waits longer (a spread, a retry, a pause) is looked up.

use std::{collections::HashSet, time::Duration};

use chrono::{DateTime, Utc};

use crate::{source::Source, store::Claimed};

/// How long after planning an email is sent without looking its user up again.
pub const FRESH: Duration = Duration::from_secs(60);

/// The reason recorded on an email whose user is gone.
pub fn gone_reason(user_id: &str) -> String {
    format!(
        "skipped: user {user_id} is no longer an active user in herald_users (deleted or deactivated in the app)"
    )
}

/// Why a claimed email is not sent: its user is gone from the app, or opted out of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unwanted {
    UserGone,
    OptedOut,
    Suppressed,
}

impl Unwanted {
    /// The metrics' `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Unwanted::UserGone => "user_gone",
            Unwanted::OptedOut => "opted_out",
            Unwanted::Suppressed => "suppressed",
        }
    }

    /// The reason recorded on the delivery.
    pub fn reason(self, d: &Claimed) -> String {
        match self {
            Unwanted::UserGone => gone_reason(&d.user_id),
            Unwanted::OptedOut => format!(
                "skipped: user {} opted out of {} after this email was planned",
                d.user_id, d.kind
            ),
            Unwanted::Suppressed => format!(
                "skipped: {} is on the suppression list (a hard bounce or a complaint); `herald suppressions lift` sends to it again",
                d.recipient
            ),
        }
    }
}

/// Splits claimed emails into those to send and those not to: whose address was suppressed or
/// whose user opted out of the kind since the email was planned (the claim says so), or whose
/// user the source no longer has ([`split_gone`]).
pub async fn split_unwanted(
    source: &Source,
    claimed: Vec<Claimed>,
    now: DateTime<Utc>,
) -> (Vec<Claimed>, Vec<(Claimed, Unwanted)>) {
    let mut unwanted = Vec::new();
    let mut kept = Vec::with_capacity(claimed.len());
    for d in claimed {
        match (d.suppressed, d.opted_out) {
            (true, _) => unwanted.push((d, Unwanted::Suppressed)),
            (false, true) => unwanted.push((d, Unwanted::OptedOut)),
            (false, false) => kept.push(d),
        }
    }
    let claimed = kept;
    let (send, gone) = split_gone(source, claimed, now).await;
    unwanted.extend(gone.into_iter().map(|d| (d, Unwanted::UserGone)));
    (send, unwanted)
}

/// Splits claimed emails into those to send and those whose user the source no longer has.
/// When the source cannot be read, every email is sent: it was planned from the app's data a
/// moment ago, and an outage of the app's database must not hold up Herald's mail.
pub async fn split_gone(
    source: &Source,
    claimed: Vec<Claimed>,
    now: DateTime<Utc>,
) -> (Vec<Claimed>, Vec<Claimed>) {
    let fresh = chrono::Duration::from_std(FRESH).expect("a short duration");
    let is_fresh = |d: &Claimed| d.created_at > now - fresh;
    if claimed.iter().all(is_fresh) {
        return (claimed, Vec::new());
    }
    let mut ids: Vec<String> = claimed
        .iter()
        .filter(|d| !is_fresh(d))
        .map(|d| d.user_id.clone())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    let present: HashSet<String> = match source.users(&ids).await {
        Ok(users) => users.into_iter().map(|u| u.id).collect(),
        Err(e) => {
            tracing::warn!(error = %e, users = ids.len(), "cannot check the claimed emails' users in herald_users; sending them as planned");
            return (claimed, Vec::new());
        }
    };
    claimed
        .into_iter()
        .partition(|d| is_fresh(d) || present.contains(&d.user_id))
}
