//! The lifecycle of a deployment: the real `herald` binary, run as processes against a private
//! Redis, a private PostgreSQL, a counting SMTP server and the Resend stand-in, through four
//! fires of the overdue summary, each hit mid-send by one kind of trouble:
//!
//! 1. through SMTP, planned by hand: SIGTERM, then a restart;
//! 2. through SMTP, planned by hand: SIGKILL, then a restart;
//! 3. through SMTP, planned by hand: Redis restarted (it comes back empty), then PostgreSQL
//!    stopped for 5 s;
//! 4. through Resend (SMTP second), planned by the schedule's cron, which fires while PostgreSQL
//!    is stopped for 5 s; then, mid-send, the restarts of fire 3 while the Resend stand-in holds
//!    requests past Herald's timeout (taken, the answer never comes in time), takes requests and
//!    answers 500, 502 or 504, and refuses others with 500 or 503.
//!
//! After each fire it checks that every email arrived, counted where it arrives: per
//! `X-Herald-Delivery` at the SMTP server, and per email Resend would have sent at the stand-in
//! (a retry under an idempotency key Resend already answered is not a new email, a request under
//! a new key is). It counts the copies (none allowed from a SIGTERM or a server restart, at most
//! the emails a process holds from a SIGKILL), and checks that the queue's Redis keys are back
//! near where they were before fire 1. Across the run: no process logs a worker crash, and each
//! outage adds fewer than 20 WARN/ERROR lines. A summary table is printed at the end, also when
//! it fails.
//!
//! `cargo test --test lifecycle` runs it with 600 emails per fire; the full size is
//! `HERALD_LIFECYCLE_EMAILS=12000 cargo test --release --test lifecycle -- --nocapture`
//! (see RELIABILITY.md). Without `redis-server`, or PostgreSQL's `initdb` and `pg_ctl`, it is
//! skipped with a loud `SKIPPED:` line, unless `HERALD_REQUIRE_SERVERS=1`.

// First, apart: the test below uses its macros.
#[macro_use]
#[path = "support/shared_servers.rs"]
mod shared_servers;

#[path = "support/ports.rs"]
mod ports;
#[path = "lifecycle/process.rs"]
mod process;
#[path = "lifecycle/report.rs"]
mod report;
#[path = "support/resend_stub.rs"]
mod resend_stub;
#[path = "support/servers.rs"]
mod servers;
#[path = "support/smtp_sink.rs"]
mod smtp_sink;

use std::{
    collections::HashMap,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use chrono::{DateTime, Days, NaiveTime, Utc};
use herald::{
    source::demo::{Demo, NewTask, NewUser},
    store::Store,
};
use serde_json::{Value, json};

use process::{Herald, Logs, Stand, ready, wait_healthy, warn_error_lines};
use report::{FireRow, OutageRow, Summary, figures, settle};
use resend_stub::Reply;
use servers::{PrivatePostgres, PrivateRedis};
use smtp_sink::SmtpSink;

const TOKEN: &str = "lifecycle-token-0123456789abcdef";
const RESEND_KEY: &str = "re_lifecycle_0123456789";
/// How long Redis stays away in its restart (it comes back empty).
const REDIS_DOWN: Duration = Duration::from_secs(2);
/// How long PostgreSQL stays stopped in each of its restarts (issue 19: no copy from 5 s).
const PG_DOWN: Duration = Duration::from_secs(5);
/// `mail.timeout` and `mail.resend.timeout`.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// The sizes and settings of the run; the bounds on copies are read from them.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub emails: usize,
    pub concurrency: usize,
    pub batch_size: usize,
    pub pool_size: usize,
    /// `mail.resend.batch_size`: small, so that a fire through Resend is many requests, and
    /// many of them meet the stand-in's faults.
    pub resend_batch: usize,
}

impl Size {
    fn from_env() -> Size {
        let emails = std::env::var("HERALD_LIFECYCLE_EMAILS")
            .ok()
            .map(|v| v.parse().expect("HERALD_LIFECYCLE_EMAILS is a number"))
            .unwrap_or(600);
        Size {
            emails,
            concurrency: 200,
            batch_size: 4,
            pool_size: 16,
            resend_batch: 5,
        }
    }

    /// How long the SMTP server waits before accepting each message: a fire then lasts at least
    /// ~5 s, so every event lands mid-send.
    pub fn smtp_delay(&self) -> Duration {
        let d = Duration::from_secs(5) * self.pool_size as u32 / self.emails.max(1) as u32;
        d.min(Duration::from_millis(150))
    }

    /// How long the Resend stand-in waits before looking at each request: the same ~5 s. A job
    /// ([`herald::queue::JOB_SIZE`] emails) sends its batches one after the other, so the
    /// requests in flight are the jobs a process holds at once.
    pub fn resend_delay(&self) -> Duration {
        let requests = self.emails.div_ceil(self.resend_batch).max(1) as u32;
        let in_flight = (self.concurrency / herald::queue::JOB_SIZE).max(1) as u32;
        let d = Duration::from_secs(5) * in_flight / requests;
        d.min(Duration::from_millis(500))
    }

    /// A generous bound on the wait for one fire's emails (it only stops a hung test).
    fn fire_deadline(&self) -> Duration {
        Duration::from_secs(120) + Duration::from_millis(20) * self.emails as u32
    }
}

/// Where a fire's emails go: the providers the process runs with.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Provider {
    Smtp,
    /// `["resend", "smtp"]`: Resend, and SMTP for what Resend says it did not take.
    Resend,
}

/// How a fire is planned.
#[derive(Debug, Clone, Copy)]
enum Plan {
    /// `POST /api/schedules/overdue_summary/trigger` as if it were 07:00 UTC that many days ago.
    Trigger(u64),
    /// The schedule's own cron, set (at the process's start) to fire while PostgreSQL is stopped.
    CronInOutage,
}

/// What hits the fire once 30 % of its emails arrived.
#[derive(Debug, Clone, Copy)]
enum Event {
    Sigterm,
    Sigkill,
    /// Redis restarted, then PostgreSQL stopped for [`PG_DOWN`]; through Resend, the stand-in
    /// gives faults meanwhile.
    Restarts,
}

#[derive(Debug, Clone, Copy)]
struct Fire {
    provider: Provider,
    plan: Plan,
    event: Event,
}

impl Fire {
    fn describe(&self) -> String {
        let provider = match self.provider {
            Provider::Smtp => "SMTP",
            Provider::Resend => "Resend+faults",
        };
        let plan = match self.plan {
            Plan::Trigger(_) => "trigger",
            Plan::CronInOutage => "cron during PG stop",
        };
        let event = match self.event {
            Event::Sigterm => "SIGTERM + restart",
            Event::Sigkill => "SIGKILL + restart",
            Event::Restarts => "Redis+PG restart",
        };
        format!("{provider}, {plan}: {event}")
    }
}

const FIRES: [Fire; 4] = [
    Fire {
        provider: Provider::Smtp,
        plan: Plan::Trigger(3),
        event: Event::Sigterm,
    },
    Fire {
        provider: Provider::Smtp,
        plan: Plan::Trigger(2),
        event: Event::Sigkill,
    },
    Fire {
        provider: Provider::Smtp,
        plan: Plan::Trigger(1),
        event: Event::Restarts,
    },
    Fire {
        provider: Provider::Resend,
        plan: Plan::CronInOutage,
        event: Event::Restarts,
    },
];

/// The faults the Resend stand-in gives every other request during the restarts: held past
/// Herald's timeout (taken, the answer too late), taken then answered 502, 500 or 504, not taken
/// and answered 500 (retried at Resend) or 503 (sent by SMTP instead).
fn resend_faults() -> Vec<Reply> {
    vec![
        Reply::Hang(SEND_TIMEOUT + Duration::from_secs(2)),
        Reply::TakenThen(502),
        Reply::Status(500, "internal_server_error"),
        Reply::TakenThen(504),
        Reply::Status(503, "service_unavailable"),
        Reply::TakenThen(500),
    ]
}

/// Everything a run holds. The summary is printed when the run is dropped, also on a panic.
struct Run {
    size: Size,
    http: reqwest::Client,
    redis: PrivateRedis,
    pg: PrivatePostgres,
    sink: SmtpSink,
    stub: Stand,
    store: Store,
    queue: String,
    logs: Logs,
    /// The variables of the running process.
    vars: Vec<(String, String)>,
    /// The running process (`None` only before the first starts).
    herald: Option<Herald>,
    provider: Provider,
    spawned: usize,
    baseline: report::Figures,
    /// Every dedup key planned so far, with its fire.
    seen: HashMap<String, String>,
    summary: Summary,
}

impl Run {
    /// The process's variables for a provider, and a cron firing once at `cron_at`.
    fn vars(&self, provider: Provider, cron_at: Option<DateTime<Utc>>) -> Vec<(String, String)> {
        let size = self.size;
        let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
        let mut vars: Vec<(&str, String)> = vec![
            ("DATABASE_URL", self.pg.url("herald")),
            ("REDIS_URL", self.redis.url()),
            ("SMTP_URL", self.sink.url()),
            ("MAIL_FROM", "Herald <herald@example.com>".into()),
            ("HERALD_API_TOKEN", TOKEN.into()),
            ("HERALD__QUEUE__NAME", self.queue.clone()),
            ("HERALD__TEMPLATES__DIR", templates.display().to_string()),
            ("HERALD__DATABASE__MAX_CONNECTIONS", "16".into()),
            ("HERALD__QUEUE__CONCURRENCY", size.concurrency.to_string()),
            ("HERALD__QUEUE__BATCH_SIZE", size.batch_size.to_string()),
            ("HERALD__MAIL__POOL_SIZE", size.pool_size.to_string()),
            // A dead process's claims come back after 10 s (a lease must outlive a send:
            // mail.timeout + 4 s). `queue.redispatch_after` keeps its default (5 min): what Redis
            // lost and what a dead worker held must come back through the marker key and the
            // drain of dead workers, not through that last resort.
            ("HERALD__MAIL__TIMEOUT", humantime(SEND_TIMEOUT)),
            ("HERALD__MAIL__CONNECT_TIMEOUT", "1s".into()),
            ("HERALD__QUEUE__LEASE", "10s".into()),
            // The cron ticks stay off unless the fire is the schedule's own.
            ("HERALD__SCHEDULES__ENABLED", "false".into()),
        ];
        if provider == Provider::Resend {
            vars.extend([
                ("RESEND_API_KEY", RESEND_KEY.into()),
                ("HERALD__MAIL__RESEND__BASE_URL", self.stub.url.clone()),
                ("HERALD__MAIL__PROVIDERS", r#"["resend", "smtp"]"#.into()),
                (
                    "HERALD__MAIL__RESEND__BATCH_SIZE",
                    size.resend_batch.to_string(),
                ),
                ("HERALD__MAIL__RESEND__REQUESTS_PER_SECOND", "1000".into()),
                ("HERALD__MAIL__RESEND__TIMEOUT", humantime(SEND_TIMEOUT)),
            ]);
        }
        if let Some(at) = cron_at {
            vars.extend([
                ("HERALD__SCHEDULES__OVERDUE_SUMMARY__ENABLED", "true".into()),
                (
                    "HERALD__SCHEDULES__OVERDUE_SUMMARY__CRON",
                    at.format("%-S %-M %-H * * *").to_string(),
                ),
                ("HERALD__SCHEDULES__OVERDUE_SUMMARY__TIMEZONE", "UTC".into()),
                ("HERALD__PLANNER__TICK", "* * * * * *".into()),
            ]);
        }
        vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
    }

    fn h(&self) -> &Herald {
        self.herald.as_ref().expect("herald runs")
    }

    fn hm(&mut self) -> &mut Herald {
        self.herald.as_mut().expect("herald runs")
    }

    fn spawn(&mut self, vars: &[(String, String)]) -> Herald {
        self.spawned += 1;
        Herald::spawn(
            vars,
            self.logs.0.join(format!("herald-{}.log", self.spawned)),
        )
    }

    /// SIGTERM, then a new process with `vars`.
    async fn restart_with(&mut self, vars: Vec<(String, String)>, why: &str) {
        self.hm().signal("-TERM");
        match self.hm().wait_exit(Duration::from_secs(60)).await {
            Some(status) if status.success() => {}
            other => self.summary.failures.push(format!(
                "SIGTERM before {why}: herald exited with {other:?}"
            )),
        }
        self.herald = Some(self.spawn(&vars));
        self.vars = vars;
        wait_healthy(&self.http, &self.h().address).await;
    }

    /// How many times each of `keys` arrived: at the SMTP server, at the stand-in.
    fn counts(&self, keys: &[String]) -> Vec<(u32, u32)> {
        let smtp = self.sink.delivery_counts(keys);
        let resend = self.stub.delivery_counts(keys);
        smtp.into_iter().zip(resend).collect()
    }

    /// How many of `keys` arrived at least once, by either provider.
    fn arrived(&self, keys: &[String]) -> usize {
        self.counts(keys).iter().filter(|(s, r)| s + r > 0).count()
    }

    /// Copies among `keys`: the emails beyond the first of each, by either provider.
    fn copies(&self, keys: &[String]) -> u64 {
        self.counts(keys)
            .iter()
            .map(|(s, r)| u64::from((s + r).saturating_sub(1)))
            .sum()
    }

    /// Waits until all `n` of `keys` arrived, or `within` passed; says whether they all did.
    /// What did not arrive is counted as lost in the fire's row (and fails the run), not hidden
    /// behind a panic that would leave the table unprinted.
    async fn arrived_within(&self, keys: &[String], n: usize, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        while self.arrived(keys) < n {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Waits until `n` of `keys` arrived at least once. On timeout the panic lists the
    /// deliveries that did not arrive, as PostgreSQL sees them.
    async fn wait_arrived(&self, keys: &[String], n: usize) {
        if self
            .arrived_within(keys, n, self.size.fire_deadline())
            .await
        {
            return;
        }
        let counts = self.counts(keys);
        let missing: Vec<&str> = keys
            .iter()
            .zip(&counts)
            .filter(|(_, (s, r))| s + r == 0)
            .map(|(k, _)| k.as_str())
            .collect();
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT json_build_object('id', id, 'status', status, 'attempts', attempts,
                    'last_error', last_error, 'dispatched_at', dispatched_at,
                    'lease_until', lease_until, 'updated_at', updated_at)::text
             FROM deliveries WHERE dedup_key = ANY($1) LIMIT 20",
        )
        .bind(&missing)
        .fetch_all(self.store.pg())
        .await
        .unwrap_or_default();
        panic!(
            "only {} of {n} emails arrived ({} expected in all); missing, as PostgreSQL sees them: {rows:?}; now {}",
            keys.len() - missing.len(),
            keys.len(),
            Utc::now()
        );
    }

    /// After an outage: waits until more emails than were in flight have arrived since, and
    /// `/readyz` is ready again (or the whole fire arrived). False when that did not happen
    /// within the fire's deadline.
    async fn resumed(&self, keys: &[String]) -> bool {
        let from = self.arrived(keys);
        let want = (from + self.size.pool_size + 1).min(keys.len());
        let deadline = tokio::time::Instant::now() + self.size.fire_deadline();
        let mut arrived = false;
        while tokio::time::Instant::now() < deadline {
            arrived = arrived || self.arrived(keys) >= want;
            if arrived && ready(&self.http, &self.h().address).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Stops PostgreSQL for [`PG_DOWN`]; returns when it stopped and when it was back.
    async fn pg_outage(&mut self) -> (DateTime<Utc>, Instant) {
        let stopped = Utc::now();
        blocking(|| self.pg.stop());
        tokio::time::sleep(PG_DOWN).await;
        blocking(|| self.pg.resume());
        (stopped, Instant::now())
    }

    /// The schedule fires at `at` while PostgreSQL is stopped; returns the fire's deliveries
    /// once it is planned.
    async fn cron_fire_in_outage(&mut self, at: DateTime<Utc>) -> Vec<i64> {
        // A schedule plans only the fires after its first round (its watermark).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !self
            .store
            .watermarks()
            .await
            .unwrap_or_default()
            .iter()
            .any(|(s, _)| s == "overdue_summary")
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the overdue summary's schedule never started planning"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let stop_at = at - chrono::Duration::from_std(PG_DOWN / 2).unwrap();
        let wait = (stop_at - Utc::now()).to_std().unwrap_or_else(|_| {
            panic!("herald took too long to start: the cron fire at {at} is too close")
        });
        tokio::time::sleep(wait).await;
        let mark = self.h().log_len();
        let outage = Instant::now();
        let (stopped, back) = self.pg_outage().await;
        let back_at = Utc::now();
        let when = format!(
            "the cron fire at {} UTC, PostgreSQL stopped from {} to {}",
            at.format("%H:%M:%S"),
            stopped.format("%H:%M:%S%.3f"),
            back_at.format("%H:%M:%S%.3f")
        );
        if stopped < at && at < back_at {
            self.summary.notes.push(when);
        } else {
            self.summary
                .failures
                .push(format!("{when}: it did not land in the outage"));
        }
        let n = self.size.emails as i64;
        let deadline = tokio::time::Instant::now() + self.size.fire_deadline();
        let ids: Vec<i64> = loop {
            let ids: Vec<i64> = sqlx::query_scalar(
                "SELECT id FROM deliveries WHERE dedup_key LIKE 'overdue_summary:%' ORDER BY id",
            )
            .fetch_all(self.store.pg())
            .await
            .unwrap_or_default();
            if ids.len() as i64 >= n {
                break ids;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the cron fire at {at} planned {} of {n} emails",
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let keys = dedup_keys(&self.store, &ids).await;
        let recovered = self.resumed(&keys).await;
        self.summary.outages.push(OutageRow {
            name: "PostgreSQL stop at the cron fire".into(),
            down_for: back - outage,
            recover: recovered.then(|| back.elapsed()),
            warn_error_lines: warn_error_lines(&self.h().log, mark, self.h().log_len()),
        });
        ids
    }

    /// Redis restarted, then PostgreSQL stopped for [`PG_DOWN`], each once sending resumed after
    /// the one before; through Resend the stand-in gives faults meanwhile, and until another
    /// tenth of the fire arrived after the restarts. Returns when the last server came back.
    async fn restarts(&mut self, name: &str, keys: &[String], provider: Provider) -> Instant {
        if provider == Provider::Resend {
            self.stub.inject(2, &resend_faults());
        }
        let mark = self.h().log_len();
        let outage = Instant::now();
        blocking(|| self.redis.stop());
        tokio::time::sleep(REDIS_DOWN).await;
        blocking(|| self.redis.resume());
        let back = Instant::now();
        let recovered = self.resumed(keys).await;
        self.summary.outages.push(OutageRow {
            name: format!("fire {name}: Redis restart"),
            down_for: back - outage,
            recover: recovered.then(|| back.elapsed()),
            warn_error_lines: warn_error_lines(&self.h().log, mark, self.h().log_len()),
        });
        if self.arrived(keys) == keys.len() {
            self.summary.notes.push(format!(
                "fire {name}: every email had arrived before the PostgreSQL restart"
            ));
        }
        // Only a lower bound on the Redis restart's copies: a claim it stranded may still go
        // again when its lease runs out. The fire's row counts every copy.
        let before_pg = self.copies(keys);
        self.summary.notes.push(format!(
            "fire {name}: {before_pg} copies seen before the PostgreSQL restart"
        ));
        let mark = self.h().log_len();
        let outage = Instant::now();
        let (_, back) = self.pg_outage().await;
        let recovered = self.resumed(keys).await;
        self.summary.outages.push(OutageRow {
            name: format!("fire {name}: PostgreSQL restart"),
            down_for: back - outage,
            recover: recovered.then(|| back.elapsed()),
            warn_error_lines: warn_error_lines(&self.h().log, mark, self.h().log_len()),
        });
        if provider == Provider::Resend {
            // The faults go on while the fire recovers (what was in flight, retried, and the
            // emails that waited): until another tenth of it arrived.
            let until = (self.arrived(keys) + keys.len() / 10).min(keys.len());
            self.arrived_within(keys, until, self.size.fire_deadline())
                .await;
            let faults = self.stub.stop_faults();
            let count = |f: fn(&Reply) -> bool| faults.iter().filter(|r| f(r)).count();
            self.summary.notes.push(format!(
                "fire {name}: the Resend stand-in gave {} requests a fault during the restarts and the next tenth of the fire: {} held past the timeout, {} taken then 5xx, {} refused 500, {} refused 503",
                faults.len(),
                count(|r| matches!(r, Reply::Hang(_))),
                count(|r| matches!(r, Reply::TakenThen(_))),
                count(|r| matches!(r, Reply::Status(500, _))),
                count(|r| matches!(r, Reply::Status(503, _))),
            ));
        }
        back
    }

    /// One fire: planned, hit by its event at 30 %, then waited for and counted.
    async fn fire(&mut self, name: &str, fire: Fire) {
        let n = self.size.emails;
        let cron_at = matches!(fire.plan, Plan::CronInOutage)
            .then(|| Utc::now() + chrono::Duration::seconds(15));
        if fire.provider != self.provider || cron_at.is_some() {
            let vars = self.vars(fire.provider, cron_at);
            self.restart_with(vars, &format!("fire {name}")).await;
            self.provider = fire.provider;
        }
        let before = figures(&self.redis.url(), &self.queue).await.unwrap();
        let ids = match fire.plan {
            Plan::Trigger(days) => trigger(&self.http, &self.h().address, days_ago(days)).await,
            Plan::CronInOutage => self.cron_fire_in_outage(cron_at.unwrap()).await,
        };
        assert_eq!(ids.len(), n, "fire {name} planned");
        let keys = dedup_keys(&self.store, &ids).await;
        for k in &keys {
            assert!(
                self.seen.insert(k.clone(), name.to_owned()).is_none(),
                "{k} planned twice"
            );
        }
        self.wait_arrived(&keys, n * 3 / 10).await;
        let arrived_at_event = self.arrived(&keys);
        if arrived_at_event == n {
            self.summary.notes.push(format!(
                "fire {name}: every email had arrived before the event"
            ));
        }
        let copy_bound = match fire.event {
            // A SIGTERM lets in-flight sends finish and be recorded: no copies at all.
            Event::Sigterm => 0,
            // At most the emails claimed and not yet recorded at the kill: those of the jobs the
            // workers held (fetched jobs not yet claimed are claimed once, after the restart).
            Event::Sigkill => claimed_at_once(&self.size),
            // The worker keeps trying to record an outcome (and renewing its lease) until the
            // lease is nearly spent: a 5 s outage within a 10 s lease makes no copy, and what
            // Redis lost is pushed again from PostgreSQL, claimed once.
            Event::Restarts => 0,
        };
        self.summary.fires.push(FireRow {
            name: name.into(),
            event: fire.describe(),
            expected: n,
            arrived_at_event,
            before,
            copy_bound,
            ..Default::default()
        });
        let event_at = Utc::now();
        let from = match fire.event {
            Event::Sigterm => {
                let term = Instant::now();
                self.hm().signal("-TERM");
                match self.hm().wait_exit(Duration::from_secs(60)).await {
                    Some(status) if status.success() => self.summary.notes.push(format!(
                        "fire {name}: SIGTERM: exited cleanly in {:.1}s",
                        term.elapsed().as_secs_f64()
                    )),
                    other => self.summary.failures.push(format!(
                        "fire {name}: SIGTERM: herald exited with {other:?} (None: not within 60 s)"
                    )),
                }
                self.respawn().await
            }
            Event::Sigkill => {
                self.hm().child.kill().unwrap();
                self.hm().child.wait().unwrap();
                self.respawn().await
            }
            Event::Restarts => self.restarts(name, &keys, fire.provider).await,
        };
        let all = self
            .arrived_within(&keys, n, self.size.fire_deadline())
            .await;
        let recover = from.elapsed();
        if all {
            wait_recorded(&self.store, &ids, Duration::from_secs(60)).await;
        }
        let after = settle(&self.redis.url(), &self.queue, &self.baseline).await;
        let counts = self.counts(&keys);
        let copies = self.copies(&keys);
        let arrived = self.arrived(&keys);
        let row = self.summary.fires.last_mut().unwrap();
        row.arrived = arrived;
        row.copies = copies;
        row.recover = Some(recover);
        row.after = after;
        if all {
            let last = last_recorded(&self.store, &ids, event_at).await;
            self.summary.notes.push(format!(
                "fire {name}: the last delivery recorded, its attempts (seconds after the event): {last}"
            ));
        }
        if fire.provider == Provider::Resend {
            let smtp: u32 = counts.iter().map(|c| c.0).sum();
            let resend: u32 = counts.iter().map(|c| c.1).sum();
            self.summary.notes.push(format!(
                "fire {name}: {resend} emails taken by the Resend stand-in, {smtp} by the SMTP server"
            ));
        }
    }

    /// A new process with the same variables; returns when it started.
    async fn respawn(&mut self) -> Instant {
        let vars = self.vars.clone();
        self.herald = Some(self.spawn(&vars));
        let restarted = Instant::now();
        wait_healthy(&self.http, &self.h().address).await;
        restarted
    }
}

fn humantime(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// Plans the overdue summary as if it were `at`; returns the new deliveries' ids.
async fn trigger(http: &reqwest::Client, address: &str, at: DateTime<Utc>) -> Vec<i64> {
    let r = http
        .post(format!("{address}/api/schedules/overdue_summary/trigger"))
        .bearer_auth(TOKEN)
        .json(&json!({ "at": at, "ids": true }))
        .send()
        .await
        .expect("the trigger request");
    let status = r.status().as_u16();
    let report: Value = r.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 202, "{report}");
    report["delivery_ids"]
        .as_array()
        .expect("delivery_ids")
        .iter()
        .map(|v| v.as_i64().unwrap())
        .collect()
}

/// The `X-Herald-Delivery` each delivery carries: its dedup key, read from PostgreSQL.
async fn dedup_keys(store: &Store, ids: &[i64]) -> Vec<String> {
    sqlx::query_scalar("SELECT dedup_key FROM deliveries WHERE id = ANY($1)")
        .bind(ids)
        .fetch_all(store.pg())
        .await
        .unwrap()
}

async fn wait_recorded(store: &Store, ids: &[i64], within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let sent: Result<i64, _> = sqlx::query_scalar(
            "SELECT count(*) FROM deliveries WHERE id = ANY($1) AND status = 'sent'",
        )
        .bind(ids)
        .fetch_one(store.pg())
        .await;
        if sent.as_ref().is_ok_and(|&n| n as usize == ids.len()) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {sent:?} of {} deliveries are recorded as sent",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The attempts of the delivery among `ids` recorded last, each with its time after `event`:
/// what the slowest email of a fire went through.
async fn last_recorded(store: &Store, ids: &[i64], event: DateTime<Utc>) -> String {
    sqlx::query_scalar(
        "WITH last AS (SELECT id FROM deliveries WHERE id = ANY($1) ORDER BY updated_at DESC LIMIT 1)
         SELECT string_agg(format('%s %s %s +%ss%s', a.provider, a.outcome, coalesce(a.code::text, '-'),
                    round(extract(epoch FROM a.at - $2)::numeric, 1),
                    coalesce(' (' || left(a.error, 80) || ')', '')), '; ' ORDER BY a.attempt)
         FROM delivery_attempts a JOIN last ON a.delivery_id = last.id",
    )
    .bind(ids)
    .bind(event)
    .fetch_one(store.pg())
    .await
    .unwrap_or_else(|e| Some(format!("cannot read: {e}")))
    .unwrap_or_default()
}

/// The most emails one Herald process holds claimed at once with these settings (jobs of
/// [`herald::queue::JOB_SIZE`], a Resend batch of 5 being smaller).
fn claimed_at_once(size: &Size) -> u64 {
    size.concurrency as u64
}

/// 07:00 UTC `days` days ago: each fire plans a different day, so its dedup keys are new.
fn days_ago(days: u64) -> DateTime<Utc> {
    Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(days))
        .unwrap()
        .and_time(NaiveTime::from_hms_opt(7, 0, 0).unwrap())
        .and_utc()
}

/// Runs blocking server control (pg_ctl, redis-server) without stalling the runtime's other
/// tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn herald_survives_sigterm_sigkill_and_redis_and_postgres_restarts_mid_send() {
    skip_without_programs!("redis-server", "initdb", "pg_ctl");
    let size = Size::from_env();
    let n = size.emails;
    let mut summary = Summary::default();
    summary.size = Some(size);

    let redis = blocking(PrivateRedis::start);
    let pg = blocking(PrivatePostgres::start);
    let sink = SmtpSink::start().await;
    sink.set_delay(size.smtp_delay());
    let stub = Stand::start();
    stub.set_delay(size.resend_delay());
    let logs = Logs(std::env::temp_dir().join(format!(
        "herald-lifecycle-{}",
        uuid::Uuid::new_v4().simple()
    )));
    std::fs::create_dir_all(&logs.0).unwrap();
    summary.logs = Some(logs.0.clone());
    let queue = format!(
        "herald-lifecycle-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let store = Store::connect(&pg.url("postgres"), 1, false).await.unwrap();
    let mut run = Run {
        size,
        http: reqwest::Client::new(),
        redis,
        pg,
        sink,
        stub,
        store,
        queue,
        logs,
        vars: Vec::new(),
        herald: None,
        provider: Provider::Smtp,
        spawned: 0,
        baseline: Default::default(),
        seen: HashMap::new(),
        summary,
    };
    run.vars = run.vars(Provider::Smtp, None);

    // The database, and one user per email with a task overdue on every fire's day.
    let migrate = Command::new(env!("CARGO_BIN_EXE_herald"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(run.vars.iter().map(|(k, v)| (k, v)))
        .arg("migrate")
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "herald migrate: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    run.store.pg().close().await;
    run.store = Store::connect(&run.pg.url("herald"), 4, false)
        .await
        .unwrap();
    let demo = Demo::connect(&run.pg.url("herald")).await.unwrap();
    demo.install().await.unwrap();
    let late = days_ago(10);
    for chunk in (0..n).collect::<Vec<_>>().chunks(5000) {
        let users: Vec<_> = chunk
            .iter()
            .map(|i| NewUser::new(&format!("life{i}@example.com"), &format!("Life {i}"), "UTC"))
            .collect();
        let ids = demo.insert_users(&users).await.unwrap();
        let tasks: Vec<_> = ids
            .iter()
            .map(|owner_id| NewTask {
                owner_id: owner_id.clone(),
                title: "Late".into(),
                due_at: Some(late),
                completed_at: None,
            })
            .collect();
        demo.insert_tasks(&tasks).await.unwrap();
    }

    let vars = run.vars.clone();
    run.herald = Some(run.spawn(&vars));
    wait_healthy(&run.http, &run.h().address).await;
    // The baseline: an idle daemon whose workers have registered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while figures(&run.redis.url(), &run.queue).await.unwrap().workers == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no worker registered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    run.baseline = figures(&run.redis.url(), &run.queue).await.unwrap();
    run.summary.baseline = run.baseline;

    for (i, fire) in FIRES.into_iter().enumerate() {
        run.fire(&(i + 1).to_string(), fire).await;
    }

    // ----- the end: a clean stop, then the verdicts -----
    run.hm().signal("-TERM");
    match run.hm().wait_exit(Duration::from_secs(60)).await {
        Some(status) if status.success() => {}
        other => run
            .summary
            .failures
            .push(format!("the last SIGTERM: herald exited with {other:?}")),
    }
    report::verdicts(&mut run).await;
    run.store.pg().close().await;
    run.sink.stop();
    let failures = run.summary.failures.clone();
    assert!(
        failures.is_empty(),
        "{} of the lifecycle's checks failed (see the summary)",
        failures.len()
    );
}
