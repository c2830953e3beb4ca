//! Black-box tests: the real app against a real PostgreSQL, Redis and SMTP server.

mod auth;
mod delivery;
mod failures;
mod helpers;
mod idempotency;
mod load;
mod local_time;
mod resilience;
mod startup;
