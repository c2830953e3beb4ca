//! The dashboard's reads and bulk actions: the overview's counts, the failed set filtered, spread
//! retries and purges, delivery search.

use strum::IntoEnumIterator;

use super::*;
use crate::domain::ErrorClass;

/// Sent or failed deliveries of one kind through one provider, in the last hour and day.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct OutcomeCount {
    pub kind: String,
    /// Empty when no provider was reached.
    pub provider: String,
    /// Sent or failed.
    pub status: DeliveryStatus,
    pub last_hour: i64,
    pub last_day: i64,
}

/// The deliveries still on their way.
#[derive(Debug, Clone, Default, Serialize, sqlx::FromRow)]
pub struct ActiveCounts {
    /// Queued and due now (the dispatcher's next rounds).
    pub due: i64,
    /// Queued for later: planned ahead, spread, or retried at a bounded rate.
    pub later: i64,
    /// Queued after at least one try: waiting for a retry.
    pub retrying: i64,
    /// Claimed by a worker: being sent.
    pub sending: i64,
}

/// How many deliveries of one status finished in one minute.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct MinuteCount {
    /// Minutes before now: 0 is the current minute, 59 the oldest shown.
    pub minutes_ago: i32,
    /// Sent or failed.
    pub status: DeliveryStatus,
    pub n: i64,
}

/// A schedule's last fire as its deliveries tell it: every non-manual delivery of the kind
/// planned for the same instant.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct FireCounts {
    pub planned_for: DateTime<Utc>,
    /// Queued by the fire (whatever became of them since).
    pub planned: i64,
    /// Recorded as skipped: the fire was missed by more than the catch-up window.
    pub skipped: i64,
    pub sent: i64,
    pub failed: i64,
}

/// What narrows the failed set. Every field is optional; times bound `updated_at` (when the
/// delivery failed).
#[derive(Debug, Clone, Default)]
pub struct FailedFilter {
    pub kind: Option<String>,
    /// The outcome of the last try.
    pub class: Option<LastTry>,
    pub provider: Option<String>,
    /// The recipient's domain, case-insensitive.
    pub domain: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

/// What the failed set's class filter asks of a delivery's last try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastTry {
    /// There was none: the delivery failed before any try was recorded (`none`).
    NoTry,
    /// It failed with this class.
    Failed(ErrorClass),
}

impl LastTry {
    /// `none`, or the class's name.
    pub fn as_str(self) -> &'static str {
        match self {
            LastTry::NoTry => "none",
            LastTry::Failed(class) => class.as_str(),
        }
    }

    /// `none` or an error class's name; the message names the value and the choices.
    pub fn parse(text: &str) -> Result<LastTry, String> {
        if text == "none" {
            return Ok(LastTry::NoTry);
        }
        ErrorClass::parse(text).map(LastTry::Failed).ok_or_else(|| {
            let classes: Vec<&str> = ErrorClass::iter().map(ErrorClass::as_str).collect();
            format!(
                "{text:?} is not an error class; choose none or one of {}",
                classes.join(", ")
            )
        })
    }
}

/// One row of the failed list.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct FailedRow {
    pub id: i64,
    pub kind: String,
    pub user_id: String,
    pub recipient: String,
    pub provider: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    /// The outcome of the last try; `None` when none was recorded.
    pub class: Option<AttemptOutcome>,
    pub code: Option<i32>,
    pub updated_at: DateTime<Utc>,
}

/// A delivery with what it takes to render it again.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeliveryDetail {
    #[sqlx(flatten)]
    #[serde(flatten)]
    pub row: DeliveryRow,
    /// `None` once `retention.payload` has passed since the email was sent or skipped.
    pub payload: Option<serde_json::Value>,
}

/// The columns of a [`DeliveryRow`].
const COLUMNS: &str = "id, kind, user_id, dedup_key, status, recipient, attempts, last_error, \
     provider, message_id, provider_id, planned_for, due_at, sent_at, updated_at";

/// The failed set's filter as SQL over `d` (deliveries) and `la` (its last attempt), with the
/// filter's values bound as `$1` to `$6`.
const FAILED_WHERE: &str = "d.status = 'failed'
    AND ($1::text IS NULL OR d.kind = $1)
    AND ($2::text IS NULL OR COALESCE(la.outcome, 'none') = $2)
    AND ($3::text IS NULL OR d.provider = $3)
    AND ($4::text IS NULL OR lower(split_part(d.recipient, '@', 2)) = lower($4))
    AND ($5::timestamptz IS NULL OR d.updated_at >= $5)
    AND ($6::timestamptz IS NULL OR d.updated_at < $6)";

/// The last attempt of `d`, as `la`.
const LAST_ATTEMPT: &str = "LEFT JOIN LATERAL (
        SELECT a.outcome, a.code FROM delivery_attempts a
        WHERE a.delivery_id = d.id ORDER BY a.attempt DESC, a.id DESC LIMIT 1
    ) la ON true";

fn bind_filter<'q, O>(
    q: sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments>,
    f: &'q FailedFilter,
) -> sqlx::query::QueryAs<'q, Postgres, O, sqlx::postgres::PgArguments> {
    q.bind(f.kind.as_deref())
        .bind(f.class.map(LastTry::as_str))
        .bind(f.provider.as_deref())
        .bind(f.domain.as_deref())
        .bind(f.since)
        .bind(f.until)
}

/// The overview's counts of queued and sending deliveries, the same statement in both homes
/// (SQLite has `FILTER` too): see [`Store::ui_active`].
pub(crate) const ACTIVE_COUNTS: &str = "SELECT queued.due, queued.later,
            (SELECT count(*) FROM deliveries
             WHERE status = 'queued' AND attempts > 0) AS retrying,
            (SELECT count(*) FROM deliveries WHERE status = 'sending') AS sending
     FROM (SELECT count(*) FILTER (WHERE due_at <= $1) AS due,
                  count(*) FILTER (WHERE due_at > $1) AS later
           FROM (SELECT due_at FROM deliveries
                 WHERE status = 'queued' AND dispatched_at IS NULL
                 UNION ALL
                 SELECT due_at FROM deliveries
                 WHERE status = 'queued' AND dispatched_at IS NOT NULL) AS q) AS queued";

impl Store {
    /// Sent and failed deliveries by kind and provider, over the day before `now`.
    pub async fn ui_outcomes(&self, now: DateTime<Utc>) -> sqlx::Result<Vec<OutcomeCount>> {
        let pool = pg_or!(self, lite => lite.ui_outcomes(now).await);
        sqlx::query_as(
            "SELECT kind, COALESCE(provider, '') AS provider, status,
                    count(*) FILTER (WHERE updated_at >= $1 - interval '1 hour') AS last_hour,
                    count(*) AS last_day
             FROM deliveries
             WHERE status IN ('sent', 'failed') AND updated_at >= $1 - interval '1 day'
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        .bind(now)
        .fetch_all(pool)
        .await
    }

    /// Sent and failed per minute over the hour before `now`.
    pub async fn ui_throughput(&self, now: DateTime<Utc>) -> sqlx::Result<Vec<MinuteCount>> {
        let pool = pg_or!(self, lite => lite.ui_throughput(now).await);
        sqlx::query_as(
            "SELECT floor(extract(epoch FROM ($1 - updated_at)) / 60)::int AS minutes_ago, status,
                    count(*) AS n
             FROM deliveries
             WHERE status IN ('sent', 'failed') AND updated_at > $1 - interval '1 hour'
               AND updated_at <= $1
             GROUP BY 1, 2",
        )
        .bind(now)
        .fetch_all(pool)
        .await
    }

    /// Queued (due, later, retrying) and sending deliveries. Each count reads one of the
    /// dispatcher's partial indexes, or `deliveries_retrying` (no index holds every queued row:
    /// a planned row enters as few as it can, BENCHMARKS.md, "Dropping `deliveries_active`").
    pub async fn ui_active(&self, now: DateTime<Utc>) -> sqlx::Result<ActiveCounts> {
        let pool = pg_or!(self, lite => lite.ui_active(now).await);
        sqlx::query_as(ACTIVE_COUNTS)
            .bind(now)
            .fetch_one(pool)
            .await
    }

    /// The last fire of `kind`'s schedule (manual triggers aside), with its counts by outcome.
    pub async fn ui_last_fire(&self, kind: &str) -> sqlx::Result<Option<FireCounts>> {
        let pool = pg_or!(self, lite => lite.ui_last_fire(kind).await);
        sqlx::query_as(
            "WITH last AS (
                 SELECT max(planned_for) AS at FROM deliveries
                 WHERE kind = $1 AND dedup_key NOT LIKE 'manual:%'
             )
             SELECT last.at AS planned_for,
                    count(*) FILTER (WHERE d.status <> 'skipped') AS planned,
                    count(*) FILTER (WHERE d.status = 'skipped') AS skipped,
                    count(*) FILTER (WHERE d.status = 'sent') AS sent,
                    count(*) FILTER (WHERE d.status = 'failed') AS failed
             FROM last JOIN deliveries d
               ON d.kind = $1 AND d.planned_for = last.at AND d.dedup_key NOT LIKE 'manual:%'
             GROUP BY last.at",
        )
        .bind(kind)
        .fetch_optional(pool)
        .await
    }

    /// Users who opted out of `kind` (now: opt-outs are not recorded per fire).
    pub async fn ui_opted_out(&self, kind: &str) -> sqlx::Result<i64> {
        let pool = pg_or!(self, lite => lite.ui_opted_out(kind).await);
        sqlx::query_scalar("SELECT count(*) FROM email_opt_outs WHERE kind = $1")
            .bind(kind)
            .fetch_one(pool)
            .await
    }

    /// The newest failed deliveries that match, with the class of their last try, and how many
    /// match in all.
    pub async fn ui_failed(
        &self,
        f: &FailedFilter,
        limit: i64,
    ) -> sqlx::Result<(Vec<FailedRow>, i64)> {
        let pool = pg_or!(self, lite => lite.ui_failed(f, limit).await);
        let rows = bind_filter(
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT d.id, d.kind, d.user_id, d.recipient, d.provider, d.attempts, d.last_error,
                        la.outcome AS class, la.code, d.updated_at
                 FROM deliveries d {LAST_ATTEMPT}
                 WHERE {FAILED_WHERE}
                 ORDER BY d.updated_at DESC, d.id DESC LIMIT $7"
            ))),
            f,
        )
        .bind(limit)
        .fetch_all(pool)
        .await?;
        let (total,): (i64,) = bind_filter(
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM deliveries d {LAST_ATTEMPT} WHERE {FAILED_WHERE}"
            ))),
            f,
        )
        .fetch_one(pool)
        .await?;
        Ok((rows, total))
    }

    /// The values the failed set's filters can take: kinds, classes and providers present.
    pub async fn ui_failed_facets(&self) -> sqlx::Result<Vec<(String, String)>> {
        let pool = pg_or!(self, lite => lite.ui_failed_facets().await);
        sqlx::query_as(
            "SELECT DISTINCT 'kind', kind FROM deliveries WHERE status = 'failed'
             UNION SELECT DISTINCT 'provider', provider FROM deliveries
                   WHERE status = 'failed' AND provider IS NOT NULL
             UNION SELECT DISTINCT 'class', a.outcome FROM deliveries d
                   JOIN delivery_attempts a ON a.delivery_id = d.id
                   WHERE d.status = 'failed' AND a.outcome <> 'sent'
             ORDER BY 1, 2",
        )
        .fetch_all(pool)
        .await
    }

    /// Queues failed deliveries again with a fresh round of retries: those in `ids` (when given)
    /// that also match `f`. The n-th is due at `start + n / per_second` seconds, oldest failure
    /// first, so the dispatcher releases them at that rate. Returns how many were queued and
    /// when the last is due.
    pub async fn ui_retry_failed(
        &self,
        f: &FailedFilter,
        ids: Option<&[i64]>,
        start: DateTime<Utc>,
        per_second: u32,
    ) -> sqlx::Result<(i64, Option<DateTime<Utc>>)> {
        let pool = pg_or!(self, lite => lite.ui_retry_failed(f, ids, start, per_second).await);
        bind_filter(
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "WITH picked AS (
                     SELECT d.id, (row_number() OVER (ORDER BY d.updated_at, d.id) - 1) AS n
                     FROM deliveries d {LAST_ATTEMPT}
                     WHERE {FAILED_WHERE} AND ($7::bigint[] IS NULL OR d.id = ANY($7))
                 ), done AS (
                     UPDATE deliveries SET status = 'queued', round_attempts = 0,
                            dispatched_at = NULL, updated_at = now(),
                            due_at = $8 + floor(picked.n / $9::float8) * interval '1 second'
                     FROM picked
                     WHERE deliveries.id = picked.id AND deliveries.status = 'failed'
                     RETURNING deliveries.due_at
                 )
                 SELECT count(*), max(due_at) FROM done"
            ))),
            f,
        )
        .bind(ids)
        .bind(start)
        .bind(f64::from(per_second.max(1)))
        .fetch_one(pool)
        .await
    }

    /// Deletes failed deliveries (and their attempts): those in `ids` (when given) that also
    /// match `f`. Returns how many.
    pub async fn ui_purge_failed(
        &self,
        f: &FailedFilter,
        ids: Option<&[i64]>,
    ) -> sqlx::Result<i64> {
        let pool = pg_or!(self, lite => lite.ui_purge_failed(f, ids).await);
        let (n,): (i64,) = bind_filter(
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "WITH picked AS (
                     SELECT d.id FROM deliveries d {LAST_ATTEMPT}
                     WHERE {FAILED_WHERE} AND ($7::bigint[] IS NULL OR d.id = ANY($7))
                 ), gone AS (
                     DELETE FROM deliveries WHERE status = 'failed' AND id IN (SELECT id FROM picked)
                     RETURNING id
                 )
                 SELECT count(*) FROM gone"
            ))),
            f,
        )
        .bind(ids)
        .fetch_one(pool)
        .await?;
        Ok(n)
    }

    /// Deliveries by user id, recipient address or dedup key, newest first.
    pub async fn ui_search(&self, q: &str, limit: i64) -> sqlx::Result<Vec<DeliveryRow>> {
        let pool = pg_or!(self, lite => lite.ui_search(q, limit).await);
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM deliveries
             WHERE user_id = $1 OR lower(recipient) = lower($1) OR dedup_key = $1
             ORDER BY planned_for DESC, id DESC LIMIT $2",
            COLUMNS
        )))
        .bind(q)
        .bind(limit)
        .fetch_all(pool)
        .await
    }

    /// One delivery with its payload.
    pub async fn ui_delivery(&self, id: i64) -> sqlx::Result<Option<DeliveryDetail>> {
        let pool = pg_or!(self, lite => lite.ui_delivery(id).await);
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {}, payload::json FROM deliveries WHERE id = $1",
            COLUMNS
        )))
        .bind(id)
        .fetch_optional(pool)
        .await
    }
}
