//! Herald: scheduled email notifications for a task app, from cron tick to inbox.
//!
//! # How the code is laid out
//!
//! The top-level modules stand in layers, and a module imports (`crate::…`, doc links included)
//! only from its own layer's lower neighbours or from layers below, never up: `tests/house.rs`
//! fails naming the circle otherwise (test modules aside), and on any file of `src/` over 600
//! lines. From the bottom:
//!
//! 1. Foundations, no I/O of their own or only their own: [`allocator`], [`domain`] (value types, the calendar,
//!    [`domain::ErrorClass`], [`domain::When`]), [`clock`], [`shutdown`], [`telemetry`],
//!    [`health`], [`supervisor`], [`webhooks`] (the signature check), [`dkim`].
//! 2. Settings: [`config`]. It never knows the kinds: `kinds::defaults()` hands it each kind's
//!    name, cron, zone and link at start-up (`Settings::load(&kinds::defaults())`).
//! 3. Data: [`source`] (the app's data), then [`store`] (Herald's state; carries the source),
//!    [`payload`], [`kinds`] (the registry; `Kind::of(schedule)`).
//! 4. Parts: [`render`], [`unsubscribe`], [`mail`] (the providers), then [`gate`] (what the
//!    providers said), [`recipients`], [`recorder`].
//! 5. [`metrics`]: counted into by the layers above; it reads the queue through
//!    [`metrics::QueueReading`] and a plan through [`metrics::PlanCounts`].
//! 6. Engines: [`schedule`] (the planner), [`worker`], [`retention`]; then [`queue`], which runs
//!    the workers.
//! 7. Surfaces: [`input`], [`preview`], [`http`], then [`ui`] (the dashboard builds on `http`'s
//!    state and guard; the layer above hands its router to [`http::app`]), then [`seed`],
//!    [`startup`], [`cli`].
//!
//! A lower module that must reach up takes a parameter or a small trait from the upper one
//! instead (the kinds' defaults, the dashboard's router, the queue's reading).
//!
//! - [`config`]: the layered settings (built-in defaults, `HERALD_CONFIG`, environment) and
//!   their validation.
//! - [`domain`]: plain validated types and the calendar arithmetic; no I/O.
//! - [`store`]: every SQL statement, against PostgreSQL.
//! - [`kinds`]: the kinds of email, one file each: default schedule, data, payload, sample.
//! - [`payload`]: what an email says as its templates see it, shared by kinds and `render`.
//! - [`schedule`]: cron ticks and the planner that turns a tick into deliveries.
//! - [`queue`]: the queue (apalis-redis, or apalis-sqlite in the state file in the embedded
//!   mode), the dispatcher that feeds it from the state store, and its housekeeping.
//! - [`worker`]: `process_job`, the step that claims, renders, sends and records one job's deliveries.
//! - [`recorder`]: group commit of the outcomes of every worker.
//! - [`render`]: minijinja templates, checked at start, and the filters that write times when an
//!   email is sent.
//! - [`unsubscribe`]: the signed one-click unsubscribe links; [`webhooks`]: Resend's signed
//!   events (Standard Webhooks).
//! - [`mail`]: the providers (Resend, SMTP, file outbox) and one taxonomy for their errors;
//!   [`dkim`]: the DKIM key and signature of the SMTP and `.eml` messages.
//! - [`gate`]: what providers say: rate limit, pauses, circuit; shared through Redis, or kept in
//!   the process ([`gate::Gate::in_process`]).
//! - [`retention`]: deletes finished deliveries once they are older than `retention.*`.
//! - [`http`]: the axum routes, bearer auth and API errors; [`ui`]: the operator's dashboard at
//!   `/ui`, behind the same token; [`input`]: what the CLI and the API both take from an
//!   operator (kinds, instants, ages, limits), read one way for both.
//! - [`health`]: what is up and down, logged once per change; [`supervisor`]: restarts a
//!   background part that ends or panics.
//! - [`startup`]: `Application::build` / `run_until_stopped`, used by `herald run` and tests.
//! - [`cli`]: the `herald` command line; [`seed`]: demo data; [`telemetry`]: logs;
//!   [`metrics`]: what `GET /metrics` shows.
//!
//! # How an email travels
//!
//! A tick (cron or `POST /api/schedules/{name}/trigger`) inserts one `deliveries` row per user
//! with something to say, keyed by a unique dedup key. The dispatcher moves due rows to Redis in
//! chunks while the queue is below its high-water mark. A worker claims the row, renders and
//! sends it through the providers in order, and records each try. A transient failure puts the
//! row back in PostgreSQL with a later `due_at`; a provider that asks to wait (rate limit, quota,
//! configuration, outage) is paused for every worker and the row waits without using an attempt.
//! PostgreSQL, not Redis, is the record of every email.

pub mod allocator;
pub mod cli;
pub mod clock;
pub mod config;
pub mod dkim;
pub mod domain;
pub mod gate;
pub mod health;
pub mod http;
pub mod input;
pub mod kinds;
pub mod mail;
pub mod metrics;
pub mod payload;
pub mod preview;
pub mod queue;
pub mod recipients;
pub mod recorder;
pub mod render;
pub mod retention;
pub mod schedule;
pub mod seed;
pub mod shutdown;
pub mod source;
pub mod startup;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod ui;
pub mod unsubscribe;
pub mod webhooks;
pub mod worker;

/// The number of cases each property test runs: `PROPTEST_CASES` when set (the long run in the
/// README), else `default`.
#[cfg(test)]
pub(crate) fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
