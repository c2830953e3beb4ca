//! Retention in the state file: the SQLite side of `store/retention.rs`. Each statement is its
//! own short transaction on the writer, so the workers' outcomes wait at most one batch.

use chrono::{DateTime, Utc};

use super::Lite;
use crate::store::DeliveryStatus;

impl Lite {
    pub async fn prune_payloads(&self, before: DateTime<Utc>, batch: i64) -> sqlx::Result<u64> {
        const MARK: &str = "payloads";
        let from: DateTime<Utc> =
            sqlx::query_scalar("SELECT up_to FROM housekeeping_marks WHERE name = $1")
                .bind(MARK)
                .fetch_optional(&self.writer)
                .await?
                // No delivery is older than that.
                .unwrap_or(DateTime::UNIX_EPOCH);
        if from >= before {
            return Ok(0);
        }
        let mut total = 0;
        for status in [DeliveryStatus::Sent, DeliveryStatus::Skipped] {
            let mut low = from;
            loop {
                let changed: Vec<DateTime<Utc>> = sqlx::query_scalar(
                    "UPDATE deliveries SET payload = NULL WHERE id IN (
                         SELECT id FROM deliveries
                         WHERE status = $4 AND updated_at >= $1 AND updated_at < $2
                           AND payload IS NOT NULL
                         ORDER BY updated_at
                         LIMIT $3)
                     RETURNING updated_at",
                )
                .bind(low)
                .bind(before)
                .bind(batch.max(1))
                .bind(status)
                .fetch_all(&self.writer)
                .await?;
                total += changed.len() as u64;
                if (changed.len() as i64) < batch.max(1) {
                    break;
                }
                // The next statement starts at the newest row changed: rows before it are done.
                low = changed.into_iter().max().unwrap_or(before);
            }
        }
        sqlx::query(
            "INSERT INTO housekeeping_marks (name, up_to) VALUES ($1, $2)
             ON CONFLICT (name) DO UPDATE SET up_to = max(housekeeping_marks.up_to, $2)",
        )
        .bind(MARK)
        .bind(before)
        .execute(&self.writer)
        .await?;
        Ok(total)
    }

    pub async fn delete_old_events(&self, before: DateTime<Utc>, batch: i64) -> sqlx::Result<u64> {
        let mut total = 0;
        loop {
            let n = sqlx::query(
                "DELETE FROM webhook_events WHERE svix_id IN (
                     SELECT svix_id FROM webhook_events WHERE received_at < $1 LIMIT $2)",
            )
            .bind(before)
            .bind(batch.max(1))
            .execute(&self.writer)
            .await?
            .rows_affected();
            total += n;
            if n < batch.max(1) as u64 {
                return Ok(total);
            }
        }
    }

    /// Attempts go with their delivery: the connections enforce foreign keys, and
    /// `delivery_attempts` cascades.
    pub async fn delete_expired_batch(
        &self,
        status: DeliveryStatus,
        before: DateTime<Utc>,
        limit: i64,
    ) -> sqlx::Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM deliveries WHERE id IN (
                 SELECT id FROM deliveries WHERE status = $1 AND updated_at < $2 LIMIT $3)",
        )
        .bind(status)
        .bind(before)
        .bind(limit.max(1))
        .execute(&self.writer)
        .await?
        .rows_affected())
    }
}
