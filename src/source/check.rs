//! Checks a source against the contract: each relation and column there, of a fitting type,
//! and ids unique. Every problem names the relation or column and the fix. `herald check`
//! prints them; `herald run` refuses to start on any (see `store::prepare`).

use std::fmt;

use super::{ColumnType, Db, RELATIONS, Relation, Source};

/// One way the source does not meet the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The relation, or `relation.column`.
    pub at: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)
    }
}

/// Every problem of `source` (none: it meets the contract). An error means the source could not
/// be read at all.
pub async fn check(source: &Source) -> anyhow::Result<Vec<Problem>> {
    let mut problems = Vec::new();
    for relation in RELATIONS {
        let columns = columns_of(source, relation.name).await?;
        if columns.is_empty() {
            problems.push(Problem {
                at: relation.name.into(),
                message: format!(
                    "missing: create it as a view over your own tables ({}), with the columns {}; the README's \"Connecting your app\" and examples/ show how",
                    relation.about,
                    relation.columns.iter().map(|c| c.name).collect::<Vec<_>>().join(", ")
                ),
            });
            continue;
        }
        let mut complete = true;
        for column in relation.columns {
            let at = format!("{}.{}", relation.name, column.name);
            match columns.iter().find(|(name, _)| name == column.name) {
                None => {
                    complete = false;
                    problems.push(Problem {
                        at,
                        message: format!(
                            "missing column {} ({}: {}); add it to the view, for example `{} AS {}`",
                            column.name,
                            type_name(source, column.ty),
                            column.about,
                            example(source, column.ty, column.nullable),
                            column.name
                        ),
                    });
                }
                Some((_, ty)) if !fits(source, column.ty, ty) => {
                    complete = false;
                    problems.push(Problem {
                        at,
                        message: format!(
                            "is {ty}, the contract wants {} ({}); {}",
                            type_name(source, column.ty),
                            column.about,
                            cast_hint(source, column.ty, column.name)
                        ),
                    });
                }
                Some(_) => {}
            }
        }
        if complete && relation.name != "herald_focus_sessions" {
            problems.extend(duplicate_ids(source, relation).await?);
        }
    }
    Ok(problems)
}

/// The columns of a relation visible to the source's connection, with their declared types.
async fn columns_of(source: &Source, relation: &str) -> anyhow::Result<Vec<(String, String)>> {
    let rows: Vec<(String, String)> = match &source.db {
        Db::Postgres(pool) => {
            sqlx::query_as(
                "SELECT column_name::text, data_type::text FROM information_schema.columns
                 WHERE table_name = $1 AND table_schema = (
                     SELECT nspname FROM pg_namespace n JOIN pg_class c ON c.relnamespace = n.oid
                     WHERE c.oid = to_regclass($1))
                 ORDER BY ordinal_position",
            )
            .bind(relation)
            .fetch_all(pool)
            .await?
        }
        Db::MySql(pool) => {
            sqlx::query_as(
                "SELECT CAST(column_name AS CHAR), CAST(data_type AS CHAR) FROM information_schema.columns
                 WHERE table_name = ? AND table_schema = DATABASE() ORDER BY ordinal_position",
            )
            .bind(relation)
            .fetch_all(pool)
            .await?
        }
        // A view's declared types are its underlying columns' (none for an expression).
        Db::Sqlite(pool) => {
            sqlx::query_as("SELECT name, type FROM pragma_table_info($1)")
                .bind(relation)
                .fetch_all(pool)
                .await?
        }
    };
    Ok(rows
        .into_iter()
        .map(|(n, t)| (n.to_lowercase(), t.to_lowercase()))
        .collect())
}

/// Whether a declared type holds what the contract wants.
fn fits(source: &Source, want: ColumnType, ty: &str) -> bool {
    let mysql = source.is_mysql();
    if matches!(source.db, Db::Sqlite(_)) {
        // SQLite stores any value in any column: only a declared type that says otherwise is
        // wrong (an expression in a view declares none).
        return ty.is_empty()
            || match want {
                ColumnType::Text => {
                    ty.contains("char") || ty.contains("text") || ty.contains("clob")
                }
                ColumnType::Time => {
                    ty.contains("text") || ty.contains("date") || ty.contains("time")
                }
                ColumnType::Boolean | ColumnType::Integer => {
                    ty.contains("int") || ty.contains("bool")
                }
            };
    }
    match want {
        ColumnType::Text => matches!(
            ty,
            "text"
                | "character varying"
                | "character"
                | "varchar"
                | "char"
                | "tinytext"
                | "mediumtext"
                | "longtext"
        ),
        ColumnType::Boolean if mysql => matches!(ty, "tinyint" | "int" | "bigint" | "smallint"),
        ColumnType::Boolean => ty == "boolean",
        ColumnType::Time if mysql => matches!(ty, "datetime" | "timestamp"),
        ColumnType::Time => ty == "timestamp with time zone",
        ColumnType::Integer => matches!(
            ty,
            "integer" | "bigint" | "smallint" | "int" | "mediumint" | "tinyint"
        ),
    }
}

fn type_name(source: &Source, ty: ColumnType) -> &'static str {
    let mysql = source.is_mysql();
    match ty {
        ColumnType::Text => "text",
        ColumnType::Boolean if mysql => "boolean (TRUE/FALSE)",
        ColumnType::Boolean => "boolean",
        ColumnType::Time if mysql => "DATETIME or TIMESTAMP holding UTC",
        ColumnType::Time => "timestamptz",
        ColumnType::Integer => "integer",
    }
}

/// A value to stand in for a column the app does not have.
fn example(source: &Source, ty: ColumnType, nullable: bool) -> &'static str {
    let mysql = source.is_mysql();
    match (ty, nullable) {
        (ColumnType::Text, true) => "NULL",
        (ColumnType::Text, false) => "your_column",
        (ColumnType::Boolean, _) => "TRUE",
        (ColumnType::Time, _) if mysql => "CAST(NULL AS DATETIME)",
        (ColumnType::Time, _) => "NULL::timestamptz",
        (ColumnType::Integer, _) => "0",
    }
}

fn cast_hint(source: &Source, ty: ColumnType, column: &str) -> String {
    let mysql = source.is_mysql();
    match ty {
        ColumnType::Text if mysql => format!("cast it in the view: `CAST(… AS CHAR) AS {column}`"),
        ColumnType::Text => format!(
            "cast it in the view: `….{column}::text AS {column}` (bigint and uuid ids become text)"
        ),
        ColumnType::Boolean => format!("write it as a condition: `(…) AS {column}`"),
        ColumnType::Time if mysql => format!(
            "store UTC in a DATETIME or TIMESTAMP column, or convert: `CONVERT_TZ(…, 'app zone', '+00:00') AS {column}`"
        ),
        ColumnType::Time => format!(
            "convert it: `… AT TIME ZONE 'UTC' AS {column}` for a timestamp without time zone holding UTC"
        ),
        ColumnType::Integer => format!("cast it: `CAST(… AS INTEGER) AS {column}`"),
    }
}

/// Ids that appear more than once (up to three named).
async fn duplicate_ids(source: &Source, relation: &Relation) -> anyhow::Result<Option<Problem>> {
    let sql = format!(
        "SELECT id FROM {} GROUP BY id HAVING count(*) > 1 LIMIT 3",
        relation.name
    );
    let ids: Vec<String> = match &source.db {
        Db::Postgres(p) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(p)
                .await?
        }
        Db::MySql(p) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(p)
                .await?
        }
        Db::Sqlite(p) => {
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(p)
                .await?
        }
    };
    Ok((!ids.is_empty()).then(|| Problem {
        at: format!("{}.id", relation.name),
        message: format!(
            "ids are not unique ({} appear more than once); the view must give one row per id: leave out soft-deleted rows and check its joins",
            ids.join(", ")
        ),
    }))
}
