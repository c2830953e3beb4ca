//! The dashboard's reads and bulk actions in the state file: the SQLite side of `store/ui.rs`.
//!
//! SQLite has no `LATERAL`: a failed delivery's last attempt is read by correlated subqueries
//! ([`FAILED`]). Its `LIKE` ignores ASCII case where PostgreSQL's does not: the `manual:` prefix
//! is matched with `GLOB`, which keeps case. Minute buckets are bounded by instants computed in
//! Rust, so a row falls in the same minute as in PostgreSQL.

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::{Sqlite, query::QueryAs};

use super::{Lite, json_list};
use crate::store::{
    DeliveryRow,
    ui::{
        ActiveCounts, DeliveryDetail, FailedFilter, FailedRow, FireCounts, LastTry, MinuteCount,
        OutcomeCount,
    },
};

pub(super) const COLUMNS: &str = "id, kind, user_id, dedup_key, status, recipient, attempts, \
     last_error, provider, message_id, provider_id, planned_for, due_at, sent_at, updated_at";

/// The failed deliveries as `d`, each with the outcome and code of its last attempt (`la_outcome`,
/// `la_code`), as PostgreSQL's `LEFT JOIN LATERAL` gives them.
const FAILED: &str = "(SELECT f.*,
        (SELECT a.outcome FROM delivery_attempts a WHERE a.delivery_id = f.id
         ORDER BY a.attempt DESC, a.id DESC LIMIT 1) AS la_outcome,
        (SELECT a.code FROM delivery_attempts a WHERE a.delivery_id = f.id
         ORDER BY a.attempt DESC, a.id DESC LIMIT 1) AS la_code
    FROM deliveries f WHERE f.status = 'failed') d";

/// `split_part(d.recipient, '@', 2)`: between the first `@` and the next (or the end); empty
/// without one.
const DOMAIN: &str = "CASE WHEN instr(d.recipient, '@') = 0 THEN '' ELSE
        substr(d.recipient, instr(d.recipient, '@') + 1,
               CASE WHEN instr(substr(d.recipient, instr(d.recipient, '@') + 1), '@') = 0
                    THEN length(d.recipient)
                    ELSE instr(substr(d.recipient, instr(d.recipient, '@') + 1), '@') - 1 END)
    END";

/// The failed set's filter over [`FAILED`], its values bound as `$1` to `$6`.
fn failed_where() -> String {
    format!(
        "($1 IS NULL OR d.kind = $1)
         AND ($2 IS NULL OR COALESCE(d.la_outcome, 'none') = $2)
         AND ($3 IS NULL OR d.provider = $3)
         AND ($4 IS NULL OR lower({DOMAIN}) = lower($4))
         AND ($5 IS NULL OR d.updated_at >= $5)
         AND ($6 IS NULL OR d.updated_at < $6)"
    )
}

type Args = <Sqlite as sqlx::Database>::Arguments;

fn bind_filter<'q, O>(
    q: QueryAs<'q, Sqlite, O, Args>,
    f: &'q FailedFilter,
) -> QueryAs<'q, Sqlite, O, Args> {
    q.bind(f.kind.as_deref())
        .bind(f.class.map(LastTry::as_str))
        .bind(f.provider.as_deref())
        .bind(f.domain.as_deref())
        .bind(f.since)
        .bind(f.until)
}

/// An instant as sqlx writes it to SQLite (and so as the columns hold it), for a JSON parameter.
fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, false)
}

impl Lite {
    pub async fn ui_outcomes(&self, now: DateTime<Utc>) -> sqlx::Result<Vec<OutcomeCount>> {
        sqlx::query_as(
            "SELECT kind, COALESCE(provider, '') AS provider, status,
                    count(*) FILTER (WHERE updated_at >= $1) AS last_hour,
                    count(*) AS last_day
             FROM deliveries
             WHERE status IN ('sent', 'failed') AND updated_at >= $2
             GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        )
        .bind(now - chrono::Duration::hours(1))
        .bind(now - chrono::Duration::days(1))
        .fetch_all(&self.reader)
        .await
    }

    /// Minute `k` holds the rows with `now - (k + 1) min < updated_at <= now - k min`, which is
    /// `floor((now - updated_at) / 60 s) = k`.
    pub async fn ui_throughput(&self, now: DateTime<Utc>) -> sqlx::Result<Vec<MinuteCount>> {
        let minute = chrono::Duration::minutes(1);
        let bounds: Vec<[String; 2]> = (0..60)
            .map(|k| [instant(now - minute * (k + 1)), instant(now - minute * k)])
            .collect();
        sqlx::query_as(
            "SELECT CAST(b.key AS INTEGER) AS minutes_ago, d.status, count(*) AS n
             FROM json_each($1) b JOIN deliveries d
               ON d.status IN ('sent', 'failed')
              AND d.updated_at > (b.value ->> 0) AND d.updated_at <= (b.value ->> 1)
             GROUP BY 1, 2",
        )
        .bind(json_list(&bounds))
        .fetch_all(&self.reader)
        .await
    }

    pub async fn ui_active(&self, now: DateTime<Utc>) -> sqlx::Result<ActiveCounts> {
        sqlx::query_as(crate::store::ui::ACTIVE_COUNTS)
            .bind(now)
            .fetch_one(&self.reader)
            .await
    }

    pub async fn ui_last_fire(&self, kind: &str) -> sqlx::Result<Option<FireCounts>> {
        sqlx::query_as(
            "WITH last AS (
                 SELECT max(planned_for) AS at FROM deliveries
                 WHERE kind = $1 AND dedup_key NOT GLOB 'manual:*'
             )
             SELECT last.at AS planned_for,
                    count(*) FILTER (WHERE d.status <> 'skipped') AS planned,
                    count(*) FILTER (WHERE d.status = 'skipped') AS skipped,
                    count(*) FILTER (WHERE d.status = 'sent') AS sent,
                    count(*) FILTER (WHERE d.status = 'failed') AS failed
             FROM last JOIN deliveries d
               ON d.kind = $1 AND d.planned_for = last.at AND d.dedup_key NOT GLOB 'manual:*'
             GROUP BY last.at",
        )
        .bind(kind)
        .fetch_optional(&self.reader)
        .await
    }

    pub async fn ui_opted_out(&self, kind: &str) -> sqlx::Result<i64> {
        sqlx::query_scalar("SELECT count(*) FROM email_opt_outs WHERE kind = $1")
            .bind(kind)
            .fetch_one(&self.reader)
            .await
    }

    pub async fn ui_failed(
        &self,
        f: &FailedFilter,
        limit: i64,
    ) -> sqlx::Result<(Vec<FailedRow>, i64)> {
        let filter = failed_where();
        let rows = bind_filter(
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT d.id, d.kind, d.user_id, d.recipient, d.provider, d.attempts, d.last_error,
                        d.la_outcome AS class, d.la_code AS code, d.updated_at
                 FROM {FAILED} WHERE {filter}
                 ORDER BY d.updated_at DESC, d.id DESC LIMIT $7"
            ))),
            f,
        )
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        let (total,): (i64,) = bind_filter(
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT count(*) FROM {FAILED} WHERE {filter}"
            ))),
            f,
        )
        .fetch_one(&self.reader)
        .await?;
        Ok((rows, total))
    }

    pub async fn ui_failed_facets(&self) -> sqlx::Result<Vec<(String, String)>> {
        sqlx::query_as(
            "SELECT DISTINCT 'kind', kind FROM deliveries WHERE status = 'failed'
             UNION SELECT DISTINCT 'provider', provider FROM deliveries
                   WHERE status = 'failed' AND provider IS NOT NULL
             UNION SELECT DISTINCT 'class', a.outcome FROM deliveries d
                   JOIN delivery_attempts a ON a.delivery_id = d.id
                   WHERE d.status = 'failed' AND a.outcome <> 'sent'
             ORDER BY 1, 2",
        )
        .fetch_all(&self.reader)
        .await
    }

    /// One transaction on the writer: the rows picked, oldest failure first, then queued
    /// `per_second` at a time, each group one second after the one before.
    pub async fn ui_retry_failed(
        &self,
        f: &FailedFilter,
        ids: Option<&[i64]>,
        start: DateTime<Utc>,
        per_second: u32,
    ) -> sqlx::Result<(i64, Option<DateTime<Utc>>)> {
        let ids = ids.map(json_list);
        let mut tx = self.writer.begin().await?;
        let picked: Vec<i64> = bind_filter(
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "SELECT d.id FROM {FAILED}
                 WHERE {} AND ($7 IS NULL OR d.id IN (SELECT value FROM json_each($7)))
                 ORDER BY d.updated_at, d.id",
                failed_where()
            ))),
            f,
        )
        .bind(ids.as_deref())
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .map(|(id,): (i64,)| id)
        .collect();
        let now = Utc::now();
        let (mut count, mut last) = (0, None);
        for (n, group) in picked.chunks(per_second.max(1) as usize).enumerate() {
            let due_at = start + chrono::Duration::seconds(n as i64);
            let done = sqlx::query(
                "UPDATE deliveries SET status = 'queued', round_attempts = 0,
                        dispatched_at = NULL, updated_at = $2, due_at = $3
                 WHERE id IN (SELECT value FROM json_each($1)) AND status = 'failed'",
            )
            .bind(json_list(group))
            .bind(now)
            .bind(due_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if done > 0 {
                count += done as i64;
                last = Some(due_at);
            }
        }
        tx.commit().await?;
        Ok((count, last))
    }

    /// Attempts go with their delivery (the foreign key cascades).
    pub async fn ui_purge_failed(
        &self,
        f: &FailedFilter,
        ids: Option<&[i64]>,
    ) -> sqlx::Result<i64> {
        let ids = ids.map(json_list);
        let gone: Vec<(i64,)> = bind_filter(
            sqlx::query_as(sqlx::AssertSqlSafe(format!(
                "DELETE FROM deliveries WHERE status = 'failed' AND id IN (
                     SELECT d.id FROM {FAILED}
                     WHERE {} AND ($7 IS NULL OR d.id IN (SELECT value FROM json_each($7))))
                 RETURNING id",
                failed_where()
            ))),
            f,
        )
        .bind(ids.as_deref())
        .fetch_all(&self.writer)
        .await?;
        Ok(gone.len() as i64)
    }

    pub async fn ui_search(&self, q: &str, limit: i64) -> sqlx::Result<Vec<DeliveryRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM deliveries
             WHERE user_id = $1 OR lower(recipient) = lower($1) OR dedup_key = $1
             ORDER BY planned_for DESC, id DESC LIMIT $2"
        )))
        .bind(q)
        .bind(limit)
        .fetch_all(&self.reader)
        .await
    }

    pub async fn ui_delivery(&self, id: i64) -> sqlx::Result<Option<DeliveryDetail>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, payload FROM deliveries WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.reader)
        .await
    }
}
