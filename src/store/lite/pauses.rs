//! Paused schedules in the state file: the SQLite side of `store/pauses.rs`.

use std::collections::HashMap;

use chrono::Utc;

use super::Lite;
use crate::store::Pause;

impl Lite {
    /// The insert and the read in one transaction on the writer: a resume cannot come between.
    pub async fn pause_schedule(
        &self,
        schedule: &str,
        reason: Option<&str>,
    ) -> sqlx::Result<Pause> {
        let mut tx = self.writer.begin().await?;
        sqlx::query(
            "INSERT INTO schedule_pauses (schedule, paused_at, reason) VALUES ($1, $2, $3)
             ON CONFLICT (schedule) DO NOTHING",
        )
        .bind(schedule)
        .bind(Utc::now())
        .bind(reason)
        .execute(&mut *tx)
        .await?;
        let pause = sqlx::query_as(
            "SELECT schedule, paused_at, reason FROM schedule_pauses WHERE schedule = $1",
        )
        .bind(schedule)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(pause)
    }

    pub async fn resume_schedule(&self, schedule: &str) -> sqlx::Result<bool> {
        let done = sqlx::query("DELETE FROM schedule_pauses WHERE schedule = $1")
            .bind(schedule)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn schedule_pause(&self, schedule: &str) -> sqlx::Result<Option<Pause>> {
        sqlx::query_as(
            "SELECT schedule, paused_at, reason FROM schedule_pauses WHERE schedule = $1",
        )
        .bind(schedule)
        .fetch_optional(&self.reader)
        .await
    }

    pub async fn schedule_pauses(&self) -> sqlx::Result<HashMap<String, Pause>> {
        let rows: Vec<Pause> =
            sqlx::query_as("SELECT schedule, paused_at, reason FROM schedule_pauses")
                .fetch_all(&self.reader)
                .await?;
        Ok(rows.into_iter().map(|p| (p.schedule.clone(), p)).collect())
    }
}
