//! The dashboard's lists by status (the Deliveries page before any search), its wait and lag
//! figures, and each schedule's last manual trigger.

use super::*;

/// What the Deliveries page lists without a search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Browse {
    /// Queued, soonest due first.
    Queued,
    /// Claimed by a worker now.
    Sending,
    /// Queued again after a try: waiting for a retry.
    Retrying,
    /// Failed, newest first.
    Failed,
    /// Every status, last changed first.
    Recent,
}

impl Browse {
    pub const ALL: [Browse; 5] = [
        Browse::Recent,
        Browse::Queued,
        Browse::Sending,
        Browse::Retrying,
        Browse::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Browse::Queued => "queued",
            Browse::Sending => "sending",
            Browse::Retrying => "retrying",
            Browse::Failed => "failed",
            Browse::Recent => "recent",
        }
    }

    /// The list's name; the message names the value and the choices.
    pub fn parse(text: &str) -> Result<Browse, String> {
        Browse::ALL
            .into_iter()
            .find(|b| b.as_str() == text)
            .ok_or_else(|| {
                format!("{text:?} is not a list of deliveries; choose recent, queued, sending, retrying or failed")
            })
    }

    /// The list's statement in either home: `columns` of at most `$1` deliveries.
    ///
    /// Queued rows are in two of the dispatcher's partial indexes, those not yet pushed to Redis
    /// (`deliveries_due`, by due time) and those pushed (`deliveries_dispatched`, at most
    /// `queue.high_water` jobs of them), and in no index by status alone: the Queued list takes
    /// the first `$1` of each in due order and merges them. The first part reads
    /// `deliveries_due` as far as its `$1`-th row's instant (every row of that instant, to order
    /// them by id); the second reads every pushed row. Sending rows are `deliveries_lease`'s (as
    /// many as the workers hold), retrying ones `deliveries_retrying`'s.
    pub(crate) fn sql(self, columns: &str) -> String {
        let list = |filter: &str, order: &str| {
            format!("SELECT {columns} FROM deliveries WHERE {filter} ORDER BY {order} LIMIT $1")
        };
        match self {
            Browse::Queued => format!(
                "SELECT * FROM ({}) AS waiting UNION ALL SELECT * FROM ({}) AS pushed
                 ORDER BY due_at, id LIMIT $1",
                list("status = 'queued' AND dispatched_at IS NULL", "due_at, id"),
                list(
                    "status = 'queued' AND dispatched_at IS NOT NULL",
                    "due_at, id"
                ),
            ),
            Browse::Sending => list("status = 'sending'", "due_at, id"),
            Browse::Retrying => list("status = 'queued' AND attempts > 0", "due_at, id"),
            Browse::Failed => list("status = 'failed'", "updated_at DESC, id DESC"),
            Browse::Recent => list("true", "updated_at DESC, id DESC"),
        }
    }
}

/// How long emails wait, for the overview.
#[derive(Debug, Clone, Default, Serialize, sqlx::FromRow)]
pub struct Waits {
    /// Seconds the longest-waiting due email has waited past its due time (queued, due now);
    /// `None` when none is due.
    pub oldest_due_s: Option<f64>,
    /// Median seconds from due to sent over the last 5 minutes; `None` when nothing was sent.
    pub lag_p50_s: Option<f64>,
    /// The 95th percentile of the same.
    pub lag_p95_s: Option<f64>,
}

/// A schedule's last manual trigger (`manual:` keys) as its deliveries tell it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct TriggerCounts {
    /// The instant it was triggered as (`at`).
    pub planned_for: DateTime<Utc>,
    /// When its deliveries were planned.
    pub created_at: DateTime<Utc>,
    pub planned: i64,
    pub sent: i64,
    pub failed: i64,
}

impl Store {
    /// One list of deliveries, at most `limit`.
    pub async fn ui_browse(&self, list: Browse, limit: i64) -> sqlx::Result<Vec<DeliveryRow>> {
        let pool = pg_or!(self, lite => lite.ui_browse(list, limit).await);
        sqlx::query_as(sqlx::AssertSqlSafe(list.sql(
            "id, kind, user_id, dedup_key, status, recipient, attempts, last_error, provider, \
             message_id, provider_id, planned_for, due_at, sent_at, updated_at",
        )))
        .bind(limit)
        .fetch_all(pool)
        .await
    }

    /// The longest wait of a due email, and the lag from due to sent over the last 5 minutes.
    /// The oldest due email is the older of the oldest not yet pushed to Redis (the first entry
    /// of `deliveries_due`) and the oldest pushed (among `deliveries_dispatched`'s few).
    pub async fn ui_waits(&self, now: DateTime<Utc>) -> sqlx::Result<Waits> {
        let pool = pg_or!(self, lite => lite.ui_waits(now).await);
        sqlx::query_as(
            "SELECT (SELECT extract(epoch FROM $1 - min(oldest))::float8 FROM (
                         SELECT min(due_at) AS oldest FROM deliveries
                         WHERE status = 'queued' AND dispatched_at IS NULL AND due_at <= $1
                         UNION ALL
                         SELECT min(due_at) FROM deliveries
                         WHERE status = 'queued' AND dispatched_at IS NOT NULL AND due_at <= $1
                     ) AS queued) AS oldest_due_s,
                    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - due_at)::float8) AS lag_p50_s,
                    percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM sent_at - due_at)::float8) AS lag_p95_s
             FROM deliveries
             WHERE status = 'sent' AND updated_at > $1 - interval '5 minutes' AND sent_at IS NOT NULL",
        )
        .bind(now)
        .fetch_one(pool)
        .await
    }

    /// The last manual trigger of `kind`'s schedule: the latest instant a trigger planned,
    /// with every manual delivery of that instant counted.
    pub async fn ui_last_trigger(&self, kind: &str) -> sqlx::Result<Option<TriggerCounts>> {
        let pool = pg_or!(self, lite => lite.ui_last_trigger(kind).await);
        sqlx::query_as(
            "WITH last AS (
                 SELECT planned_for AS at FROM deliveries
                 WHERE kind = $1 AND dedup_key LIKE 'manual:%'
                 ORDER BY planned_for DESC LIMIT 1
             )
             SELECT last.at AS planned_for, max(d.created_at) AS created_at,
                    count(*) AS planned,
                    count(*) FILTER (WHERE d.status = 'sent') AS sent,
                    count(*) FILTER (WHERE d.status = 'failed') AS failed
             FROM last JOIN deliveries d
               ON d.kind = $1 AND d.planned_for = last.at AND d.dedup_key LIKE 'manual:%'
             GROUP BY last.at",
        )
        .bind(kind)
        .fetch_optional(pool)
        .await
    }
}
