//! The suppression list and the provider's events: what comes back after an email was sent.
//! A hard bounce or a complaint suppresses the address; the planner and the claim skip it; an
//! operator lists, inspects and lifts suppressions (CLI, API).

use std::collections::HashSet;

use super::*;

/// One suppressed address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Suppression {
    pub address: String,
    /// `bounced` or `complained`.
    pub reason: String,
    /// What said so first: `email.bounced`, `email.complained`, or `smtp 550 5.1.1`.
    pub event: String,
    pub detail: Option<String>,
    pub delivery_id: Option<i64>,
    pub created_at: DateTime<Utc>,
}

/// Sent emails and new suppressions over a window.
#[derive(Debug, Clone, Copy, sqlx::FromRow)]
pub struct Rates {
    pub sent: i64,
    pub bounced: i64,
    pub complained: i64,
}

/// A verified provider event, as received.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub svix_id: &'a str,
    pub kind: &'a str,
    pub provider_id: Option<&'a str>,
    pub payload: &'a str,
}

/// One event of a delivery, for the operator.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct EventRow {
    pub svix_id: String,
    #[sqlx(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    pub received_at: DateTime<Utc>,
}

impl Store {
    /// Records an event once: `None` when its id was seen before (a replay), else the delivery
    /// it belongs to, found by the provider's id (`None` inside when none is known).
    pub async fn record_event(&self, e: &NewEvent<'_>) -> sqlx::Result<Option<Option<i64>>> {
        let pool = pg_or!(self, lite => lite.record_event(e).await);
        let inserted: Option<Option<i64>> = sqlx::query_scalar(
            "INSERT INTO webhook_events (svix_id, type, provider_id, delivery_id, payload)
             VALUES ($1, $2, $3,
                     (SELECT id FROM deliveries WHERE provider_id = $3 ORDER BY id DESC LIMIT 1),
                     $4::json)
             ON CONFLICT (svix_id) DO NOTHING
             RETURNING delivery_id",
        )
        .bind(clean_text(e.svix_id))
        .bind(clean_text(e.kind))
        .bind(clean_opt(e.provider_id))
        .bind(e.payload)
        .fetch_optional(pool)
        .await?;
        Ok(inserted)
    }

    /// The events of one delivery, oldest first.
    pub async fn events(&self, delivery_id: i64) -> sqlx::Result<Vec<EventRow>> {
        let pool = pg_or!(self, lite => lite.events(delivery_id).await);
        sqlx::query_as(
            "SELECT svix_id, type, received_at FROM webhook_events
             WHERE delivery_id = $1 ORDER BY received_at, svix_id",
        )
        .bind(delivery_id)
        .fetch_all(pool)
        .await
    }

    /// Suppresses `address` (the first reason stays). Returns whether it is new.
    pub async fn suppress(
        &self,
        address: &str,
        reason: &str,
        event: &str,
        detail: Option<&str>,
        delivery_id: Option<i64>,
    ) -> sqlx::Result<bool> {
        let pool =
            pg_or!(self, lite => lite.suppress(address, reason, event, detail, delivery_id).await);
        let done = sqlx::query(
            "INSERT INTO suppressions (address, reason, event, detail, delivery_id)
             VALUES (lower($1), $2, $3, $4, $5) ON CONFLICT (address) DO NOTHING",
        )
        .bind(address)
        .bind(reason)
        .bind(event)
        .bind(detail.map(clean_text))
        .bind(delivery_id)
        .execute(pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The addresses among `addresses` that are suppressed (compared lowercased).
    pub async fn suppressed_among(&self, addresses: &[String]) -> sqlx::Result<HashSet<String>> {
        let pool = pg_or!(self, lite => lite.suppressed_among(addresses).await);
        if addresses.is_empty() {
            return Ok(HashSet::new());
        }
        let lower: Vec<String> = addresses.iter().map(|a| a.to_lowercase()).collect();
        let rows: Vec<String> =
            sqlx::query_scalar("SELECT address FROM suppressions WHERE address = ANY($1)")
                .bind(&lower)
                .fetch_all(pool)
                .await?;
        Ok(rows.into_iter().collect())
    }

    /// Suppressions, newest first.
    pub async fn suppressions(&self, limit: i64) -> sqlx::Result<Vec<Suppression>> {
        let pool = pg_or!(self, lite => lite.suppressions(limit).await);
        sqlx::query_as("SELECT * FROM suppressions ORDER BY created_at DESC, address LIMIT $1")
            .bind(limit)
            .fetch_all(pool)
            .await
    }

    /// One suppression.
    pub async fn suppression(&self, address: &str) -> sqlx::Result<Option<Suppression>> {
        let pool = pg_or!(self, lite => lite.suppression(address).await);
        sqlx::query_as("SELECT * FROM suppressions WHERE address = lower($1)")
            .bind(address)
            .fetch_optional(pool)
            .await
    }

    /// Emails sent since `since`, and addresses suppressed since then for a bounce and for a
    /// complaint: the dashboard's rates. A sent row's `updated_at` is when it was recorded sent,
    /// which the sent rows' partial index (0005_retention.sql) covers.
    pub async fn suppression_rates(&self, since: DateTime<Utc>) -> sqlx::Result<Rates> {
        let pool = pg_or!(self, lite => lite.suppression_rates(since).await);
        sqlx::query_as(
            "SELECT (SELECT count(*) FROM deliveries WHERE status = 'sent' AND updated_at >= $1) AS sent,
                    (SELECT count(*) FROM suppressions WHERE reason = 'bounced' AND created_at >= $1) AS bounced,
                    (SELECT count(*) FROM suppressions WHERE reason = 'complained' AND created_at >= $1) AS complained",
        )
        .bind(since)
        .fetch_one(pool)
        .await
    }

    /// Lifts a suppression: the address gets email again. Returns whether there was one.
    pub async fn lift_suppression(&self, address: &str) -> sqlx::Result<bool> {
        let pool = pg_or!(self, lite => lite.lift_suppression(address).await);
        let done = sqlx::query("DELETE FROM suppressions WHERE address = lower($1)")
            .bind(address)
            .execute(pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}
