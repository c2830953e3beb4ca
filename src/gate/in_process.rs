//! The gate's state in the process's memory, for a Herald that runs alone (the embedded mode):
//! the same rules as the Redis keys of [`super::in_redis`], kept per provider behind one mutex.
//!
//! Each field stands for one of those keys, an expiry included: the window's log of instants,
//! the pause (`fingerprint|class|message`, read by the same functions as a pause in Redis), the
//! open circuit, the probe's lease and the configuration error's log line. Each method is one
//! short section under the lock, like one script in Redis, so the admission check is atomic
//! here too; nothing in it awaits or sleeps. The clock is tokio's monotonic `Instant`.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Mutex, PoisonError},
    time::Duration,
};

use tokio::time::Instant;

use super::decide::{Answer, CIRCUIT, LOG_EVERY, PauseSet, Pauses, WINDOW, holds, millis};
use crate::mail::Provider;

/// What the gate keeps about one provider; an instant is when that part expires.
#[derive(Debug, Default)]
struct Keys {
    /// The instants of the requests of the last window, oldest first.
    window: VecDeque<Instant>,
    pause: Option<(String, Instant)>,
    circuit: Option<Instant>,
    probe: Option<Instant>,
    logged: Option<Instant>,
}

/// How long `until` has left after `now`, if it has not expired.
fn left(until: Option<Instant>, now: Instant) -> Option<Duration> {
    until.filter(|&until| until > now).map(|until| until - now)
}

impl Keys {
    /// The pause, if it has not expired, with how long it has left.
    fn pause(&self, now: Instant) -> Option<(&str, Duration)> {
        let (value, until) = self.pause.as_ref()?;
        left(Some(*until), now).map(|left| (value.as_str(), left))
    }
}

/// Every provider's state, by provider name.
#[derive(Debug, Default)]
pub(super) struct InProcess {
    providers: Mutex<HashMap<&'static str, Keys>>,
}

impl InProcess {
    /// Runs `f` on `p`'s state under the lock, with the time now.
    fn with<T>(&self, p: &Provider, f: impl FnOnce(&mut Keys, Instant) -> T) -> T {
        let mut providers = self
            .providers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        f(providers.entry(p.name()).or_default(), Instant::now())
    }

    /// The admission check, as the Redis script makes it: pause, circuit (taking the probe
    /// lease), window.
    pub(super) fn acquire(&self, p: &Provider, wanted: usize, pauses: &Pauses) -> Answer {
        self.with(p, |k, now| {
            if let Some((value, left)) = k.pause(now)
                && holds(value, &p.fingerprint)
            {
                return (1, millis(left), value.to_owned());
            }
            let mut wanted = wanted.max(1);
            let mut probe = false;
            if left(k.circuit, now).is_some() {
                if let Some(left) = left(k.probe, now) {
                    return (
                        1,
                        millis(left),
                        "|circuit|another worker is probing".to_owned(),
                    );
                }
                k.probe = Some(now + pauses.probe_lease);
                probe = true;
                wanted = 1;
            }
            let limit = p.per_second as usize;
            if limit > 0 {
                while k
                    .window
                    .front()
                    .is_some_and(|&at| now.saturating_duration_since(at) >= WINDOW)
                {
                    k.window.pop_front();
                }
                let used = k.window.len();
                if let Some(&oldest) = k.window.front()
                    && used >= limit
                {
                    if probe {
                        k.probe = None;
                    }
                    let wait = (oldest + WINDOW).saturating_duration_since(now);
                    return (1, millis(wait), "|rate|".to_owned());
                }
                wanted = wanted.min(limit - used);
                k.window.extend(std::iter::repeat_n(now, wanted));
            }
            let probe = if probe { "1" } else { "0" };
            (0, wanted as i64, probe.to_owned())
        })
    }

    /// Closes the circuit and frees the probe lease.
    pub(super) fn close_circuit(&self, p: &Provider) {
        self.with(p, |k, _| {
            k.circuit = None;
            k.probe = None;
        });
    }

    /// Opens the circuit (or keeps it open) and frees the probe lease; whether it was open.
    pub(super) fn open_circuit(&self, p: &Provider) -> bool {
        self.with(p, |k, now| {
            let was_open = left(k.circuit, now).is_some();
            k.circuit = Some(now + CIRCUIT);
            k.probe = None;
            was_open
        })
    }

    /// Sets the pause `value` for `pause`, unless a longer one is there.
    pub(super) fn pause(&self, p: &Provider, value: &str, pause: Duration) -> PauseSet {
        self.with(p, |k, now| {
            let set = match k.pause(now) {
                None => PauseSet::Started,
                Some((_, left)) if left < pause => PauseSet::Extended,
                Some(_) => return PauseSet::Left,
            };
            k.pause = Some((value.to_owned(), now + pause.max(Duration::from_millis(1))));
            set
        })
    }

    /// Whether this call is the first in a minute to log a configuration error of `p`.
    pub(super) fn first_log(&self, p: &Provider) -> bool {
        self.with(p, |k, now| {
            if left(k.logged, now).is_some() {
                return false;
            }
            k.logged = Some(now + LOG_EVERY);
            true
        })
    }

    /// The pause (its value and milliseconds left, -2 without one, as Redis's `PTTL`) and
    /// whether the circuit is open.
    pub(super) fn read(&self, p: &Provider) -> (Option<String>, i64, bool) {
        self.with(p, |k, now| {
            let circuit = left(k.circuit, now).is_some();
            match k.pause(now) {
                Some((value, left)) => (
                    Some(value.to_owned()),
                    i64::try_from(left.as_millis()).unwrap_or(i64::MAX),
                    circuit,
                ),
                None => (None, -2, circuit),
            }
        })
    }
}
