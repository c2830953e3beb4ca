//! The fires of the lifecycle test, in one table for both homes: how each is planned, where its
//! emails go, what hits it mid-send and which homes it runs in. A fire about Redis or PostgreSQL
//! has no embedded twin (the queue and the state are one file inside the process: there is no
//! server to restart apart from Herald), and the table says so instead of faking one. Also the
//! sizes of a run and the bounds on copies read from them.

use std::time::Duration;

use crate::resend_stub::Reply;

/// `mail.timeout` and `mail.resend.timeout`.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a run keeps Herald's state and queue.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HomeKind {
    /// A private PostgreSQL and a private Redis; two processes take turns on them.
    Servers,
    /// One SQLite file in a temporary folder; one process, restarted on it.
    Embedded,
}

/// Where a fire's emails go: the providers the process runs with.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Provider {
    Smtp,
    /// `["resend", "smtp"]`: Resend, and SMTP for what Resend says it did not take.
    Resend,
}

/// How a fire is planned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Plan {
    /// `POST /api/schedules/overdue_summary/trigger` as if it were 07:00 UTC that many days ago.
    Trigger(u64),
    /// The schedule's own cron, set (at the process's start) to fire 15 s later.
    Cron,
    /// The same, firing while PostgreSQL is stopped (servers only).
    CronInOutage,
}

/// What hits the fire once 30 % of its emails arrived.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Event {
    Sigterm,
    Sigkill,
    /// The SMTP server stops (every connection dropped, new ones refused) for
    /// [`SMTP_DOWN`], then listens again on the same port.
    SmtpDown,
    /// Redis restarted, then PostgreSQL stopped for `PG_DOWN`; through Resend, the stand-in
    /// gives faults meanwhile (servers only).
    Restarts,
    /// The Resend stand-in gives faults ([`resend_faults`]) until another fifth of the fire
    /// arrived.
    ResendFaults,
}

/// Which homes a fire runs in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Homes {
    Both,
    /// Why it has no embedded twin.
    ServersOnly(&'static str),
    /// Why the servers run has none of its own.
    EmbeddedOnly(&'static str),
}

#[derive(Debug, Clone, Copy)]
pub struct Fire {
    pub provider: Provider,
    pub plan: Plan,
    pub event: Event,
    pub homes: Homes,
}

/// How long the SMTP server stays away in its outage.
pub const SMTP_DOWN: Duration = Duration::from_secs(3);

const NO_SERVERS: &str = "Redis and PostgreSQL restarts have no embedded twin: the queue and the \
    state are one file inside the process, and the process's own death is fires 1 and 2";

/// The fires, in order. Each home runs those marked for it; a fire keeps its number in both.
pub const FIRES: [Fire; 6] = [
    Fire {
        provider: Provider::Smtp,
        plan: Plan::Trigger(5),
        event: Event::Sigterm,
        homes: Homes::Both,
    },
    Fire {
        provider: Provider::Smtp,
        plan: Plan::Trigger(4),
        event: Event::Sigkill,
        homes: Homes::Both,
    },
    Fire {
        provider: Provider::Smtp,
        plan: Plan::Trigger(3),
        event: Event::SmtpDown,
        homes: Homes::Both,
    },
    Fire {
        provider: Provider::Smtp,
        plan: Plan::Trigger(2),
        event: Event::Restarts,
        homes: Homes::ServersOnly(NO_SERVERS),
    },
    Fire {
        provider: Provider::Resend,
        plan: Plan::CronInOutage,
        event: Event::Restarts,
        homes: Homes::ServersOnly(NO_SERVERS),
    },
    Fire {
        provider: Provider::Resend,
        plan: Plan::Cron,
        event: Event::ResendFaults,
        homes: Homes::EmbeddedOnly(
            "fire 5 without its server outages; on the servers, fire 5 meets the same faults",
        ),
    },
];

impl Fire {
    pub fn describe(&self) -> String {
        let provider = match self.provider {
            Provider::Smtp => "SMTP",
            Provider::Resend => "Resend+faults",
        };
        let plan = match self.plan {
            Plan::Trigger(_) => "trigger",
            Plan::Cron => "cron",
            Plan::CronInOutage => "cron during PG stop",
        };
        let event = match self.event {
            Event::Sigterm => "SIGTERM + restart",
            Event::Sigkill => "SIGKILL + restart",
            Event::SmtpDown => "SMTP server stopped",
            Event::Restarts => "Redis+PG restart",
            Event::ResendFaults => "Resend faults",
        };
        format!("{provider}, {plan}: {event}")
    }

    /// Why this fire does not run in `home` (`None` when it does).
    pub fn not_in(&self, home: HomeKind) -> Option<&'static str> {
        match self.homes {
            Homes::ServersOnly(why) if home == HomeKind::Embedded => Some(why),
            Homes::EmbeddedOnly(why) if home == HomeKind::Servers => Some(why),
            _ => None,
        }
    }

    /// The copies this fire may make in `home`, with these sizes.
    pub fn copy_bound(&self, home: HomeKind, size: &Size) -> u64 {
        match self.event {
            // A SIGTERM lets in-flight sends finish and be recorded: no copies at all.
            Event::Sigterm => 0,
            Event::Sigkill => killed_holds(home, size),
            // A message the SMTP server counted whose `250` the stop cut off is an "unknown"
            // outcome, sent again: at most one per open connection (`mail.pool_size`).
            Event::SmtpDown => size.pool_size as u64,
            // The worker keeps trying to record an outcome (and renewing its lease) until the
            // lease is nearly spent: a 5 s outage within a 10 s lease makes no copy, and what
            // Redis lost is pushed again from PostgreSQL, claimed once. A request the stand-in
            // took and answered late or with a 5xx is retried under the same idempotency key,
            // which Resend answers without a new email.
            Event::Restarts | Event::ResendFaults => 0,
        }
    }
}

/// The most emails a killed process held claimed and not yet recorded: each may go again once.
///
/// On the servers: the jobs its workers held, `queue.concurrency` emails (jobs fetched and not
/// yet claimed are claimed once, after the restart); their claims come back when their leases
/// run out.
///
/// Embedded: the apalis-sqlite worker fetches `queue.batch_size` jobs a poll and runs up to
/// [`herald::queue::JOBS_AT_ONCE`] of them side by side, each of at most
/// [`herald::queue::JOB_SIZE`] deliveries (SMTP first), and each job takes its share of the
/// same `queue.concurrency` permits before it claims anything. So at most
/// `min(concurrency, JOBS_AT_ONCE × JOB_SIZE)` deliveries are claimed at the kill. The jobs the
/// dead worker had fetched are `Queued` under it; the next process gives them back `Pending`
/// and the claims back at once (`Embedded::give_back_orphans`), without waiting for the leases:
/// the same bound, reached sooner.
fn killed_holds(home: HomeKind, size: &Size) -> u64 {
    match home {
        HomeKind::Servers => size.concurrency as u64,
        HomeKind::Embedded => {
            size.concurrency
                .min(herald::queue::JOBS_AT_ONCE * herald::queue::JOB_SIZE) as u64
        }
    }
}

/// The faults the Resend stand-in gives every other request during the restarts: held past
/// Herald's timeout (taken, the answer too late), taken then answered 502, 500 or 504, not taken
/// and answered 500 (retried at Resend) or 503 (sent by SMTP instead).
pub fn resend_faults() -> Vec<Reply> {
    vec![
        Reply::Hang(SEND_TIMEOUT + Duration::from_secs(2)),
        Reply::TakenThen(502),
        Reply::Status(500, "internal_server_error"),
        Reply::TakenThen(504),
        Reply::Status(503, "service_unavailable"),
        Reply::TakenThen(500),
    ]
}

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
    pub fn from_env() -> Size {
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
    pub fn fire_deadline(&self) -> Duration {
        Duration::from_secs(120) + Duration::from_millis(20) * self.emails as u32
    }
}
