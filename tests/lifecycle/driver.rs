//! The driver of a lifecycle run, the same in both homes: it prepares the home and the demo's
//! users, starts Herald, reads the baseline, runs the fires of [`FIRES`] marked for the home
//! (each planned, hit by its event at 30 %, waited for and counted), stops Herald cleanly and
//! gives the verdicts. The events themselves are in `events.rs`.

use std::{
    collections::HashMap,
    path::Path,
    time::{Duration, Instant},
};

use chrono::{DateTime, Days, NaiveTime, Utc};
use serde_json::{Value, json};

use crate::{
    fires::{Event, FIRES, Fire, HomeKind, Plan, Provider, SEND_TIMEOUT, Size},
    home::{Home, State},
    leftovers::{self, Leftovers},
    process::{Herald, Logs, Stand, wait_healthy},
    report::{self, FireRow, Summary},
    smtp_sink::SmtpSink,
};

pub const TOKEN: &str = "lifecycle-token-0123456789abcdef";
const RESEND_KEY: &str = "re_lifecycle_0123456789";

/// Everything a run holds. The summary is printed when the run is dropped, also on a panic.
pub struct Run {
    /// The running process (`None` only before the first starts). First, so that it is killed
    /// before the home's files go.
    pub herald: Option<Herald>,
    pub size: Size,
    pub http: reqwest::Client,
    pub home: Home,
    pub sink: SmtpSink,
    pub stub: Stand,
    pub state: State,
    pub queue: String,
    pub logs: Logs,
    /// The variables of the running process.
    pub vars: Vec<(String, String)>,
    pub provider: Provider,
    pub spawned: usize,
    pub baseline: Leftovers,
    /// Every dedup key planned so far, with its fire.
    pub seen: HashMap<String, String>,
    pub summary: Summary,
}

/// The life of a deployment in the home `kind`: every fire of [`FIRES`] marked for it.
pub async fn live(kind: HomeKind) {
    let size = Size::from_env();
    let n = size.emails;
    let mut summary = Summary::default();
    summary.home = Some(kind);
    summary.size = Some(size);
    let home = Home::start(kind);
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
    let vars = vars(&home, &sink, &stub, &queue, size, Provider::Smtp, None);
    // The state, and one user per email with a task overdue on every fire's day.
    let state = home.prepare(&vars, n, days_ago(10)).await;
    let mut run = Run {
        size,
        http: reqwest::Client::new(),
        home,
        sink,
        stub,
        state,
        queue,
        logs,
        vars,
        herald: None,
        provider: Provider::Smtp,
        spawned: 0,
        baseline: Leftovers::default(),
        seen: HashMap::new(),
        summary,
    };

    let vars = run.vars.clone();
    run.herald = Some(run.spawn(&vars));
    wait_healthy(&run.http, &run.h().address).await;
    // The baseline: an idle daemon whose workers have registered.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while run.leftovers().await.workers() == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no worker registered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    run.baseline = run.leftovers().await;
    run.summary.baseline = run.baseline;

    for (i, fire) in FIRES.into_iter().enumerate() {
        let name = (i + 1).to_string();
        match fire.not_in(kind) {
            None => run.fire(&name, fire).await,
            Some(why) => run.summary.notes.push(format!(
                "fire {name} ({}): not in this home: {why}",
                fire.describe()
            )),
        }
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
    run.state.close().await;
    run.sink.stop();
    let failures = run.summary.failures.clone();
    assert!(
        failures.is_empty(),
        "{} of the lifecycle's checks failed (see the summary)",
        failures.len()
    );
}

/// The process's variables: the home's, a provider's, and a cron firing once at `cron_at`.
pub fn vars(
    home: &Home,
    sink: &SmtpSink,
    stub: &Stand,
    queue: &str,
    size: Size,
    provider: Provider,
    cron_at: Option<DateTime<Utc>>,
) -> Vec<(String, String)> {
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let mut vars: Vec<(&str, String)> = home.vars();
    vars.extend([
        ("SMTP_URL", sink.url()),
        ("MAIL_FROM", "Herald <herald@example.com>".into()),
        ("HERALD_API_TOKEN", TOKEN.into()),
        ("HERALD__QUEUE__NAME", queue.to_owned()),
        ("HERALD__TEMPLATES__DIR", templates.display().to_string()),
        ("HERALD__QUEUE__CONCURRENCY", size.concurrency.to_string()),
        ("HERALD__QUEUE__BATCH_SIZE", size.batch_size.to_string()),
        ("HERALD__MAIL__POOL_SIZE", size.pool_size.to_string()),
        // A dead process's claims come back after 10 s (a lease must outlive a send:
        // mail.timeout + 4 s). `queue.redispatch_after` keeps its default (5 min): what Redis
        // lost and what a dead worker held must come back through the marker key and the
        // drain of dead workers (embedded: the restart's give-back), not through that last
        // resort.
        ("HERALD__MAIL__TIMEOUT", humantime(SEND_TIMEOUT)),
        ("HERALD__MAIL__CONNECT_TIMEOUT", "1s".into()),
        ("HERALD__QUEUE__LEASE", "10s".into()),
        // The cron ticks stay off unless the fire is the schedule's own.
        ("HERALD__SCHEDULES__ENABLED", "false".into()),
    ]);
    if provider == Provider::Resend {
        vars.extend([
            ("RESEND_API_KEY", RESEND_KEY.into()),
            ("HERALD__MAIL__RESEND__BASE_URL", stub.url.clone()),
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

impl Run {
    pub fn h(&self) -> &Herald {
        self.herald.as_ref().expect("herald runs")
    }

    pub fn hm(&mut self) -> &mut Herald {
        self.herald.as_mut().expect("herald runs")
    }

    fn spawn(&mut self, vars: &[(String, String)]) -> Herald {
        self.spawned += 1;
        Herald::spawn(
            vars,
            self.logs.0.join(format!("herald-{}.log", self.spawned)),
        )
    }

    /// The queue's and the state's figures now (a failed read panics: it is not an empty queue).
    async fn leftovers(&self) -> Leftovers {
        leftovers::read(&self.home, &self.state, &self.queue)
            .await
            .unwrap_or_else(|e| panic!("cannot read the queue's figures: {e}"))
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

    /// A new process with the same variables; returns when it started.
    pub async fn respawn(&mut self) -> Instant {
        let vars = self.vars.clone();
        self.herald = Some(self.spawn(&vars));
        let restarted = Instant::now();
        wait_healthy(&self.http, &self.h().address).await;
        restarted
    }

    /// How many times each of `keys` arrived: at the SMTP server, at the stand-in.
    fn counts(&self, keys: &[String]) -> Vec<(u32, u32)> {
        let smtp = self.sink.delivery_counts(keys);
        let resend = self.stub.delivery_counts(keys);
        smtp.into_iter().zip(resend).collect()
    }

    /// How many of `keys` arrived at least once, by either provider.
    pub fn arrived(&self, keys: &[String]) -> usize {
        self.counts(keys).iter().filter(|(s, r)| s + r > 0).count()
    }

    /// Copies among `keys`: the emails beyond the first of each, by either provider.
    pub fn copies(&self, keys: &[String]) -> u64 {
        self.counts(keys)
            .iter()
            .map(|(s, r)| u64::from((s + r).saturating_sub(1)))
            .sum()
    }

    /// Waits until all `n` of `keys` arrived, or `within` passed; says whether they all did.
    /// What did not arrive is counted as lost in the fire's row (and fails the run), not hidden
    /// behind a panic that would leave the table unprinted.
    pub async fn arrived_within(&self, keys: &[String], n: usize, within: Duration) -> bool {
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
    /// deliveries that did not arrive, as the state sees them.
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
        let rows = self.state.rows(&missing).await;
        panic!(
            "only {} of {n} emails arrived ({} expected in all); missing, as the state sees them: {rows:?}; now {}",
            keys.len() - missing.len(),
            keys.len(),
            Utc::now()
        );
    }

    async fn wait_recorded(&self, ids: &[i64], within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let sent = self.state.sent(ids).await;
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

    /// One fire: planned, hit by its event at 30 %, then waited for and counted.
    async fn fire(&mut self, name: &str, fire: Fire) {
        let n = self.size.emails;
        let cron_at = matches!(fire.plan, Plan::Cron | Plan::CronInOutage)
            .then(|| Utc::now() + chrono::Duration::seconds(15));
        if fire.provider != self.provider || cron_at.is_some() {
            let vars = vars(
                &self.home,
                &self.sink,
                &self.stub,
                &self.queue,
                self.size,
                fire.provider,
                cron_at,
            );
            self.restart_with(vars, &format!("fire {name}")).await;
            self.provider = fire.provider;
        }
        let before = self.leftovers().await;
        let ids = match (fire.plan, cron_at) {
            (Plan::Trigger(days), _) => {
                trigger(&self.http, &self.h().address, days_ago(days)).await
            }
            (plan, Some(at)) => self.cron_fire(at, plan == Plan::CronInOutage).await,
            (_, None) => unreachable!("a cron fire has its instant"),
        };
        assert_eq!(ids.len(), n, "fire {name} planned");
        let keys = self.state.dedup_keys(&ids).await;
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
        self.summary.fires.push(FireRow {
            name: name.into(),
            event: fire.describe(),
            expected: n,
            arrived_at_event,
            before,
            copy_bound: fire.copy_bound(self.home.kind(), &self.size),
            planned: self.seen.len(),
            ..Default::default()
        });
        let event_at = Utc::now();
        let from = match fire.event {
            Event::Sigterm => self.sigterm(name).await,
            Event::Sigkill => {
                self.hm().child.kill().unwrap();
                self.hm().child.wait().unwrap();
                self.respawn().await
            }
            Event::SmtpDown => self.smtp_down(name, &keys).await,
            Event::Restarts => self.restarts(name, &keys, fire.provider).await,
            Event::ResendFaults => self.resend_faults(name, &keys).await,
        };
        let all = self
            .arrived_within(&keys, n, self.size.fire_deadline())
            .await;
        let recover = from.elapsed();
        if all {
            self.wait_recorded(&ids, Duration::from_secs(60)).await;
        }
        let after = leftovers::settle(
            &self.home,
            &self.state,
            &self.queue,
            &self.baseline,
            self.seen.len(),
        )
        .await;
        let counts = self.counts(&keys);
        let copies = self.copies(&keys);
        let arrived = self.arrived(&keys);
        let row = self.summary.fires.last_mut().unwrap();
        row.arrived = arrived;
        row.copies = copies;
        row.recover = Some(recover);
        row.after = after;
        if all {
            let last = self.state.last_recorded(&ids, event_at).await;
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
}

pub fn humantime(d: Duration) -> String {
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

/// 07:00 UTC `days` days ago: each fire plans a different day, so its dedup keys are new.
fn days_ago(days: u64) -> DateTime<Utc> {
    Utc::now()
        .date_naive()
        .checked_sub_days(Days::new(days))
        .unwrap()
        .and_time(NaiveTime::from_hms_opt(7, 0, 0).unwrap())
        .and_utc()
}
