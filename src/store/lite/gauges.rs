//! What `/metrics` reads at scrape time, from the state file: the SQLite side of
//! `store/gauges.rs`.

use chrono::{DateTime, Utc};

use super::Lite;
use crate::store::DeliveryGauges;

impl Lite {
    pub async fn delivery_gauges(&self, now: DateTime<Utc>) -> sqlx::Result<DeliveryGauges> {
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
        .fetch_one(&self.reader)
        .await
    }

    pub async fn watermarks(&self) -> sqlx::Result<Vec<(String, DateTime<Utc>)>> {
        sqlx::query_as("SELECT schedule, planned_up_to FROM schedule_watermarks ORDER BY schedule")
            .fetch_all(&self.reader)
            .await
    }
}
