//! The real `herald run` as a child process, so its memory is its own: started with only the
//! variables a bench gives it, its output in a log file, stopped with SIGTERM.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;

/// The `herald` binary: `HERALD_BIN` when set, else the one cargo built along with the bench
/// (next to it in `target/<profile>/`).
pub fn herald_bin() -> PathBuf {
    std::env::var_os("HERALD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_herald")))
}

/// What every bench's daemon runs with, whatever its home: `addr` and `token` for the API, the
/// repository's templates, no schedule of its own (only the bench's triggers plan), links and
/// headers signed as in production, and `CONC`/`POOL` as `queue.concurrency`/`mail.pool_size`
/// when set. Where its state lives and what it sends through, each bench adds.
pub fn bench_vars(addr: &str, token: &str) -> Vec<(String, String)> {
    let mut vars = vec![
        ("HERALD_HTTP_ADDR", addr.to_owned()),
        ("HERALD_API_TOKEN", token.to_owned()),
        (
            "HERALD__TEMPLATES__DIR",
            concat!(env!("CARGO_MANIFEST_DIR"), "/templates").to_owned(),
        ),
        ("HERALD__SCHEDULES__ENABLED", "false".to_owned()),
        ("HERALD_PUBLIC_URL", "https://herald.example.com".to_owned()),
        (
            "HERALD_UNSUBSCRIBE_KEY",
            "bench-unsubscribe-key-0123456789abcdef".to_owned(),
        ),
    ];
    for (knob, key) in [
        ("CONC", "HERALD__QUEUE__CONCURRENCY"),
        ("POOL", "HERALD__MAIL__POOL_SIZE"),
    ] {
        if let Ok(value) = std::env::var(knob) {
            vars.push((key, value));
        }
    }
    vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()
}

pub struct Daemon {
    child: Child,
    log: PathBuf,
}

impl Daemon {
    /// Starts `herald run` with these variables and no others (but `PATH` and, when set,
    /// `RUST_LOG`), so a `RESEND_API_KEY` or `HERALD_CONFIG` of the caller's shell cannot change
    /// what is measured. Its output goes to `log`.
    pub fn start(vars: &[(String, String)], log: &Path) -> anyhow::Result<Daemon> {
        let bin = herald_bin();
        let out = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut command = Command::new(&bin);
        command.arg("run").env_clear();
        for key in ["PATH", "RUST_LOG"] {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        let child = command
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| {
                format!(
                    "cannot run {} (set HERALD_BIN to a built herald binary)",
                    bin.display()
                )
            })?;
        Ok(Daemon {
            child,
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The daemon's peak resident memory so far (`VmHWM`), in MB.
    pub fn peak_rss_mb(&self) -> f64 {
        super::rss_mb_of(&format!("/proc/{}/status", self.pid()), "VmHWM:")
    }

    /// The end of its log, to show why it failed.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Fails with the end of its log when it has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            anyhow::bail!(
                "herald exited ({status}); the end of {}:\n{}",
                self.log.display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    /// Waits until `GET http://{addr}/readyz` answers 200 (the bound only stops a daemon that
    /// never gets ready).
    pub async fn wait_ready(&mut self, addr: &str, within: Duration) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + within;
        loop {
            self.check_running()?;
            let answer = client
                .get(format!("http://{addr}/readyz"))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if matches!(&answer, Ok(r) if r.status().is_success()) {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "herald was not ready within {within:?} ({answer:?}); the end of {}:\n{}",
                    self.log.display(),
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM, then waits for it to exit (SIGKILL after 60 s).
    pub async fn stop(mut self) -> anyhow::Result<ExitStatus> {
        Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                eprintln!("# herald did not stop within 60 s of SIGTERM: killed");
                self.child.kill()?;
                return Ok(self.child.wait()?);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
