//! Retention: deleting finished deliveries (and, by cascade, their attempts) once they are old,
//! the provider's events kept as long as sent deliveries, and the payloads of sent and skipped
//! deliveries removed once no retry or rendering needs them.

use super::*;

/// Deliveries in each final status last changed before these instants are expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cutoffs {
    pub sent: DateTime<Utc>,
    pub failed: DateTime<Utc>,
    pub skipped: DateTime<Utc>,
    /// Sent and skipped deliveries last changed before this lose their payload.
    pub payload: DateTime<Utc>,
}

/// How many deliveries a pass deleted, by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Deleted {
    pub sent: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Provider events (webhooks) received before the cut-off of sent deliveries.
    pub events: u64,
    /// Sent or skipped deliveries whose payload was removed (their record stays).
    pub payloads: u64,
}

impl Deleted {
    pub fn total(&self) -> u64 {
        self.sent + self.failed + self.skipped + self.events + self.payloads
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
            payloads: self.prune_payloads(before.payload, batch).await?,
        })
    }

    /// Removes the payload of every sent or skipped delivery last changed before `before`,
    /// `batch` rows per statement, from where the last complete pass stopped (the `payloads`
    /// mark), so that a pass reads only the rows it changes. The update leaves every indexed
    /// column as it is, so PostgreSQL writes the new row version in place (a HOT update) and no
    /// index grows. A row another pass or a webhook holds at that moment is skipped and keeps
    /// its payload until the row itself expires.
    pub async fn prune_payloads(&self, before: DateTime<Utc>, batch: i64) -> sqlx::Result<u64> {
        let pool = pg_or!(self, lite => lite.prune_payloads(before, batch).await);
        const MARK: &str = "payloads";
        let from: DateTime<Utc> =
            sqlx::query_scalar("SELECT up_to FROM housekeeping_marks WHERE name = $1")
                .bind(MARK)
                .fetch_optional(pool)
                .await?
                // No delivery is older than that.
                .unwrap_or(DateTime::UNIX_EPOCH);
        if from >= before {
            return Ok(0);
        }
        let mut total = 0;
        for status in [DeliveryStatus::Sent, DeliveryStatus::Skipped] {
            // A literal status, as in `delete_expired_batch`, to use that status's index.
            let status = status.as_str();
            let mut low = from;
            loop {
                let changed: Vec<DateTime<Utc>> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
                    "UPDATE deliveries SET payload = NULL WHERE id IN (
                         SELECT id FROM deliveries
                         WHERE status = '{status}' AND updated_at >= $1 AND updated_at < $2
                           AND payload IS NOT NULL
                         ORDER BY updated_at
                         LIMIT $3
                         FOR UPDATE SKIP LOCKED)
                     RETURNING updated_at"
                )))
                .bind(low)
                .bind(before)
                .bind(batch.max(1))
                .fetch_all(pool)
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
             ON CONFLICT (name) DO UPDATE SET up_to = GREATEST(housekeeping_marks.up_to, $2)",
        )
        .bind(MARK)
        .bind(before)
        .execute(pool)
        .await?;
        Ok(total)
    }

    /// Deletes the webhook events received before `before`, `batch` per statement.
    async fn delete_old_events(&self, before: DateTime<Utc>, batch: i64) -> sqlx::Result<u64> {
        let pool = pg_or!(self, lite => lite.delete_old_events(before, batch).await);
        let mut total = 0;
        loop {
            let n = sqlx::query(
                "DELETE FROM webhook_events WHERE svix_id IN (
                     SELECT svix_id FROM webhook_events WHERE received_at < $1 LIMIT $2
                     FOR UPDATE SKIP LOCKED)",
            )
            .bind(before)
            .bind(batch.max(1))
            .execute(pool)
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
        let pool = pg_or!(self, lite => lite.delete_expired_batch(status, before, limit).await);
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
        .execute(pool)
        .await?
        .rows_affected())
    }
}
