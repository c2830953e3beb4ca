//! Paused schedules (`schedule_pauses`): an operator's pause outlives restarts and holds for
//! every Herald process, since each planner reads it under the schedule's lock.

use super::*;

/// A schedule an operator paused.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Pause {
    pub schedule: String,
    pub paused_at: DateTime<Utc>,
    /// What the operator said, if anything.
    pub reason: Option<String>,
}

impl Store {
    /// Pauses `schedule`; an existing pause keeps its time and reason. Returns the pause.
    pub async fn pause_schedule(
        &self,
        schedule: &str,
        reason: Option<&str>,
    ) -> sqlx::Result<Pause> {
        let pool = pg_or!(self, lite => lite.pause_schedule(schedule, reason).await);
        sqlx::query_as(
            "WITH new AS (
                 INSERT INTO schedule_pauses (schedule, reason) VALUES ($1, $2)
                 ON CONFLICT (schedule) DO NOTHING
                 RETURNING schedule, paused_at, reason
             )
             SELECT schedule, paused_at, reason FROM new
             UNION ALL
             SELECT schedule, paused_at, reason FROM schedule_pauses
             WHERE schedule = $1 AND NOT EXISTS (SELECT 1 FROM new)",
        )
        .bind(schedule)
        .bind(reason)
        .fetch_one(pool)
        .await
    }

    /// Resumes `schedule`. Returns whether it was paused.
    pub async fn resume_schedule(&self, schedule: &str) -> sqlx::Result<bool> {
        let pool = pg_or!(self, lite => lite.resume_schedule(schedule).await);
        let done = sqlx::query("DELETE FROM schedule_pauses WHERE schedule = $1")
            .bind(schedule)
            .execute(pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// The pause of `schedule`, if it is paused.
    pub async fn schedule_pause(&self, schedule: &str) -> sqlx::Result<Option<Pause>> {
        let pool = pg_or!(self, lite => lite.schedule_pause(schedule).await);
        sqlx::query_as(
            "SELECT schedule, paused_at, reason FROM schedule_pauses WHERE schedule = $1",
        )
        .bind(schedule)
        .fetch_optional(pool)
        .await
    }

    /// Every paused schedule, by name.
    pub async fn schedule_pauses(&self) -> sqlx::Result<std::collections::HashMap<String, Pause>> {
        let pool = pg_or!(self, lite => lite.schedule_pauses().await);
        let rows: Vec<Pause> =
            sqlx::query_as("SELECT schedule, paused_at, reason FROM schedule_pauses")
                .fetch_all(pool)
                .await?;
        Ok(rows.into_iter().map(|p| (p.schedule.clone(), p)).collect())
    }
}
