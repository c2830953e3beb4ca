//! The counting SMTP server a bench sends to: `SINK_CMD` when set (a program taking
//! `HOST PORT COUNT_FILE` that writes its count to COUNT_FILE every 100 ms and creates
//! `COUNT_FILE.ready` once listening, like the peers' sinks), else the tests' sink
//! (`tests/support/smtp_sink.rs`) inside the bench process.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context;

use super::smtp_sink::SmtpSink;

pub enum Sink {
    /// The tests' sink, in this process (on a thread of its own): it knows when the last message
    /// arrived and, started with [`Sink::recording`], keeps each one with its arrival.
    Inside(SmtpSink),
    /// `SINK_CMD` as a child process.
    Outside(Outside),
}

/// A sink program of its own, killed when dropped.
pub struct Outside {
    child: Child,
    count_file: PathBuf,
    port: u16,
    label: String,
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `SINK_CMD`, when set to something.
fn sink_cmd() -> Option<String> {
    std::env::var("SINK_CMD")
        .ok()
        .filter(|cmd| !cmd.trim().is_empty())
}

/// What [`Sink::start`] will start, as the output lines call it: `in-repo` or the file name of
/// `SINK_CMD`'s program.
pub fn chosen_label() -> String {
    match sink_cmd() {
        None => "in-repo".to_owned(),
        Some(cmd) => {
            let program = cmd.split_whitespace().next().unwrap_or_default();
            Path::new(program)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| program.to_owned())
        }
    }
}

impl Sink {
    /// `SINK_CMD` when set, else the tests' sink. `dir` holds the count files.
    pub async fn start(dir: &Path) -> anyhow::Result<Sink> {
        match sink_cmd() {
            Some(cmd) => Sink::outside(&cmd, dir).await,
            None => Ok(Sink::inside().await),
        }
    }

    /// The tests' sink, counting only.
    pub async fn inside() -> Sink {
        Sink::Inside(SmtpSink::start().await)
    }

    /// The tests' sink keeping every message with its arrival, whatever `SINK_CMD` says.
    pub async fn recording() -> Sink {
        Sink::Inside(SmtpSink::recording().await)
    }

    async fn outside(cmd: &str, dir: &Path) -> anyhow::Result<Sink> {
        let mut words = cmd.split_whitespace();
        let program = words.next().expect("not empty");
        let port = super::free_port()?;
        let count_file = dir.join(format!("sink-{port}.count"));
        let ready = count_file.with_extension("count.ready");
        let mut child = Command::new(program)
            .args(words)
            .args(["127.0.0.1", &port.to_string()])
            .arg(&count_file)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot run SINK_CMD={cmd:?}"))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !ready.exists() {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!("SINK_CMD={cmd:?} exited ({status}) before it was listening");
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                anyhow::bail!(
                    "SINK_CMD={cmd:?} did not create {} within 20 s; it must take HOST PORT COUNT_FILE",
                    ready.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Sink::Outside(Outside {
            child,
            count_file,
            port,
            label: chosen_label(),
        }))
    }

    /// The tests' sink, which can keep each message; `None` for `SINK_CMD`.
    pub fn in_repo(&self) -> Option<&SmtpSink> {
        match self {
            Sink::Inside(s) => Some(s),
            Sink::Outside(_) => None,
        }
    }

    /// What the output lines call it: `in-repo` or SINK_CMD's file name.
    pub fn label(&self) -> &str {
        match self {
            Sink::Inside(_) => "in-repo",
            Sink::Outside(o) => &o.label,
        }
    }

    /// The `SMTP_URL` Herald sends to.
    pub fn url(&self) -> String {
        match self {
            Sink::Inside(s) => s.url(),
            Sink::Outside(o) => format!("smtp://127.0.0.1:{}?tls=none", o.port),
        }
    }

    /// Messages counted so far (an outside sink's file lags up to 100 ms).
    pub fn count(&self) -> u64 {
        match self {
            Sink::Inside(s) => s.total(),
            Sink::Outside(o) => std::fs::read_to_string(&o.count_file)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0),
        }
    }

    /// When the last counted message arrived: the tests' sink records it; an outside sink may
    /// write `t_last=<epoch seconds>` to `COUNT_FILE.times` (the peers' smtp-sink does).
    pub fn last_arrival(&self) -> Option<SystemTime> {
        match self {
            Sink::Inside(s) => s.counts().last_arrival,
            Sink::Outside(o) => {
                let times =
                    std::fs::read_to_string(o.count_file.with_extension("count.times")).ok()?;
                let secs: f64 = times
                    .split_whitespace()
                    .find_map(|kv| kv.strip_prefix("t_last="))?
                    .parse()
                    .ok()?;
                (secs > 0.0).then(|| UNIX_EPOCH + Duration::from_secs_f64(secs))
            }
        }
    }

    /// Waits until `n` messages are counted and returns when the last of them arrived (when the
    /// sink cannot say, when the count was seen). Fails when the count stands still for
    /// `stall`: the bound stops a hung run, it does not judge speed.
    pub async fn wait_for(&self, n: u64, stall: Duration) -> anyhow::Result<SystemTime> {
        let mut last = (self.count(), Instant::now());
        loop {
            let count = self.count();
            if count >= n {
                let seen = SystemTime::now();
                // The times file is written just before the count, from a later reading.
                return Ok(self.last_arrival().unwrap_or(seen));
            }
            if count != last.0 {
                last = (count, Instant::now());
            } else if last.1.elapsed() > stall {
                anyhow::bail!(
                    "the SMTP sink ({}) counted {count} of {n} messages and nothing more for {stall:?}",
                    self.label()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops it (so does dropping it).
    pub fn stop(self) {
        drop(self);
    }
}
