//! Deliveries from dispatch to outcome in the state file: the SQLite side of
//! `store/deliveries.rs`, function for function (the promises are written there).
//!
//! Where PostgreSQL needs one statement per step (a round trip each, and `SKIP LOCKED` between
//! processes), a step here is one transaction on the one writer: no other writer can come
//! between its reads and its writes. Steps over many rows still write them set by set
//! (`json_each` lists, multi-row `VALUES`): each statement is a round trip between the task
//! and the writer's thread, which row by row cost more than the writes themselves.

use std::{collections::HashMap, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::{Lite, json_list};
use crate::store::{
    AttemptRow, Claimed, DeliveryRow, DeliveryStatus, Recording, capped_reason, clean_opt,
    clean_text,
};

const DELIVERY_COLUMNS: &str = "id, kind, user_id, dedup_key, status, recipient, attempts, last_error, \
     provider, message_id, provider_id, planned_for, due_at, sent_at, updated_at";

/// Rows per multi-row statement: 10 parameters each stay far under SQLite's 32,766.
///
/// Such a statement has as many shapes as there are group sizes, and each compiled shape of a
/// few hundred rows is large: kept in the connection's statement cache (a hundred of them),
/// they raised the embedded daemon's peak memory by 15 MB. They are run unprepared
/// (`persistent(false)`): compiled for the one use, then freed.
pub(super) const ROWS_PER_STATEMENT: usize = 100;

/// `now` plus a lease or minus an age, for the columns that live on real time.
fn after(now: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    now + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

impl Lite {
    // ----- the dispatcher -----

    pub async fn take_due(&self, limit: i64, now: DateTime<Utc>) -> sqlx::Result<Vec<i64>> {
        sqlx::query_scalar(
            "UPDATE deliveries SET dispatched_at = $3, updated_at = $3
             WHERE id IN (
                 SELECT id FROM deliveries
                 WHERE status = 'queued' AND dispatched_at IS NULL AND due_at <= $2
                 ORDER BY due_at
                 LIMIT $1)
             RETURNING id",
        )
        .bind(limit)
        .bind(now)
        .bind(Utc::now())
        .fetch_all(&self.writer)
        .await
    }

    pub async fn next_due(&self) -> sqlx::Result<Option<DateTime<Utc>>> {
        sqlx::query_scalar(
            "SELECT min(due_at) FROM deliveries WHERE status = 'queued' AND dispatched_at IS NULL",
        )
        .fetch_one(&self.reader)
        .await
    }

    pub async fn untake(&self, ids: &[i64]) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE deliveries SET dispatched_at = NULL
             WHERE id IN (SELECT value FROM json_each($1)) AND status = 'queued'",
        )
        .bind(json_list(ids))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn redispatch_all(&self) -> sqlx::Result<u64> {
        Ok(sqlx::query(
            "UPDATE deliveries SET dispatched_at = NULL, updated_at = $1
             WHERE status = 'queued' AND dispatched_at IS NOT NULL",
        )
        .bind(Utc::now())
        .execute(&self.writer)
        .await?
        .rows_affected())
    }

    pub async fn recover(
        &self,
        redispatch_after: Duration,
        now: DateTime<Utc>,
    ) -> sqlx::Result<(u64, u64)> {
        let real = Utc::now();
        let leases = sqlx::query(
            "UPDATE deliveries SET status = 'queued', dispatched_at = NULL, lease_until = NULL,
                    claim_token = NULL, due_at = min(due_at, $1), updated_at = $2
             WHERE status = 'sending' AND lease_until < $2",
        )
        .bind(now)
        .bind(real)
        .execute(&self.writer)
        .await?
        .rows_affected();
        let stale = sqlx::query(
            "UPDATE deliveries SET dispatched_at = NULL, updated_at = $1
             WHERE status = 'queued' AND dispatched_at < $2",
        )
        .bind(real)
        .bind(real - chrono::Duration::from_std(redispatch_after).unwrap_or_default())
        .execute(&self.writer)
        .await?
        .rows_affected();
        Ok((leases, stale))
    }

    pub async fn release_claims_of(&self, workers: &[String]) -> sqlx::Result<u64> {
        if workers.is_empty() {
            return Ok(0);
        }
        Ok(sqlx::query(
            "UPDATE deliveries SET status = 'queued', dispatched_at = NULL, lease_until = NULL,
                    claim_token = NULL, claimed_by = NULL, updated_at = $2
             WHERE status = 'sending' AND claimed_by IN (SELECT value FROM json_each($1))",
        )
        .bind(json_list(workers))
        .bind(Utc::now())
        .execute(&self.writer)
        .await?
        .rows_affected())
    }

    // ----- the worker -----

    pub async fn claim_many(
        &self,
        ids: &[i64],
        lease: Duration,
        message_id_domain: &str,
        max_attempts: i32,
        now: DateTime<Utc>,
        claimed_by: Option<&str>,
    ) -> sqlx::Result<(Vec<Claimed>, Vec<Claimed>)> {
        let token = uuid::Uuid::new_v4();
        let real = Utc::now();
        let mut tx = self.writer.begin().await?;
        // The job's rows that are queued and due, and every queued member of their batches.
        let before: Vec<(i64, Option<String>, bool)> = sqlx::query_as(
            "WITH asked AS (
                 SELECT id, batch_key FROM deliveries
                 WHERE id IN (SELECT value FROM json_each($1)) AND status = 'queued' AND due_at <= $2
             )
             SELECT id, batch_key, round_attempts >= $3 FROM deliveries
             WHERE id IN (SELECT id FROM asked)
                OR (status = 'queued'
                    AND batch_key IN (SELECT batch_key FROM asked WHERE batch_key IS NOT NULL))",
        )
        .bind(json_list(ids))
        .bind(now)
        .bind(max_attempts)
        .fetch_all(&mut *tx)
        .await?;
        if before.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let all: Vec<i64> = before.iter().map(|r| r.0).collect();
        sqlx::query(
            "UPDATE deliveries
             SET status = CASE WHEN round_attempts >= $2 THEN 'failed' ELSE 'sending' END,
                 attempts = attempts + CASE WHEN round_attempts >= $2 THEN 0 ELSE 1 END,
                 lease_until = CASE WHEN round_attempts >= $2 THEN NULL ELSE $3 END,
                 dispatched_at = NULL,
                 claim_token = CASE WHEN round_attempts >= $2 THEN NULL ELSE $4 END,
                 claimed_by = CASE WHEN round_attempts >= $2 THEN NULL ELSE $5 END,
                 last_error = CASE WHEN round_attempts >= $2 THEN $6 ELSE last_error END,
                 batch_key = CASE WHEN round_attempts >= $2 THEN NULL ELSE batch_key END,
                 message_id = COALESCE(message_id,
                     '<' || id || '.' || lower(hex(randomblob(16))) || '@' || $7 || '>'),
                 round_attempts = round_attempts + CASE WHEN round_attempts >= $2 THEN 0 ELSE 1 END,
                 updated_at = $8
             WHERE id IN (SELECT value FROM json_each($1))",
        )
        .bind(json_list(&all))
        .bind(max_attempts)
        .bind(after(real, lease))
        .bind(token)
        .bind(claimed_by)
        .bind(capped_reason(max_attempts))
        .bind(message_id_domain)
        .bind(real)
        .execute(&mut *tx)
        .await?;
        let mut rows: Vec<Claimed> = sqlx::query_as(
            "SELECT d.id, $2 AS claim_token, kind, user_id, created_at, dedup_key, recipient,
                    payload, attempts, round_attempts, message_id, batch_key, held_by, due_at,
                    0 AS over_cap,
                    (SELECT b.size FROM batches b WHERE b.key = d.batch_key) AS batch_size,
                    EXISTS (SELECT 1 FROM email_opt_outs o
                            WHERE o.user_id = d.user_id AND o.kind = d.kind) AS opted_out,
                    EXISTS (SELECT 1 FROM suppressions s
                            WHERE s.address = lower(d.recipient)) AS suppressed
             FROM deliveries d WHERE d.id IN (SELECT value FROM json_each($1)) ORDER BY d.id",
        )
        .bind(json_list(&all))
        .bind(token)
        .fetch_all(&mut *tx)
        .await?;
        // What the rows were before: a capped row's batch (the update cleared it) and its cap.
        let before: HashMap<i64, (Option<String>, bool)> =
            before.into_iter().map(|(id, b, c)| (id, (b, c))).collect();
        for r in &mut rows {
            let (batch, capped) = before[&r.id].clone();
            r.batch_key = batch;
            r.over_cap = capped;
        }
        let (capped, claimed): (Vec<Claimed>, Vec<Claimed>) =
            rows.into_iter().partition(|r| r.over_cap);
        let left: Vec<String> = capped.iter().filter_map(|r| r.batch_key.clone()).collect();
        delete_empty_batches(&mut tx, &left).await?;
        tx.commit().await?;
        Ok((claimed, capped))
    }

    pub async fn batch_live_members(&self, key: &str) -> sqlx::Result<(i64, Option<i64>)> {
        sqlx::query_as(
            "SELECT count(*), min(id) FROM deliveries
             WHERE batch_key = $1 AND status IN ('queued', 'sending')",
        )
        .bind(key)
        .fetch_one(&self.reader)
        .await
    }

    pub async fn start_batch(
        &self,
        key: &str,
        provider: &str,
        members: &[(i64, uuid::Uuid)],
    ) -> sqlx::Result<bool> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("INSERT INTO batches (key, provider, size) VALUES ($1, $2, $3)")
            .bind(key)
            .bind(provider)
            .bind(members.len() as i32)
            .execute(&mut *tx)
            .await?;
        let mut old = Vec::new();
        for (id, token) in members {
            let was: Option<Option<String>> = sqlx::query_scalar(
                "SELECT batch_key FROM deliveries
                 WHERE id = $1 AND claim_token = $2 AND status = 'sending'",
            )
            .bind(id)
            .bind(token)
            .fetch_optional(&mut *tx)
            .await?;
            match was {
                // Taken over: write nothing (the transaction rolls back when dropped).
                None => return Ok(false),
                Some(was) => old.extend(was),
            }
            sqlx::query("UPDATE deliveries SET batch_key = $2 WHERE id = $1")
                .bind(id)
                .bind(key)
                .execute(&mut *tx)
                .await?;
        }
        delete_empty_batches(&mut tx, &old).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn renew(
        &self,
        claims: &[(i64, uuid::Uuid)],
        lease: Duration,
    ) -> sqlx::Result<Vec<i64>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        let until = after(Utc::now(), lease);
        let mut tx = self.writer.begin().await?;
        let mut renewed = Vec::with_capacity(claims.len());
        for (id, token) in claims {
            let done = sqlx::query(
                "UPDATE deliveries SET lease_until = $3
                 WHERE id = $1 AND claim_token = $2 AND status = 'sending'",
            )
            .bind(id)
            .bind(token)
            .bind(until)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                renewed.push(*id);
            }
        }
        tx.commit().await?;
        Ok(renewed)
    }

    pub async fn skip_claimed(
        &self,
        id: i64,
        token: uuid::Uuid,
        reason: &str,
    ) -> sqlx::Result<bool> {
        let mut tx = self.writer.begin().await?;
        let batch: Option<Option<String>> = sqlx::query_scalar(
            "SELECT batch_key FROM deliveries WHERE id = $1 AND status = 'sending' AND claim_token = $2",
        )
        .bind(id)
        .bind(token)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(batch) = batch else {
            return Ok(false);
        };
        sqlx::query(
            "UPDATE deliveries
             SET status = 'skipped', last_error = $2, attempts = attempts - 1,
                 round_attempts = round_attempts - 1, lease_until = NULL, claim_token = NULL,
                 dispatched_at = NULL, batch_key = NULL, updated_at = $3
             WHERE id = $1",
        )
        .bind(id)
        .bind(reason)
        .bind(Utc::now())
        .execute(&mut *tx)
        .await?;
        if let Some(key) = batch {
            delete_empty_batches(&mut tx, &[key]).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Three statements for the whole group, whatever its size: the batches the rows were in,
    /// the update of the rows still ours (their claim, or a `sent` for a row given back and not
    /// claimed since) with their outcomes, and their tries. Row by row, a group of a hundred
    /// was three hundred statements, each a round trip to the writer's thread.
    pub async fn record_many(&self, rows: &[Recording]) -> sqlx::Result<Vec<bool>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let real = Utc::now();
        let mut tx = self.writer.begin().await?;
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let batches: HashMap<i64, String> = sqlx::query_as(
            "SELECT id, batch_key FROM deliveries
             WHERE id IN (SELECT value FROM json_each($1)) AND batch_key IS NOT NULL",
        )
        .bind(json_list(&ids))
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let mut done = std::collections::HashSet::new();
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut update = QueryBuilder::<Sqlite>::new(
                "WITH r (id, token, status, due_at, give_back, untried, last_error, provider,
                         provider_id, held_by) AS (",
            );
            update.push_values(chunk, |mut row, r| {
                row.push_bind(r.id)
                    .push_bind(r.claim_token)
                    .push_bind(r.status)
                    .push_bind(r.due_at)
                    .push_bind(i32::from(r.give_back))
                    .push_bind(i32::from(r.untried))
                    .push_bind(clean_opt(r.last_error.as_deref()))
                    .push_bind(clean_opt(r.provider.as_deref()))
                    .push_bind(clean_opt(r.provider_id.as_deref()))
                    .push_bind(clean_opt(r.held_by.as_deref()));
            });
            update
                .push(
                    ")
                 UPDATE deliveries
                 SET status = r.status, due_at = COALESCE(r.due_at, deliveries.due_at),
                     lease_until = NULL, dispatched_at = NULL, claim_token = NULL,
                     round_attempts = deliveries.round_attempts - r.give_back,
                     attempts = deliveries.attempts - r.untried,
                     last_error = CASE WHEN r.status = 'sent' THEN NULL
                                       ELSE COALESCE(r.last_error, deliveries.last_error) END,
                     provider = COALESCE(r.provider, deliveries.provider),
                     provider_id = COALESCE(r.provider_id, deliveries.provider_id),
                     batch_key = CASE WHEN r.status = 'queued' THEN deliveries.batch_key END,
                     held_by = CASE WHEN r.status = 'sent' THEN NULL
                                    ELSE COALESCE(r.held_by, deliveries.held_by) END,
                     sent_at = CASE WHEN r.status = 'sent' THEN ",
                )
                .push_bind(real)
                .push(" ELSE deliveries.sent_at END, updated_at = ")
                .push_bind(real)
                .push(
                    " FROM r
                 WHERE deliveries.id = r.id
                   AND ((deliveries.status = 'sending' AND deliveries.claim_token = r.token)
                        OR (r.status = 'sent' AND deliveries.status = 'queued'
                            AND deliveries.claim_token IS NULL))
                 RETURNING deliveries.id",
                );
            let updated: Vec<i64> = update
                .build_query_scalar()
                .persistent(false)
                .fetch_all(&mut *tx)
                .await?;
            done.extend(updated);
        }
        let tries: Vec<(&Recording, &crate::store::TryRecording)> = rows
            .iter()
            .filter(|r| done.contains(&r.id))
            .flat_map(|r| r.tries.iter().map(move |t| (r, t)))
            .collect();
        for chunk in tries.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO delivery_attempts (delivery_id, attempt, provider, outcome, code, error, at) ",
            );
            insert.push_values(chunk, |mut row, (r, t)| {
                row.push_bind(r.id)
                    .push_bind(r.attempt)
                    .push_bind(clean_text(&t.provider))
                    .push_bind(t.outcome)
                    .push_bind(t.code)
                    .push_bind(clean_opt(t.error.as_deref()))
                    .push_bind(real);
            });
            insert.build().persistent(false).execute(&mut *tx).await?;
        }
        let left: Vec<String> = rows
            .iter()
            .filter(|r| done.contains(&r.id) && r.status != DeliveryStatus::Queued)
            .filter_map(|r| batches.get(&r.id).cloned())
            .collect();
        delete_empty_batches(&mut tx, &left).await?;
        tx.commit().await?;
        Ok(rows.iter().map(|r| done.contains(&r.id)).collect())
    }

    // ----- the failed set and operator reads -----

    pub async fn failed(
        &self,
        kind: Option<&str>,
        since: Option<DateTime<Utc>>,
        limit: i64,
    ) -> sqlx::Result<Vec<DeliveryRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries
             WHERE status = 'failed' AND ($1 IS NULL OR kind = $1) AND ($2 IS NULL OR updated_at >= $2)
             ORDER BY updated_at DESC, id DESC LIMIT $3"
        )))
        .bind(kind)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.reader)
        .await
    }

    pub async fn delivery(&self, id: i64) -> sqlx::Result<Option<DeliveryRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.reader)
        .await
    }

    pub async fn attempts(&self, id: i64) -> sqlx::Result<Vec<AttemptRow>> {
        sqlx::query_as(
            "SELECT attempt, at, provider, outcome, code, error FROM delivery_attempts
             WHERE delivery_id = $1 ORDER BY attempt, id",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await
    }

    pub async fn retry_failed(
        &self,
        ids: Option<&[i64]>,
        now: DateTime<Utc>,
    ) -> sqlx::Result<Vec<i64>> {
        sqlx::query_scalar(
            "UPDATE deliveries
             SET status = 'queued', round_attempts = 0, due_at = min(due_at, $2),
                 dispatched_at = NULL, updated_at = $3
             WHERE status = 'failed' AND ($1 IS NULL OR id IN (SELECT value FROM json_each($1)))
             RETURNING id",
        )
        .bind(ids.map(json_list))
        .bind(now)
        .bind(Utc::now())
        .fetch_all(&self.writer)
        .await
    }

    pub async fn purge_failed(&self, before: DateTime<Utc>) -> sqlx::Result<u64> {
        Ok(
            sqlx::query("DELETE FROM deliveries WHERE status = 'failed' AND updated_at < $1")
                .bind(before)
                .execute(&self.writer)
                .await?
                .rows_affected(),
        )
    }

    pub async fn status_counts(&self) -> sqlx::Result<Vec<(DeliveryStatus, i64)>> {
        sqlx::query_as("SELECT status, count(*) FROM deliveries GROUP BY status ORDER BY status")
            .fetch_all(&self.reader)
            .await
    }
}

/// Deletes those of `keys` that no delivery belongs to any more.
async fn delete_empty_batches(tx: &mut SqliteConnection, keys: &[String]) -> sqlx::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "DELETE FROM batches WHERE key IN (SELECT value FROM json_each($1))
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.batch_key = batches.key)",
    )
    .bind(json_list(keys))
    .execute(tx)
    .await?;
    Ok(())
}
