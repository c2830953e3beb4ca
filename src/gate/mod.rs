//! Provider feedback shared by every worker: the rate limit, pauses (429, quota, configuration)
//! and the circuit of a provider that is down.
//!
//! [`Gate`] is the one type the workers, `/readyz`, `/metrics`, the dashboard and `herald check`
//! use. It keeps its state in one of two places, with the same rules:
//!
//! - in Redis ([`Gate::new`], `in_redis.rs`), shared by every process on that Redis, under the
//!   queue's name; what Herald runs with today;
//! - in the process ([`Gate::in_process`], `in_process.rs`), for a Herald that runs alone.
//!
//! The rules:
//!
//! - **Rate limit.** A sliding-window log per provider: at most `per_second` requests in any
//!   window of one second plus [`GUARD`]. A request that does not fit waits until the oldest in
//!   the window leaves it.
//! - **Pause.** After a 429, a quota or a configuration error, nobody sends through the provider
//!   until the pause expires. A rate limit's pause lasts what `retry-after` says, at most
//!   `mail.max_pause` (the message then says it was cut); a longer pause already there is left.
//!   A configuration pause holds only processes with the same credentials (fingerprint).
//! - **Circuit.** An unreachable provider is paused for `mail.probe_interval` and its circuit
//!   opens; after the pause, one worker at a time probes it (a lease of `probe_lease`, so a
//!   prober that dies without an answer does not hold it for ever). An answer closes the circuit;
//!   another failure to reach it pauses it again.
//! - **Logs.** A configuration error is logged once a minute, not once per email.
//!
//! This file holds what both backends share: the admission loop, which pause an error sets,
//! the logs; `decide.rs` what their answers mean. The backends only keep the state.

mod decide;
mod in_process;
mod in_redis;

use std::{sync::Arc, time::Duration};

use apalis_redis::ConnectionManager;

pub use decide::{GUARD, Pauses, Permit, State, Why, cut_note};
use decide::{PauseSet, pause_value, permit, state_of};
use in_process::InProcess;
use in_redis::InRedis;

use crate::{
    domain::ErrorClass,
    mail::{Provider, SendError},
};

/// The gate in front of every provider.
#[derive(Clone)]
pub struct Gate {
    backend: Backend,
    pauses: Pauses,
}

/// Where the gate keeps its state.
#[derive(Clone)]
enum Backend {
    Redis(InRedis),
    Local(Arc<InProcess>),
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.backend {
            Backend::Redis(r) => write!(f, "Gate({})", r.prefix()),
            Backend::Local(_) => write!(f, "Gate(in process)"),
        }
    }
}

impl Gate {
    /// A gate in Redis, shared by every process. `prefix` is the queue's name, so each queue
    /// (and each test) has keys of its own.
    pub fn new(conn: ConnectionManager, prefix: &str, pauses: Pauses) -> Gate {
        Gate {
            backend: Backend::Redis(InRedis::new(conn, prefix)),
            pauses,
        }
    }

    /// A gate in this process's memory, for a Herald that runs alone; its clones share it.
    pub fn in_process(pauses: Pauses) -> Gate {
        Gate {
            backend: Backend::Local(Arc::default()),
            pauses,
        }
    }

    /// Where `p`'s pause is kept, for the error about a pause this Herald cannot read.
    fn pause_key(&self, p: &Provider) -> String {
        match &self.backend {
            Backend::Redis(r) => r.key(p, "pause"),
            Backend::Local(_) => format!("(in process) provider:{}:pause", p.name()),
        }
    }

    /// Asks once whether `p` may take `wanted` requests now (one round trip, whatever the
    /// number: a worker asks once for all the emails of its job).
    pub async fn try_acquire(&self, p: &Provider, wanted: usize) -> anyhow::Result<Permit> {
        let wanted = wanted.max(1);
        // `amount` is how many may go, or how many milliseconds to wait.
        let (go, amount, why) = match &self.backend {
            Backend::Redis(r) => r.acquire(p, wanted, &self.pauses).await?,
            Backend::Local(l) => l.acquire(p, wanted, &self.pauses),
        };
        permit(
            go,
            amount,
            &why,
            self.pauses.probe_interval,
            &self.pause_key(p),
        )
    }

    /// Asks until `p` may send some of `wanted` requests, sleeping through waits that fit in
    /// `budget` and that are worth waiting for (a full window, a short rate-limit pause); returns
    /// the wait otherwise.
    pub async fn acquire(
        &self,
        p: &Provider,
        wanted: usize,
        budget: Duration,
    ) -> anyhow::Result<Permit> {
        let deadline = tokio::time::Instant::now() + budget;
        loop {
            let permit = self.try_acquire(p, wanted).await?;
            match &permit {
                Permit::Wait { wait, why }
                    if !why.fails_over() && tokio::time::Instant::now() + *wait <= deadline =>
                {
                    tokio::time::sleep(*wait).await;
                }
                _ => return Ok(permit),
            }
        }
    }

    /// The waits this gate applies.
    pub fn pauses(&self) -> &Pauses {
        &self.pauses
    }

    /// After a request that got an answer: a probe's answer closes the circuit.
    pub async fn answered(&self, p: &Provider, probe: bool) -> anyhow::Result<()> {
        if probe {
            match &self.backend {
                Backend::Redis(r) => r.close_circuit(p).await?,
                Backend::Local(l) => l.close_circuit(p),
            }
            tracing::info!(
                provider = p.name(),
                "the provider answers again; sending resumes"
            );
        }
        Ok(())
    }

    /// After a failed request: pauses the provider for everyone when the error says so, and
    /// returns how long. `None` when the error concerns only this email.
    pub async fn failed(
        &self,
        p: &Provider,
        e: &SendError,
        probe: bool,
    ) -> anyhow::Result<Option<Duration>> {
        let mut cut_from = None;
        let pause = match e.class {
            ErrorClass::RateLimited => {
                let (pause, asked) = self.pauses.rate_limit(e.wait);
                cut_from = asked;
                Some(pause)
            }
            ErrorClass::Quota => Some(e.wait.unwrap_or(Duration::from_secs(3600))),
            ErrorClass::Configuration => Some(self.pauses.configuration),
            ErrorClass::Transient if e.unreachable => {
                let was_open = match &self.backend {
                    Backend::Redis(r) => r.open_circuit(p).await?,
                    Backend::Local(l) => l.open_circuit(p),
                };
                // Once per opening across every process, not once per email that met it.
                if !was_open && !probe {
                    tracing::warn!(provider = p.name(), error = %e, "the provider cannot be reached; sending stops and one worker probes it every {}", humantime::format_duration(self.pauses.probe_interval));
                }
                Some(self.pauses.probe_interval)
            }
            ErrorClass::Transient | ErrorClass::Permanent | ErrorClass::Unknown => {
                self.answered(p, probe).await?;
                None
            }
        };
        let Some(pause) = pause else {
            return Ok(None);
        };
        let note = cut_from.map_or(String::new(), |asked| cut_note(asked, pause));
        let value = pause_value(e, &p.fingerprint, &note);
        let set = match &self.backend {
            Backend::Redis(r) => r.pause(p, &value, pause).await?,
            Backend::Local(l) => l.pause(p, &value, pause),
        };
        // A pause is logged when it starts, not for every email that meets it.
        let started = set == PauseSet::Started;
        let lasts = humantime::format_duration(Duration::from_secs(pause.as_secs().max(1)));
        if let Some(asked) = cut_from
            && set != PauseSet::Left
        {
            let asked = humantime::format_duration(Duration::from_secs(asked.as_secs()));
            tracing::warn!(provider = p.name(), asked = %asked, pause = %lasts, error = %e, "the provider asked for a pause longer than mail.max_pause; paused for mail.max_pause instead, then it is asked again");
        }
        match e.class {
            ErrorClass::Configuration => self.log_configuration(p, e, pause).await,
            ErrorClass::Quota if started => {
                tracing::warn!(provider = p.name(), error = %e, pause = %lasts, "the provider's quota is used up; it is paused until the reset, and its emails wait or go to the next provider");
            }
            ErrorClass::RateLimited if started => {
                tracing::info!(provider = p.name(), pause = %lasts, "the provider asks Herald to slow down; paused for every worker");
            }
            _ => {}
        }
        Ok(Some(pause))
    }

    /// Whether a configuration error of `p` is the first to be logged this minute.
    async fn first_log(&self, p: &Provider) -> bool {
        match &self.backend {
            Backend::Redis(r) => r.first_log(p).await,
            Backend::Local(l) => l.first_log(p),
        }
    }

    /// Logs a configuration error at most once a minute across every Herald process.
    async fn log_configuration(&self, p: &Provider, e: &SendError, pause: Duration) {
        if self.first_log(p).await {
            let pause = humantime::format_duration(Duration::from_secs(pause.as_secs().max(1)));
            tracing::error!(provider = p.name(), error = %e, pause = %pause, "the provider refuses Herald's configuration; sending through it is paused and no email is failed: fix it (see /readyz or `herald check`)");
        }
    }

    /// The provider's state, for `/readyz`, `/metrics`, the dashboard and `herald check`.
    pub async fn state(&self, p: &Provider) -> anyhow::Result<State> {
        let (paused, ttl, circuit) = match &self.backend {
            Backend::Redis(r) => r.read(p).await?,
            Backend::Local(l) => l.read(p),
        };
        state_of(
            paused.as_deref(),
            ttl,
            circuit,
            &p.fingerprint,
            &self.pause_key(p),
        )
    }
}

#[cfg(test)]
mod scenarios;
