//! Every SQL statement Herald runs, against PostgreSQL. Dates are computed in Rust and passed in.

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{
    PgPool, Postgres,
    migrate::MigrateDatabase,
    postgres::{PgConnectOptions, PgPoolOptions},
};

/// The embedded migrations in `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// A handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    pub pool: PgPool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRow {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub timezone: String,
    pub opted_out: bool,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    pub id: i64,
    pub owner_id: i64,
    pub title: String,
    pub due_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct FocusRow {
    pub owner_id: i64,
    pub started_at: DateTime<Utc>,
    pub minutes: i32,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    pub display_name: String,
    pub timezone: String,
}

#[derive(Debug, Clone)]
pub struct NewTask {
    pub owner_id: i64,
    pub title: String,
    pub due_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// A delivery the planner wants to exist.
#[derive(Debug, Clone, Serialize)]
pub struct NewDelivery {
    /// `queued`, or `skipped` for a fire that was missed (with the reason in `note`).
    pub status: &'static str,
    pub note: Option<String>,
    pub kind: String,
    pub user_id: i64,
    pub dedup_key: String,
    pub recipient: String,
    pub payload: serde_json::Value,
    pub planned_for: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
}

/// A delivery a worker has claimed for one attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub kind: String,
    pub dedup_key: String,
    pub recipient: String,
    pub payload: serde_json::Value,
    pub attempts: i32,
    pub round_attempts: i32,
    pub message_id: String,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub kind: String,
    pub user_id: i64,
    pub dedup_key: String,
    pub status: String,
    pub recipient: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub provider: Option<String>,
    pub message_id: Option<String>,
    /// The provider's id for the email (Resend's), once sent.
    pub provider_id: Option<String>,
    pub planned_for: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AttemptRow {
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub provider: String,
    pub outcome: String,
    pub code: Option<i32>,
    pub error: Option<String>,
}

/// What one try at one provider came to, as written to `delivery_attempts`.
#[derive(Debug, Clone)]
pub struct AttemptRecord<'a> {
    pub provider: &'a str,
    /// `sent` or an error class (`transient`, `permanent`, `rate_limited`, `quota`,
    /// `configuration`).
    pub outcome: &'a str,
    pub code: Option<u16>,
    /// The provider's message.
    pub error: Option<&'a str>,
}

/// Where a claimed delivery goes after its attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next<'a> {
    Sent {
        provider: &'a str,
        provider_id: Option<&'a str>,
    },
    Failed,
    /// Back to `queued`, due at `due_at`. `counts` is false when the wait was the provider's
    /// doing (a pause, a rate limit, a circuit): the attempt is then given back.
    Retry {
        due_at: DateTime<Utc>,
        counts: bool,
        batch_key: Option<&'a str>,
    },
}

const DELIVERY_COLUMNS: &str = "id, kind, user_id, dedup_key, status, recipient, attempts, last_error, \
     provider, message_id, provider_id, planned_for, due_at, sent_at, updated_at";

/// Serialises batch claims (`pg_advisory_xact_lock`), so that a burst is cut into full batches.
const BATCH_CLAIM_LOCK: i64 = 0x4845_5241_4c44;

impl Store {
    /// Connects, creating the database first when `create` is set and it does not exist.
    pub async fn connect(url: &str, max_connections: u32, create: bool) -> anyhow::Result<Store> {
        if create
            && !Postgres::database_exists(url).await.with_context(|| {
                format!("cannot reach PostgreSQL at {}; is it running?", redact(url))
            })?
        {
            // Another process may create it at the same moment: only its absence afterwards is an error.
            if let Err(e) = Postgres::create_database(url).await
                && !Postgres::database_exists(url).await.unwrap_or(false)
            {
                return Err(e)
                    .with_context(|| format!("cannot create the database in {}", redact(url)));
            }
            tracing::info!(url = %redact(url), "created the database");
        }
        let options: PgConnectOptions = url
            .parse()
            .with_context(|| format!("DATABASE_URL {} is not a PostgreSQL URL", redact(url)))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {}; is it running and does the database exist? (`herald migrate` creates it)", redact(url)))?;
        Ok(Store { pool })
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .context("cannot apply the migrations")
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    // ----- the planner's reads -----

    /// Up to `limit` users with an id above `after`, with whether they opted out of `kind`;
    /// only `only` when given, and only users whose stored zone is in `zones` when given.
    pub async fn users_page(
        &self,
        kind: &str,
        after: i64,
        limit: i64,
        only: Option<i64>,
        zones: Option<&[String]>,
    ) -> sqlx::Result<Vec<UserRow>> {
        sqlx::query_as(
            "SELECT u.id, u.email, u.display_name, u.timezone,
                    EXISTS (SELECT 1 FROM email_opt_outs o WHERE o.user_id = u.id AND o.kind = $1) AS opted_out
             FROM users u
             WHERE u.id > $2 AND ($4::bigint IS NULL OR u.id = $4) AND ($5::text[] IS NULL OR u.timezone = ANY($5))
             ORDER BY u.id
             LIMIT $3",
        )
        .bind(kind)
        .bind(after)
        .bind(limit)
        .bind(only)
        .bind(zones)
        .fetch_all(&self.pool)
        .await
    }

    /// Every time zone string users have, valid or not.
    pub async fn user_timezones(&self) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar("SELECT DISTINCT timezone FROM users")
            .fetch_all(&self.pool)
            .await
    }

    pub async fn user(&self, id: i64) -> sqlx::Result<Option<UserRow>> {
        sqlx::query_as(
            "SELECT id, email, display_name, timezone, false AS opted_out FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }

    // ----- schedule watermarks, under an advisory lock -----

    /// Takes the schedule's planning lock if no other process holds it. The lock is a
    /// transaction-scoped advisory lock: it ends with the transaction, so a process that dies
    /// while planning releases it with its connection, and the next tick (here or elsewhere)
    /// plans again. Commit with [`Store::advance_watermark`].
    pub async fn try_lock_schedule(
        &self,
        schedule: &str,
    ) -> sqlx::Result<Option<sqlx::Transaction<'static, Postgres>>> {
        let mut tx = self.pool.begin().await?;
        let locked: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('herald.schedule.' || $1, 0))",
        )
        .bind(schedule)
        .fetch_one(&mut *tx)
        .await?;
        Ok(locked.then_some(tx))
    }

    pub async fn watermark(&self, schedule: &str) -> sqlx::Result<Option<DateTime<Utc>>> {
        sqlx::query_scalar("SELECT planned_up_to FROM schedule_watermarks WHERE schedule = $1")
            .bind(schedule)
            .fetch_optional(&self.pool)
            .await
    }

    /// Records that `schedule` has planned up to `to`, and releases the lock.
    pub async fn advance_watermark(
        &self,
        mut tx: sqlx::Transaction<'static, Postgres>,
        schedule: &str,
        to: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO schedule_watermarks (schedule, planned_up_to) VALUES ($1, $2)
             ON CONFLICT (schedule) DO UPDATE SET planned_up_to = GREATEST(schedule_watermarks.planned_up_to, $2), updated_at = now()",
        )
        .bind(schedule)
        .bind(to)
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Open tasks of these users due in `[from, to)`.
    pub async fn open_tasks_due(
        &self,
        owners: &[i64],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> sqlx::Result<Vec<TaskRow>> {
        sqlx::query_as(
            "SELECT id, owner_id, title, due_at, completed_at FROM tasks
             WHERE owner_id = ANY($1) AND completed_at IS NULL AND due_at >= $2 AND due_at < $3
             ORDER BY owner_id, due_at, id",
        )
        .bind(owners)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
    }

    /// Tasks of these users completed in `[from, to)`.
    pub async fn tasks_completed(
        &self,
        owners: &[i64],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> sqlx::Result<Vec<TaskRow>> {
        sqlx::query_as(
            "SELECT id, owner_id, title, due_at, completed_at FROM tasks
             WHERE owner_id = ANY($1) AND completed_at >= $2 AND completed_at < $3
             ORDER BY owner_id, completed_at, id",
        )
        .bind(owners)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
    }

    /// Focus sessions of these users started in `[from, to)`.
    pub async fn focus_sessions(
        &self,
        owners: &[i64],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> sqlx::Result<Vec<FocusRow>> {
        sqlx::query_as(
            "SELECT owner_id, started_at, minutes FROM focus_sessions
             WHERE owner_id = ANY($1) AND started_at >= $2 AND started_at < $3",
        )
        .bind(owners)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
    }

    // ----- the app's data (seeding and tests) -----

    /// Inserts users and returns their ids, in order.
    pub async fn insert_users(&self, users: &[NewUser]) -> sqlx::Result<Vec<i64>> {
        sqlx::query_scalar(
            "INSERT INTO users (email, display_name, timezone)
             SELECT email, display_name, timezone FROM UNNEST($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t (email, display_name, timezone, n)
             ORDER BY n
             RETURNING id",
        )
        .bind(users.iter().map(|u| u.email.clone()).collect::<Vec<_>>())
        .bind(users.iter().map(|u| u.display_name.clone()).collect::<Vec<_>>())
        .bind(users.iter().map(|u| u.timezone.clone()).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await
    }

    pub async fn insert_tasks(&self, tasks: &[NewTask]) -> sqlx::Result<u64> {
        Ok(sqlx::query(
            "INSERT INTO tasks (owner_id, title, due_at, completed_at)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[])",
        )
        .bind(tasks.iter().map(|t| t.owner_id).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.title.clone()).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.due_at).collect::<Vec<_>>())
        .bind(tasks.iter().map(|t| t.completed_at).collect::<Vec<_>>())
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub async fn insert_focus_sessions(
        &self,
        sessions: &[(i64, DateTime<Utc>, i32)],
    ) -> sqlx::Result<u64> {
        Ok(sqlx::query(
            "INSERT INTO focus_sessions (owner_id, started_at, minutes)
             SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::int[])",
        )
        .bind(sessions.iter().map(|s| s.0).collect::<Vec<_>>())
        .bind(sessions.iter().map(|s| s.1).collect::<Vec<_>>())
        .bind(sessions.iter().map(|s| s.2).collect::<Vec<_>>())
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub async fn opt_out(&self, user_id: i64, kind: &str) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO email_opt_outs (user_id, kind) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(kind)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The highest user id, so a second seed run picks new email addresses.
    pub async fn max_user_id(&self) -> sqlx::Result<i64> {
        sqlx::query_scalar("SELECT COALESCE(max(id), 0) FROM users")
            .fetch_one(&self.pool)
            .await
    }

    // ----- planning -----

    /// Inserts the deliveries whose dedup key is new. Returns the ids of the rows inserted.
    pub async fn insert_deliveries(&self, rows: &[NewDelivery]) -> sqlx::Result<Vec<i64>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let col = |f: fn(&NewDelivery) -> String| rows.iter().map(f).collect::<Vec<_>>();
        sqlx::query_scalar(
            "INSERT INTO deliveries (kind, user_id, dedup_key, recipient, payload, planned_for, due_at, status, last_error)
             SELECT kind, user_id, dedup_key, recipient, payload::jsonb, planned_for, due_at, status, note
             FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[])
                  AS t (kind, user_id, dedup_key, recipient, payload, planned_for, due_at, status, note)
             ON CONFLICT (dedup_key) DO NOTHING
             RETURNING id",
        )
        .bind(col(|r| r.kind.clone()))
        .bind(rows.iter().map(|r| r.user_id).collect::<Vec<_>>())
        .bind(col(|r| r.dedup_key.clone()))
        .bind(col(|r| r.recipient.clone()))
        .bind(col(|r| r.payload.to_string()))
        .bind(rows.iter().map(|r| r.planned_for).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.due_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.note.clone()).collect::<Vec<_>>())
        .fetch_all(&self.pool)
        .await
    }

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

    /// Makes due again what a dead process left behind: claims whose lease expired, and
    /// dispatched rows that no worker picked up in time (Redis restarted without them, say).
    /// Returns (expired leases, stale dispatches).
    pub async fn recover(&self, redispatch_after: Duration) -> sqlx::Result<(u64, u64)> {
        let leases = sqlx::query(
            "UPDATE deliveries SET status = 'queued', dispatched_at = NULL, lease_until = NULL,
                    due_at = LEAST(due_at, now()), updated_at = now()
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
    /// delivery itself comes first. Each gets a Message-ID on its first claim, kept after.
    pub async fn claim(
        &self,
        id: i64,
        extra: i64,
        lease: Duration,
        message_id_domain: &str,
    ) -> sqlx::Result<Vec<Claimed>> {
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
                 lease_until = now() + $2::interval, dispatched_at = NULL,
                 message_id = COALESCE(message_id,
                     '<' || id || '.' || replace(gen_random_uuid()::text, '-', '') || '@' || $3 || '>'),
                 updated_at = now()
             WHERE id IN (SELECT id FROM own UNION ALL SELECT id FROM others)
             RETURNING id, kind, dedup_key, recipient, payload, attempts, round_attempts, message_id",
        )
        .bind(id)
        .bind(format!("{} milliseconds", lease.as_millis()))
        .bind(message_id_domain)
        .bind(extra)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.sort_by_key(|r| (r.id != id, r.id));
        Ok(rows)
    }

    /// Records the tries of one attempt (none when no provider could take the email) and moves
    /// the delivery on.
    pub async fn record(
        &self,
        d: &Claimed,
        tries: &[AttemptRecord<'_>],
        next: &Next<'_>,
    ) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        for a in tries {
            insert_attempt(&mut tx, d, a).await?;
        }
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
        sqlx::query(
            "UPDATE deliveries
             SET status = $2, due_at = COALESCE($3, due_at), lease_until = NULL, dispatched_at = NULL,
                 round_attempts = round_attempts - $4, attempts = attempts - $5,
                 last_error = CASE WHEN $2 = 'sent' THEN NULL ELSE COALESCE($6, last_error) END,
                 provider = COALESCE($7, provider), provider_id = COALESCE($8, provider_id),
                 batch_key = $9,
                 sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END,
                 updated_at = now()
             WHERE id = $1",
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
        .execute(&mut *tx)
        .await?;
        tx.commit().await
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

/// A URL with its password replaced, fit for logs and error messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
