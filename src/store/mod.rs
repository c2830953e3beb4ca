//! Every SQL statement Herald runs against its own state, in PostgreSQL. Dates are computed in Rust
//! and passed in.
//!
//! The state lives in the schema [`STATE_SCHEMA`] (every connection of the pool has it as its
//! `search_path`), apart from the app's data, which Herald reads through [`crate::source`] and
//! never writes. One `impl Store` per group of tables: [`preferences`] (opt-outs per kind),
//! [`schedules`] (watermarks and the planner's inserts), [`deliveries`] (dispatch, claims,
//! outcomes, the failed set), [`pauses`] (schedules an operator paused), [`retention`] (deleting old finished deliveries), [`prepare`] (the source chosen and checked at start), [`migrate_state`] (an embedded state moved into PostgreSQL). The row types
//! live here, and the enums of their TEXT columns in [`enums`].

use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgPool, Postgres, migrate::MigrateDatabase, postgres::PgConnectOptions};

use crate::{
    config::redact,
    source::{RESERVED_POOL, Source, WORKERS_POOL, application_name, pool_options},
};

mod deliveries;
mod enums;
mod gauges;
pub mod lite;
pub mod migrate_state;
mod pauses;
mod preferences;
mod prepare;
mod retention;
mod schedules;
mod sessions;
mod suppressions;
pub mod ui;
pub mod ui_browse;

pub use deliveries::capped_reason;
pub use enums::{AttemptOutcome, DeliveryStatus};
pub use gauges::DeliveryGauges;
pub use pauses::Pause;
pub use preferences::{Forgotten, Preferences};
pub use prepare::prepare;
pub use retention::{Cutoffs, Deleted};
pub use schedules::ScheduleLock;
pub use suppressions::{EventRow, NewEvent, Rates, Suppression};

/// The PostgreSQL schema that holds Herald's state (deliveries, attempts, watermarks, batches,
/// opt-outs), so that it never collides with the app's own tables in the same database.
pub const STATE_SCHEMA: &str = "herald";

/// Herald's own tables, which versions before the state schema kept in `public`; moved into
/// [`STATE_SCHEMA`] once, before the migrations run.
const LEGACY_STATE_TABLES: &[&str] = &[
    "_sqlx_migrations",
    "deliveries",
    "delivery_attempts",
    "schedule_watermarks",
    "batches",
    "email_opt_outs",
];

/// The embedded migrations in `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Pages of users planned at the same time, each on one connection at a time: while some pages'
/// deliveries are inserted, the next pages' data is read and composed, on both sides of the
/// connection and on every core. Four rather than two because, on a machine busy sending, more
/// statements in flight keep the planner's share of PostgreSQL (100,000 weekly reports planned
/// while 20,000 emails were sent: about 6.5 s with four, 8.5 s with two; idle, alike). The
/// reserved pool ([`RESERVED_CONNECTIONS`]) and the source's ([`SOURCE_CONNECTIONS`]) count on
/// this number: it lives here, below the planner that uses it.
pub const PAGES_IN_FLIGHT: usize = 4;

/// Connections kept apart from the workers' pool ([`Store::reserved`]), for everything but the
/// workers. What that needs grows with neither the load nor the settings, so it is no setting:
/// the planner's schedule lock and its pages in flight ([`PAGES_IN_FLIGHT`]), the
/// dispatcher's one loop, and one for the API, the janitor and retention.
pub const RESERVED_CONNECTIONS: u32 = 1 + PAGES_IN_FLIGHT as u32 + 2;

/// Connections to the app's database: the planner's pages in flight, each reading its tasks while
/// the next page of users streams in, and one for the claim's and the API's look-ups.
pub const SOURCE_CONNECTIONS: u32 = PAGES_IN_FLIGHT as u32 + 2;

/// Pages in flight when the state is embedded ([`Store::pages_in_flight`]): every insert goes
/// through the file's one writer, and the pages' reads through one source connection, so pages
/// beyond two only wait in line, each holding its users and composed emails: with four, the
/// embedded bench peaked 0.4–0.9 MB higher and sent no faster (BENCHMARKS.md, "One file under
/// 40 MB").
pub const EMBEDDED_PAGES_IN_FLIGHT: usize = 2;

/// Connections to the app's data when it is the embedded state file's own demo tables: one for
/// the planner's stream of users (held for a whole fire), one for everything else in turn (each
/// page's tasks, the claims' look-ups), instead of [`SOURCE_CONNECTIONS`]. On SQLite each
/// connection is a thread of its own with its page cache, and the pages' reads compete for the
/// same cores as everything else in the process: six made the embedded bench's peak RSS about
/// 4 MB higher than two, and were no faster (BENCHMARKS.md, "One file: memory").
pub const EMBEDDED_SOURCE_CONNECTIONS: u32 = 2;

/// A handle to the database; cheap to clone.
///
/// Two pools (told apart in `pg_stat_activity` by [`application_name`](crate::source::application_name)), because the workers can take every connection: while they claim and record as
/// fast as the providers take emails, each statement of the planner (about five for each 1,000
/// users), of the dispatcher and of the API waited in line behind theirs. The workers (and their
/// recorder) run on the main pool (`database.max_connections`); everything else runs on
/// [`RESERVED_CONNECTIONS`] more, which the workers never see. Those are opened when first used
/// and closed after a minute unused, so a command that does not plan holds none, and a process
/// that is not planning holds about two.
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
    /// The app's data ([`Source`]), carried here so that the planner and the claim reach both:
    /// by default Herald's own database, read through its default `search_path`.
    pub source: Source,
    /// The URL this store connected to: the demo app's default home.
    url: PrivateUrl,
}

/// Where the state lives.
#[derive(Clone, Debug)]
enum Db {
    Postgres {
        /// The pool this handle's statements run on: the main pool, or the reserved one for a
        /// handle from [`Store::reserved`].
        pool: PgPool,
        reserved: PgPool,
    },
    /// The embedded mode's file ([`lite`]).
    Sqlite(lite::Lite),
}

/// The PostgreSQL pool of this handle; or, when the state is embedded, returns from the calling
/// method what `$embedded` (the [`lite`] function of the same name) returns.
macro_rules! pg_or {
    ($self:ident, $lite:ident => $embedded:expr) => {
        match &$self.db {
            Db::Postgres { pool, .. } => pool,
            Db::Sqlite($lite) => return $embedded,
        }
    };
}
use pg_or;

/// A URL that keeps its password out of `Debug`.
#[derive(Clone)]
struct PrivateUrl(std::sync::Arc<str>);

impl std::fmt::Debug for PrivateUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&redact(&self.0), f)
    }
}

/// A delivery the planner wants to exist.
#[derive(Debug, Clone, Serialize)]
pub struct NewDelivery {
    /// Queued, or skipped for a fire that was missed (with the reason in `note`).
    pub status: DeliveryStatus,
    pub note: Option<String>,
    pub kind: String,
    pub user_id: String,
    pub dedup_key: String,
    pub recipient: String,
    /// The template fields as JSON text, serialized once when composed: a page of planned
    /// deliveries holds one string each rather than a tree of small allocations.
    pub payload: String,
    pub planned_for: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
}

/// A delivery a worker has claimed for one attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    /// Written by the claim; the worker records and renews only while the row still carries it.
    pub claim_token: uuid::Uuid,
    pub kind: String,
    /// The app's id of the recipient: checked against the source at claim.
    pub user_id: String,
    /// When it was planned.
    pub created_at: DateTime<Utc>,
    pub dedup_key: String,
    pub recipient: String,
    pub payload: serde_json::Value,
    pub attempts: i32,
    pub round_attempts: i32,
    pub message_id: String,
    /// The batch this delivery was last sent in and must be sent in again, if any: its
    /// idempotency key.
    pub batch_key: Option<String>,
    /// How many deliveries that batch's request carried.
    pub batch_size: Option<i32>,
    /// The provider that may already hold this email (after an `unknown` outcome): the only one
    /// it is sent to.
    pub held_by: Option<String>,
    /// When this attempt was due (the lag to its sending is a metric).
    pub due_at: DateTime<Utc>,
    /// Its user has opted out of its kind (since it was planned): it is skipped, not sent.
    pub opted_out: bool,
    /// Its address is on the suppression list (a bounce, a complaint): skipped, not sent.
    pub suppressed: bool,
    /// It reached `queue.max_attempts`: the claim failed it instead (see [`Store::claim_many`]).
    pub over_cap: bool,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct DeliveryRow {
    pub id: i64,
    pub kind: String,
    pub user_id: String,
    pub dedup_key: String,
    pub status: DeliveryStatus,
    pub recipient: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub provider: Option<String>,
    pub message_id: Option<String>,
    /// The provider's id for the email (Resend's), once sent.
    pub provider_id: Option<String>,
    pub planned_for: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AttemptRow {
    pub attempt: i32,
    pub at: DateTime<Utc>,
    pub provider: String,
    pub outcome: AttemptOutcome,
    pub code: Option<i32>,
    pub error: Option<String>,
}

/// What one try at one provider came to, as written to `delivery_attempts`.
#[derive(Debug, Clone)]
pub struct AttemptRecord<'a> {
    pub provider: &'a str,
    pub outcome: AttemptOutcome,
    pub code: Option<u16>,
    /// The provider's message.
    pub error: Option<&'a str>,
}

/// Where a claimed delivery goes after its attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next<'a> {
    Sent {
        provider: &'a str,
        provider_id: Option<&'a str>,
    },
    /// Failed; a delivery held by a provider stays held by it.
    Failed,
    /// Back to `queued`, due at `due_at`, in the same batch if it was in one. `counts` is false
    /// when the wait was the provider's doing (a pause, a rate limit, a circuit): the attempt is
    /// then given back. `held_by` is the provider whose outcome was unknown, from now on the only
    /// one the delivery is sent to.
    Retry {
        due_at: DateTime<Utc>,
        counts: bool,
        held_by: Option<&'a str>,
    },
}

/// One delivery's outcome as [`Store::record_many`] writes it, owned, so that it can travel to
/// the task that commits the outcomes of every worker together.
#[derive(Debug, Clone, PartialEq)]
pub struct Recording {
    pub id: i64,
    pub claim_token: uuid::Uuid,
    /// The attempt number the tries are recorded under.
    pub attempt: i32,
    /// Sent, failed or queued (a retry).
    pub status: DeliveryStatus,
    /// When a retry is due.
    pub due_at: Option<DateTime<Utc>>,
    /// The attempt is given back (a provider asked to wait).
    pub give_back: bool,
    /// Given back with no try at all: the attempt did not happen.
    pub untried: bool,
    pub last_error: Option<String>,
    pub provider: Option<String>,
    pub provider_id: Option<String>,
    /// The provider whose outcome was unknown, from now on the only one to send it.
    pub held_by: Option<String>,
    pub tries: Vec<TryRecording>,
}

/// One try of a [`Recording`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TryRecording {
    pub provider: String,
    pub outcome: AttemptOutcome,
    pub code: Option<i32>,
    pub error: Option<String>,
}

impl Recording {
    pub fn new(d: &Claimed, tries: &[AttemptRecord<'_>], next: &Next<'_>) -> Recording {
        let last = tries.last();
        let provider = match next {
            Next::Sent { provider, .. } => Some(*provider),
            _ => last.map(|a| a.provider),
        };
        let (status, due_at, give_back, provider_id, held_by) = match next {
            Next::Sent { provider_id, .. } => {
                (DeliveryStatus::Sent, None, false, *provider_id, None)
            }
            Next::Failed => (DeliveryStatus::Failed, None, false, None, None),
            Next::Retry {
                due_at,
                counts,
                held_by,
            } => (
                DeliveryStatus::Queued,
                Some(*due_at),
                !counts,
                None,
                *held_by,
            ),
        };
        Recording {
            id: d.id,
            claim_token: d.claim_token,
            attempt: d.attempts,
            status,
            due_at,
            give_back,
            untried: give_back && tries.is_empty(),
            last_error: last.and_then(|a| a.error).map(str::to_owned),
            provider: provider.map(str::to_owned),
            provider_id: provider_id.map(str::to_owned),
            held_by: held_by.map(str::to_owned),
            tries: tries
                .iter()
                .map(|a| TryRecording {
                    provider: a.provider.to_owned(),
                    outcome: a.outcome,
                    code: a.code.map(i32::from),
                    error: a.error.map(str::to_owned),
                })
                .collect(),
        }
    }
}

/// The most characters of one provider text that are stored.
pub const MAX_PROVIDER_TEXT: usize = 1000;

/// Provider text as PostgreSQL can store it: without NUL bytes (a `text` column refuses them,
/// and with them the whole write, so the outcome would never be recorded and the email would go
/// out again every lease) and at most [`MAX_PROVIDER_TEXT`] characters. Every text a provider
/// supplies (error replies, message ids, bounce details) goes through here before it is written.
pub fn clean_text(text: &str) -> String {
    text.chars()
        .filter(|c| *c != '\0')
        .take(MAX_PROVIDER_TEXT)
        .collect()
}

/// [`clean_text`] for an optional text.
pub fn clean_opt(text: Option<&str>) -> Option<String> {
    text.map(clean_text)
}

impl Store {
    /// Connects, creating the database first when `create` is set and it does not exist.
    pub async fn connect(url: &str, max_connections: u32, create: bool) -> anyhow::Result<Store> {
        if create
            && !Postgres::database_exists(url).await.with_context(|| {
                format!("cannot reach PostgreSQL at {}; is it running?", redact(url))
            })?
        {
            // Another process may create it at the same moment: only its absence afterwards is an error.
            if let Err(e) = Postgres::create_database(url).await
                && !Postgres::database_exists(url).await.unwrap_or(false)
            {
                return Err(e)
                    .with_context(|| format!("cannot create the database in {}", redact(url)));
            }
            tracing::info!(url = %redact(url), "created the database");
        }
        let options: PgConnectOptions = url
            .parse::<PgConnectOptions>()
            .with_context(|| format!("DATABASE_URL {} is not a PostgreSQL URL", redact(url)))?
            // A daemon must not wait forever on a row lock: a transaction left open by a
            // connection that stopped being used (a worker cancelled mid-transaction during an
            // outage) would otherwise block lease recovery, and with it the dispatcher, for good.
            // The server ends such a transaction after a minute; a lock wait fails after 10 s and
            // is tried again on the next round.
            .options([
                ("lock_timeout", "10s"),
                ("idle_in_transaction_session_timeout", "60s"),
                ("search_path", STATE_SCHEMA),
            ]);
        let named = |pool: &str| {
            let name = application_name(options.get_application_name(), pool);
            options.clone().application_name(&name)
        };
        let pool = pool_options::<Postgres>(max_connections)
            .connect_with(named(WORKERS_POOL))
            .await
            .with_context(|| format!("cannot connect to PostgreSQL at {}; is it running and does the database exist? (`herald migrate` creates it)", redact(url)))?;
        let reserved = pool_options::<Postgres>(RESERVED_CONNECTIONS)
            .idle_timeout(Duration::from_secs(60))
            .connect_lazy_with(named(RESERVED_POOL));
        let source = Source::connect(url, SOURCE_CONNECTIONS).await?;
        Ok(Store {
            db: Db::Postgres { pool, reserved },
            source,
            url: PrivateUrl(url.into()),
        })
    }

    /// The store where the settings say the state lives, migrated: PostgreSQL (created if
    /// missing, `max_connections` for the workers' pool), or the embedded file, reading the
    /// app's data from that same file until [`prepare`] is told otherwise.
    pub async fn open(home: &crate::config::Home, max_connections: u32) -> anyhow::Result<Store> {
        match home {
            crate::config::Home::Servers(s) => {
                let store = Store::connect(&s.database_url, max_connections, true).await?;
                store.migrate().await?;
                Ok(store)
            }
            crate::config::Home::Embedded { file } => {
                let url = format!("sqlite://{}", file.display());
                let source = Source::connect(&url, EMBEDDED_SOURCE_CONNECTIONS).await?;
                Store::open_embedded(file, source).await
            }
        }
    }

    /// The embedded store: Herald's state in the SQLite file at `path` (created, locked for this
    /// process and migrated), the app's data in `source`.
    /// A file that `herald migrate-state` moved into PostgreSQL is refused ([`lite::moved`]).
    pub async fn open_embedded(path: &std::path::Path, source: Source) -> anyhow::Result<Store> {
        let lite = lite::Lite::open(path).await?;
        if let Some(moved) = lite.moved_to().await? {
            return Err(lite::moved::refusal(path, &moved));
        }
        Ok(Store {
            db: Db::Sqlite(lite),
            source,
            url: PrivateUrl(format!("sqlite://{}", path.display()).into()),
        })
    }

    /// Whether the state is in a SQLite file (else PostgreSQL).
    pub fn is_embedded(&self) -> bool {
        matches!(self.db, Db::Sqlite(_))
    }

    /// Pages of users the planner works on at once: [`PAGES_IN_FLIGHT`], or
    /// [`EMBEDDED_PAGES_IN_FLIGHT`] on one file.
    pub fn pages_in_flight(&self) -> usize {
        if self.is_embedded() {
            EMBEDDED_PAGES_IN_FLIGHT
        } else {
            PAGES_IN_FLIGHT
        }
    }

    /// The state file, when the state is embedded: the embedded queue keeps its tables there.
    pub fn lite(&self) -> Option<&lite::Lite> {
        match &self.db {
            Db::Sqlite(lite) => Some(lite),
            Db::Postgres { .. } => None,
        }
    }

    /// The PostgreSQL pool, for tests and benches that read or write the state directly.
    ///
    /// # Panics
    /// When the state is embedded: such a test is PostgreSQL's only.
    pub fn pg(&self) -> &PgPool {
        match &self.db {
            Db::Postgres { pool, .. } => pool,
            Db::Sqlite(_) => panic!("this store keeps its state in SQLite, not PostgreSQL"),
        }
    }

    /// The URL of Herald's database, password included: not for logs.
    pub fn url(&self) -> &str {
        &self.url.0
    }

    /// This store reading the app's data from `source` (`source.url`).
    pub fn with_source(mut self, source: Source) -> Store {
        self.source = source;
        self
    }

    /// This store on the reserved connections, which the workers never take: for the planner,
    /// the dispatcher, the API and the other background parts (see [`Store`]).
    pub fn reserved(&self) -> Store {
        let db = match &self.db {
            Db::Postgres { reserved, .. } => Db::Postgres {
                pool: reserved.clone(),
                reserved: reserved.clone(),
            },
            // One writer serves everybody in the process: nothing to reserve.
            Db::Sqlite(lite) => Db::Sqlite(lite.clone()),
        };
        Store {
            db,
            source: self.source.clone(),
            url: self.url.clone(),
        }
    }

    /// Creates the state schema, moves the state of an install from before it out of `public`,
    /// and applies the migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        // The embedded file is migrated when opened.
        let pool = pg_or!(self, _lite => Ok(()));
        let mut tx = pool.begin().await?;
        // Several processes may start together: one at a time past this point.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('herald:state-schema'))")
            .execute(&mut *tx)
            .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {STATE_SCHEMA}"
        )))
        .execute(&mut *tx)
        .await
        .with_context(|| format!("cannot create the schema {STATE_SCHEMA} for Herald's state; grant the database user CREATE on the database"))?;
        let legacy: bool = sqlx::query_scalar(
            "SELECT to_regclass('public.deliveries') IS NOT NULL
                AND to_regclass('public._sqlx_migrations') IS NOT NULL
                AND to_regclass($1 || '.deliveries') IS NULL",
        )
        .bind(STATE_SCHEMA)
        .fetch_one(&mut *tx)
        .await?;
        if legacy {
            for table in LEGACY_STATE_TABLES {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "ALTER TABLE IF EXISTS public.{table} SET SCHEMA {STATE_SCHEMA}"
                )))
                .execute(&mut *tx)
                .await?;
            }
            tracing::info!(
                schema = STATE_SCHEMA,
                "moved Herald's state out of the public schema; the old users, tasks and focus_sessions tables stay where they are (Herald now reads the herald_users, herald_tasks and herald_focus_sessions views: see `herald check`)"
            );
        }
        tx.commit().await?;
        MIGRATOR
            .run(pool)
            .await
            .context("cannot apply the migrations")
    }

    pub async fn ping(&self) -> anyhow::Result<()> {
        let pool = pg_or!(self, lite => lite.ping().await);
        sqlx::query("SELECT 1").execute(pool).await?;
        Ok(())
    }
}
