//! Retention: deleting finished deliveries (and, by cascade, their attempts) once they are old,
//! and the provider's events kept as long as sent deliveries.

use super::*;

/// Deliveries in each final status last changed before these instants are expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    pub sent: DateTime<Utc>,
    pub failed: DateTime<Utc>,
    pub skipped: DateTime<Utc>,
}

/// How many deliveries a pass deleted, by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Deleted {
    pub sent: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Provider events (webhooks) received before the cut-off of sent deliveries.
    pub events: u64,
}

impl Deleted {
    pub fn total(&self) -> u64 {
        self.sent + self.failed + self.skipped + self.events
    }
}

impl Store {
    /// One retention pass: deletes every expired delivery, `batch` rows per statement, each
    /// statement its own short transaction, so no lock is held for long. Attempts go with their
    /// delivery (`ON DELETE CASCADE`). Several processes may run passes at once: rows another
    /// pass has locked are skipped.
    pub async fn delete_expired(&self, before: &Cutoffs, batch: i64) -> sqlx::Result<Deleted> {
        Ok(Deleted {
            sent: self
                .delete_all_expired(DeliveryStatus::Sent, before.sent, batch)
                .await?,
            failed: self
                .delete_all_expired(DeliveryStatus::Failed, before.failed, batch)
                .await?,
            skipped: self
                .delete_all_expired(DeliveryStatus::Skipped, before.skipped, batch)
                .await?,
            events: self.delete_old_events(before.sent, batch).await?,
        })
    }

    /// Deletes the webhook events received before `before`, `batch` per statement.
    async fn delete_old_events(&self, before: DateTime<Utc>, batch: i64) -> sqlx::Result<u64> {
        let mut total = 0;
        loop {
            let n = sqlx::query(
                "DELETE FROM webhook_events WHERE svix_id IN (
                     SELECT svix_id FROM webhook_events WHERE received_at < $1 LIMIT $2
                     FOR UPDATE SKIP LOCKED)",
            )
            .bind(before)
            .bind(batch.max(1))
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += n;
            if n < batch.max(1) as u64 {
                return Ok(total);
            }
        }
    }

    async fn delete_all_expired(
        &self,
        status: DeliveryStatus,
        before: DateTime<Utc>,
        batch: i64,
    ) -> sqlx::Result<u64> {
        let mut total = 0;
        loop {
            let n = self.delete_expired_batch(status, before, batch).await?;
            total += n;
            if n < batch.max(1) as u64 {
                return Ok(total);
            }
        }
    }

    /// Deletes up to `limit` deliveries in `status` last changed before `before`.
    async fn delete_expired_batch(
        &self,
        status: DeliveryStatus,
        before: DateTime<Utc>,
        limit: i64,
    ) -> sqlx::Result<u64> {
        // The status is written into the statement, not bound: only a literal lets PostgreSQL
        // match the partial index of that status (0005_retention.sql) in a prepared statement.
        let status = status.as_str();
        Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM deliveries WHERE id IN (
                 SELECT id FROM deliveries
                 WHERE status = '{status}' AND updated_at < $1
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED)"
        )))
        .bind(before)
        .bind(limit.max(1))
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
