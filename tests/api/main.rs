//! Black-box tests: the real app against a real SMTP server, in either of its homes. A test on
//! PostgreSQL and Redis opens with `skip_without_servers!()`: without them it is skipped, loudly,
//! unless `HERALD_REQUIRE_SERVERS=1`. A test of a promise both homes keep is written once and
//! listed in its file's `in_both_homes!` (tests/api/homes.rs): it runs as
//! `<file>::on_servers::<name>` and as `<file>::embedded::<name>`, in a state file of its own,
//! which needs no server (`cargo test --test api embedded::` runs the embedded halves).
//!
//! # The split
//!
//! In both homes: dedup keys and "once" (`idempotency`, `once`), fenced claims (`fencing`),
//! retries and the failed set (`failures`), manual triggers and retention (`triggers`), metrics (`metrics`), the dashboard's
//! API (`ops`: dry runs, pauses, `/api/schedules`, `/api/stats`), one-click unsubscribe
//! (`unsubscribe`). A worker driven by hand (`bare_store`, `fencing::worker_deps`) runs in
//! either home too: its gate in Redis or in the process. The command line's part of a test runs on the servers: beside an embedded
//! Herald it is refused, naming the pid (one process per file), which the embedded half checks.
//!
//! On the servers only, because they test PostgreSQL or Redis themselves, or several processes:
//! - `outage`, `resilience`, `recording`, `daemon`, `load`: Redis or PostgreSQL going away and
//!   coming back, Redis's baseline and inflight sets, apalis-redis's limit on due jobs.
//! - `planning`: the connection pools the planner and the workers share on PostgreSQL.
//! - `local_time` (three processes planning), `idempotency::two_processes_…`,
//!   `failures::smtp_messages_per_second_holds_across_every_worker`: several processes on one
//!   queue; the embedded home runs one process per file.
//! - `fencing::a_row_that_cannot_be_recorded_…`: a PL/pgSQL trigger makes PostgreSQL refuse it.
//! - `once::a_process_killed_while_resend_holds_its_batch_…`: a `herald run` of its own killed
//!   with SIGKILL (the lifecycle test's part in the embedded home).
//! - `once::an_undecodable_job_…`: writes into apalis-redis's keys (tests/queue.rs dead-letters
//!   an undecodable job in both queues).
//! - `sources`, `seed`, `unsubscribe_kinds`, `languages`: the app's data on PostgreSQL and
//!   MariaDB, written with their own SQL (`herald_demo.users`).
//! - `unrecordable`, `secrets`, `startup`, `auth_edges` (`/readyz`): PostgreSQL's own refusals,
//!   URLs with passwords, readiness per dependency.
//!
//! Not converted yet, though nothing in them is the servers' own: `agree`, `auth`, `delivery`,
//! `dkim`, `item_kinds`, `openapi`, `preview`, `resend`, `webhooks`.

// First, apart: the modules below use its macros, which exist only after it.
#[macro_use]
#[path = "../support/shared_servers.rs"]
mod shared_servers;
// Second, for the same reason: `in_both_homes!` and `embedded_home!`.
#[macro_use]
mod homes;

mod agree;
mod auth;
mod auth_edges;
mod daemon;
mod delivery;
mod dkim;
#[path = "../support/dkim.rs"]
mod dkim_verify;
mod failures;
mod fencing;
mod helpers;
mod idempotency;
mod item_kinds;
mod languages;
mod load;
mod local_time;
#[path = "../support/mariadb.rs"]
mod mariadb;
mod metrics;
mod once;
mod openapi;
mod ops;
mod outage;
mod planning;
#[path = "../support/ports.rs"]
mod ports;
mod preview;
mod recording;
mod resend;
#[path = "../support/resend_stub.rs"]
mod resend_stub;
mod resilience;
mod secrets;
mod seed;
#[path = "../support/servers.rs"]
mod servers;
mod sources;
mod startup;
#[path = "../support/tcp_proxy.rs"]
mod tcp_proxy;
mod triggers;
mod unrecordable;
mod unsubscribe;
mod unsubscribe_kinds;
mod webhooks;
