//! What is copied, table by table, and how one row of SQLite becomes one row of PostgreSQL.
//!
//! Every table of `migrations/sqlite/0001_state.sql` has its twin in PostgreSQL's `herald`
//! schema, column for column; the demo app's `herald_demo_*` tables have theirs in the schema
//! `herald_demo`. A table is described once ([`Table`]), and one generic path copies each:
//! SQLite hands every value over as text (a claim token, a BLOB, as hex), Rust checks and
//! normalises it by the column's [`Kind`], and PostgreSQL receives one text array per column
//! (`UNNEST`) and casts each to the column's type. A value that does not convert stops the move
//! with the table, the row's key and the column.
//!
//! Instants are TEXT in SQLite: RFC 3339 with `+00:00` (what sqlx writes, up to nine fraction
//! digits), `Z` (the demo's), or `YYYY-MM-DD HH:MM:SS` (SQLite's own `datetime()`). PostgreSQL
//! keeps microseconds: a tenth of a microsecond and below is cut, which keeps the order of any
//! two instants (the claim, the dispatcher and retention only compare them).

use anyhow::Context;
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use futures::TryStreamExt;
use sqlx::{PgConnection, Row, SqlitePool};

/// How a column's value is checked and cast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Text,
    Int,
    Instant,
    Bool,
    Uuid,
    Json,
}

/// One column, the same name on both sides.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, kind }
}

use Kind::{Bool, Instant, Int, Json, Text, Uuid};

/// A table and its twin.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// The name in the SQLite file.
    pub source: &'static str,
    /// The name in PostgreSQL, with its schema.
    pub target: &'static str,
    /// What names a row in a message: a SQLite expression over the row, and what it is.
    pub key: &'static str,
    pub key_name: &'static str,
    /// Rows a servers home writes by itself on a database without deliveries (the planner's
    /// watermarks, the housekeeping marks, the dashboard's session key): the target's are
    /// replaced by the file's instead of making the target count as holding a state.
    pub replaced: bool,
    pub columns: &'static [Column],
}

/// Herald's state, in the order the foreign keys need (a batch before its deliveries, a
/// delivery before its attempts).
pub const STATE: &[Table] = &[
    Table {
        source: "batches",
        target: "herald.batches",
        key: "key",
        key_name: "key",
        replaced: false,
        columns: &[
            col("key", Text),
            col("provider", Text),
            col("size", Int),
            col("created_at", Instant),
        ],
    },
    Table {
        source: "deliveries",
        target: "herald.deliveries",
        key: "id",
        key_name: "id",
        replaced: false,
        columns: &[
            col("id", Int),
            col("kind", Text),
            col("user_id", Text),
            col("dedup_key", Text),
            col("status", Text),
            col("payload", Text),
            col("recipient", Text),
            col("attempts", Int),
            col("round_attempts", Int),
            col("last_error", Text),
            col("provider", Text),
            col("message_id", Text),
            col("planned_for", Instant),
            col("due_at", Instant),
            col("dispatched_at", Instant),
            col("lease_until", Instant),
            col("sent_at", Instant),
            col("created_at", Instant),
            col("updated_at", Instant),
            col("provider_id", Text),
            col("batch_key", Text),
            col("claim_token", Uuid),
            col("held_by", Text),
            col("claimed_by", Text),
        ],
    },
    Table {
        source: "delivery_attempts",
        target: "herald.delivery_attempts",
        key: "id",
        key_name: "id",
        replaced: false,
        columns: &[
            col("id", Int),
            col("delivery_id", Int),
            col("attempt", Int),
            col("at", Instant),
            col("provider", Text),
            col("outcome", Text),
            col("code", Int),
            col("error", Text),
        ],
    },
    Table {
        source: "email_opt_outs",
        target: "herald.email_opt_outs",
        key: "user_id || ' ' || kind",
        key_name: "user and kind",
        replaced: false,
        columns: &[
            col("user_id", Text),
            col("kind", Text),
            col("created_at", Instant),
        ],
    },
    Table {
        source: "suppressions",
        target: "herald.suppressions",
        key: "address",
        key_name: "address",
        replaced: false,
        columns: &[
            col("address", Text),
            col("reason", Text),
            col("event", Text),
            col("detail", Text),
            col("delivery_id", Int),
            col("created_at", Instant),
        ],
    },
    Table {
        source: "webhook_events",
        target: "herald.webhook_events",
        key: "svix_id",
        key_name: "svix-id",
        replaced: false,
        columns: &[
            col("svix_id", Text),
            col("type", Text),
            col("provider_id", Text),
            col("delivery_id", Int),
            col("payload", Json),
            col("received_at", Instant),
        ],
    },
    Table {
        source: "schedule_watermarks",
        target: "herald.schedule_watermarks",
        key: "schedule",
        key_name: "schedule",
        replaced: true,
        columns: &[
            col("schedule", Text),
            col("planned_up_to", Instant),
            col("updated_at", Instant),
        ],
    },
    Table {
        source: "schedule_pauses",
        target: "herald.schedule_pauses",
        key: "schedule",
        key_name: "schedule",
        replaced: false,
        columns: &[
            col("schedule", Text),
            col("paused_at", Instant),
            col("reason", Text),
        ],
    },
    Table {
        source: "housekeeping_marks",
        target: "herald.housekeeping_marks",
        key: "name",
        key_name: "name",
        replaced: true,
        columns: &[col("name", Text), col("up_to", Instant)],
    },
    Table {
        source: "ui_session_key",
        target: "herald.ui_session_key",
        key: "one",
        key_name: "row",
        replaced: true,
        columns: &[
            col("one", Bool),
            col("key", Text),
            col("rotated_at", Instant),
        ],
    },
];

/// The demo app's tables, users before what they own.
pub const DEMO: &[Table] = &[
    Table {
        source: "herald_demo_users",
        target: "herald_demo.users",
        key: "id",
        key_name: "id",
        replaced: false,
        columns: &[
            col("id", Text),
            col("email", Text),
            col("display_name", Text),
            col("timezone", Text),
            col("locale", Text),
            col("active", Bool),
            col("deleted_at", Instant),
        ],
    },
    Table {
        source: "herald_demo_tasks",
        target: "herald_demo.tasks",
        key: "id",
        key_name: "id",
        replaced: false,
        columns: &[
            col("id", Text),
            col("owner_id", Text),
            col("title", Text),
            col("due_at", Instant),
            col("completed_at", Instant),
            col("deleted_at", Instant),
        ],
    },
    Table {
        source: "herald_demo_focus_sessions",
        target: "herald_demo.focus_sessions",
        key: "id",
        key_name: "id",
        replaced: false,
        columns: &[
            col("id", Text),
            col("owner_id", Text),
            col("started_at", Instant),
            col("minutes", Int),
        ],
    },
];

/// Rows sent to PostgreSQL in one statement.
const CHUNK: usize = 2_000;

/// Copies every row of `table` from the file into the open transaction; returns how many rows
/// were read from the file.
pub async fn copy(
    from: &SqlitePool,
    to: &mut PgConnection,
    table: &Table,
    file: &str,
) -> anyhow::Result<i64> {
    let select = format!(
        "SELECT {}, CAST({} AS TEXT) FROM {}",
        table
            .columns
            .iter()
            .map(source_expression)
            .collect::<Vec<_>>()
            .join(", "),
        table.key,
        table.source
    );
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(select)).fetch(from);
    let mut chunk: Vec<Vec<Option<String>>> = vec![Vec::new(); table.columns.len()];
    let mut read = 0i64;
    while let Some(row) = rows
        .try_next()
        .await
        .with_context(|| format!("cannot read the table {} of {file}", table.source))?
    {
        let key: Option<String> = row.try_get(table.columns.len())?;
        for (i, column) in table.columns.iter().enumerate() {
            let raw: Option<String> = row.try_get(i)?;
            let value = raw
                .map(|v| convert(column.kind, &v))
                .transpose()
                .map_err(|why| {
                    anyhow::anyhow!(
                        "cannot convert the row of {} with {} {}: its {} {why}; correct or delete \
                         that row in {file} (sqlite3 {file}), then run migrate-state again \
                         (nothing was written to PostgreSQL)",
                        table.source,
                        table.key_name,
                        key.as_deref().unwrap_or("NULL"),
                        column.name,
                    )
                })?;
            chunk[i].push(value);
        }
        read += 1;
        if chunk[0].len() == CHUNK {
            insert(to, table, &mut chunk).await?;
        }
    }
    if !chunk[0].is_empty() {
        insert(to, table, &mut chunk).await?;
    }
    Ok(read)
}

/// How SQLite hands a column over: as text, a BLOB (a claim token) as hex.
fn source_expression(column: &Column) -> String {
    let name = column.name;
    match column.kind {
        Kind::Uuid => format!(
            "CASE typeof(\"{name}\") WHEN 'blob' THEN hex(\"{name}\") ELSE CAST(\"{name}\" AS TEXT) END"
        ),
        _ => format!("CAST(\"{name}\" AS TEXT)"),
    }
}

/// One chunk into PostgreSQL: one text array per column, cast there to the column's type.
async fn insert(
    to: &mut PgConnection,
    table: &Table,
    chunk: &mut [Vec<Option<String>>],
) -> anyhow::Result<()> {
    let names: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect();
    let casts: Vec<String> = table
        .columns
        .iter()
        .map(|c| format!("u.\"{}\"{}", c.name, pg_cast(c.kind)))
        .collect();
    let arrays: Vec<String> = (1..=table.columns.len())
        .map(|i| format!("${i}::text[]"))
        .collect();
    let sql = format!(
        "INSERT INTO {} ({}) SELECT {} FROM UNNEST({}) AS u({})",
        table.target,
        names.join(", "),
        casts.join(", "),
        arrays.join(", "),
        names.join(", ")
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for values in chunk.iter_mut() {
        query = query.bind(std::mem::take(values));
    }
    query
        .execute(&mut *to)
        .await
        .with_context(|| format!("cannot write the rows of {} into PostgreSQL", table.target))?;
    Ok(())
}

fn pg_cast(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "",
        Kind::Int => "::bigint",
        Kind::Instant => "::timestamptz",
        Kind::Bool => "::boolean",
        Kind::Uuid => "::uuid",
        Kind::Json => "::json",
    }
}

/// One value, checked and written as PostgreSQL reads its type; the error completes "its
/// <column> …".
pub fn convert(kind: Kind, value: &str) -> Result<String, String> {
    match kind {
        Kind::Text => {
            if value.contains('\0') {
                Err("holds a NUL character, which PostgreSQL's text refuses".to_owned())
            } else {
                Ok(value.to_owned())
            }
        }
        Kind::Int => value
            .trim()
            .parse::<i64>()
            .map(|n| n.to_string())
            .map_err(|_| format!("{value:?} is not a whole number")),
        Kind::Instant => instant(value)
            .map(|at| at.to_rfc3339_opts(SecondsFormat::Micros, true))
            .ok_or_else(|| {
                format!("{value:?} is not an instant (such as 2026-12-06T09:00:00.000+00:00)")
            }),
        Kind::Bool => match value.trim() {
            "1" | "true" => Ok("true".to_owned()),
            "0" | "false" => Ok("false".to_owned()),
            _ => Err(format!("{value:?} is neither 1 nor 0")),
        },
        Kind::Uuid => uuid::Uuid::parse_str(value.trim())
            .map(|u| u.hyphenated().to_string())
            .map_err(|_| format!("{value:?} is not a claim token (16 bytes)")),
        Kind::Json => serde_json::from_str::<serde::de::IgnoredAny>(value)
            .map(|_| value.to_owned())
            .map_err(|e| format!("is not JSON ({e})")),
    }
}

/// An instant in any of the forms the file holds (see the module's doc).
fn instant(value: &str) -> Option<DateTime<Utc>> {
    let value = value.trim();
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Some(at.with_timezone(&Utc));
    }
    ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%dT%H:%M:%S%.f"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(value, f).ok())
        .map(|at| at.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_of_every_form_the_file_holds_become_microseconds_in_utc() {
        for (text, expected) in [
            (
                "2026-12-06T09:00:00.123456789+00:00",
                "2026-12-06T09:00:00.123456Z",
            ),
            ("2026-12-06T09:00:00+00:00", "2026-12-06T09:00:00.000000Z"),
            ("2026-12-06T09:00:00.5Z", "2026-12-06T09:00:00.500000Z"),
            ("2026-12-06T10:00:00+01:00", "2026-12-06T09:00:00.000000Z"),
            ("2026-12-06 09:00:00", "2026-12-06T09:00:00.000000Z"),
        ] {
            assert_eq!(
                convert(Kind::Instant, text).as_deref(),
                Ok(expected),
                "{text}"
            );
        }
        let refused = convert(Kind::Instant, "yesterday").unwrap_err();
        assert!(
            refused.contains("\"yesterday\" is not an instant"),
            "{refused}"
        );
    }

    #[test]
    fn claim_tokens_booleans_numbers_and_json_are_checked() {
        assert_eq!(
            convert(Kind::Uuid, "0123456789ABCDEF0123456789ABCDEF").unwrap(),
            "01234567-89ab-cdef-0123-456789abcdef"
        );
        assert!(convert(Kind::Uuid, "ABCD").is_err());
        assert_eq!(convert(Kind::Bool, "1").unwrap(), "true");
        assert!(convert(Kind::Bool, "yes").is_err());
        assert_eq!(convert(Kind::Int, "42").unwrap(), "42");
        assert!(convert(Kind::Int, "4.2").is_err());
        assert!(convert(Kind::Json, "{\"a\": 1}").is_ok());
        assert!(convert(Kind::Json, "{").is_err());
        assert!(convert(Kind::Text, "a\0b").is_err());
    }
}
