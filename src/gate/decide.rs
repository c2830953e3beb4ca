//! What the gate's answers mean, whichever backend keeps its state: the permit a worker gets
//! ([`Permit`], [`Why`]), a provider's [`State`], the [`Pauses`] the gate applies, and the pure
//! decisions both backends share. A pause is kept as one value, `fingerprint|class|message`
//! ([`pause_value`]), in a Redis key or in the process's memory alike, and read back by the same
//! functions ([`permit`], [`state_of`]), so the two backends cannot read it two ways.

use std::time::Duration;

use anyhow::Context;

use crate::{domain::ErrorClass, mail::SendError};

/// Added to the one-second window, for the jitter between the gate's clock and the provider's.
pub const GUARD: Duration = Duration::from_millis(150);

/// The sliding window: one second plus [`GUARD`].
pub(super) const WINDOW: Duration = Duration::from_secs(1).saturating_add(GUARD);

/// How long an open circuit lasts when no probe closes it.
pub(super) const CIRCUIT: Duration = Duration::from_secs(3600);

/// How long a configuration error keeps others from being logged.
pub(super) const LOG_EVERY: Duration = Duration::from_secs(60);

/// An admission answer as [`permit`] reads it: `(go, amount, why)`.
pub(super) type Answer = (i64, i64, String);

/// What setting a pause did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PauseSet {
    /// There was no pause: one starts (worth a log line).
    Started,
    /// A shorter pause was there and now lasts as long as this one.
    Extended,
    /// A longer pause was there and is left as it is.
    Left,
}

/// Whether the pause `value` (`fingerprint|class|message`) holds a process whose credentials have
/// `fingerprint`: a configuration pause holds only the same credentials, any other every process.
/// The admission script in Redis makes the same test.
pub(super) fn holds(value: &str, fingerprint: &str) -> bool {
    let (fp, class, _) = pause_parts(value);
    class != "configuration" || fp == fingerprint
}

/// A wait as an admission answer gives it: whole milliseconds, rounded up (a caller that sleeps
/// it finds the wait over, not one millisecond short), at least one.
pub(super) fn millis(wait: Duration) -> i64 {
    i64::try_from(wait.as_micros().div_ceil(1000))
        .unwrap_or(i64::MAX)
        .max(1)
}

/// Whether a worker may send now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permit {
    /// Send `count` requests (at least one, at most as many as asked for); `probe` when this
    /// send tests a provider whose circuit is open (then `count` is 1).
    Go {
        probe: bool,
        count: usize,
    },
    Wait {
        wait: Duration,
        why: Why,
    },
}

/// Why a provider cannot take a request now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Why {
    /// The window is full: wait for room.
    Rate,
    /// Paused after an error of this class, with the provider's message.
    Paused { class: ErrorClass, message: String },
    /// Unreachable: the circuit is open.
    Circuit,
}

impl Why {
    /// Whether an email should try the next provider instead of waiting for this one.
    pub fn fails_over(&self) -> bool {
        match self {
            Why::Rate => false,
            Why::Circuit => true,
            Why::Paused { class, .. } => class.fails_over(),
        }
    }
}

/// What `/readyz` and `herald check` show for a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Ok,
    Paused {
        class: ErrorClass,
        message: String,
        remaining: Duration,
    },
    /// Unreachable; probed every `mail.probe_interval`.
    Circuit,
}

impl State {
    /// A configuration problem needs an operator: readiness fails while it lasts.
    pub fn needs_operator(&self) -> bool {
        matches!(
            self,
            State::Paused {
                class: ErrorClass::Configuration,
                ..
            }
        )
    }

    pub fn describe(&self) -> String {
        match self {
            State::Ok => "ok".to_owned(),
            State::Paused {
                class,
                message,
                remaining,
            } => format!(
                "paused ({class}) for {}s more: {message}",
                remaining.as_secs().max(1)
            ),
            State::Circuit => {
                "unreachable: sending stopped, one worker probes it every mail.probe_interval"
                    .to_owned()
            }
        }
    }
}

/// The waits the gate applies after an error.
#[derive(Debug, Clone, Copy)]
pub struct Pauses {
    pub configuration: Duration,
    pub probe_interval: Duration,
    /// For SMTP throttling, which gives no retry-after.
    pub throttle: Duration,
    /// How long a probe may hold the probe lock.
    pub probe_lease: Duration,
    /// The longest pause a rate limit sets (`mail.max_pause`), whatever `retry-after` says.
    pub max: Duration,
}

impl Pauses {
    /// The pause a rate limit sets: what the provider asked for (`retry-after`), at most
    /// [`Pauses::max`]; [`Pauses::throttle`] when it asked for nothing. With the wait asked for
    /// when it was cut.
    ///
    /// Only rate limits are cut. A quota pause lasts until the quota resets (hours for a daily
    /// quota, up to 31 days for a monthly one): asking earlier would only be refused again, and
    /// the emails go to the next provider meanwhile.
    pub fn rate_limit(&self, asked: Option<Duration>) -> (Duration, Option<Duration>) {
        match asked {
            Some(asked) if asked > self.max => (self.max, Some(asked)),
            Some(asked) => (asked, None),
            None => (self.throttle, None),
        }
    }
}

/// What a pause cut to `mail.max_pause` says, after the provider's message: on `/readyz`, in
/// `herald check` and on the dashboard.
pub fn cut_note(asked: Duration, max: Duration) -> String {
    format!(
        " (it asked for a pause of {}; cut to mail.max_pause, {})",
        humantime::format_duration(Duration::from_secs(asked.as_secs())),
        humantime::format_duration(max)
    )
}

/// What an admission answer means (the Redis script's, or the in-process backend's alike): `go` 0 to go (`amount` requests, `why` "1" when
/// probing), else wait `amount` ms for `why` (`fingerprint|class|message`, or `|rate|` or
/// `|circuit|…`). `key` is the pause's, for the error about a class this Herald does not know.
pub(super) fn permit(
    go: i64,
    amount: i64,
    why: &str,
    probe_interval: Duration,
    key: &str,
) -> anyhow::Result<Permit> {
    if go == 0 {
        return Ok(Permit::Go {
            probe: why == "1",
            count: usize::try_from(amount).unwrap_or(1).max(1),
        });
    }
    let wait = Duration::from_millis(amount.max(1) as u64);
    let (_, class, message) = pause_parts(why);
    Ok(match class {
        "rate" => Permit::Wait {
            wait,
            why: Why::Rate,
        },
        "circuit" => Permit::Wait {
            wait: wait.min(probe_interval),
            why: Why::Circuit,
        },
        _ => Permit::Wait {
            wait,
            why: Why::Paused {
                class: paused_class(key, class)?,
                message: message.to_owned(),
            },
        },
    })
}

/// The pause `Gate::failed` writes for `e` (`fingerprint|class|message`, `note` after the
/// message): only a configuration pause carries the process's `fingerprint` (it holds only
/// processes with the same credentials), and an unreachable provider's pause is its circuit's.
pub(super) fn pause_value(e: &SendError, fingerprint: &str, note: &str) -> String {
    let fingerprint = if e.class == ErrorClass::Configuration {
        fingerprint
    } else {
        ""
    };
    let class = if e.unreachable {
        "circuit"
    } else {
        e.class.as_str()
    };
    format!("{fingerprint}|{class}|{}{note}", e.message)
}

/// A pause as [`pause_value`] writes it, `fingerprint|class|message`, in its three parts (empty
/// where missing).
pub(super) fn pause_parts(value: &str) -> (&str, &str, &str) {
    let mut parts = value.splitn(3, '|');
    let mut next = || parts.next().unwrap_or("");
    (next(), next(), next())
}

/// A provider's [`State`] from its pause (`paused`, with `ttl` ms left, as Redis's `PTTL`) and whether its
/// circuit is open, for a process whose credentials have `fingerprint`: another process's
/// configuration pause is not this one's.
pub(super) fn state_of(
    paused: Option<&str>,
    ttl: i64,
    circuit: bool,
    fingerprint: &str,
    key: &str,
) -> anyhow::Result<State> {
    if let Some(value) = paused {
        let (fp, class, message) = pause_parts(value);
        let message = message.to_owned();
        if class == "circuit" {
            return Ok(State::Circuit);
        }
        let class = paused_class(key, class)?;
        let ours = class != ErrorClass::Configuration || fp == fingerprint;
        if ours {
            return Ok(State::Paused {
                class,
                message,
                remaining: Duration::from_millis(ttl.max(0) as u64),
            });
        }
    }
    Ok(if circuit { State::Circuit } else { State::Ok })
}

/// The error class of the pause in Redis key `key`, as `Gate::failed` wrote it.
fn paused_class(key: &str, class: &str) -> anyhow::Result<ErrorClass> {
    ErrorClass::parse(class).with_context(|| {
        format!(
            "the pause in Redis key {key} has the error class {class:?}, which this Herald does \
             not know (was it written by a newer Herald?); it lifts when the key expires, or \
             delete the key"
        )
    })
}

#[cfg(test)]
#[path = "decide_tests.rs"]
mod tests;
