//! What hits a fire mid-send (a signal, the SMTP server going away, server restarts, the Resend
//! stand-in's faults), and the cron fire's planning. Each event returns the instant its
//! recovery is timed from, and adds its outage and notes to the summary.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::{
    blocking,
    driver::Run,
    fires::{Provider, SMTP_DOWN, resend_faults},
    process::{ready, warn_error_lines},
    report::OutageRow,
    resend_stub::Reply,
};

/// How long Redis stays away in its restart (it comes back empty).
const REDIS_DOWN: Duration = Duration::from_secs(2);
/// How long PostgreSQL stays stopped in each of its restarts (issue 19: no copy from 5 s).
const PG_DOWN: Duration = Duration::from_secs(5);

impl Run {
    /// SIGTERM, which must end the process cleanly, then a new process.
    pub async fn sigterm(&mut self, name: &str) -> Instant {
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

    /// An outage's row: from `outage` to `back`, recovered or not, the log lines since `mark`.
    fn outage_row(
        &mut self,
        name: String,
        outage: Instant,
        back: Instant,
        recovered: bool,
        mark: u64,
    ) {
        let row = OutageRow {
            name,
            down_for: back - outage,
            recover: recovered.then(|| back.elapsed()),
            warn_error_lines: warn_error_lines(&self.h().log, mark, self.h().log_len()),
        };
        self.summary.outages.push(row);
    }

    /// The SMTP server stops for [`SMTP_DOWN`] (open connections dropped, new ones refused) and
    /// comes back on the same port: the emails wait, none is lost and none fails. Returns when
    /// it was back.
    pub async fn smtp_down(&mut self, name: &str, keys: &[String]) -> Instant {
        let mark = self.h().log_len();
        let outage = Instant::now();
        blocking(|| self.sink.stop());
        tokio::time::sleep(SMTP_DOWN).await;
        self.sink.resume().await;
        let back = Instant::now();
        let recovered = self.resumed(keys).await;
        self.outage_row(
            format!("fire {name}: SMTP server stop"),
            outage,
            back,
            recovered,
            mark,
        );
        back
    }

    /// The Resend stand-in gives faults until another fifth of the fire arrived. Returns when
    /// they stopped.
    pub async fn resend_faults(&mut self, name: &str, keys: &[String]) -> Instant {
        self.stub.inject(2, &resend_faults());
        let until = (self.arrived(keys) + keys.len() / 5).min(keys.len());
        self.arrived_within(keys, until, self.size.fire_deadline())
            .await;
        self.note_faults(name, "until another fifth of the fire arrived");
        Instant::now()
    }

    /// Stops the stand-in's faults and notes what it gave.
    fn note_faults(&mut self, name: &str, when: &str) {
        let faults = self.stub.stop_faults();
        let count = |f: fn(&Reply) -> bool| faults.iter().filter(|r| f(r)).count();
        self.summary.notes.push(format!(
            "fire {name}: the Resend stand-in gave {} requests a fault {when}: {} held past the timeout, {} taken then 5xx, {} refused 500, {} refused 503",
            faults.len(),
            count(|r| matches!(r, Reply::Hang(_))),
            count(|r| matches!(r, Reply::TakenThen(_))),
            count(|r| matches!(r, Reply::Status(500, _))),
            count(|r| matches!(r, Reply::Status(503, _))),
        ));
    }

    /// Stops PostgreSQL for [`PG_DOWN`]; returns when it stopped and when it was back.
    async fn pg_outage(&mut self) -> (DateTime<Utc>, Instant) {
        let (_, pg) = self
            .home
            .servers()
            .expect("PostgreSQL runs on the servers only");
        let stopped = Utc::now();
        blocking(|| pg.stop());
        tokio::time::sleep(PG_DOWN).await;
        blocking(|| pg.resume());
        (stopped, Instant::now())
    }

    /// The schedule fires at `at` (on the servers with PostgreSQL stopped across it when
    /// `in_outage`); returns the fire's deliveries once it is planned.
    pub async fn cron_fire(&mut self, at: DateTime<Utc>, in_outage: bool) -> Vec<i64> {
        // A schedule plans only the fires after its first round (its watermark).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !self.state.has_watermark("overdue_summary").await {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the overdue summary's schedule never started planning"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut outage = None;
        if in_outage {
            let stop_at = at - chrono::Duration::from_std(PG_DOWN / 2).unwrap();
            let wait = (stop_at - Utc::now()).to_std().unwrap_or_else(|_| {
                panic!("herald took too long to start: the cron fire at {at} is too close")
            });
            tokio::time::sleep(wait).await;
            let mark = self.h().log_len();
            let started = Instant::now();
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
            outage = Some((mark, started, back));
        }
        let n = self.size.emails;
        let deadline = tokio::time::Instant::now() + self.size.fire_deadline();
        let ids: Vec<i64> = loop {
            let ids = self.state.planned_by_cron().await;
            if ids.len() >= n {
                break ids;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the cron fire at {at} planned {} of {n} emails",
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        if let Some((mark, started, back)) = outage {
            let keys = self.state.dedup_keys(&ids).await;
            let recovered = self.resumed(&keys).await;
            self.outage_row(
                "PostgreSQL stop at the cron fire".into(),
                started,
                back,
                recovered,
                mark,
            );
        }
        ids
    }

    /// Redis restarted, then PostgreSQL stopped for [`PG_DOWN`], each once sending resumed after
    /// the one before; through Resend the stand-in gives faults meanwhile, and until another
    /// tenth of the fire arrived after the restarts. Returns when the last server came back.
    pub async fn restarts(&mut self, name: &str, keys: &[String], provider: Provider) -> Instant {
        if provider == Provider::Resend {
            self.stub.inject(2, &resend_faults());
        }
        let mark = self.h().log_len();
        let outage = Instant::now();
        let (redis, _) = self.home.servers().expect("Redis runs on the servers only");
        blocking(|| redis.stop());
        tokio::time::sleep(REDIS_DOWN).await;
        blocking(|| redis.resume());
        let back = Instant::now();
        let recovered = self.resumed(keys).await;
        self.outage_row(
            format!("fire {name}: Redis restart"),
            outage,
            back,
            recovered,
            mark,
        );
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
        self.outage_row(
            format!("fire {name}: PostgreSQL restart"),
            outage,
            back,
            recovered,
            mark,
        );
        if provider == Provider::Resend {
            // The faults go on while the fire recovers (what was in flight, retried, and the
            // emails that waited): until another tenth of it arrived.
            let until = (self.arrived(keys) + keys.len() / 10).min(keys.len());
            self.arrived_within(keys, until, self.size.fire_deadline())
                .await;
            self.note_faults(name, "during the restarts and the next tenth of the fire");
        }
        back
    }
}
