//! What `/metrics` reads at scrape time: deliveries by state, and every schedule's watermark.
//! Each count matches a partial index of `deliveries`, so a scrape stays cheap on a big table.

use super::*;

/// Deliveries by state, as the metrics' gauges show them.
#[derive(Debug, Clone, Copy, Default, sqlx::FromRow)]
pub struct DeliveryGauges {
    /// Queued, due, not yet pushed to Redis.
    pub due: i64,
    /// Queued and due later (a retry, a provider's wait, a spread).
    pub waiting: i64,
    /// Queued and pushed to Redis, not yet claimed.
    pub dispatched: i64,
    /// Being sent.
    pub in_flight: i64,
    /// The failed set.
    pub failed: i64,
}

impl Store {
    /// The deliveries' gauges at `now`.
    pub async fn delivery_gauges(&self, now: DateTime<Utc>) -> sqlx::Result<DeliveryGauges> {
        let pool = pg_or!(self, lite => lite.delivery_gauges(now).await);
        sqlx::query_as(
            "SELECT
                 (SELECT count(*) FROM deliveries
                  WHERE status = 'queued' AND dispatched_at IS NULL AND due_at <= $1) AS due,
                 (SELECT count(*) FROM deliveries
                  WHERE status = 'queued' AND dispatched_at IS NULL AND due_at > $1) AS waiting,
                 (SELECT count(*) FROM deliveries
                  WHERE status = 'queued' AND dispatched_at IS NOT NULL) AS dispatched,
                 (SELECT count(*) FROM deliveries WHERE status = 'sending') AS in_flight,
                 (SELECT count(*) FROM deliveries WHERE status = 'failed') AS failed",
        )
        .bind(now)
        .fetch_one(pool)
        .await
    }

    /// Every schedule's watermark.
    pub async fn watermarks(&self) -> sqlx::Result<Vec<(String, DateTime<Utc>)>> {
        let pool = pg_or!(self, lite => lite.watermarks().await);
        sqlx::query_as("SELECT schedule, planned_up_to FROM schedule_watermarks ORDER BY schedule")
            .fetch_all(pool)
            .await
    }
}
