//! `herald seed`: realistic demo users, tasks and focus sessions across many time zones, in the
//! demo app's tables ([`crate::source::demo`], in PostgreSQL or a SQLite file), read by Herald
//! through the same views a real app writes; and `--reset` to remove them with what Herald keeps about them.

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use rand::{Rng, SeedableRng, rngs::StdRng, seq::IndexedRandom};

use crate::{
    source::demo::{Demo, NewTask, NewUser},
    store::{Forgotten, Store},
};

/// 40 zones, including the unusual ones: :30 and :45 offsets, UTC+14 and UTC−12, both
/// hemispheres' DST.
pub const ZONES: [&str; 40] = [
    "UTC",
    "Europe/London",
    "Europe/Paris",
    "Europe/Berlin",
    "Europe/Madrid",
    "Europe/Helsinki",
    "Europe/Moscow",
    "Africa/Lagos",
    "Africa/Nairobi",
    "Africa/Johannesburg",
    "Asia/Dubai",
    "Asia/Tehran",
    "Asia/Kabul",
    "Asia/Karachi",
    "Asia/Kolkata",
    "Asia/Kathmandu",
    "Asia/Dhaka",
    "Asia/Yangon",
    "Asia/Bangkok",
    "Asia/Shanghai",
    "Asia/Tokyo",
    "Australia/Eucla",
    "Australia/Adelaide",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "Pacific/Kiritimati",
    "Pacific/Tongatapu",
    "Etc/GMT+12",
    "Pacific/Honolulu",
    "America/Anchorage",
    "America/Los_Angeles",
    "America/Denver",
    "America/Chicago",
    "America/New_York",
    "America/Caracas",
    "America/Santiago",
    "America/Sao_Paulo",
    "America/St_Johns",
];

const FIRST: [&str; 12] = [
    "Ada",
    "Grace",
    "Alan",
    "Katherine",
    "Linus",
    "Margaret",
    "Dennis",
    "Barbara",
    "Ken",
    "Frances",
    "Edsger",
    "Radia",
];
const LAST: [&str; 10] = [
    "Lovelace", "Hopper", "Turing", "Johnson", "Torvalds", "Hamilton", "Ritchie", "Liskov",
    "Thompson", "Allen",
];
const TASKS: [&str; 12] = [
    "Renew passport",
    "Send the quarterly report",
    "Book the dentist",
    "Review the pull request",
    "Pay the electricity bill",
    "Prepare the team offsite",
    "Call the landlord",
    "Write the blog post",
    "Update the <budget> spreadsheet",
    "Plan the sprint",
    "Water the plants",
    "File the expenses",
];

/// Users written per round trip.
const CHUNK: usize = 5000;

/// The addresses seeded users get, as a regular expression that PostgreSQL and SQLite's `REGEXP`
/// (the `regex` crate) read alike: `user<N>@example.com` (example.com is reserved for examples,
/// so no real user has one).
pub const SEEDED_EMAILS: &str = r"^user[0-9]+@example\.com$";

/// The address of the seeded user numbered `index`; [`SEEDED_EMAILS`] matches it.
fn email(index: i64) -> String {
    format!("user{index}@example.com")
}

/// Languages seeded users have, with some users who have none.
const LOCALES: [Option<&str>; 5] = [
    None,
    Some("en-GB"),
    Some("fr-FR"),
    Some("fr-CA"),
    Some("en"),
];

/// What [`reset`] removed: from the demo app, and from Herald's state.
#[derive(Debug, Default)]
pub struct Removed {
    pub users: usize,
    pub tasks: u64,
    pub focus_sessions: u64,
    pub state: Forgotten,
}

/// Deletes every seeded user (see [`SEEDED_EMAILS`]) with their tasks and focus sessions, then
/// what Herald keeps about them (opt-outs, deliveries); users with other addresses stay.
pub async fn reset(demo: &Demo, store: &Store) -> anyhow::Result<Removed> {
    let app = demo
        .delete_users_matching(SEEDED_EMAILS)
        .await
        .context("cannot delete the seeded users")?;
    let state = store
        .forget_users(&app.ids)
        .await
        .context("cannot delete Herald's records of the seeded users")?;
    Ok(Removed {
        users: app.ids.len(),
        tasks: app.tasks,
        focus_sessions: app.focus_sessions,
        state,
    })
}

#[derive(Debug, Default)]
pub struct SeedReport {
    pub users: usize,
    pub tasks: u64,
    pub focus_sessions: u64,
}

/// Creates `count` users with tasks due in the coming days, overdue tasks, tasks completed in the
/// last week and focus sessions, spread over [`ZONES`]. The same `seed` gives the same data.
pub async fn seed(
    demo: &Demo,
    count: usize,
    seed: u64,
    now: DateTime<Utc>,
) -> anyhow::Result<SeedReport> {
    demo.install().await?;
    let mut rng = StdRng::seed_from_u64(seed);
    let first_index = demo.max_seeded_index().await? + 1;
    let mut report = SeedReport::default();
    let mut made = 0;
    while made < count {
        let n = CHUNK.min(count - made);
        let users: Vec<NewUser> = (0..n)
            .map(|i| {
                let index = first_index + (made + i) as i64;
                let name = format!(
                    "{} {}",
                    FIRST.choose(&mut rng).expect("non-empty"),
                    LAST.choose(&mut rng).expect("non-empty")
                );
                NewUser {
                    email: email(index),
                    display_name: name,
                    timezone: ZONES[index as usize % ZONES.len()].to_owned(),
                    locale: LOCALES[index as usize % LOCALES.len()].map(str::to_owned),
                }
            })
            .collect();
        let ids = demo
            .insert_users(&users)
            .await
            .context("cannot insert users")?;
        let mut tasks = Vec::new();
        let mut focus = Vec::new();
        for id in &ids {
            for _ in 0..rng.random_range(0..=6) {
                let due = now + Duration::minutes(rng.random_range(-10 * 24 * 60..5 * 24 * 60));
                let completed = (rng.random_bool(0.3))
                    .then(|| now - Duration::minutes(rng.random_range(1..8 * 24 * 60)));
                tasks.push(NewTask {
                    owner_id: id.clone(),
                    title: TASKS.choose(&mut rng).expect("non-empty").to_string(),
                    due_at: Some(due),
                    completed_at: completed,
                });
            }
            for _ in 0..rng.random_range(0..=5) {
                focus.push((
                    id.clone(),
                    now - Duration::minutes(rng.random_range(1..7 * 24 * 60)),
                    rng.random_range(15..=90),
                ));
            }
        }
        report.tasks += demo
            .insert_tasks(&tasks)
            .await
            .context("cannot insert tasks")?
            .len() as u64;
        report.focus_sessions += demo
            .insert_focus_sessions(&focus)
            .await
            .context("cannot insert focus sessions")?;
        report.users += ids.len();
        made += n;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_zone_parses() {
        for z in super::ZONES {
            crate::domain::parse_zone(z).unwrap();
        }
    }
}
