//! Black-box tests: the real app against a real PostgreSQL, Redis and SMTP server. Each test
//! opens with `skip_without_servers!()`: without PostgreSQL or Redis it is skipped, loudly, unless
//! `HERALD_REQUIRE_SERVERS=1`.

// First, apart: the modules below use its macros, which exist only after it.
#[macro_use]
#[path = "../support/shared_servers.rs"]
mod shared_servers;

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
