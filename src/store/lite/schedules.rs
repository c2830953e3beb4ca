//! Schedule watermarks and the planner's inserts in the state file: the SQLite side of
//! `store/schedules.rs`. The schedule lock is a mutex of the process: the file has one process
//! ([`super::lock`]), so a lock no other process can see is the whole lock.

use std::{collections::HashSet, sync::Arc};

use chrono::{DateTime, Utc};

use sqlx::{QueryBuilder, Sqlite};

use super::{Lite, deliveries::ROWS_PER_STATEMENT, json_list};
use crate::store::NewDelivery;

/// A schedule's planning lock, held until the watermark is advanced (or the planner gives up).
pub type ScheduleGuard = tokio::sync::OwnedMutexGuard<()>;

impl Lite {
    pub fn try_lock_schedule(&self, schedule: &str) -> Option<ScheduleGuard> {
        let lock = {
            let mut locks = self.schedule_locks.lock().expect("no panic while held");
            locks.entry(schedule.to_owned()).or_default().clone()
        };
        Arc::clone(&lock).try_lock_owned().ok()
    }

    pub async fn watermark(&self, schedule: &str) -> sqlx::Result<Option<DateTime<Utc>>> {
        sqlx::query_scalar("SELECT planned_up_to FROM schedule_watermarks WHERE schedule = $1")
            .bind(schedule)
            .fetch_optional(&self.reader)
            .await
    }

    pub async fn advance_watermark(
        &self,
        lock: ScheduleGuard,
        schedule: &str,
        to: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO schedule_watermarks (schedule, planned_up_to) VALUES ($1, $2)
             ON CONFLICT (schedule) DO UPDATE
             SET planned_up_to = max(schedule_watermarks.planned_up_to, $2), updated_at = $3",
        )
        .bind(schedule)
        .bind(to)
        .bind(Utc::now())
        .execute(&self.writer)
        .await?;
        drop(lock);
        Ok(())
    }

    pub async fn existing_keys(&self, keys: &[String]) -> sqlx::Result<HashSet<String>> {
        if keys.is_empty() {
            return Ok(HashSet::new());
        }
        let found: Vec<String> = sqlx::query_scalar(
            "SELECT dedup_key FROM deliveries WHERE dedup_key IN (SELECT value FROM json_each($1))",
        )
        .bind(json_list(keys))
        .fetch_all(&self.reader)
        .await?;
        Ok(found.into_iter().collect())
    }

    /// One transaction for the page (one commit, one sync of the file), and one statement for
    /// up to [`ROWS_PER_STATEMENT`] rows: row by row, a page of a thousand was a thousand round
    /// trips to the writer's thread.
    pub async fn insert_deliveries(&self, rows: &[NewDelivery]) -> sqlx::Result<Vec<i64>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.writer.begin().await?;
        let mut ids = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO deliveries (kind, user_id, dedup_key, recipient, payload, planned_for,
                                         due_at, status, last_error) ",
            );
            insert.push_values(chunk, |mut row, r| {
                row.push_bind(&r.kind)
                    .push_bind(&r.user_id)
                    .push_bind(&r.dedup_key)
                    .push_bind(&r.recipient)
                    .push_bind(&r.payload)
                    .push_bind(r.planned_for)
                    .push_bind(r.due_at)
                    .push_bind(r.status)
                    .push_bind(r.note.as_deref());
            });
            insert.push(" ON CONFLICT (dedup_key) DO NOTHING RETURNING id");
            let inserted: Vec<i64> = insert
                .build_query_scalar()
                .persistent(false)
                .fetch_all(&mut *tx)
                .await?;
            ids.extend(inserted);
        }
        tx.commit().await?;
        Ok(ids)
    }
}
