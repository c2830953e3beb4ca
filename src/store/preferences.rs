//! Opt-outs per kind: Herald's own rows, keyed by the app's user id. The planner reads them for
//! each page of users; the app's settings page reads and writes them through
//! `/api/users/{id}/preferences`, and the unsubscribe link writes the same rows.

use std::collections::{BTreeMap, HashSet};

use super::*;

/// Which kinds a user gets: every kind Herald knows, `true` unless the user opted out of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Preferences {
    pub user_id: String,
    pub kinds: BTreeMap<String, bool>,
}

impl Store {
    /// The users among `ids` who opted out of `kind`.
    pub async fn opted_out_among(
        &self,
        kind: &str,
        ids: &[String],
    ) -> sqlx::Result<HashSet<String>> {
        let pool = pg_or!(self, lite => lite.opted_out_among(kind, ids).await);
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT user_id FROM email_opt_outs WHERE kind = $1 AND user_id = ANY($2)",
        )
        .bind(kind)
        .bind(ids)
        .fetch_all(pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// The kinds `user_id` opted out of.
    pub async fn opt_outs(&self, user_id: &str) -> sqlx::Result<Vec<String>> {
        let pool = pg_or!(self, lite => lite.opt_outs(user_id).await);
        sqlx::query_scalar("SELECT kind FROM email_opt_outs WHERE user_id = $1 ORDER BY kind")
            .bind(user_id)
            .fetch_all(pool)
            .await
    }

    /// Opts `user_id` out of `kind` (nothing happens if it already is).
    pub async fn opt_out(&self, user_id: &str, kind: &str) -> sqlx::Result<()> {
        self.set_preferences(user_id, &[(kind.to_owned(), false)])
            .await
    }

    /// Sets, for each kind given, whether `user_id` gets it, in one transaction: `false` writes
    /// an opt-out, `true` removes it. Kinds not given keep their setting.
    pub async fn set_preferences(
        &self,
        user_id: &str,
        kinds: &[(String, bool)],
    ) -> sqlx::Result<()> {
        let pool = pg_or!(self, lite => lite.set_preferences(user_id, kinds).await);
        let (off, on): (Vec<_>, Vec<_>) = kinds.iter().partition(|(_, wanted)| !wanted);
        let off: Vec<&str> = off.iter().map(|(k, _)| k.as_str()).collect();
        let on: Vec<&str> = on.iter().map(|(k, _)| k.as_str()).collect();
        let mut tx = pool.begin().await?;
        sqlx::query(
            "INSERT INTO email_opt_outs (user_id, kind) SELECT $1, k FROM UNNEST($2::text[]) AS k
             ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(&off)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM email_opt_outs WHERE user_id = $1 AND kind = ANY($2)")
            .bind(user_id)
            .bind(&on)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    /// Removes every opt-out of `user_id`: they get every kind again. Returns how many went.
    pub async fn clear_preferences(&self, user_id: &str) -> sqlx::Result<u64> {
        let pool = pg_or!(self, lite => lite.clear_preferences(user_id).await);
        Ok(sqlx::query("DELETE FROM email_opt_outs WHERE user_id = $1")
            .bind(user_id)
            .execute(pool)
            .await?
            .rows_affected())
    }
}

/// What [`Store::forget_users`] deleted from Herald's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Forgotten {
    pub deliveries: u64,
    pub attempts: u64,
    pub batches: u64,
    pub opt_outs: u64,
}

impl Store {
    /// Deletes everything Herald keeps about these users (deliveries with their attempts and
    /// batches, opt-outs), in one transaction; `herald seed --reset` uses it.
    pub async fn forget_users(&self, ids: &[String]) -> sqlx::Result<Forgotten> {
        let pool = pg_or!(self, lite => lite.forget_users(ids).await);
        let mut tx = pool.begin().await?;
        let deliveries: Vec<i64> = sqlx::query_scalar(
            "SELECT id FROM deliveries WHERE user_id = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(ids)
        .fetch_all(&mut *tx)
        .await?;
        let attempts = sqlx::query("DELETE FROM delivery_attempts WHERE delivery_id = ANY($1)")
            .bind(&deliveries)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let keys: Vec<String> = sqlx::query_scalar(
            "DELETE FROM deliveries WHERE id = ANY($1) RETURNING COALESCE(batch_key, '')",
        )
        .bind(&deliveries)
        .fetch_all(&mut *tx)
        .await?;
        // A batch record goes with its last member, as when a batch ends.
        let batches = sqlx::query(
            "DELETE FROM batches b WHERE b.key = ANY($1)
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.batch_key = b.key)",
        )
        .bind(&keys)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let opt_outs = sqlx::query("DELETE FROM email_opt_outs WHERE user_id = ANY($1)")
            .bind(ids)
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
