//! Schedule watermarks under an advisory lock, and the planner's inserts.

use super::*;

impl Store {
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
}
