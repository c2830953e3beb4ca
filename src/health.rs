//! What is up and what is down: where Herald keeps its state, its queue, and its own background
//! parts, logged once per change of state and read by `/readyz`.
//!
//! The two dependencies are roles, named by the home Herald runs in: the state is PostgreSQL and
//! the queue Redis on the servers, and both are the one SQLite file in the embedded home. Logs,
//! `/readyz`, `/stats` and the `herald_up` gauge take the names from here, so an operator of a
//! one-file Herald never reads "PostgreSQL is unreachable".
//!
//! Every loop that talks to the state or the queue reports each call's outcome here instead of
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

/// Whether an error came from the state's database (a failed query or connection) rather than from
/// Herald.
pub fn is_state_error(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<sqlx::Error>().is_some())
}

/// A service Herald depends on, by its role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dependency {
    /// Where deliveries, attempts and watermarks live: PostgreSQL, or the state file.
    State,
    /// Where planned emails wait for a worker: Redis, or the state file's queue.
    Queue,
}

/// What the dependencies are called in one home: `key` in `/readyz`, `/stats` and `herald_up`,
/// `name` in logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names {
    /// The home itself, as `/readyz` calls it.
    home: &'static str,
    state: (&'static str, &'static str),
    queue: (&'static str, &'static str),
}

impl Names {
    /// PostgreSQL and Redis (the keys `postgres` and `redis`, as before the embedded home).
    pub const SERVERS: Names = Names {
        home: "servers",
        state: ("postgres", "PostgreSQL"),
        queue: ("redis", "Redis"),
    };
    /// One SQLite file holding both.
    pub const EMBEDDED: Names = Names {
        home: "embedded",
        state: ("state_file", "the state file"),
        queue: ("queue", "the queue in the state file"),
    };

    pub fn home(&self) -> &'static str {
        self.home
    }

    pub fn key(&self, dep: Dependency) -> &'static str {
        self.pick(dep).0
    }

    pub fn name(&self, dep: Dependency) -> &'static str {
        self.pick(dep).1
    }

    fn pick(&self, dep: Dependency) -> (&'static str, &'static str) {
        match dep {
            Dependency::State => self.state,
            Dependency::Queue => self.queue,
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

#[derive(Debug)]
struct State {
    names: Names,
    /// Dependencies currently failing, with when the outage began and its first error.
    down: BTreeMap<Dependency, (Instant, String)>,
    parts: BTreeMap<&'static str, PartState>,
}

/// Shared, cheap to clone.
#[derive(Debug, Clone)]
pub struct Health(Arc<Mutex<State>>);

impl Default for Health {
    /// The servers' names.
    fn default() -> Health {
        Health::new(Names::SERVERS)
    }
}

impl Health {
    pub fn new(names: Names) -> Health {
        Health(Arc::new(Mutex::new(State {
            names,
            down: BTreeMap::new(),
            parts: BTreeMap::new(),
        })))
    }

    /// What the dependencies are called here.
    pub fn names(&self) -> Names {
        self.lock().names
    }

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
        let name = state.names.name(dep);
        if state.down.contains_key(&dep) {
            tracing::debug!(dependency = name, error = %error, "still unreachable");
            return;
        }
        let error = error.to_string();
        tracing::warn!(
            dependency = name,
            error = %error,
            "{name} is unreachable; Herald keeps what it has and retries until it is back",
        );
        state.down.insert(dep, (Instant::now(), error));
    }

    /// A call to `dep` succeeded: one info line if it was down.
    pub fn up(&self, dep: Dependency) {
        let mut state = self.lock();
        let name = state.names.name(dep);
        if let Some((since, _)) = state.down.remove(&dep) {
            let secs = since.elapsed().as_secs_f64();
            tracing::info!(
                dependency = name,
                down_for_s = format!("{secs:.1}"),
                "{name} is reachable again",
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
        assert_eq!(h.is_down(Dependency::Queue), None);
        let _ = h.check::<(), _>(Dependency::Queue, Err("connection refused"));
        let _ = h.check::<(), _>(Dependency::Queue, Err("still refused"));
        assert_eq!(
            h.is_down(Dependency::Queue).as_deref(),
            Some("connection refused")
        );
        assert_eq!(h.is_down(Dependency::State), None);
        let _ = h.check::<_, String>(Dependency::Queue, Ok(()));
        assert_eq!(h.is_down(Dependency::Queue), None);
    }

    #[test]
    fn each_home_names_its_dependencies_as_the_operator_knows_them() {
        let servers = Health::default().names();
        assert_eq!(servers.key(Dependency::State), "postgres");
        assert_eq!(servers.name(Dependency::Queue), "Redis");
        let embedded = Health::new(Names::EMBEDDED).names();
        assert_eq!(embedded.key(Dependency::State), "state_file");
        assert_eq!(embedded.key(Dependency::Queue), "queue");
        assert!(!embedded.name(Dependency::State).contains("PostgreSQL"));
    }
}
