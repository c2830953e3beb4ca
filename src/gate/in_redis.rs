//! The gate's state in Redis, shared by every worker of every Herald process on that Redis.
//!
//! # The keys, per provider, under the queue's name
//!
//! - `{queue}:provider:{name}:window`: a sorted set of the instants of the last requests. The
//!   limit is a sliding-window log rather than a refilling bucket: what Herald promises (and what
//!   Resend checks) is "never more than N requests in any one-second window", and a bucket with a
//!   burst of N lets 2N through in a window that straddles a refill. The window is one second plus
//!   [`GUARD`](super::GUARD) for the network's jitter between Redis's clock and the provider's.
//! - `{queue}:provider:{name}:pause`: `fingerprint|class|message`, with an expiry. While it
//!   lives nobody sends through that provider. A rate limit's pause lasts what `retry-after`
//!   says, at most `mail.max_pause` (the message then says it was cut). A configuration pause
//!   only holds processes with the same credentials (fingerprint), so a process started with a
//!   fixed key is not held back by a pause its predecessor earned.
//! - `{queue}:provider:{name}:circuit`: exists while the provider is unreachable. When the pause
//!   it comes with expires, one worker at a time (`:probe`, a lock) tries; its success closes the
//!   circuit, its failure pauses again.
//! - `{queue}:provider:{name}:logged`: lets a configuration error be logged once a minute across
//!   all processes, not once per email.
//!
//! All of the admission check (pause, circuit, window) runs in one Lua script, so it is atomic.
//! Each method here is one round trip (a script or a pipeline); what the answers mean is decided
//! in [`super::decide`], as for the in-process backend.

use std::time::Duration;

use anyhow::Context;
use apalis_redis::ConnectionManager;

use super::decide::{Answer, CIRCUIT, LOG_EVERY, PauseSet, Pauses, WINDOW};
use crate::mail::Provider;

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

/// The gate's keys in one Redis, under one prefix.
#[derive(Clone)]
pub(super) struct InRedis {
    conn: ConnectionManager,
    prefix: String,
    acquire: redis::Script,
    pause: redis::Script,
}

impl InRedis {
    /// `prefix` is the queue's name, so each queue (and each test) has keys of its own.
    pub(super) fn new(conn: ConnectionManager, prefix: &str) -> InRedis {
        InRedis {
            conn,
            prefix: prefix.to_owned(),
            acquire: redis::Script::new(ACQUIRE),
            pause: redis::Script::new(PAUSE),
        }
    }

    pub(super) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(super) fn key(&self, p: &Provider, what: &str) -> String {
        format!("{}:provider:{}:{what}", self.prefix, p.name())
    }

    /// The admission check: pause, circuit (taking the probe lock), window.
    pub(super) async fn acquire(
        &self,
        p: &Provider,
        wanted: usize,
        pauses: &Pauses,
    ) -> anyhow::Result<Answer> {
        let mut conn = self.conn.clone();
        let member = uuid::Uuid::new_v4().simple().to_string();
        self.acquire
            .key(self.key(p, "pause"))
            .key(self.key(p, "circuit"))
            .key(self.key(p, "probe"))
            .key(self.key(p, "window"))
            .arg(p.per_second)
            .arg(WINDOW.as_millis() as u64)
            .arg(pauses.probe_lease.as_millis() as u64)
            .arg(member)
            .arg(&p.fingerprint)
            .arg(wanted)
            .invoke_async(&mut conn)
            .await
            .with_context(|| format!("cannot ask Redis whether {} may send", p.name()))
    }

    /// Closes the circuit and frees the probe lock.
    pub(super) async fn close_circuit(&self, p: &Provider) -> anyhow::Result<()> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .del(self.key(p, "circuit"))
            .del(self.key(p, "probe"))
            .query_async::<()>(&mut conn)
            .await
            .context("cannot close the circuit in Redis")
    }

    /// Opens the circuit (or keeps it open) and frees the probe lock; whether it was open.
    pub(super) async fn open_circuit(&self, p: &Provider) -> anyhow::Result<bool> {
        let mut conn = self.conn.clone();
        let (was_open,): (bool,) = redis::pipe()
            .atomic()
            .exists(self.key(p, "circuit"))
            .set_ex(self.key(p, "circuit"), 1, CIRCUIT.as_secs())
            .ignore()
            .del(self.key(p, "probe"))
            .ignore()
            .query_async(&mut conn)
            .await
            .context("cannot open the circuit in Redis")?;
        Ok(was_open)
    }

    /// Sets the pause `value` for `pause`, unless a longer one is there.
    pub(super) async fn pause(
        &self,
        p: &Provider,
        value: &str,
        pause: Duration,
    ) -> anyhow::Result<PauseSet> {
        let mut conn = self.conn.clone();
        let set = self
            .pause
            .key(self.key(p, "pause"))
            .arg(value)
            .arg(pause.as_millis().max(1) as u64)
            .invoke_async::<i64>(&mut conn)
            .await
            .with_context(|| format!("cannot pause {} in Redis", p.name()))?;
        Ok(match set {
            2 => PauseSet::Started,
            1 => PauseSet::Extended,
            _ => PauseSet::Left,
        })
    }

    /// Whether this call is the first in a minute to log a configuration error of `p` (across
    /// every process); `false` when Redis cannot say.
    pub(super) async fn first_log(&self, p: &Provider) -> bool {
        let mut conn = self.conn.clone();
        let first: Option<String> = redis::cmd("SET")
            .arg(self.key(p, "logged"))
            .arg(1)
            .arg("NX")
            .arg("EX")
            .arg(LOG_EVERY.as_secs())
            .query_async(&mut conn)
            .await
            .unwrap_or(None);
        first.is_some()
    }

    /// The pause (its value and milliseconds left, `PTTL`) and whether the circuit is open.
    pub(super) async fn read(&self, p: &Provider) -> anyhow::Result<(Option<String>, i64, bool)> {
        let mut conn = self.conn.clone();
        redis::pipe()
            .get(self.key(p, "pause"))
            .pttl(self.key(p, "pause"))
            .exists(self.key(p, "circuit"))
            .query_async(&mut conn)
            .await
            .context("cannot read the provider's state from Redis")
    }
}
