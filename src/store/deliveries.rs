//! Deliveries from dispatch to outcome: taking due rows, claims, recorded tries, the failed set.

use super::*;

const DELIVERY_COLUMNS: &str = "id, kind, user_id, dedup_key, status, recipient, attempts, last_error, \
     provider, message_id, provider_id, planned_for, due_at, sent_at, updated_at";

/// Serialises batch claims (`pg_advisory_xact_lock`), so that a burst is cut into full batches.
const BATCH_CLAIM_LOCK: i64 = 0x4845_5241_4c44;

impl Store {
    // ----- the dispatcher -----

    /// Marks up to `limit` deliveries due at `now` as dispatched and returns their ids, oldest
    /// first. `SKIP LOCKED` lets several Herald processes dispatch side by side without overlap.
    pub async fn take_due(&self, limit: i64, now: DateTime<Utc>) -> sqlx::Result<Vec<i64>> {
        sqlx::query_scalar(
            "UPDATE deliveries SET dispatched_at = now(), updated_at = now()
             WHERE id IN (
                 SELECT id FROM deliveries
                 WHERE status = 'queued' AND dispatched_at IS NULL AND due_at <= $2
                 ORDER BY due_at
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED)
             RETURNING id",
        )
        .bind(limit)
        .bind(now)
        .fetch_all(&self.pool)
        .await
    }

    /// Puts deliveries back for the dispatcher, after a push to Redis failed.
    pub async fn untake(&self, ids: &[i64]) -> sqlx::Result<()> {
        sqlx::query(
            "UPDATE deliveries SET dispatched_at = NULL WHERE id = ANY($1) AND status = 'queued'",
        )
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Makes every row that PostgreSQL says waits in Redis dispatchable again: for a Redis that
    /// came back without the queue. Returns how many.
    pub async fn redispatch_all(&self) -> sqlx::Result<u64> {
        Ok(sqlx::query(
            "UPDATE deliveries SET dispatched_at = NULL, updated_at = now()
             WHERE status = 'queued' AND dispatched_at IS NOT NULL",
        )
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Makes due again what a dead process left behind: claims whose lease expired, and
    /// dispatched rows that no worker picked up in time (Redis restarted without them, say).
    /// An expired claim loses its token: should its worker still be alive, it can neither record
    /// nor renew any more. Returns (expired leases, stale dispatches).
    pub async fn recover(&self, redispatch_after: Duration) -> sqlx::Result<(u64, u64)> {
        let leases = sqlx::query(
            "UPDATE deliveries SET status = 'queued', dispatched_at = NULL, lease_until = NULL,
                    claim_token = NULL, due_at = LEAST(due_at, now()), updated_at = now()
             WHERE status = 'sending' AND lease_until < now()",
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        let stale = sqlx::query(
            "UPDATE deliveries SET dispatched_at = NULL, updated_at = now()
             WHERE status = 'queued' AND dispatched_at < now() - $1::interval",
        )
        .bind(format!("{} milliseconds", redispatch_after.as_millis()))
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok((leases, stale))
    }

    // ----- the worker -----

    /// Claims a queued delivery for one attempt, and with it up to `extra` other queued, due
    /// deliveries to send in the same batch (those of the same failed batch, if it was in one).
    /// Empty when the delivery is not queued and due any more (already sent, failed, claimed by
    /// another worker, maybe in another's batch, or waiting for a retry after it was sent in a
    /// batch while its own job was still in Redis), which makes a duplicate job harmless. The
    /// delivery itself comes first. Each gets a Message-ID on its first claim, kept after, and a
    /// new claim token (one for the whole claim) that fences out any earlier holder.
    pub async fn claim(
        &self,
        id: i64,
        extra: i64,
        lease: Duration,
        message_id_domain: &str,
    ) -> sqlx::Result<Vec<Claimed>> {
        let token = uuid::Uuid::new_v4();
        let mut tx = self.pool.begin().await?;
        if extra > 0 {
            // One batch claim at a time: racing claims would each take a slice of a burst.
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(BATCH_CLAIM_LOCK)
                .execute(&mut *tx)
                .await?;
        }
        let mut rows: Vec<Claimed> = sqlx::query_as(
            "WITH own AS (
                 SELECT id, batch_key FROM deliveries
                 WHERE id = $1 AND status = 'queued' AND due_at <= now() FOR UPDATE
             ), others AS (
                 SELECT d.id FROM deliveries d, own
                 WHERE $4 > 0 AND d.status = 'queued' AND d.due_at <= now() AND d.id <> own.id
                   AND d.batch_key IS NOT DISTINCT FROM own.batch_key
                 ORDER BY d.due_at, d.id
                 LIMIT $4
                 FOR UPDATE OF d SKIP LOCKED
             )
             UPDATE deliveries
             SET status = 'sending', attempts = attempts + 1, round_attempts = round_attempts + 1,
                 lease_until = now() + $2::interval, dispatched_at = NULL, claim_token = $5,
                 message_id = COALESCE(message_id,
                     '<' || id || '.' || replace(gen_random_uuid()::text, '-', '') || '@' || $3 || '>'),
                 updated_at = now()
             WHERE id IN (SELECT id FROM own UNION ALL SELECT id FROM others)
             RETURNING id, claim_token, kind, dedup_key, recipient, payload, attempts, round_attempts,
                       message_id, due_at",
        )
        .bind(id)
        .bind(format!("{} milliseconds", lease.as_millis()))
        .bind(message_id_domain)
        .bind(extra)
        .bind(token)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.sort_by_key(|r| (r.id != id, r.id));
        Ok(rows)
    }

    /// Pushes back the lease of every claim in `claims` (id and claim token) that is still held,
    /// in one statement. Returns the ids renewed; a claim missing from them was taken back by
    /// [`Store::recover`] (and maybe claimed again by another worker): it is not ours any more.
    pub async fn renew(
        &self,
        claims: &[(i64, uuid::Uuid)],
        lease: Duration,
    ) -> sqlx::Result<Vec<i64>> {
        if claims.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_scalar(
            "UPDATE deliveries d SET lease_until = now() + $3::interval
             FROM UNNEST($1::bigint[], $2::uuid[]) AS c (id, token)
             WHERE d.id = c.id AND d.claim_token = c.token AND d.status = 'sending'
             RETURNING d.id",
        )
        .bind(claims.iter().map(|c| c.0).collect::<Vec<_>>())
        .bind(claims.iter().map(|c| c.1).collect::<Vec<_>>())
        .bind(format!("{} milliseconds", lease.as_millis()))
        .fetch_all(&self.pool)
        .await
    }

    /// Records the tries of one attempt (none when no provider could take the email) and moves
    /// the delivery on, in one transaction, if the claim is still ours (still `sending` with
    /// our token). Returns false, having written nothing (no attempt rows either), when the claim
    /// was taken over: its lease ran out and the row now belongs to [`Store::recover`] or to
    /// another worker.
    pub async fn record(
        &self,
        d: &Claimed,
        tries: &[AttemptRecord<'_>],
        next: &Next<'_>,
    ) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let last = tries.last();
        let last_error = last.and_then(|a| a.error);
        let provider = match next {
            Next::Sent { provider, .. } => Some(*provider),
            _ => last.map(|a| a.provider),
        };
        let (status, due_at, give_back, provider_id, batch_key) = match next {
            Next::Sent { provider_id, .. } => ("sent", None, 0, *provider_id, None),
            Next::Failed => ("failed", None, 0, None, None),
            Next::Retry {
                due_at,
                counts,
                batch_key,
            } => (
                "queued",
                Some(*due_at),
                i32::from(!counts),
                None,
                *batch_key,
            ),
        };
        // An attempt given back with no try recorded did not happen at all.
        let untried = i32::from(give_back == 1 && tries.is_empty());
        let ours = sqlx::query(
            "UPDATE deliveries
             SET status = $2, due_at = COALESCE($3, due_at), lease_until = NULL, dispatched_at = NULL,
                 claim_token = NULL,
                 round_attempts = round_attempts - $4, attempts = attempts - $5,
                 last_error = CASE WHEN $2 = 'sent' THEN NULL ELSE COALESCE($6, last_error) END,
                 provider = COALESCE($7, provider), provider_id = COALESCE($8, provider_id),
                 batch_key = $9,
                 sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END,
                 updated_at = now()
             WHERE id = $1 AND status = 'sending' AND claim_token = $10",
        )
        .bind(d.id)
        .bind(status)
        .bind(due_at)
        .bind(give_back)
        .bind(untried)
        .bind(last_error)
        .bind(provider)
        .bind(provider_id)
        .bind(batch_key)
        .bind(d.claim_token)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !ours {
            // Dropping the transaction rolls it back; nothing was written anyway.
            return Ok(false);
        }
        for a in tries {
            insert_attempt(&mut tx, d, a).await?;
        }
        tx.commit().await?;
        Ok(true)
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
             WHERE status = 'failed' AND ($1::text IS NULL OR kind = $1) AND ($2::timestamptz IS NULL OR updated_at >= $2)
             ORDER BY updated_at DESC, id DESC LIMIT $3"
        )))
        .bind(kind)
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    pub async fn delivery(&self, id: i64) -> sqlx::Result<Option<DeliveryRow>> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }

    pub async fn attempts(&self, id: i64) -> sqlx::Result<Vec<AttemptRow>> {
        sqlx::query_as(
            "SELECT attempt, at, provider, outcome, code, error FROM delivery_attempts
             WHERE delivery_id = $1 ORDER BY attempt, id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
    }

    /// Sends failed deliveries through the normal path again, with a fresh set of retries.
    /// `None` retries every failed delivery. Returns the ids that were failed and are queued now.
    pub async fn retry_failed(&self, ids: Option<&[i64]>) -> sqlx::Result<Vec<i64>> {
        sqlx::query_scalar(
            "UPDATE deliveries
             SET status = 'queued', round_attempts = 0, due_at = LEAST(due_at, now()), dispatched_at = NULL, updated_at = now()
             WHERE status = 'failed' AND ($1::bigint[] IS NULL OR id = ANY($1))
             RETURNING id",
        )
        .bind(ids)
        .fetch_all(&self.pool)
        .await
    }

    /// Deletes failed deliveries (and their attempts) that failed before `before`.
    pub async fn purge_failed(&self, before: DateTime<Utc>) -> sqlx::Result<u64> {
        Ok(
            sqlx::query("DELETE FROM deliveries WHERE status = 'failed' AND updated_at < $1")
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }

    /// How many deliveries are in each status.
    pub async fn status_counts(&self) -> sqlx::Result<Vec<(String, i64)>> {
        sqlx::query_as("SELECT status, count(*) FROM deliveries GROUP BY status ORDER BY status")
            .fetch_all(&self.pool)
            .await
    }
}

async fn insert_attempt(
    tx: &mut sqlx::PgConnection,
    d: &Claimed,
    a: &AttemptRecord<'_>,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_id, attempt, provider, outcome, code, error)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(d.id)
    .bind(d.attempts)
    .bind(a.provider)
    .bind(a.outcome)
    .bind(a.code.map(i32::from))
    .bind(a.error)
    .execute(tx)
    .await?;
    Ok(())
}
