//! The lifecycle of a deployment, in both homes: the real `herald` binary, run as processes
//! against a counting SMTP server and the Resend stand-in, through the fires of the overdue
//! summary in `lifecycle/fires.rs`, each hit mid-send by one kind of trouble. The same driver
//! (`lifecycle/driver.rs`) runs them on a private PostgreSQL and Redis, and on one SQLite file
//! (no `DATABASE_URL`, no `REDIS_URL`; one process on the file, restarted on it):
//!
//! 1. through SMTP, planned by hand: SIGTERM, then a restart;
//! 2. through SMTP, planned by hand: SIGKILL, then a restart;
//! 3. through SMTP, planned by hand: the SMTP server stopped for 3 s (open connections dropped,
//!    new ones refused), then back on its port;
//! 4. servers only: through SMTP, planned by hand: Redis restarted (it comes back empty), then
//!    PostgreSQL stopped for 5 s;
//! 5. servers only: through Resend (SMTP second), planned by the schedule's cron, which fires
//!    while PostgreSQL is stopped for 5 s; then, mid-send, the restarts of fire 4 while the
//!    Resend stand-in holds requests past Herald's timeout (taken, the answer never comes in
//!    time), takes requests and answers 500, 502 or 504, and refuses others with 500 or 503;
//! 6. embedded only: through Resend, planned by the cron, hit by the same faults of the stand-in
//!    until another fifth of the fire arrived (fire 5 without the server outages, which have no
//!    embedded twin).
//!
//! After each fire it checks that every email arrived, counted where it arrives: per
//! `X-Herald-Delivery` at the SMTP server, and per email Resend would have sent at the stand-in
//! (a retry under an idempotency key Resend already answered is not a new email, a request under
//! a new key is). It counts the copies (none allowed from a SIGTERM, a server restart or the
//! Resend faults, at most the emails a process holds from a SIGKILL, at most one per SMTP
//! connection from the SMTP server's stop), and checks what the fire left
//! (`lifecycle/leftovers.rs`): the queue's Redis keys back near where they were before fire 1;
//! in the state file no job, no claim and no gone process's worker, and a size that grows only
//! by the fire's records. Across the run: no process logs a worker crash, each outage adds
//! fewer than 20 WARN/ERROR lines, and every delivery is recorded as sent. A summary table is
//! printed at the end, also when it fails.
//!
//! `cargo test --test lifecycle` runs both homes with 600 emails per fire, one after the other;
//! the full size is `HERALD_LIFECYCLE_EMAILS=12000 cargo test --release --test lifecycle --
//! --nocapture` (see RELIABILITY.md). The embedded run needs no server and always runs. Without
//! `redis-server`, or PostgreSQL's `initdb` and `pg_ctl`, the servers run is skipped with a loud
//! `SKIPPED:` line, unless `HERALD_REQUIRE_SERVERS=1`.

// First, apart: the test below uses its macros.
#[macro_use]
#[path = "support/shared_servers.rs"]
mod shared_servers;

#[path = "lifecycle/driver.rs"]
mod driver;
#[path = "lifecycle/events.rs"]
mod events;
#[path = "lifecycle/fires.rs"]
mod fires;
#[path = "lifecycle/home.rs"]
mod home;
#[path = "lifecycle/leftovers.rs"]
mod leftovers;
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

use fires::HomeKind;

/// One home at a time: each run's timing (30 % of a fire arrived before its event, a fire lasting
/// at least ~5 s) assumes the machine's cores are its own.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_life_of_a_deployment_on_postgresql_and_redis() {
    skip_without_programs!("redis-server", "initdb", "pg_ctl");
    let _turn = ONE_AT_A_TIME.lock().await;
    driver::live(HomeKind::Servers).await;
}

/// Needs no server: the state and the queue are one SQLite file in a temporary folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_life_of_a_deployment_on_one_file() {
    let _turn = ONE_AT_A_TIME.lock().await;
    driver::live(HomeKind::Embedded).await;
}

/// Runs blocking server control (pg_ctl, redis-server, the SMTP server's stop) without stalling
/// the runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}
