//! The dashboard's session key (`ui_session_key`, one row): read by every process that checks a
//! session cookie, replaced to end every session at once (see `ui::auth`).

use super::*;

impl Store {
    /// The session key, made (at random) the first time it is asked for.
    pub async fn session_key(&self) -> Result<String, sqlx::Error> {
        let pool = pg_or!(self, lite => lite.session_key(random_key()).await);
        if let Some(key) = sqlx::query_scalar("SELECT key FROM ui_session_key")
            .fetch_optional(pool)
            .await?
        {
            return Ok(key);
        }
        // Two processes asking at once keep the first one's key.
        sqlx::query_scalar(
            "INSERT INTO ui_session_key (key) VALUES ($1) \
             ON CONFLICT (one) DO UPDATE SET key = ui_session_key.key RETURNING key",
        )
        .bind(random_key())
        .fetch_one(pool)
        .await
    }

    /// Replaces the session key: every session cookie signed with the old one stops working.
    /// Returns when it was replaced.
    pub async fn rotate_session_key(&self) -> Result<DateTime<Utc>, sqlx::Error> {
        let pool = pg_or!(self, lite => lite.rotate_session_key(random_key()).await);
        sqlx::query_scalar(
            "INSERT INTO ui_session_key (key) VALUES ($1) \
             ON CONFLICT (one) DO UPDATE SET key = EXCLUDED.key, rotated_at = now() \
             RETURNING rotated_at",
        )
        .bind(random_key())
        .fetch_one(pool)
        .await
    }
}

/// 32 random bytes in hex.
fn random_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
