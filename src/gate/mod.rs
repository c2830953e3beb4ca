//! Provider feedback shared through Redis by every worker of every Herald process: the rate
//! limit, pauses (429, quota, configuration) and the circuit of a provider that is down.
//!
//! # The keys, per provider, under the queue's name
//!
//! - `{queue}:provider:{name}:window`: a sorted set of the instants of the last requests. The
//!   limit is a sliding-window log rather than a refilling bucket: what Herald promises (and what
//!   Resend checks) is "never more than N requests in any one-second window", and a bucket with a
//!   burst of N lets 2N through in a window that straddles a refill. The window is one second plus
//!   [`GUARD`] for the network's jitter between Redis's clock and the provider's.
//! - `{queue}:provider:{name}:pause`: `fingerprint|class|message`, with an expiry. While it
//!   lives nobody sends through that provider. A rate limit's pause lasts what `retry-after`
//!   says, at most `mail.max_pause` (the message then says it was cut). A configuration pause only holds processes with the
//!   same credentials (fingerprint), so a process started with a fixed key is not held back by a
//!   pause its predecessor earned.
//! - `{queue}:provider:{name}:circuit`: exists while the provider is unreachable. When the pause
//!   it comes with expires, one worker at a time (`:probe`, a lock) tries; its success closes the
//!   circuit, its failure pauses again.
//! - `{queue}:provider:{name}:logged`: lets a configuration error be logged once a minute across
//!   all processes, not once per email.
//!
//! All of the admission check (pause, circuit, window) runs in one Lua script, so it is atomic.

use std::time::Duration;

use anyhow::Context;
use apalis_redis::ConnectionManager;

use crate::{
    domain::ErrorClass,
    mail::{Provider, SendError},
};

/// Added to the one-second window, for the jitter between Redis's clock and the provider's.
pub const GUARD: Duration = Duration::from_millis(150);

const ACQUIRE: &str = r"
-- KEYS: 1 pause, 2 circuit, 3 probe, 4 window
-- ARGV: 1 limit per window (0: none), 2 window ms, 3 probe lease ms, 4 unique member prefix,
--       5 this process's fingerprint, 6 how many requests are wanted
-- Returns {0, how many may go, '1' when probing} to go, or {1, wait ms, why} to wait.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local wanted = tonumber(ARGV[6])
local paused = redis.call('GET', KEYS[1])
if paused then
  local fp, class = string.match(paused, '^([^|]*)|([^|]*)|')
  if class ~= 'configuration' or fp == ARGV[5] then
    return {1, math.max(redis.call('PTTL', KEYS[1]), 1), paused}
  end
end
local probe = '0'
if redis.call('EXISTS', KEYS[2]) == 1 then
  if redis.call('SET', KEYS[3], ARGV[4], 'NX', 'PX', ARGV[3]) then
    probe = '1'
    wanted = 1
  else
    return {1, math.max(redis.call('PTTL', KEYS[3]), 1), '|circuit|another worker is probing'}
  end
end
local limit = tonumber(ARGV[1])
if limit > 0 then
  local window = tonumber(ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - window)
  local used = redis.call('ZCARD', KEYS[4])
  if used >= limit then
    local oldest = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    if probe == '1' then redis.call('DEL', KEYS[3]) end
    return {1, math.max(tonumber(oldest[2]) + window - now, 1), '|rate|'}
  end
  wanted = math.min(wanted, limit - used)
  local members = {}
  for i = 1, wanted do
    members[#members + 1] = now
    members[#members + 1] = ARGV[4] .. ':' .. i
  end
  redis.call('ZADD', KEYS[4], unpack(members))
  redis.call('PEXPIRE', KEYS[4], window)
end
return {0, wanted, probe}
";

/// Sets a pause unless a longer one is already there. Returns 2 when there was no pause (one
/// starts: worth a log line), 1 when one was extended, 0 when a longer one was left.
const PAUSE: &str = r"
local ttl = redis.call('PTTL', KEYS[1])
if ttl < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  if ttl < 0 then return 2 end
  return 1
end
return 0
";

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

/// The shared gate in front of every provider.
#[derive(Clone)]
pub struct Gate {
    conn: ConnectionManager,
    prefix: String,
    pauses: Pauses,
    acquire: redis::Script,
    pause: redis::Script,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gate({})", self.prefix)
    }
}

impl Gate {
    /// `prefix` is the queue's name, so each queue (and each test) has keys of its own.
    pub fn new(conn: ConnectionManager, prefix: &str, pauses: Pauses) -> Gate {
        Gate {
            conn,
            prefix: prefix.to_owned(),
            pauses,
            acquire: redis::Script::new(ACQUIRE),
            pause: redis::Script::new(PAUSE),
        }
    }

    fn key(&self, p: &Provider, what: &str) -> String {
        format!("{}:provider:{}:{what}", self.prefix, p.name())
    }

    /// Asks once whether `p` may take `wanted` requests now (one round trip, whatever the
    /// number: a worker asks once for all the emails of its job).
    pub async fn try_acquire(&self, p: &Provider, wanted: usize) -> anyhow::Result<Permit> {
        let mut conn = self.conn.clone();
        let member = uuid::Uuid::new_v4().simple().to_string();
        let window = Duration::from_secs(1) + GUARD;
        // `amount` is how many may go, or how many milliseconds to wait.
        let (go, amount, why): (i64, i64, String) = self
            .acquire
            .key(self.key(p, "pause"))
            .key(self.key(p, "circuit"))
            .key(self.key(p, "probe"))
            .key(self.key(p, "window"))
            .arg(p.per_second)
            .arg(window.as_millis() as u64)
            .arg(self.pauses.probe_lease.as_millis() as u64)
            .arg(member)
            .arg(&p.fingerprint)
            .arg(wanted.max(1))
            .invoke_async(&mut conn)
            .await
            .with_context(|| format!("cannot ask Redis whether {} may send", p.name()))?;
        permit(
            go,
            amount,
            &why,
            self.pauses.probe_interval,
            &self.key(p, "pause"),
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
            let mut conn = self.conn.clone();
            redis::pipe()
                .del(self.key(p, "circuit"))
                .del(self.key(p, "probe"))
                .query_async::<()>(&mut conn)
                .await
                .context("cannot close the circuit in Redis")?;
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
        let mut conn = self.conn.clone();
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
                let (was_open,): (bool,) = redis::pipe()
                    .atomic()
                    .exists(self.key(p, "circuit"))
                    .set_ex(self.key(p, "circuit"), 1, 3600)
                    .ignore()
                    .del(self.key(p, "probe"))
                    .ignore()
                    .query_async(&mut conn)
                    .await
                    .context("cannot open the circuit in Redis")?;
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
        let set = self
            .pause
            .key(self.key(p, "pause"))
            .arg(value)
            .arg(pause.as_millis().max(1) as u64)
            .invoke_async::<i64>(&mut conn)
            .await
            .with_context(|| format!("cannot pause {} in Redis", p.name()))?;
        // A pause is logged when it starts, not for every email that meets it.
        let started = set == 2;
        let lasts = humantime::format_duration(Duration::from_secs(pause.as_secs().max(1)));
        if let Some(asked) = cut_from
            && set != 0
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

    /// Logs a configuration error at most once a minute across every Herald process.
    async fn log_configuration(&self, p: &Provider, e: &SendError, pause: Duration) {
        let mut conn = self.conn.clone();
        let first: Option<String> = redis::cmd("SET")
            .arg(self.key(p, "logged"))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(60)
            .query_async(&mut conn)
            .await
            .unwrap_or(None);
        if first.is_some() {
            let pause = humantime::format_duration(Duration::from_secs(pause.as_secs().max(1)));
            tracing::error!(provider = p.name(), error = %e, pause = %pause, "the provider refuses Herald's configuration; sending through it is paused and no email is failed: fix it (see /readyz or `herald check`)");
        }
    }

    /// The provider's state, for `/readyz` and `herald check`.
    pub async fn state(&self, p: &Provider) -> anyhow::Result<State> {
        let mut conn = self.conn.clone();
        let (paused, ttl, circuit): (Option<String>, i64, bool) = redis::pipe()
            .get(self.key(p, "pause"))
            .pttl(self.key(p, "pause"))
            .exists(self.key(p, "circuit"))
            .query_async(&mut conn)
            .await
            .context("cannot read the provider's state from Redis")?;
        state_of(
            paused.as_deref(),
            ttl,
            circuit,
            &p.fingerprint,
            &self.key(p, "pause"),
        )
    }
}

/// What the admission script's answer means: `go` 0 to go (`amount` requests, `why` "1" when
/// probing), else wait `amount` ms for `why` (`fingerprint|class|message`, or `|rate|` or
/// `|circuit|…`). `key` is the pause's, for the error about a class this Herald does not know.
fn permit(
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

/// The pause [`Gate::failed`] writes for `e` (`fingerprint|class|message`, `note` after the
/// message): only a configuration pause carries the process's `fingerprint` (it holds only
/// processes with the same credentials), and an unreachable provider's pause is its circuit's.
fn pause_value(e: &SendError, fingerprint: &str, note: &str) -> String {
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
fn pause_parts(value: &str) -> (&str, &str, &str) {
    let mut parts = value.splitn(3, '|');
    let mut next = || parts.next().unwrap_or("");
    (next(), next(), next())
}

/// A provider's [`State`] from its pause in Redis (`paused`, with `ttl` ms left) and whether its
/// circuit is open, for a process whose credentials have `fingerprint`: another process's
/// configuration pause is not this one's.
fn state_of(
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

/// The error class of the pause in Redis key `key`, as [`Gate::failed`] wrote it.
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
#[path = "gate_tests.rs"]
mod tests;
