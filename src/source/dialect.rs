//! What differs between the source's databases when a query is built once for all of them:
//! a list parameter (`= ANY($1)` or `IN (…)`) and an instant (SQLite has no time type: its
//! instants are text, compared in one fixed format).

use chrono::{DateTime, Utc};
use sqlx::{MySql, Postgres, QueryBuilder, Sqlite};

/// Runs the same query-building code for either database: `$qb` is a `QueryBuilder` of the
/// source's kind and `$pool` its pool.
macro_rules! on_source {
    ($source:expr, |$pool:ident, $qb:ident| $body:block) => {
        match &$source.db {
            Db::Postgres($pool) => {
                let mut $qb = QueryBuilder::<Postgres>::new("");
                $body
            }
            Db::MySql($pool) => {
                let mut $qb = QueryBuilder::<MySql>::new("");
                $body
            }
            Db::Sqlite($pool) => {
                let mut $qb = QueryBuilder::<Sqlite>::new("");
                $body
            }
        }
    };
}

/// "is one of these": PostgreSQL takes the list as one array parameter (`= ANY($1)`: one value
/// to encode and one plan, whatever the length), MariaDB/MySQL as `IN (?, ?, …)`, SQLite as
/// one JSON parameter (`IN (SELECT value FROM json_each(?))`).
pub(super) trait PushIn {
    fn push_in(&mut self, values: &[String]);
}

impl PushIn for QueryBuilder<Postgres> {
    fn push_in(&mut self, values: &[String]) {
        self.push(" = ANY(").push_bind(values.to_vec()).push(")");
    }
}

impl PushIn for QueryBuilder<MySql> {
    fn push_in(&mut self, values: &[String]) {
        self.push(" IN (");
        let mut list = self.separated(", ");
        for v in values {
            list.push_bind(v.clone());
        }
        self.push(")");
    }
}

impl PushIn for QueryBuilder<Sqlite> {
    fn push_in(&mut self, values: &[String]) {
        self.push(" IN (SELECT value FROM json_each(")
            .push_bind(serde_json::to_string(values).expect("strings are JSON"))
            .push("))");
    }
}

/// The one format SQLite's instants are compared in: UTC, milliseconds, fixed width, so that
/// text order is time order. An app's SQLite tables may store `2026-12-06 09:00:00` (SQLite's
/// own `datetime()`), RFC 3339 with an offset, or with a fraction; `strftime` reads them all.
const SQLITE_INSTANT: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', ";

/// An instant column and an instant parameter, compared as the database compares times.
pub(super) trait Instants {
    /// The column `name`, as an instant that compares.
    fn push_column(&mut self, name: &str) -> &mut Self;
    /// The parameter `at`, as an instant that compares with [`Instants::push_column`]'s.
    fn push_instant(&mut self, at: DateTime<Utc>) -> &mut Self;
}

impl Instants for QueryBuilder<Postgres> {
    fn push_column(&mut self, name: &str) -> &mut Self {
        self.push(name)
    }
    fn push_instant(&mut self, at: DateTime<Utc>) -> &mut Self {
        self.push_bind(at)
    }
}

impl Instants for QueryBuilder<MySql> {
    fn push_column(&mut self, name: &str) -> &mut Self {
        self.push(name)
    }
    fn push_instant(&mut self, at: DateTime<Utc>) -> &mut Self {
        self.push_bind(at)
    }
}

impl Instants for QueryBuilder<Sqlite> {
    fn push_column(&mut self, name: &str) -> &mut Self {
        self.push(SQLITE_INSTANT).push(name).push(")")
    }
    fn push_instant(&mut self, at: DateTime<Utc>) -> &mut Self {
        self.push(SQLITE_INSTANT).push_bind(at).push(")")
    }
}
