//! Opt-outs per kind in the state file: the SQLite side of `store/preferences.rs`.

use std::collections::HashSet;

use chrono::Utc;

use super::{Lite, json_list};
use crate::store::Forgotten;

impl Lite {
    pub async fn opted_out_among(
        &self,
        kind: &str,
        ids: &[String],
    ) -> sqlx::Result<HashSet<String>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM email_opt_outs
             WHERE kind = $1 AND user_id IN (SELECT value FROM json_each($2))",
        )
        .bind(kind)
        .bind(json_list(ids))
        .fetch_all(&self.reader)
        .await?;
        Ok(rows.into_iter().collect())
    }

    pub async fn opt_outs(&self, user_id: &str) -> sqlx::Result<Vec<String>> {
        sqlx::query_scalar("SELECT kind FROM email_opt_outs WHERE user_id = $1 ORDER BY kind")
            .bind(user_id)
            .fetch_all(&self.reader)
            .await
    }

    pub async fn set_preferences(
        &self,
        user_id: &str,
        kinds: &[(String, bool)],
    ) -> sqlx::Result<()> {
        let (off, on): (Vec<_>, Vec<_>) = kinds.iter().partition(|(_, wanted)| !wanted);
        let off: Vec<&str> = off.iter().map(|(k, _)| k.as_str()).collect();
        let on: Vec<&str> = on.iter().map(|(k, _)| k.as_str()).collect();
        let mut tx = self.writer.begin().await?;
        // `WHERE true`: SQLite's grammar wants it between `INSERT … SELECT` and `ON CONFLICT`.
        sqlx::query(
            "INSERT INTO email_opt_outs (user_id, kind, created_at)
             SELECT $1, value, $3 FROM json_each($2) WHERE true
             ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(json_list(&off))
        .bind(Utc::now())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM email_opt_outs
             WHERE user_id = $1 AND kind IN (SELECT value FROM json_each($2))",
        )
        .bind(user_id)
        .bind(json_list(&on))
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    pub async fn clear_preferences(&self, user_id: &str) -> sqlx::Result<u64> {
        Ok(sqlx::query("DELETE FROM email_opt_outs WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.writer)
            .await?
            .rows_affected())
    }

    pub async fn forget_users(&self, ids: &[String]) -> sqlx::Result<Forgotten> {
        let mut tx = self.writer.begin().await?;
        let deliveries: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM deliveries WHERE user_id IN (SELECT value FROM json_each($1))
             ORDER BY id",
        )
        .bind(json_list(ids))
        .fetch_all(&mut *tx)
        .await?;
        let deliveries = json_list(&deliveries);
        let attempts = sqlx::query(
            "DELETE FROM delivery_attempts WHERE delivery_id IN (SELECT value FROM json_each($1))",
        )
        .bind(&deliveries)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let keys: Vec<String> = sqlx::query_scalar(
            "DELETE FROM deliveries WHERE id IN (SELECT value FROM json_each($1))
             RETURNING COALESCE(batch_key, '')",
        )
        .bind(&deliveries)
        .fetch_all(&mut *tx)
        .await?;
        // A batch record goes with its last member, as when a batch ends.
        let batches = sqlx::query(
            "DELETE FROM batches WHERE key IN (SELECT value FROM json_each($1))
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.batch_key = batches.key)",
        )
        .bind(json_list(&keys))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let opt_outs = sqlx::query(
            "DELETE FROM email_opt_outs WHERE user_id IN (SELECT value FROM json_each($1))",
        )
        .bind(json_list(ids))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(Forgotten {
            deliveries: keys.len() as u64,
            attempts,
            batches,
            opt_outs,
        })
    }
}
