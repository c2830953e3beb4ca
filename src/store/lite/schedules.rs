//! Schedule watermarks and the planner's inserts in the state file: the SQLite side of
//! `store/schedules.rs`. The schedule lock is a mutex of the process: the file has one process
//! ([`super::lock`]), so a lock no other process can see is the whole lock.

use std::{collections::HashSet, sync::Arc};

use chrono::{DateTime, Utc};

use super::{Lite, json_list};
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

    /// One transaction for the page: one commit (one sync of the file) for many rows.
    pub async fn insert_deliveries(&self, rows: &[NewDelivery]) -> sqlx::Result<Vec<i64>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.writer.begin().await?;
        let mut ids = Vec::with_capacity(rows.len());
        for r in rows {
            let id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO deliveries (kind, user_id, dedup_key, recipient, payload, planned_for,
                                         due_at, status, last_error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (dedup_key) DO NOTHING
                 RETURNING id",
            )
            .bind(&r.kind)
            .bind(&r.user_id)
            .bind(&r.dedup_key)
            .bind(&r.recipient)
            .bind(&r.payload)
            .bind(r.planned_for)
            .bind(r.due_at)
            .bind(r.status)
            .bind(r.note.as_deref())
            .fetch_optional(&mut *tx)
            .await?;
            ids.extend(id);
        }
        tx.commit().await?;
        Ok(ids)
    }
}
