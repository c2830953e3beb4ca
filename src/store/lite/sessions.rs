//! The dashboard's session key in the state file: the SQLite side of `store/sessions.rs`. The
//! table's one row has `one = 1` (PostgreSQL's is a boolean with a default): every insert names it.

use chrono::{DateTime, Utc};

use super::Lite;

impl Lite {
    pub async fn session_key(&self, new_key: String) -> sqlx::Result<String> {
        if let Some(key) = sqlx::query_scalar("SELECT key FROM ui_session_key")
            .fetch_optional(&self.reader)
            .await?
        {
            return Ok(key);
        }
        // Two tasks asking at once keep the first one's key.
        sqlx::query_scalar(
            "INSERT INTO ui_session_key (one, key, rotated_at) VALUES (1, $1, $2)
             ON CONFLICT (one) DO UPDATE SET key = ui_session_key.key RETURNING key",
        )
        .bind(new_key)
        .bind(Utc::now())
        .fetch_one(&self.writer)
        .await
    }

    pub async fn rotate_session_key(&self, new_key: String) -> sqlx::Result<DateTime<Utc>> {
        sqlx::query_scalar(
            "INSERT INTO ui_session_key (one, key, rotated_at) VALUES (1, $1, $2)
             ON CONFLICT (one) DO UPDATE SET key = excluded.key, rotated_at = excluded.rotated_at
             RETURNING rotated_at",
        )
        .bind(new_key)
        .bind(Utc::now())
        .fetch_one(&self.writer)
        .await
    }
}
