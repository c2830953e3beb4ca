//! The app's data: users, tasks and focus sessions (read by the planner, written by seed and tests).

use super::*;

impl Store {
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

    pub async fn count_users(&self) -> sqlx::Result<i64> {
        sqlx::query_scalar("SELECT count(*) FROM users")
            .fetch_one(&self.pool)
            .await
    }

    /// Deletes the users whose email matches the regular expression `pattern`, and all that is
    /// theirs, in one transaction; returns how many rows of each table went. The users and
    /// their deliveries are locked first, so nothing new of theirs slips in between a count and
    /// its delete.
    pub async fn delete_users_matching(&self, pattern: &str) -> sqlx::Result<RemovedUsers> {
        let mut tx = self.pool.begin().await?;
        let users: Vec<i64> =
            sqlx::query_scalar("SELECT id FROM users WHERE email ~ $1 ORDER BY id FOR UPDATE")
                .bind(pattern)
                .fetch_all(&mut *tx)
                .await?;
        let deliveries: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM deliveries WHERE user_id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(&users)
        .fetch_all(&mut *tx)
        .await?;
        let attempts = delete_any(&mut tx, "delivery_attempts", "delivery_id", &deliveries).await?;
        let batch_keys: Vec<Option<String>> =
            sqlx::query_scalar("DELETE FROM deliveries WHERE id = ANY($1) RETURNING batch_key")
                .bind(&deliveries)
                .fetch_all(&mut *tx)
                .await?;
        // A batch record goes with its last member, as when a batch ends.
        let batches = sqlx::query(
            "DELETE FROM batches b WHERE b.key = ANY($1)
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.batch_key = b.key)",
        )
        .bind(
            batch_keys
                .iter()
                .flatten()
                .cloned()
                .collect::<Vec<String>>(),
        )
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let tasks = delete_any(&mut tx, "tasks", "owner_id", &users).await?;
        let focus_sessions = delete_any(&mut tx, "focus_sessions", "owner_id", &users).await?;
        let opt_outs = delete_any(&mut tx, "email_opt_outs", "user_id", &users).await?;
        let removed = RemovedUsers {
            users: delete_any(&mut tx, "users", "id", &users).await?,
            tasks,
            focus_sessions,
            opt_outs,
            deliveries: batch_keys.len() as u64,
            attempts,
            batches,
        };
        tx.commit().await?;
        Ok(removed)
    }
}

/// Deletes the rows of `table` whose `column` is one of `ids`; returns how many.
async fn delete_any(
    tx: &mut sqlx::PgConnection,
    table: &str,
    column: &str,
    ids: &[i64],
) -> sqlx::Result<u64> {
    Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
        "DELETE FROM {table} WHERE {column} = ANY($1)"
    )))
    .bind(ids)
    .execute(tx)
    .await?
    .rows_affected())
}

/// What [`Store::delete_users_matching`] deleted, table by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RemovedUsers {
    pub users: u64,
    pub tasks: u64,
    pub focus_sessions: u64,
    pub opt_outs: u64,
    pub deliveries: u64,
    pub attempts: u64,
    pub batches: u64,
}
