//! The programs and runtimes a test runs: the real `herald` binary and its daemon, a copy of
//! the templates to break, the watchdog that fails a run the code under test blocked, and the
//! logs. Part of the harness (`helpers.rs`), which re-exports it.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use super::Env;

/// Fails the whole test run if the test that holds it has not finished within its bound.
///
/// A test whose app runs on the test's own runtime cannot time itself out when the code under
/// test blocks that runtime's threads (a broken build can): its deadlines never get to run. This
/// watchdog runs on an OS thread of its own and ends the process with a message instead of
/// letting the run hang.
pub struct Watchdog(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Watchdog {
    pub fn new(test: &'static str, bound: Duration) -> Watchdog {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = done.clone();
        std::thread::spawn(move || {
            let until = std::time::Instant::now() + bound;
            while std::time::Instant::now() < until {
                if seen.load(std::sync::atomic::Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            // Straight to the process's stderr: the test harness would keep an `eprintln!`
            // for a report that the abort below never lets it print.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("\n{test}: did not finish within {bound:?}: the code under test blocked it; failing the run\n").as_bytes(),
            );
            // Not `exit`: its clean-up takes locks that the blocked code may hold.
            std::process::abort();
        });
        Watchdog(done)
    }
}

/// The runtime of a test guarded by a [`Watchdog`]: built and dropped inside the guarded scope,
/// so that a runtime whose shutdown hangs is caught too. Two worker threads, as the other tests.
pub fn guarded_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// Runs the real `herald` binary with the test's environment.
pub fn herald_cmd(env: &Env) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in &env.vars {
        cmd.env(k, v);
    }
    cmd
}

/// Runs `herald ARGS…`, asserts it succeeded, and returns its stdout.
pub fn herald_ok(env: &Env, args: &[&str]) -> String {
    let out = herald_cmd(env).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "herald {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A copy of the repository's templates in a temporary folder, with `file` replaced by `content`.
pub fn templates_with(file: &str, content: &str) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let p = e.unwrap().path();
            let target = to.join(p.file_name().unwrap());
            if p.is_dir() {
                copy(&p, &target)
            } else {
                std::fs::copy(&p, &target).unwrap();
            }
        }
    }
    let dir = std::env::temp_dir().join(format!(
        "herald-templates-{}",
        uuid::Uuid::new_v4().simple()
    ));
    copy(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("templates"),
        &dir,
    );
    std::fs::write(dir.join(file), content).unwrap();
    dir
}

/// A `herald` child process that is killed if the test ends without stopping it (a panic), so
/// no daemon outlives its test.
pub struct Daemon(pub std::process::Child);

impl Daemon {
    /// SIGTERM, then wait: returns how it exited.
    pub fn stop(mut self) -> std::process::ExitStatus {
        std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status()
            .unwrap();
        self.0.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
