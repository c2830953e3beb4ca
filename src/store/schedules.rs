//! Schedule watermarks under a lock (PostgreSQL's advisory lock, or the embedded process's),
//! and the planner's inserts.

use super::*;

/// A schedule's planning lock, from [`Store::try_lock_schedule`] until
/// [`Store::advance_watermark`] (or until dropped, when planning fails).
#[derive(Debug)]
pub enum ScheduleLock {
    /// A transaction holding an advisory lock: it ends with the transaction, also when the
    /// process dies.
    Postgres(sqlx::Transaction<'static, Postgres>),
    /// The process's lock of the schedule (the file has one process).
    Sqlite(lite::ScheduleGuard),
}

impl Store {
    // ----- schedule watermarks, under an advisory lock -----

    /// Takes the schedule's planning lock if no other process holds it. The lock is a
    /// transaction-scoped advisory lock: it ends with the transaction, so a process that dies
    /// while planning releases it with its connection, and the next tick (here or elsewhere)
    /// plans again. Commit with [`Store::advance_watermark`].
    pub async fn try_lock_schedule(&self, schedule: &str) -> sqlx::Result<Option<ScheduleLock>> {
        let pool =
            pg_or!(self, lite => Ok(lite.try_lock_schedule(schedule).map(ScheduleLock::Sqlite)));
        let mut tx = pool.begin().await?;
        // This transaction stays open while the planner works on other connections: exempt it
        // from the server's idle-in-transaction limit (see `Store::connect`), for this
        // transaction only.
        sqlx::query("SET LOCAL idle_in_transaction_session_timeout = 0")
            .execute(&mut *tx)
            .await?;
        let locked: bool = sqlx::query_scalar(
            "SELECT pg_try_advisory_xact_lock(hashtextextended('herald.schedule.' || $1, 0))",
        )
        .bind(schedule)
        .fetch_one(&mut *tx)
        .await?;
        Ok(locked.then_some(ScheduleLock::Postgres(tx)))
    }

    pub async fn watermark(&self, schedule: &str) -> sqlx::Result<Option<DateTime<Utc>>> {
        let pool = pg_or!(self, lite => lite.watermark(schedule).await);
        sqlx::query_scalar("SELECT planned_up_to FROM schedule_watermarks WHERE schedule = $1")
            .bind(schedule)
            .fetch_optional(pool)
            .await
    }

    /// Records that `schedule` has planned up to `to`, and releases the lock.
    pub async fn advance_watermark(
        &self,
        lock: ScheduleLock,
        schedule: &str,
        to: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        let mut tx = match (lock, &self.db) {
            (ScheduleLock::Postgres(tx), _) => tx,
            (ScheduleLock::Sqlite(guard), Db::Sqlite(lite)) => {
                return lite.advance_watermark(guard, schedule, to).await;
            }
            (ScheduleLock::Sqlite(_), Db::Postgres { .. }) => {
                unreachable!("a SQLite schedule lock comes from an embedded store")
            }
        };
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

    // ----- planning -----

    /// Which of these dedup keys a delivery already has (a dry run's `already_planned`).
    pub async fn existing_keys(
        &self,
        keys: &[String],
    ) -> sqlx::Result<std::collections::HashSet<String>> {
        let pool = pg_or!(self, lite => lite.existing_keys(keys).await);
        if keys.is_empty() {
            return Ok(Default::default());
        }
        let found: Vec<String> =
            sqlx::query_scalar("SELECT dedup_key FROM deliveries WHERE dedup_key = ANY($1)")
                .bind(keys)
                .fetch_all(pool)
                .await?;
        Ok(found.into_iter().collect())
    }

    /// Inserts the deliveries whose dedup key is new. Returns the ids of the rows inserted. The
    /// payload goes in as the text the planner serialized: the column is `text`, not `json`, so
    /// PostgreSQL does not parse it again (migration 0015).
    pub async fn insert_deliveries(&self, rows: &[NewDelivery]) -> sqlx::Result<Vec<i64>> {
        let pool = pg_or!(self, lite => lite.insert_deliveries(rows).await);
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let text = |f: fn(&NewDelivery) -> &str| rows.iter().map(f).collect::<Vec<_>>();
        sqlx::query_scalar(
            "INSERT INTO deliveries (kind, user_id, dedup_key, recipient, payload, planned_for, due_at, status, last_error)
             SELECT kind, user_id, dedup_key, recipient, payload, planned_for, due_at, status, note
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::timestamptz[], $8::text[], $9::text[])
                  AS t (kind, user_id, dedup_key, recipient, payload, planned_for, due_at, status, note)
             ON CONFLICT (dedup_key) DO NOTHING
             RETURNING id",
        )
        .bind(text(|r| &r.kind))
        .bind(text(|r| &r.user_id))
        .bind(text(|r| &r.dedup_key))
        .bind(text(|r| &r.recipient))
        .bind(text(|r| &r.payload))
        .bind(rows.iter().map(|r| r.planned_for).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.due_at).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.note.as_deref()).collect::<Vec<_>>())
        .fetch_all(pool)
        .await
    }
}
