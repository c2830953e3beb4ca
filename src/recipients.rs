//! At claim: an email whose user the app no longer has (deleted, soft-deleted, or no longer
//! active in `herald_users`) is skipped with the reason recorded, never sent and never an error.
//! No foreign key runs from Herald's state into the app's data, so this is where a deletion in
//! the app reaches a queued email.

use std::collections::HashSet;

use crate::{source::Source, store::Claimed};

/// The reason recorded on an email whose user is gone.
pub fn gone_reason(user_id: &str) -> String {
    format!(
        "skipped: user {user_id} is no longer an active user in herald_users (deleted or deactivated in the app)"
    )
}

/// Splits claimed emails into those to send and those whose user the source no longer has.
/// When the source cannot be read, every email is sent: it was planned from the app's data a
/// moment ago, and an outage of the app's database must not hold up Herald's mail.
pub async fn split_gone(source: &Source, claimed: Vec<Claimed>) -> (Vec<Claimed>, Vec<Claimed>) {
    let mut ids: Vec<String> = claimed.iter().map(|d| d.user_id.clone()).collect();
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
        .partition(|d| present.contains(&d.user_id))
}
