//! What is up and what is down: PostgreSQL, Redis and Herald's own background parts, logged once
//! per change of state and read by `/readyz`.
//!
//! Every loop that talks to PostgreSQL or Redis reports each call's outcome here instead of
//! logging its own errors. An outage then costs one warning when it starts and one info line when
//! it ends, whatever the number of loops, workers and retries in between (a 30 s PostgreSQL
//! restart used to print hundreds of lines a second).

use std::{
    collections::BTreeMap,
    fmt::Display,
    sync::{Arc, Mutex},
    time::Instant,
};

use serde::Serialize;

/// A service Herald depends on.
/// Whether an error came from PostgreSQL (a failed query or connection) rather than from Herald.
pub fn is_postgres(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<sqlx::Error>().is_some())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dependency {
    Postgres,
    Redis,
}

impl Dependency {
    pub fn name(self) -> &'static str {
        match self {
            Dependency::Postgres => "PostgreSQL",
            Dependency::Redis => "Redis",
        }
    }
}

/// One of Herald's own long-running parts, as the supervisor sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PartState {
    Running,
    /// It ended or panicked; the supervisor restarts it after a pause.
    Restarting {
        why: String,
    },
}

#[derive(Debug, Default)]
struct State {
    /// Dependencies currently failing, with when the outage began and its first error.
    down: BTreeMap<Dependency, (Instant, String)>,
    parts: BTreeMap<&'static str, PartState>,
}

/// Shared, cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Mutex<State>>);

impl Health {
    /// Reports one call's outcome and passes it through.
    pub fn check<T, E: Display>(&self, dep: Dependency, result: Result<T, E>) -> Result<T, E> {
        match &result {
            Ok(_) => self.up(dep),
            Err(e) => self.down(dep, e),
        }
        result
    }

    /// A call to `dep` failed: a warning if it was up, nothing more while it stays down.
    pub fn down(&self, dep: Dependency, error: impl Display) {
        let mut state = self.lock();
        if state.down.contains_key(&dep) {
            tracing::debug!(dependency = dep.name(), error = %error, "still unreachable");
            return;
        }
        let error = error.to_string();
        tracing::warn!(
            dependency = dep.name(),
            error = %error,
            "{} is unreachable; Herald keeps what it has and retries until it is back",
            dep.name()
        );
        state.down.insert(dep, (Instant::now(), error));
    }

    /// A call to `dep` succeeded: one info line if it was down.
    pub fn up(&self, dep: Dependency) {
        let mut state = self.lock();
        if let Some((since, _)) = state.down.remove(&dep) {
            let secs = since.elapsed().as_secs_f64();
            tracing::info!(
                dependency = dep.name(),
                down_for_s = format!("{secs:.1}"),
                "{} is reachable again",
                dep.name()
            );
        }
    }

    /// Whether `dep` is known to be down, and since when (its first error).
    pub fn is_down(&self, dep: Dependency) -> Option<String> {
        self.lock().down.get(&dep).map(|(_, e)| e.clone())
    }

    pub fn set_part(&self, part: &'static str, state: PartState) {
        self.lock().parts.insert(part, state);
    }

    /// Every part the supervisor knows, and its state.
    pub fn parts(&self) -> BTreeMap<&'static str, PartState> {
        self.lock().parts.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few maps updated in one step each: a panic elsewhere cannot leave it
        // half-written, so a poisoned lock is still good to read.
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_remembered_until_the_first_success() {
        let h = Health::default();
        assert_eq!(h.is_down(Dependency::Redis), None);
        let _ = h.check::<(), _>(Dependency::Redis, Err("connection refused"));
        let _ = h.check::<(), _>(Dependency::Redis, Err("still refused"));
        assert_eq!(
            h.is_down(Dependency::Redis).as_deref(),
            Some("connection refused")
        );
        assert_eq!(h.is_down(Dependency::Postgres), None);
        let _ = h.check::<_, String>(Dependency::Redis, Ok(()));
        assert_eq!(h.is_down(Dependency::Redis), None);
    }
}
