//! The dashboard's lists by status, its wait and lag figures, and each schedule's last manual
//! trigger, in the state file: the SQLite side of `store/ui_browse.rs`. SQLite has no
//! `percentile_cont`: the lags are read and their percentiles computed here, as PostgreSQL does.

use chrono::{DateTime, Utc};

use super::{Lite, ui::COLUMNS};
use crate::store::{
    DeliveryRow,
    ui_browse::{Browse, TriggerCounts, Waits},
};

/// Seconds from `from` to `to`, to the microsecond (as PostgreSQL's `extract(epoch …)`).
fn seconds(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    let d = to - from;
    match d.num_microseconds() {
        Some(us) => us as f64 / 1e6,
        None => d.num_milliseconds() as f64 / 1e3,
    }
}

/// PostgreSQL's `percentile_cont(p)` over `sorted` (ascending): the value at `p * (n - 1)`,
/// interpolated between its two neighbours.
fn percentile_cont(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let at = p * last as f64;
    let (first, second) = (at.floor(), at.ceil());
    let low = sorted[first as usize];
    let high = sorted[second as usize];
    Some(low + (high - low) * (at - first))
}

impl Lite {
    pub async fn ui_browse(&self, list: Browse, limit: i64) -> sqlx::Result<Vec<DeliveryRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(list.sql(COLUMNS)))
            .bind(limit)
            .fetch_all(&self.reader)
            .await
    }

    pub async fn ui_waits(&self, now: DateTime<Utc>) -> sqlx::Result<Waits> {
        // As PostgreSQL's: the older of the oldest due in each of the dispatcher's indexes.
        let oldest: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(oldest) FROM (
                 SELECT min(due_at) AS oldest FROM deliveries
                 WHERE status = 'queued' AND dispatched_at IS NULL AND due_at <= $1
                 UNION ALL
                 SELECT min(due_at) FROM deliveries
                 WHERE status = 'queued' AND dispatched_at IS NOT NULL AND due_at <= $1
             )",
        )
        .bind(now)
        .fetch_one(&self.reader)
        .await?;
        let sent: Vec<(DateTime<Utc>, DateTime<Utc>)> = sqlx::query_as(
            "SELECT due_at, sent_at FROM deliveries
             WHERE status = 'sent' AND updated_at > $1 AND sent_at IS NOT NULL",
        )
        .bind(now - chrono::Duration::minutes(5))
        .fetch_all(&self.reader)
        .await?;
        let mut lags: Vec<f64> = sent.into_iter().map(|(due, at)| seconds(due, at)).collect();
        lags.sort_by(f64::total_cmp);
        Ok(Waits {
            oldest_due_s: oldest.map(|due| seconds(due, now)),
            lag_p50_s: percentile_cont(&lags, 0.5),
            lag_p95_s: percentile_cont(&lags, 0.95),
        })
    }

    pub async fn ui_last_trigger(&self, kind: &str) -> sqlx::Result<Option<TriggerCounts>> {
        sqlx::query_as(
            "WITH last AS (
                 SELECT planned_for AS at FROM deliveries
                 WHERE kind = $1 AND dedup_key GLOB 'manual:*'
                 ORDER BY planned_for DESC LIMIT 1
             )
             SELECT last.at AS planned_for, max(d.created_at) AS created_at,
                    count(*) AS planned,
                    count(*) FILTER (WHERE d.status = 'sent') AS sent,
                    count(*) FILTER (WHERE d.status = 'failed') AS failed
             FROM last JOIN deliveries d
               ON d.kind = $1 AND d.planned_for = last.at AND d.dedup_key GLOB 'manual:*'
             GROUP BY last.at",
        )
        .bind(kind)
        .fetch_optional(&self.reader)
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::percentile_cont;

    #[test]
    fn percentiles_interpolate_as_postgresql_does() {
        assert_eq!(percentile_cont(&[], 0.5), None);
        assert_eq!(percentile_cont(&[3.0], 0.95), Some(3.0));
        assert_eq!(percentile_cont(&[1.0, 2.0, 3.0, 4.0], 0.5), Some(2.5));
        // 0.95 * 3 = 2.85: 3 + 0.85 * (4 - 3).
        let p95 = percentile_cont(&[1.0, 2.0, 3.0, 4.0], 0.95).unwrap();
        assert!((p95 - 3.85).abs() < 1e-12, "{p95}");
    }
}
