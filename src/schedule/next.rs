//! A schedule's next fires, as the dashboard and the API show them: in its own zone, or in every
//! zone its users live in.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::occurrences;
use crate::{
    config::{ScheduleSettings, ZoneMode},
    store::Store,
};

/// The valid zones users live in.
pub async fn user_zones(store: &Store) -> sqlx::Result<Vec<Tz>> {
    Ok(store
        .source
        .time_zones()
        .await?
        .iter()
        .filter_map(|z| crate::domain::parse_zone(z).ok())
        .collect())
}

/// The next `n` fires of a schedule after `now`, each with its zone: in its own zone, or in
/// every zone its users live in.
pub fn next_fires(
    s: &ScheduleSettings,
    zones: &[Tz],
    now: DateTime<Utc>,
    n: usize,
) -> Vec<(DateTime<Utc>, Tz)> {
    let wanted: Vec<Tz> = match s.zone {
        ZoneMode::Fixed(tz) => vec![tz],
        ZoneMode::Recipient if zones.is_empty() => vec![s.fallback_timezone],
        ZoneMode::Recipient => zones.to_vec(),
    };
    let mut fires: Vec<_> = wanted
        .iter()
        .flat_map(|tz| {
            s.cron
                .iter()
                .flat_map(move |c| occurrences::next(c, *tz, now, n))
                .map(move |f| (f.at, *tz))
        })
        .collect();
    fires.sort_by_key(|f| f.0);
    fires.dedup_by_key(|f| f.0);
    fires.truncate(n);
    fires
}
