//! The dashboard's session key as each process holds it ([`SessionKeys`], which `ui::auth` signs
//! sessions with), and `POST /api/sessions/end`: ends every dashboard session of every Herald
//! process by replacing the session key; the API token stays as it is.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Json, extract::State};
use serde_json::{Value, json};

use super::{ApiError, AppState};
use crate::store::Store;

/// How long a process trusts the session key it read: another process's rotation takes effect
/// here within it.
pub const KEY_TTL: Duration = Duration::from_secs(2);

/// The session key as this process last read it.
#[derive(Debug, Clone, Default)]
pub struct SessionKeys(Arc<Mutex<Option<(String, Instant)>>>);

impl SessionKeys {
    /// The key sessions are signed with now: read again from PostgreSQL when older than
    /// [`KEY_TTL`]; while PostgreSQL does not answer, the last one read.
    pub async fn current(&self, store: &Store) -> Result<String, sqlx::Error> {
        let cached = self.0.lock().expect("never poisoned").clone();
        if let Some((key, read)) = &cached
            && read.elapsed() < KEY_TTL
        {
            return Ok(key.clone());
        }
        match store.session_key().await {
            Ok(key) => {
                *self.0.lock().expect("never poisoned") = Some((key.clone(), Instant::now()));
                Ok(key)
            }
            Err(e) => match cached {
                Some((key, _)) => Ok(key),
                None => Err(e),
            },
        }
    }

    /// Replaces the session key in PostgreSQL: every session of every process ends (in this one
    /// at once, in the others within [`KEY_TTL`]).
    pub async fn end_all(
        &self,
        store: &Store,
    ) -> Result<chrono::DateTime<chrono::Utc>, sqlx::Error> {
        let at = store.rotate_session_key().await?;
        *self.0.lock().expect("never poisoned") = None;
        tracing::info!("the session key was replaced: every dashboard session has ended");
        Ok(at)
    }
}

#[utoipa::path(post, path = "/sessions/end", tag = "sessions",
    description = "Ends every dashboard session (every browser must sign in again) by replacing \
        the session key in PostgreSQL; other processes follow within 2 s. The API token is not \
        changed.",
    responses((status = 200, description = "`{\"ended\": true, \"at\": …}`", body = Value)),
    security(("bearer" = [])))]
pub(super) async fn end(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let at = state.sessions.end_all(&state.store).await?;
    Ok(Json(json!({ "ended": true, "at": at })))
}
