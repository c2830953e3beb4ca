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
    /// nor renew any more. `now` is Herald's clock (when the row is due again); leases and
    /// dispatch ages are measured on PostgreSQL's real time, since they are about whether a
    /// process is alive. Returns (expired leases, stale dispatches).
    pub async fn recover(
        &self,
        redispatch_after: Duration,
        now: DateTime<Utc>,
    ) -> sqlx::Result<(u64, u64)> {
        let leases = sqlx::query(
            "UPDATE deliveries SET status = 'queued', dispatched_at = NULL, lease_until = NULL,
                    claim_token = NULL, due_at = LEAST(due_at, $1), updated_at = now()
             WHERE status = 'sending' AND lease_until < now()",
        )
        .bind(now)
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

    /// Claims a queued delivery due at `now` (Herald's clock) for one attempt, with the others it
    /// must or may be sent with:
    ///
    /// - a delivery of an unfinished batch comes with every queued member of that batch, due or
    ///   not, so the retried request is the same request under the same key;
    /// - otherwise, when `extra` > 0, up to `extra` other queued, due deliveries that are in no
    ///   batch and held by no provider, to send in one new batch.
    ///
    /// Empty when the delivery is not queued and due any more (already sent, failed, claimed by
    /// another worker, maybe in another's batch, or waiting for a retry after it was sent in a
    /// batch while its own job was still in Redis), which makes a duplicate job harmless. The
    /// delivery itself comes first. Each gets a Message-ID on its first claim, kept after, and a
    /// new claim token (one for the whole claim) that fences out any earlier holder. The lease
    /// runs on PostgreSQL's real time.
    pub async fn claim(
        &self,
        id: i64,
        extra: i64,
        lease: Duration,
        message_id_domain: &str,
        now: DateTime<Utc>,
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
        let own: Option<(Option<String>, Option<String>)> = sqlx::query_as(
            "SELECT batch_key, held_by FROM deliveries
             WHERE id = $1 AND status = 'queued' AND due_at <= $2 FOR UPDATE",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((batch_key, held_by)) = own else {
            return Ok(Vec::new());
        };
        let others: Vec<i64> = match (&batch_key, &held_by) {
            (Some(key), _) => {
                sqlx::query_scalar(
                    "SELECT id FROM deliveries
                     WHERE batch_key = $1 AND status = 'queued' AND id <> $2
                     ORDER BY id FOR UPDATE SKIP LOCKED",
                )
                .bind(key)
                .bind(id)
                .fetch_all(&mut *tx)
                .await?
            }
            (None, None) if extra > 0 => {
                sqlx::query_scalar(
                    "SELECT id FROM deliveries
                     WHERE status = 'queued' AND due_at <= $2 AND id <> $1
                       AND batch_key IS NULL AND held_by IS NULL
                     ORDER BY due_at, id
                     LIMIT $3
                     FOR UPDATE SKIP LOCKED",
                )
                .bind(id)
                .bind(now)
                .bind(extra)
                .fetch_all(&mut *tx)
                .await?
            }
            _ => Vec::new(),
        };
        let ids: Vec<i64> = std::iter::once(id).chain(others).collect();
        let mut rows: Vec<Claimed> = sqlx::query_as(
            "UPDATE deliveries
             SET status = 'sending', attempts = attempts + 1, round_attempts = round_attempts + 1,
                 lease_until = now() + $2::interval, dispatched_at = NULL, claim_token = $4,
                 message_id = COALESCE(message_id,
                     '<' || id || '.' || replace(gen_random_uuid()::text, '-', '') || '@' || $3 || '>'),
                 updated_at = now()
             WHERE id = ANY($1)
             RETURNING id, claim_token, kind, dedup_key, recipient, payload, attempts, round_attempts,
                       message_id, batch_key, held_by, due_at,
                       (SELECT b.size FROM batches b WHERE b.key = deliveries.batch_key) AS batch_size",
        )
        .bind(&ids)
        .bind(format!("{} milliseconds", lease.as_millis()))
        .bind(message_id_domain)
        .bind(token)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.sort_by_key(|r| (r.id != id, r.id));
        Ok(rows)
    }

    /// Writes a new batch and makes each member (id and claim token) part of it, in one
    /// transaction, before its request goes out: a retry after a failure, a timeout or a crash
    /// then sends the same deliveries under the same key. Members leave the batches they were in
    /// (a batch that lost members is not the same request any more); a batch left empty is
    /// deleted. Returns false, having written nothing, when a member's claim was taken over.
    pub async fn start_batch(
        &self,
        key: &str,
        provider: &str,
        members: &[(i64, uuid::Uuid)],
    ) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("INSERT INTO batches (key, provider, size) VALUES ($1, $2, $3)")
            .bind(key)
            .bind(provider)
            .bind(members.len() as i32)
            .execute(&mut *tx)
            .await?;
        let old: Vec<Option<String>> = sqlx::query_scalar(
            "WITH old AS (
                 SELECT d.id, d.batch_key FROM deliveries d
                 JOIN UNNEST($1::bigint[], $2::uuid[]) AS c (id, token)
                   ON d.id = c.id AND d.claim_token = c.token AND d.status = 'sending'
                 FOR UPDATE OF d
             )
             UPDATE deliveries d SET batch_key = $3 FROM old WHERE d.id = old.id
             RETURNING old.batch_key",
        )
        .bind(members.iter().map(|m| m.0).collect::<Vec<_>>())
        .bind(members.iter().map(|m| m.1).collect::<Vec<_>>())
        .bind(key)
        .fetch_all(&mut *tx)
        .await?;
        if old.len() != members.len() {
            return Ok(false);
        }
        let old: Vec<String> = old.into_iter().flatten().collect();
        delete_empty_batches(&mut tx, &old).await?;
        tx.commit().await?;
        Ok(true)
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
        let (status, due_at, give_back, provider_id, held_by) = match next {
            Next::Sent { provider_id, .. } => ("sent", None, 0, *provider_id, None),
            Next::Failed => ("failed", None, 0, None, None),
            Next::Retry {
                due_at,
                counts,
                held_by,
            } => ("queued", Some(*due_at), i32::from(!counts), None, *held_by),
        };
        // An attempt given back with no try recorded did not happen at all.
        let untried = i32::from(give_back == 1 && tries.is_empty());
        // A delivery leaves its batch when it is sent or failed; a retry stays in it. It stays
        // held by a provider until it is sent.
        let left: Option<Option<String>> = sqlx::query_scalar(
            "WITH old AS (SELECT id, batch_key FROM deliveries WHERE id = $1)
             UPDATE deliveries d
             SET status = $2, due_at = COALESCE($3, d.due_at), lease_until = NULL, dispatched_at = NULL,
                 claim_token = NULL,
                 round_attempts = round_attempts - $4, attempts = attempts - $5,
                 last_error = CASE WHEN $2 = 'sent' THEN NULL ELSE COALESCE($6, last_error) END,
                 provider = COALESCE($7, provider), provider_id = COALESCE($8, provider_id),
                 batch_key = CASE WHEN $2 = 'queued' THEN d.batch_key END,
                 held_by = CASE WHEN $2 = 'sent' THEN NULL ELSE COALESCE($9, d.held_by) END,
                 sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END,
                 updated_at = now()
             FROM old
             WHERE d.id = old.id AND d.status = 'sending' AND d.claim_token = $10
             RETURNING CASE WHEN $2 = 'queued' THEN NULL ELSE old.batch_key END",
        )
        .bind(d.id)
        .bind(status)
        .bind(due_at)
        .bind(give_back)
        .bind(untried)
        .bind(last_error)
        .bind(provider)
        .bind(provider_id)
        .bind(held_by)
        .bind(d.claim_token)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(left) = left else {
            // Dropping the transaction rolls it back; nothing was written anyway.
            return Ok(false);
        };
        for a in tries {
            insert_attempt(&mut tx, d, a).await?;
        }
        if let Some(key) = left {
            delete_empty_batches(&mut tx, &[key]).await?;
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

    /// Sends failed deliveries through the normal path again, with a fresh set of retries, due
    /// at once by Herald's clock (`now`). `None` retries every failed delivery. A delivery held
    /// by a provider (its outcome there was unknown) is still sent to that provider only. Returns
    /// the ids that were failed and are queued now.
    pub async fn retry_failed(
        &self,
        ids: Option<&[i64]>,
        now: DateTime<Utc>,
    ) -> sqlx::Result<Vec<i64>> {
        sqlx::query_scalar(
            "UPDATE deliveries
             SET status = 'queued', round_attempts = 0, due_at = LEAST(due_at, $2), dispatched_at = NULL, updated_at = now()
             WHERE status = 'failed' AND ($1::bigint[] IS NULL OR id = ANY($1))
             RETURNING id",
        )
        .bind(ids)
        .bind(now)
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

/// Deletes those of `keys` that no delivery belongs to any more.
async fn delete_empty_batches(tx: &mut sqlx::PgConnection, keys: &[String]) -> sqlx::Result<()> {
    if keys.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "DELETE FROM batches b WHERE b.key = ANY($1)
           AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.batch_key = b.key)",
    )
    .bind(keys)
    .execute(tx)
    .await?;
    Ok(())
}
