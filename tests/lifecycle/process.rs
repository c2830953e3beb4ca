//! The `herald run` processes of the lifecycle test, and what their logs say.

use std::{
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use crate::{resend_stub::ResendStub, servers::free_port};

/// Lines that mean a worker crashed, in any process's log.
const CRASH_MARKERS: [&str; 3] = ["worker stopped", "too many results to unpack", "panicked"];

/// One `herald run` process, its stdout and stderr in a log file. Killed if still running when
/// dropped (a panicking test leaves no daemon behind).
pub struct Herald {
    pub child: Child,
    pub log: PathBuf,
    pub address: String,
}

impl Herald {
    pub fn spawn(vars: &[(String, String)], log: PathBuf) -> Herald {
        let port = free_port();
        let out = File::options()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(vars.iter().map(|(k, v)| (k, v)))
            .env("HERALD_HTTP_ADDR", format!("127.0.0.1:{port}"))
            // Herald's default filter, unless the run is being debugged: the WARN/ERROR counts
            // are only meaningful with the default.
            .envs(std::env::var("HERALD_LIFECYCLE_RUST_LOG").map(|f| ("RUST_LOG", f)))
            .args(["--log-format", "json", "run"])
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        Herald {
            child: cmd.spawn().expect("cannot run herald"),
            log,
            address: format!("http://127.0.0.1:{port}"),
        }
    }

    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// Waits for the process to exit (the bound only stops a hung test; it is then killed).
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The folder of the processes' logs: removed at the end of a passing run, kept otherwise (and
/// always with `HERALD_LIFECYCLE_KEEP_LOGS` set).
pub struct Logs(pub PathBuf);

impl Drop for Logs {
    fn drop(&mut self) {
        if !std::thread::panicking() && std::env::var_os("HERALD_LIFECYCLE_KEEP_LOGS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// WARN and ERROR lines in `log` between these byte offsets.
pub fn warn_error_lines(log: &Path, from: u64, to: u64) -> usize {
    let bytes = std::fs::read(log).unwrap_or_default();
    let to = (to as usize).min(bytes.len());
    let from = (from as usize).min(to);
    String::from_utf8_lossy(&bytes[from..to])
        .lines()
        .filter(|l| is_warn_or_error(l))
        .count()
}

fn is_warn_or_error(line: &str) -> bool {
    match serde_json::from_str::<Value>(line) {
        Ok(v) => matches!(v["level"].as_str(), Some("WARN" | "ERROR")),
        // Not a log event (a panic message, say): counted when it says it is one.
        Err(_) => line.contains("WARN") || line.contains("ERROR"),
    }
}

pub async fn wait_healthy(http: &reqwest::Client, address: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{address}/healthz")).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "herald at {address} did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn ready(http: &reqwest::Client, address: &str) -> bool {
    match http.get(format!("{address}/readyz")).send().await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}

/// Every line of every log that says a worker crashed.
pub fn crash_lines(logs: &Path) -> Vec<String> {
    lines_with(logs, &CRASH_MARKERS)
}

/// Every line of every log that contains one of `markers`, with its file's name.
pub fn lines_with(logs: &Path, markers: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(logs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for line in text.lines() {
            if markers.iter().any(|m| line.contains(m)) {
                found.push(format!(
                    "{}: {}",
                    f.file_name().unwrap().to_string_lossy(),
                    line.chars().take(300).collect::<String>()
                ));
            }
        }
    }
    found
}

/// The Resend stand-in, on a runtime of its own: the test's runtime blocks now and then
/// (pg_ctl), and the stand-in's answers must not wait for it.
pub struct Stand {
    stub: Option<ResendStub>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Stand {
    pub fn start() -> Stand {
        let (runtime, stub) = std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            let stub = runtime.block_on(ResendStub::start());
            (runtime, stub)
        })
        .join()
        .unwrap();
        stub.lean();
        Stand {
            stub: Some(stub),
            runtime: Some(runtime),
        }
    }
}

impl std::ops::Deref for Stand {
    type Target = ResendStub;
    fn deref(&self) -> &ResendStub {
        self.stub.as_ref().unwrap()
    }
}

impl Drop for Stand {
    fn drop(&mut self) {
        self.stub.take();
        if let Some(r) = self.runtime.take() {
            r.shutdown_background();
        }
    }
}
