//! `herald migrate-state`: moves an embedded Herald's state from its SQLite file into PostgreSQL,
//! for the servers home (PostgreSQL and Redis), in one transaction: all of it or nothing.
//!
//! # What moves
//!
//! Every table of Herald's state ([`tables::STATE`]): deliveries with their payloads, dedup keys,
//! statuses and ids, their attempts, batches, opt-outs, suppressions, the provider's events,
//! the schedules' watermarks and pauses, the housekeeping marks and the dashboard's session key.
//! Ids stay what they were (a Message-ID, an outcome, an operator's link names a delivery by
//! its id), and PostgreSQL's sequences are moved past the highest id the file ever gave (its
//! `sqlite_sequence`, which counts the deleted rows too), so no id is given twice. Deliveries
//! move as the file holds them: the embedded retention has deleted what was past it, and what
//! expired since goes at the new home's first retention pass, under the same settings.
//!
//! The target is made ready as the servers home makes it (created if missing, the schema
//! `herald`, the migrations), and must hold no Herald state: the move never merges two states
//! (two dedup keys for one email, two deliveries with one id), so a target with deliveries,
//! attempts, batches, opt-outs, suppressions, provider events or pauses is refused, naming them.
//! What a servers home writes by itself on a database without deliveries (it was started there
//! once before the move) is replaced by the file's: the planner's watermarks (the target planned
//! nothing, so the file's say which fires were planned), the housekeeping marks (the target's
//! would tell the payload pruning that the copied rows were pruned already) and the dashboard's
//! session key. After the copy, each table is counted on both sides and a difference rolls
//! everything back ([`check_counts`]).
//!
//! # The file stays still, then stays out
//!
//! The file's own lock ([`super::lite::StateLock`]) is held for the whole move: an embedded
//! Herald running on it is named (its pid) and the move refused, and none can start meanwhile.
//! Afterwards the file is marked as moved ([`super::lite::moved`]): an embedded Herald refuses
//! to start on it again, which would send its queued emails a second time.
//!
//! # Claims and the embedded queue: none lost, none sent twice
//!
//! The embedded queue's jobs (apalis-sqlite's `Jobs`, in the same file) are not copied: a job
//! carries only delivery ids, and the rows are the truth. The servers home's dispatcher pushes to
//! Redis every delivery that is `queued` with no `dispatched_at` once it is due
//! ([`super::Store::take_due`]); its workers claim only `queued` rows that are due. So in the
//! target, as a restart would leave them:
//! - a delivery `queued` and dispatched (its job waiting in the file's queue, or fetched by a
//!   worker that stopped) loses its `dispatched_at`: the dispatcher pushes it again;
//! - a delivery `sending` (claimed by the stopped process, whose send may or may not have left)
//!   is given back as [`super::Store::release_claims_of`] gives back a dead worker's: `queued`,
//!   no lease, no claim token, its attempt kept. Its claim would otherwise block it until its
//!   lease ran out, then the same happens. A send that left just before the process stopped
//!   unrecorded goes once more, the bound every restart has (the Message-ID and the provider's
//!   idempotency key are kept, so a provider that holds it can tell).
//!
//! Every other status is final, or waits for an operator (`failed`). Nothing is lost: a delivery
//! whose job was in the file is `queued` or `sending` (else its outcome is recorded), and both
//! become dispatchable. Nothing is sent twice: the dedup keys come along, so a fire planned
//! again (or triggered again) finds its deliveries, and the watermarks say which fires were
//! planned, so the new planner starts where the old one stopped.
//!
//! # The demo app
//!
//! When the embedded Herald read the app's data from the file itself (no `source.url`, or one
//! naming the file) and the file holds the demo app (`herald_demo_*`, filled by `herald seed`),
//! the demo's users, tasks and focus sessions are copied into the target's demo tables (the
//! schema `herald_demo` and the `herald_users` views over it, as `herald seed` makes them on
//! PostgreSQL), in the same transaction. The servers home then reads them where it reads its
//! demo by default, its own database: nothing more to set (a `source.url` naming the file is to
//! be unset), and the file is left a backup only. Pointing `source.url` at the file instead
//! would keep the servers home reading a file that no process owns any more, on the one machine
//! that holds it, and the processes the servers home is for would each need that file. A target
//! that has views `herald_users` of its own (an app's, in the same database) keeps them, and the
//! demo is left out ([`Moved::demo`] says so).
//! With `source.url` naming another database, the app's data is there and stays there.

mod tables;

use std::path::Path;

use anyhow::Context;
use sqlx::{
    ConnectOptions, Connection, PgConnection, SqlitePool,
    sqlite::{SqliteConnectOptions, SqlitePoolOptions},
};

use super::{STATE_SCHEMA, Store, lite::Lite};
use crate::config::redact;
use tables::Table;

/// One table's rows, in the file and in PostgreSQL after the copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCount {
    /// The PostgreSQL table, with its schema.
    pub table: &'static str,
    pub file: i64,
    pub target: i64,
}

/// What the demo came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoMove {
    /// Copied into the target's `herald_demo` tables.
    Copied,
    /// Not asked for (`source.url` is set), or the file has no demo.
    NotThere,
    /// The target has `herald_users` views that are not the demo's: they are left alone.
    TargetHasViews,
}

/// What a move did.
#[derive(Debug, Clone)]
pub struct Moved {
    pub counts: Vec<TableCount>,
    /// Deliveries the stopped process had claimed, given back to the queue.
    pub released_claims: u64,
    /// Deliveries waiting in the embedded queue, handed to the new home's dispatcher.
    pub redispatched: u64,
    /// Jobs of the embedded queue, left in the file (their deliveries are the two above).
    pub queue_jobs: i64,
    pub demo: DemoMove,
}

/// Moves the state in the file `from` into the PostgreSQL database at `to` (created if
/// missing), with the demo app when `demo` is set (see the module's doc).
pub async fn migrate_state(from: &Path, to: &str, demo: bool) -> anyhow::Result<Moved> {
    check_target_url(to)?;
    anyhow::ensure!(
        from.is_file(),
        "the state file {} does not exist; pass --from with the file the embedded Herald ran on \
         (its state.file, herald.db in its working directory by default)",
        from.display()
    );
    let file = from.display().to_string();
    // Holds the file's lock until the end; refuses when an embedded Herald runs on it.
    let lite = Lite::open(from)
        .await
        .with_context(|| format!("cannot open the state file {file}"))?;
    // A reader of its own: one query streams a whole table while PostgreSQL takes it in, which
    // sqlx's slow-statement warning would report as a slow query.
    let reader = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(from)
                .read_only(true)
                .disable_statement_logging(),
        )
        .await
        .with_context(|| format!("cannot read the state file {file}"))?;
    let store = Store::connect(to, 2, true).await?;
    store.migrate().await?;
    store.pg().close().await;
    let mut conn = PgConnection::connect(to)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(to)))?;
    let mut tx = conn.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('herald:migrate-state'))")
        .execute(&mut *tx)
        .await?;
    refuse_unless_empty(&mut tx, to).await?;
    let demo = if demo && has_table(&reader, tables::DEMO[0].source).await? {
        demo_target(&mut tx, to).await?
    } else {
        DemoMove::NotThere
    };

    let mut counts = Vec::new();
    let mut moving: Vec<&Table> = tables::STATE.iter().collect();
    if demo == DemoMove::Copied {
        crate::source::demo::install_postgres(&mut tx).await?;
        moving.extend(tables::DEMO);
    }
    for table in moving {
        let file_rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            table.source
        )))
        .fetch_one(&reader)
        .await
        .with_context(|| format!("cannot count the rows of {} in {file}", table.source))?;
        tables::copy(&reader, &mut tx, table, &file).await?;
        let target: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            table.target
        )))
        .fetch_one(&mut *tx)
        .await?;
        counts.push(TableCount {
            table: table.target,
            file: file_rows,
            target,
        });
    }
    check_counts(&counts)?;

    let (released_claims, redispatched) = hand_over_the_queue(&mut tx).await?;
    move_sequences(&reader, &mut tx).await?;
    if demo == DemoMove::Copied {
        move_demo_ids(&reader, &mut tx).await?;
    }
    let queue_jobs = queue_jobs(&reader).await?;
    // The mark first: a process stopped between the two commits leaves a marked file (the
    // refusal says how to drop the mark), never an unmarked one whose state is in PostgreSQL too.
    lite.mark_moved(&redact(to), chrono::Utc::now())
        .await
        .with_context(|| format!("cannot mark {file} as moved; nothing was written"))?;
    if let Err(e) = tx.commit().await {
        lite.unmark_moved().await.with_context(|| {
            format!("the move did not commit ({e}), and the mark in {file} could not be taken back")
        })?;
        return Err(anyhow::Error::new(e)
            .context("cannot commit the move into PostgreSQL; nothing was written, run it again"));
    }
    conn.close().await?;
    reader.close().await;
    lite.reader.close().await;
    lite.writer.close().await;
    Ok(Moved {
        counts,
        released_claims,
        redispatched,
        queue_jobs,
        demo,
    })
}

/// `--to` must be a PostgreSQL URL; the message shows it without its password.
fn check_target_url(to: &str) -> anyhow::Result<()> {
    match url::Url::parse(to) {
        Ok(u) if matches!(u.scheme(), "postgres" | "postgresql") => Ok(()),
        Ok(u) => anyhow::bail!(
            "--to {} has the scheme {:?}; the state moves into PostgreSQL: give a URL such as \
             postgres://user:password@127.0.0.1:5432/herald (the database is created if missing)",
            redact(to),
            u.scheme()
        ),
        Err(e) => anyhow::bail!(
            "--to {} is not a URL ({e}); give one such as \
             postgres://user:password@127.0.0.1:5432/herald",
            redact(to)
        ),
    }
}

/// Refuses a target with rows in any state table but those a servers home writes by itself
/// ([`Table::replaced`]), naming them; empties those.
async fn refuse_unless_empty(tx: &mut PgConnection, to: &str) -> anyhow::Result<()> {
    let mut held = Vec::new();
    for table in tables::STATE.iter().filter(|t| !t.replaced) {
        let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}",
            table.target
        )))
        .fetch_one(&mut *tx)
        .await?;
        if n > 0 {
            held.push(format!("{} has {n} rows", table.target));
        }
    }
    anyhow::ensure!(
        held.is_empty(),
        "the database at {} already holds Herald state ({}); migrate-state moves a state into a \
         database without one and never merges two: give --to a new database (it is created), or \
         empty this one (DROP SCHEMA {STATE_SCHEMA} CASCADE) if its state is not needed",
        redact(to),
        held.join(", ")
    );
    for table in tables::STATE.iter().filter(|t| t.replaced) {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {}", table.target)))
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}

/// Whether the demo can go into the target: refused when the target's demo has users already,
/// left out when the target has an app's views.
async fn demo_target(tx: &mut PgConnection, to: &str) -> anyhow::Result<DemoMove> {
    let (demo_users, views): (bool, bool) = sqlx::query_as(
        "SELECT to_regclass('herald_demo.users') IS NOT NULL, to_regclass('herald_users') IS NOT NULL",
    )
    .fetch_one(&mut *tx)
    .await?;
    if demo_users {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM herald_demo.users")
            .fetch_one(&mut *tx)
            .await?;
        anyhow::ensure!(
            n == 0,
            "the database at {} already has a demo app with {n} users (herald_demo.users); the \
             file's demo is never merged into another: give --to a new database, or drop that \
             demo (DROP SCHEMA herald_demo CASCADE) if it is not needed",
            redact(to)
        );
        return Ok(DemoMove::Copied);
    }
    Ok(if views {
        DemoMove::TargetHasViews
    } else {
        DemoMove::Copied
    })
}

/// Every count the same on both sides, or an error naming the tables that differ.
pub fn check_counts(counts: &[TableCount]) -> anyhow::Result<()> {
    let differ: Vec<String> = counts
        .iter()
        .filter(|c| c.file != c.target)
        .map(|c| {
            format!(
                "{}: {} in the file, {} in PostgreSQL",
                c.table, c.file, c.target
            )
        })
        .collect();
    anyhow::ensure!(
        differ.is_empty(),
        "the copy does not add up ({}); nothing was written to PostgreSQL. Run migrate-state \
         again; if it differs again, report it with these counts",
        differ.join("; ")
    );
    Ok(())
}

/// Gives back the stopped process's claims and makes the embedded queue's deliveries
/// dispatchable again (see the module's doc). Returns (claims released, deliveries undispatched).
async fn hand_over_the_queue(tx: &mut PgConnection) -> anyhow::Result<(u64, u64)> {
    let released = sqlx::query(
        "UPDATE herald.deliveries SET status = 'queued', dispatched_at = NULL, lease_until = NULL,
                claim_token = NULL, claimed_by = NULL, updated_at = now()
         WHERE status = 'sending'",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let undispatched = sqlx::query(
        "UPDATE herald.deliveries SET dispatched_at = NULL, updated_at = now()
         WHERE status = 'queued' AND dispatched_at IS NOT NULL",
    )
    .execute(&mut *tx)
    .await?
    .rows_affected();
    Ok((released, undispatched))
}

/// Moves each id sequence past the highest id the file gave, deleted rows' included.
async fn move_sequences(file: &SqlitePool, tx: &mut PgConnection) -> anyhow::Result<()> {
    for table in ["deliveries", "delivery_attempts"] {
        let given: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT max(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0),
                        COALESCE((SELECT max(id) FROM {table}), 0))"
        )))
        .fetch_one(file)
        .await?;
        sqlx::query("SELECT setval(pg_get_serial_sequence($1, 'id'), $2, $3)")
            .bind(format!("{STATE_SCHEMA}.{table}"))
            .bind(given.max(1))
            .bind(given > 0)
            .execute(&mut *tx)
            .await
            .with_context(|| format!("cannot move the id sequence of {table} past {given}"))?;
    }
    Ok(())
}

/// The demo's id sequence past the file's counter, so a seed after the move adds new ids.
async fn move_demo_ids(file: &SqlitePool, tx: &mut PgConnection) -> anyhow::Result<()> {
    let last: i64 = sqlx::query_scalar("SELECT COALESCE(max(last), 0) FROM herald_demo_ids")
        .fetch_one(file)
        .await?;
    sqlx::query("SELECT setval('herald_demo.ids', $1, $2)")
        .bind(last.max(1))
        .bind(last > 0)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn has_table(file: &SqlitePool, name: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)",
    )
    .bind(name)
    .fetch_one(file)
    .await
}

/// The embedded queue's jobs, for the report (none when the queue never ran on this file).
async fn queue_jobs(file: &SqlitePool) -> anyhow::Result<i64> {
    if !has_table(file, "Jobs").await? {
        return Ok(0);
    }
    Ok(sqlx::query_scalar("SELECT count(*) FROM Jobs")
        .fetch_one(file)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_that_differs_stops_the_move_naming_it() {
        let mut counts = vec![
            TableCount {
                table: "herald.deliveries",
                file: 3,
                target: 3,
            },
            TableCount {
                table: "herald.email_opt_outs",
                file: 2,
                target: 2,
            },
        ];
        check_counts(&counts).unwrap();
        counts[1].target = 1;
        let refused = check_counts(&counts).unwrap_err().to_string();
        assert!(
            refused.contains("herald.email_opt_outs: 2 in the file, 1 in PostgreSQL"),
            "{refused}"
        );
        assert!(!refused.contains("herald.deliveries"), "{refused}");
    }

    #[test]
    fn a_target_that_is_not_postgresql_is_refused_without_its_password() {
        let refused = check_target_url("mysql://root:secret@127.0.0.1/herald")
            .unwrap_err()
            .to_string();
        assert!(refused.contains("\"mysql\""), "{refused}");
        assert!(!refused.contains("secret"), "{refused}");
        check_target_url("postgres://postgres@127.0.0.1:5432/herald").unwrap();
        assert!(check_target_url("herald.db").is_err());
    }
}
