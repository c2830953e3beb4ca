//! The lifecycle test's summary table, printed at the end of a run (also when it fails), and the
//! verdicts of the whole run.

use std::{collections::HashMap, fmt::Write as _, path::PathBuf, time::Duration};

use crate::{
    driver::Run,
    fires::{HomeKind, Size},
    leftovers::Leftovers,
    process::{crash_lines, lines_with},
};

/// An outage may add fewer WARN/ERROR lines than this to a process's log.
const OUTAGE_LINES: usize = 20;

/// One row of the summary: a fire and what hit it.
#[derive(Debug, Default)]
pub struct FireRow {
    pub name: String,
    pub event: String,
    pub expected: usize,
    pub arrived_at_event: usize,
    pub arrived: usize,
    pub copies: u64,
    pub copy_bound: u64,
    /// From the event (the restart, or the server coming back) to the last email of the fire.
    pub recover: Option<Duration>,
    pub before: Leftovers,
    pub after: Leftovers,
    /// Emails planned in the run up to and with this fire (what the state file may grow by).
    pub planned: usize,
}

/// One outage: how long until sending resumed, and what it wrote to the log.
#[derive(Debug, Default)]
pub struct OutageRow {
    pub name: String,
    pub down_for: Duration,
    pub recover: Option<Duration>,
    pub warn_error_lines: usize,
}

/// The figures so far; printed when dropped, so a failed run shows them too.
#[derive(Default)]
pub struct Summary {
    pub home: Option<HomeKind>,
    pub size: Option<Size>,
    pub baseline: Leftovers,
    pub fires: Vec<FireRow>,
    pub outages: Vec<OutageRow>,
    pub notes: Vec<String>,
    pub failures: Vec<String>,
    pub logs: Option<PathBuf>,
}

impl Summary {
    pub fn render(&self) -> String {
        let mut s = String::new();
        let secs =
            |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64()));
        let home = match self.home {
            Some(HomeKind::Servers) => "PostgreSQL and Redis",
            Some(HomeKind::Embedded) => "one SQLite file",
            None => "?",
        };
        let _ = writeln!(s, "\n=== herald lifecycle summary: {home} ===");
        if let Some(z) = self.size {
            let _ = writeln!(
                s,
                "emails per fire {}, queue.concurrency {}, queue.batch_size {}, mail.pool_size {}, smtp delay {:?}, mail.resend.batch_size {}, resend delay {:?}",
                z.emails,
                z.concurrency,
                z.batch_size,
                z.pool_size,
                z.smtp_delay(),
                z.resend_batch,
                z.resend_delay()
            );
        }
        let _ = writeln!(s, "baseline before fire 1: {}", self.baseline.short());
        let _ = writeln!(
            s,
            "{:<7} {:<48} {:>7} {:>9} {:>7} {:>5} {:>7} {:>9}  queue before -> after",
            "fire", "event", "sent", "at event", "lost", "dup", "bound", "recover"
        );
        for f in &self.fires {
            let _ = writeln!(
                s,
                "{:<7} {:<48} {:>7} {:>9} {:>7} {:>5} {:>7} {:>9}  [{}] -> [{}]",
                f.name,
                f.event,
                f.arrived,
                f.arrived_at_event,
                f.expected - f.arrived,
                f.copies,
                f.copy_bound,
                secs(f.recover),
                f.before.short(),
                f.after.short()
            );
        }
        for o in &self.outages {
            let _ = writeln!(
                s,
                "outage {:<36} down {:.1}s, sending resumed {} after it came back, {} WARN/ERROR lines",
                o.name,
                o.down_for.as_secs_f64(),
                secs(o.recover),
                o.warn_error_lines
            );
        }
        for n in &self.notes {
            let _ = writeln!(s, "note: {n}");
        }
        if let Some(l) = &self.logs {
            let _ = writeln!(s, "logs: {}", l.display());
        }
        for f in &self.failures {
            let _ = writeln!(s, "FAIL: {f}");
        }
        s
    }
}

impl Drop for Summary {
    fn drop(&mut self) {
        eprintln!("{}", self.render());
    }
}

/// The checks of the whole run, added to the summary's failures.
pub async fn verdicts(run: &mut Run) {
    let failed = run.state.not_sent().await;
    let s = &mut run.summary;
    if failed != 0 {
        s.failures
            .push(format!("{failed} deliveries are not recorded as sent"));
    }
    // Every email that arrived anywhere, whatever fire planned it.
    let mut all: HashMap<String, u32> = run.stub.per_delivery();
    for (k, c) in run.sink.counts().per_delivery {
        *all.entry(k).or_default() += c;
    }
    let total_copies: u64 = all.values().map(|&c| u64::from(c.saturating_sub(1))).sum();
    let per_fire: u64 = s.fires.iter().map(|f| f.copies).sum();
    s.notes.push(format!(
        "SMTP server: {} messages; Resend stand-in: {} emails taken, {} requests; {} distinct deliveries, {} copies in all",
        run.sink.total(),
        run.stub.total(),
        run.stub.request_count(),
        all.len(),
        total_copies
    ));
    if total_copies != per_fire || all.keys().any(|k| !run.seen.contains_key(k)) {
        s.failures.push(format!(
            "copies or emails that no fire planned: {total_copies} copies in all, {per_fire} in the fires"
        ));
    }
    for f in &s.fires {
        if f.arrived < f.expected {
            s.failures.push(format!(
                "fire {} ({}): {} of {} emails never arrived",
                f.name,
                f.event,
                f.expected - f.arrived,
                f.expected
            ));
        }
        if f.copies > f.copy_bound {
            s.failures.push(format!(
                "fire {} ({}): {} copies, more than the {} allowed",
                f.name, f.event, f.copies, f.copy_bound
            ));
        }
        if let Some(wrong) = f.after.excess(&run.baseline, f.planned) {
            s.failures.push(format!("fire {}: {wrong}", f.name));
        }
    }
    for o in &s.outages {
        if o.warn_error_lines >= OUTAGE_LINES {
            s.failures.push(format!(
                "{}: {} WARN/ERROR lines (fewer than {OUTAGE_LINES} allowed)",
                o.name, o.warn_error_lines
            ));
        }
        if o.recover.is_none() {
            s.failures.push(format!(
                "{}: sending did not resume while emails were waiting",
                o.name
            ));
        }
    }
    // Not a failure: the worker's safety net for a send that never finishes (see
    // `worker::max_hold`). Counted so that a run says whether it was needed.
    let given_up = lines_with(&run.logs.0, &["taking far longer than its lease"]);
    s.notes.push(format!(
        "claims given up by the worker's five-lease limit: {}{}",
        given_up.len(),
        given_up
            .first()
            .map(|l| format!(" (the first: {l})"))
            .unwrap_or_default()
    ));
    let crashes = crash_lines(&run.logs.0);
    if !crashes.is_empty() {
        s.failures.push(format!(
            "{} log lines say a worker crashed; the first: {}",
            crashes.len(),
            crashes
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join(" | ")
        ));
    }
}
