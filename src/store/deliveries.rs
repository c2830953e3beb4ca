//! Deliveries from dispatch to outcome: taking due rows, claims, recorded tries, the failed set.

use super::*;

const DELIVERY_COLUMNS: &str = "id, kind, user_id, dedup_key, status, recipient, attempts, last_error, \
     provider, message_id, provider_id, planned_for, due_at, sent_at, updated_at";

impl Store {
    // ----- the dispatcher -----

    /// Marks up to `limit` deliveries due at `now` as dispatched and returns their ids, oldest
    /// first. `SKIP LOCKED` lets several Herald processes dispatch side by side without overlap.
    pub async fn take_due(&self, limit: i64, now: DateTime<Utc>) -> sqlx::Result<Vec<i64>> {
        let pool = pg_or!(self, lite => lite.take_due(limit, now).await);
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
        .fetch_all(pool)
        .await
    }

    /// When the next delivery waiting for the dispatcher falls due, if any: when the
    /// dispatcher wakes up next.
    pub async fn next_due(&self) -> sqlx::Result<Option<DateTime<Utc>>> {
        let pool = pg_or!(self, lite => lite.next_due().await);
        sqlx::query_scalar(
            "SELECT min(due_at) FROM deliveries WHERE status = 'queued' AND dispatched_at IS NULL",
        )
        .fetch_one(pool)
        .await
    }

    /// Puts deliveries back for the dispatcher, after a push to Redis failed.
    pub async fn untake(&self, ids: &[i64]) -> sqlx::Result<()> {
        let pool = pg_or!(self, lite => lite.untake(ids).await);
        sqlx::query(
            "UPDATE deliveries SET dispatched_at = NULL WHERE id = ANY($1) AND status = 'queued'",
        )
        .bind(ids)
        .execute(pool)
        .await?;
        Ok(())
    }

    /// Makes every row that PostgreSQL says waits in Redis dispatchable again: for a Redis that
    /// came back without the queue. Returns how many.
    pub async fn redispatch_all(&self) -> sqlx::Result<u64> {
        let pool = pg_or!(self, lite => lite.redispatch_all().await);
        Ok(sqlx::query(
            "UPDATE deliveries SET dispatched_at = NULL, updated_at = now()
             WHERE status = 'queued' AND dispatched_at IS NOT NULL",
        )
        .execute(pool)
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
        let pool = pg_or!(self, lite => lite.recover(redispatch_after, now).await);
        let leases = sqlx::query(
            "UPDATE deliveries SET status = 'queued', dispatched_at = NULL, lease_until = NULL,
                    claim_token = NULL, due_at = LEAST(due_at, $1), updated_at = now()
             WHERE status = 'sending' AND lease_until < now()",
        )
        .bind(now)
        .execute(pool)
        .await?
        .rows_affected();
        let stale = sqlx::query(
            "UPDATE deliveries SET dispatched_at = NULL, updated_at = now()
             WHERE status = 'queued' AND dispatched_at < now() - $1::interval",
        )
        .bind(format!("{} milliseconds", redispatch_after.as_millis()))
        .execute(pool)
        .await?
        .rows_affected();
        Ok((leases, stale))
    }

    /// Gives back at once the claims still held by these workers, which a process found dead
    /// (or stopped, their sends dropped): the rows become queued and dispatchable, like an
    /// expired lease in [`Store::recover`], with the same fencing (the token is cleared, so a
    /// worker taken for dead that is still alive can neither renew nor record, but a `sent` is
    /// still recorded while no other worker has claimed the row) and the attempt kept, since the
    /// email may have left. Returns how many rows were given back.
    pub async fn release_claims_of(&self, workers: &[String]) -> sqlx::Result<u64> {
        let pool = pg_or!(self, lite => lite.release_claims_of(workers).await);
        if workers.is_empty() {
            return Ok(0);
        }
        Ok(sqlx::query(
            "UPDATE deliveries SET status = 'queued', dispatched_at = NULL, lease_until = NULL,
                    claim_token = NULL, claimed_by = NULL, updated_at = now()
             WHERE status = 'sending' AND claimed_by = ANY($1)",
        )
        .bind(workers)
        .execute(pool)
        .await?
        .rows_affected())
    }

    // ----- the worker -----

    /// Claims the deliveries of one job that are queued and due at `now` (Herald's clock), with
    /// every queued member of an unfinished batch any of them is in (due or not), so a retried
    /// batch is the same request under the same key. One statement, so one commit, for the whole
    /// job.
    ///
    /// A delivery that is not queued and due any more (already sent, failed, claimed by another
    /// worker, waiting for a retry, or locked by a write that is about to change it) is left out,
    /// which makes a duplicate job harmless: `SKIP LOCKED` never waits, and every write that makes
    /// a row due again also makes it dispatchable, so nothing skipped here is stranded. Each row
    /// gets a Message-ID on its first claim, kept after, and the claim's token, which fences out
    /// any earlier holder. The lease runs on PostgreSQL's real time. Rows come in id order, each
    /// saying whether its user has opted out of its kind by now and whether its address is
    /// suppressed (one primary-key probe each per row, in the same statement).
    ///
    /// A row that already used `max_attempts` claims in this round of retries
    /// (`queue.max_attempts`: its outcomes could never be recorded, so each lease sent it again)
    /// is not claimed: the same statement fails it with [`capped_reason`], its attempt count
    /// unchanged, and it comes back in the second list, not to be sent. `herald failed retry`
    /// starts a new round for it.
    ///
    /// `claimed_by` names the apalis worker that claims (`None` outside one): when that worker is
    /// found dead, [`Store::release_claims_of`] gives its rows back without waiting for the lease.
    pub async fn claim_many(
        &self,
        ids: &[i64],
        lease: Duration,
        message_id_domain: &str,
        max_attempts: i32,
        now: DateTime<Utc>,
        claimed_by: Option<&str>,
    ) -> sqlx::Result<(Vec<Claimed>, Vec<Claimed>)> {
        let pool = pg_or!(self, lite => lite.claim_many(ids, lease, message_id_domain, max_attempts, now, claimed_by).await);
        let token = uuid::Uuid::new_v4();
        let mut rows: Vec<Claimed> = sqlx::query_as(
            "WITH asked AS (
                 SELECT id, batch_key FROM deliveries
                 WHERE id = ANY($1) AND status = 'queued' AND due_at <= $2
                 FOR UPDATE SKIP LOCKED
             ), members AS (
                 SELECT d.id FROM deliveries d
                 WHERE d.batch_key IN (SELECT batch_key FROM asked WHERE batch_key IS NOT NULL)
                   AND d.status = 'queued' AND d.id <> ALL($1)
                 FOR UPDATE SKIP LOCKED
             ), claimed AS (
                 SELECT d.id, d.batch_key, d.round_attempts >= $6 AS over_cap FROM deliveries d
                 WHERE d.id IN (SELECT id FROM asked UNION SELECT id FROM members)
             )
             UPDATE deliveries
             SET status = CASE WHEN c.over_cap THEN 'failed' ELSE 'sending' END,
                 attempts = attempts + CASE WHEN c.over_cap THEN 0 ELSE 1 END,
                 round_attempts = round_attempts + CASE WHEN c.over_cap THEN 0 ELSE 1 END,
                 lease_until = CASE WHEN c.over_cap THEN NULL ELSE now() + $3::interval END,
                 dispatched_at = NULL,
                 claim_token = CASE WHEN c.over_cap THEN NULL ELSE $5 END,
                 claimed_by = CASE WHEN c.over_cap THEN NULL ELSE $8 END,
                 last_error = CASE WHEN c.over_cap THEN $7 ELSE last_error END,
                 batch_key = CASE WHEN c.over_cap THEN NULL ELSE deliveries.batch_key END,
                 message_id = COALESCE(message_id,
                     '<' || deliveries.id || '.' || replace(gen_random_uuid()::text, '-', '') || '@' || $4 || '>'),
                 updated_at = now()
             FROM claimed c
             WHERE deliveries.id = c.id
             RETURNING deliveries.id, $5::uuid AS claim_token, kind, user_id, created_at, dedup_key, recipient,
                       payload::json, attempts, round_attempts, message_id, c.batch_key, held_by, due_at, c.over_cap,
                       (SELECT b.size FROM batches b WHERE b.key = deliveries.batch_key) AS batch_size,
                       EXISTS (SELECT 1 FROM email_opt_outs o
                               WHERE o.user_id = deliveries.user_id AND o.kind = deliveries.kind) AS opted_out,
                       EXISTS (SELECT 1 FROM suppressions s
                               WHERE s.address = lower(deliveries.recipient)) AS suppressed",
        )
        .bind(ids)
        .bind(now)
        .bind(format!("{} milliseconds", lease.as_millis()))
        .bind(message_id_domain)
        .bind(token)
        .bind(max_attempts)
        .bind(capped_reason(max_attempts))
        .bind(claimed_by)
        .fetch_all(pool)
        .await?;
        rows.sort_by_key(|r| r.id);
        let (capped, claimed): (Vec<Claimed>, Vec<Claimed>) =
            rows.into_iter().partition(|r| r.over_cap);
        let left: Vec<String> = capped.iter().filter_map(|r| r.batch_key.clone()).collect();
        if !left.is_empty() {
            let mut conn = pool.acquire().await?;
            delete_empty_batches(&mut conn, &left).await?;
        }
        Ok((claimed, capped))
    }

    /// The members of batch `key` still on their way (queued, or being sent by some worker),
    /// and the smallest of their ids.
    pub async fn batch_live_members(&self, key: &str) -> sqlx::Result<(i64, Option<i64>)> {
        let pool = pg_or!(self, lite => lite.batch_live_members(key).await);
        sqlx::query_as(
            "SELECT count(*), min(id) FROM deliveries
             WHERE batch_key = $1 AND status IN ('queued', 'sending')",
        )
        .bind(key)
        .fetch_one(pool)
        .await
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
        let pool = pg_or!(self, lite => lite.start_batch(key, provider, members).await);
        let mut tx = pool.begin().await?;
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
        let pool = pg_or!(self, lite => lite.renew(claims, lease).await);
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
        .fetch_all(pool)
        .await
    }

    /// Moves a claimed delivery to `skipped` with `reason`, giving its attempt back (it was never
    /// tried) and taking it out of its batch, if the claim is still ours. Returns whether it was.
    pub async fn skip_claimed(
        &self,
        id: i64,
        token: uuid::Uuid,
        reason: &str,
    ) -> sqlx::Result<bool> {
        let pool = pg_or!(self, lite => lite.skip_claimed(id, token, reason).await);
        let mut tx = pool.begin().await?;
        let left: Option<Option<String>> = sqlx::query_scalar(
            "WITH old AS (SELECT batch_key FROM deliveries WHERE id = $1)
             UPDATE deliveries
             SET status = 'skipped', last_error = $3, attempts = attempts - 1,
                 round_attempts = round_attempts - 1, lease_until = NULL, claim_token = NULL,
                 dispatched_at = NULL, batch_key = NULL, updated_at = now()
             WHERE id = $1 AND status = 'sending' AND claim_token = $2
             RETURNING (SELECT batch_key FROM old)",
        )
        .bind(id)
        .bind(token)
        .bind(reason)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(Some(key)) = &left {
            delete_empty_batches(&mut tx, std::slice::from_ref(key)).await?;
        }
        tx.commit().await?;
        Ok(left.is_some())
    }

    /// Records the tries of one attempt and moves the delivery on, if the claim is still ours
    /// (still `sending` with our token). Returns false, having written nothing (no attempt rows
    /// either), when the claim was taken over: another worker claimed the row after its lease
    /// ran out. A `sent` outcome is also recorded when the lease ran out and [`Store::recover`]
    /// made the row `queued` again but no worker has claimed it since (no claim token): the email
    /// is known to be out, and recording it keeps it from going out again. [`Store::record_many`]
    /// for one row.
    pub async fn record(&self, r: &Recording) -> sqlx::Result<bool> {
        let recorded = self.record_many(std::slice::from_ref(r)).await?;
        Ok(recorded.first().copied().unwrap_or(false))
    }

    /// Records many deliveries' outcomes in one transaction (group commit): one statement moves
    /// every row on and inserts every try, each row checking its own claim token (or, for a
    /// `sent` outcome, that the row is `queued` with no claim token: see [`Store::record`]).
    /// Provider text goes through [`clean_text`] first. Returns, in the order given, whether
    /// each was recorded; a row whose claim was taken over is skipped (false) and nothing of it
    /// is written, while the others are. An error means nothing was
    /// written: the caller may try the rows one by one, so that one bad row never holds back
    /// the others.
    pub async fn record_many(&self, rows: &[Recording]) -> sqlx::Result<Vec<bool>> {
        let pool = pg_or!(self, lite => lite.record_many(rows).await);
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut tries = TryColumns::default();
        for r in rows {
            for t in &r.tries {
                tries.delivery_id.push(r.id);
                tries.attempt.push(r.attempt);
                tries.provider.push(clean_text(&t.provider));
                tries.outcome.push(t.outcome);
                tries.code.push(t.code);
                tries.error.push(clean_opt(t.error.as_deref()));
            }
        }
        let mut tx = pool.begin().await?;
        let done: Vec<(i64, Option<String>)> = sqlx::query_as(
            "WITH r AS (
                 SELECT * FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::timestamptz[],
                                      $5::int[], $6::int[], $7::text[], $8::text[], $9::text[],
                                      $10::text[])
                   AS r (id, token, status, due_at, give_back, untried, last_error, provider,
                         provider_id, held_by)
             ), old AS (
                 SELECT d.id, d.batch_key FROM deliveries d JOIN r ON d.id = r.id
             ), done AS (
                 UPDATE deliveries d
                 SET status = r.status, due_at = COALESCE(r.due_at, d.due_at), lease_until = NULL,
                     dispatched_at = NULL, claim_token = NULL,
                     round_attempts = d.round_attempts - r.give_back,
                     attempts = d.attempts - r.untried,
                     last_error = CASE WHEN r.status = 'sent' THEN NULL
                                       ELSE COALESCE(r.last_error, d.last_error) END,
                     provider = COALESCE(r.provider, d.provider),
                     provider_id = COALESCE(r.provider_id, d.provider_id),
                     batch_key = CASE WHEN r.status = 'queued' THEN d.batch_key END,
                     held_by = CASE WHEN r.status = 'sent' THEN NULL
                                    ELSE COALESCE(r.held_by, d.held_by) END,
                     sent_at = CASE WHEN r.status = 'sent' THEN now() ELSE d.sent_at END,
                     updated_at = now()
                 FROM r JOIN old ON old.id = r.id
                 WHERE d.id = r.id
                   AND ((d.status = 'sending' AND d.claim_token = r.token)
                        OR (r.status = 'sent' AND d.status = 'queued' AND d.claim_token IS NULL))
                 RETURNING d.id, CASE WHEN r.status = 'queued' THEN NULL ELSE old.batch_key END
                           AS left_batch
             ), tried AS (
                 INSERT INTO delivery_attempts (delivery_id, attempt, provider, outcome, code, error)
                 SELECT a.delivery_id, a.attempt, a.provider, a.outcome, a.code, a.error
                 FROM UNNEST($11::bigint[], $12::int[], $13::text[], $14::text[], $15::int[],
                             $16::text[]) WITH ORDINALITY
                   AS a (delivery_id, attempt, provider, outcome, code, error, n)
                 WHERE a.delivery_id IN (SELECT id FROM done)
                 ORDER BY a.n
             )
             SELECT id, left_batch FROM done",
        )
        .bind(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.claim_token).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.due_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| i32::from(r.give_back)).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| i32::from(r.untried)).collect::<Vec<_>>())
        .bind(text_column(rows, |r| &r.last_error))
        .bind(text_column(rows, |r| &r.provider))
        .bind(text_column(rows, |r| &r.provider_id))
        .bind(text_column(rows, |r| &r.held_by))
        .bind(&tries.delivery_id)
        .bind(&tries.attempt)
        .bind(&tries.provider)
        .bind(&tries.outcome)
        .bind(&tries.code)
        .bind(&tries.error)
        .fetch_all(&mut *tx)
        .await?;
        let left: Vec<String> = done.iter().filter_map(|(_, b)| b.clone()).collect();
        delete_empty_batches(&mut tx, &left).await?;
        tx.commit().await?;
        let done: std::collections::HashSet<i64> = done.into_iter().map(|(id, _)| id).collect();
        Ok(rows.iter().map(|r| done.contains(&r.id)).collect())
    }

    // ----- the failed set and operator reads -----

    pub async fn failed(
        &self,
        kind: Option<&str>,
        since: Option<DateTime<Utc>>,
        limit: i64,
    ) -> sqlx::Result<Vec<DeliveryRow>> {
        let pool = pg_or!(self, lite => lite.failed(kind, since, limit).await);
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries
             WHERE status = 'failed' AND ($1::text IS NULL OR kind = $1) AND ($2::timestamptz IS NULL OR updated_at >= $2)
             ORDER BY updated_at DESC, id DESC LIMIT $3"
        )))
        .bind(kind)
        .bind(since)
        .bind(limit)
        .fetch_all(pool)
        .await
    }

    pub async fn delivery(&self, id: i64) -> sqlx::Result<Option<DeliveryRow>> {
        let pool = pg_or!(self, lite => lite.delivery(id).await);
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(pool)
        .await
    }

    pub async fn attempts(&self, id: i64) -> sqlx::Result<Vec<AttemptRow>> {
        let pool = pg_or!(self, lite => lite.attempts(id).await);
        sqlx::query_as(
            "SELECT attempt, at, provider, outcome, code, error FROM delivery_attempts
             WHERE delivery_id = $1 ORDER BY attempt, id",
        )
        .bind(id)
        .fetch_all(pool)
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
        let pool = pg_or!(self, lite => lite.retry_failed(ids, now).await);
        sqlx::query_scalar(
            "UPDATE deliveries
             SET status = 'queued', round_attempts = 0, due_at = LEAST(due_at, $2), dispatched_at = NULL, updated_at = now()
             WHERE status = 'failed' AND ($1::bigint[] IS NULL OR id = ANY($1))
             RETURNING id",
        )
        .bind(ids)
        .bind(now)
        .fetch_all(pool)
        .await
    }

    /// Deletes failed deliveries (and their attempts) that failed before `before`.
    pub async fn purge_failed(&self, before: DateTime<Utc>) -> sqlx::Result<u64> {
        let pool = pg_or!(self, lite => lite.purge_failed(before).await);
        Ok(
            sqlx::query("DELETE FROM deliveries WHERE status = 'failed' AND updated_at < $1")
                .bind(before)
                .execute(pool)
                .await?
                .rows_affected(),
        )
    }

    /// How many deliveries are in each status.
    pub async fn status_counts(&self) -> sqlx::Result<Vec<(DeliveryStatus, i64)>> {
        let pool = pg_or!(self, lite => lite.status_counts().await);
        sqlx::query_as("SELECT status, count(*) FROM deliveries GROUP BY status ORDER BY status")
            .fetch_all(pool)
            .await
    }
}

/// One text column of [`Store::record_many`]'s rows, each value through [`clean_text`].
fn text_column(
    rows: &[Recording],
    f: impl Fn(&Recording) -> &Option<String>,
) -> Vec<Option<String>> {
    rows.iter().map(|r| clean_opt(f(r).as_deref())).collect()
}

/// The `last_error` of a delivery failed at claim by `queue.max_attempts`.
pub fn capped_reason(max_attempts: i32) -> String {
    format!(
        "not sent again: it was claimed {max_attempts} times in this round (queue.max_attempts) \
         without an outcome being recorded, so each of those claims may have sent a copy. Check \
         the log for why recording failed (and the provider for copies) before `herald failed \
         retry`, which starts a new round"
    )
}

/// The tries of [`Store::record_many`], column by column for `UNNEST`.
#[derive(Default)]
struct TryColumns {
    delivery_id: Vec<i64>,
    attempt: Vec<i32>,
    provider: Vec<String>,
    outcome: Vec<AttemptOutcome>,
    code: Vec<Option<i32>>,
    error: Vec<Option<String>>,
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
