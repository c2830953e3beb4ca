//! The suppression list and the provider's events in the state file: the SQLite side of
//! `store/suppressions.rs`. Addresses are lowercased in Rust before they are bound (SQLite's
//! `lower` folds ASCII only), as `suppressed_among` does on both sides.

use std::collections::HashSet;

use chrono::{DateTime, Utc};

use super::{Lite, json_list};
use crate::store::{EventRow, NewEvent, Rates, Suppression, clean_opt, clean_text};

const SUPPRESSION_COLUMNS: &str = "address, reason, event, detail, delivery_id, created_at";

impl Lite {
    /// The payload must be JSON, as PostgreSQL's `json` column checks; it is kept as received.
    pub async fn record_event(&self, e: &NewEvent<'_>) -> sqlx::Result<Option<Option<i64>>> {
        serde_json::from_str::<serde::de::IgnoredAny>(e.payload)
            .map_err(|err| sqlx::Error::Encode(format!("the event is not JSON: {err}").into()))?;
        sqlx::query_scalar(
            "INSERT INTO webhook_events (svix_id, type, provider_id, delivery_id, payload, received_at)
             VALUES ($1, $2, $3,
                     (SELECT id FROM deliveries WHERE provider_id = $3 ORDER BY id DESC LIMIT 1),
                     $4, $5)
             ON CONFLICT (svix_id) DO NOTHING
             RETURNING delivery_id",
        )
        .bind(clean_text(e.svix_id))
        .bind(clean_text(e.kind))
        .bind(clean_opt(e.provider_id))
        .bind(e.payload)
        .bind(Utc::now())
        .fetch_optional(&self.writer)
        .await
    }

    pub async fn events(&self, delivery_id: i64) -> sqlx::Result<Vec<EventRow>> {
        sqlx::query_as(
            "SELECT svix_id, type, received_at FROM webhook_events
             WHERE delivery_id = $1 ORDER BY received_at, svix_id",
        )
        .bind(delivery_id)
        .fetch_all(&self.reader)
        .await
    }

    pub async fn suppress(
        &self,
        address: &str,
        reason: &str,
        event: &str,
        detail: Option<&str>,
        delivery_id: Option<i64>,
    ) -> sqlx::Result<bool> {
        let done = sqlx::query(
            "INSERT INTO suppressions (address, reason, event, detail, delivery_id, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (address) DO NOTHING",
        )
        .bind(address.to_lowercase())
        .bind(reason)
        .bind(event)
        .bind(detail.map(clean_text))
        .bind(delivery_id)
        .bind(Utc::now())
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn suppressed_among(&self, addresses: &[String]) -> sqlx::Result<HashSet<String>> {
        if addresses.is_empty() {
            return Ok(HashSet::new());
        }
        let lower: Vec<String> = addresses.iter().map(|a| a.to_lowercase()).collect();
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT address FROM suppressions WHERE address IN (SELECT value FROM json_each($1))",
        )
        .bind(json_list(&lower))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().collect())
    }

    pub async fn suppressions(&self, limit: i64) -> sqlx::Result<Vec<Suppression>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SUPPRESSION_COLUMNS} FROM suppressions
             ORDER BY created_at DESC, address LIMIT $1"
        )))
        .bind(limit)
        .fetch_all(&self.reader)
        .await
    }

    pub async fn suppression(&self, address: &str) -> sqlx::Result<Option<Suppression>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SUPPRESSION_COLUMNS} FROM suppressions WHERE address = $1"
        )))
        .bind(address.to_lowercase())
        .fetch_optional(&self.reader)
        .await
    }

    pub async fn suppression_rates(&self, since: DateTime<Utc>) -> sqlx::Result<Rates> {
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM deliveries WHERE status = 'sent' AND updated_at >= $1) AS sent,
                    (SELECT count(*) FROM suppressions WHERE reason = 'bounced' AND created_at >= $1) AS bounced,
                    (SELECT count(*) FROM suppressions WHERE reason = 'complained' AND created_at >= $1) AS complained",
        )
        .bind(since)
        .fetch_one(&self.reader)
        .await
    }

    pub async fn lift_suppression(&self, address: &str) -> sqlx::Result<bool> {
        let done = sqlx::query("DELETE FROM suppressions WHERE address = $1")
            .bind(address.to_lowercase())
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
