//! A scratch database on the shared MariaDB server, for tests of the MariaDB source contract.
//!
//! Include it with `#[path = "../support/mariadb.rs"] mod mariadb;` (or `"support/mariadb.rs"`
//! from a top-level test file). `TestMariaDb::create()` makes a uniquely named, empty database
//! `herald_t_<uuid>` and gives its URL; dropping the value drops the database, also when the test
//! panics.
//!
//! The server is `HERALD_TEST_MYSQL_URL` (no database in the path; any `?options` are kept), or
//! `mysql://root@127.0.0.1:3306`: `bash .ci/run` starts MariaDB there with root reachable over TCP
//! without a password. When the server cannot be reached the test is skipped with a loud
//! `SKIPPED:` line, unless `HERALD_REQUIRE_SERVERS=1`, which makes it a failure instead.

#![allow(dead_code)]

use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection, mysql::MySqlConnection};

/// The server the tests use when `HERALD_TEST_MYSQL_URL` is unset: what `.ci/run` sets up.
pub const DEFAULT_BASE_URL: &str = "mysql://root@127.0.0.1:3306";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const DROP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct TestMariaDb {
    /// `mysql://USER@HOST:PORT/herald_t_<uuid>` (plus the base URL's `?options`).
    pub url: String,
    name: String,
    /// The server without a database, for `CREATE`/`DROP DATABASE`.
    base_url: String,
}

impl TestMariaDb {
    /// A new empty database (utf8mb4), or `None` (after printing `SKIPPED: ...`) when the server
    /// cannot be reached and `HERALD_REQUIRE_SERVERS` is not `1`.
    pub async fn create() -> Option<TestMariaDb> {
        let base_url = base_url();
        let mut admin = match connect(&base_url).await {
            Ok(conn) => conn,
            Err(reason) => {
                let shown = redact(&base_url);
                if std::env::var("HERALD_REQUIRE_SERVERS").as_deref() == Ok("1") {
                    panic!(
                        "MariaDB at {shown} is not reachable: {reason}; start it (bash .ci/run \
                         does) or unset HERALD_REQUIRE_SERVERS to skip"
                    );
                }
                // Straight to the process's stderr: the harness shows an `eprintln!` of a
                // passing test only with --nocapture.
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!(
                        "!!!!!!!! SKIPPED: MariaDB at {shown} is not reachable ({reason}); this \
                         test did not run. Start MariaDB (bash .ci/run does), or set \
                         HERALD_TEST_MYSQL_URL; set HERALD_REQUIRE_SERVERS=1 to make this a \
                         failure.\n"
                    )
                    .as_bytes(),
                );
                return None;
            }
        };
        let name = format!("herald_t_{}", uuid::Uuid::new_v4().simple());
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
        )))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot create database {name} on {}: {e}",
                redact(&base_url)
            )
        });
        let _ = admin.close().await;
        Some(TestMariaDb {
            url: with_database(&base_url, &name),
            name,
            base_url,
        })
    }

    /// The database's name (`herald_t_<uuid>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A new connection to this database (session time zone `+00:00`, as sqlx sets it).
    pub async fn connect(&self) -> MySqlConnection {
        connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", redact(&self.url)))
    }

    /// A pool on this database.
    pub async fn pool(&self) -> sqlx::MySqlPool {
        sqlx::MySqlPool::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", redact(&self.url)))
    }

    /// Runs a script of one or more statements separated by `;` (sent in one go, as the server's
    /// multi-statement support runs it), in this database; panics on the first failing statement.
    /// Plain SQL only: the `mariadb` client's `DELIMITER` command is not SQL, so a script with
    /// triggers or procedures must be run one statement at a time.
    pub async fn execute_script(&self, sql: &str) {
        if let Err(e) = self.try_execute_script(sql).await {
            panic!(
                "SQL script failed on {}: {e}\n--- script ---\n{sql}",
                self.name
            );
        }
    }

    /// As `execute_script`, returning the error instead of panicking.
    pub async fn try_execute_script(&self, sql: &str) -> Result<(), sqlx::Error> {
        let mut conn = self.connect().await;
        let result = sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&mut conn)
            .await
            .map(|_| ());
        let _ = conn.close().await;
        result
    }
}

impl Drop for TestMariaDb {
    /// Drops the database on a thread of its own with its own runtime: this works inside or
    /// outside a Tokio runtime, and while the test is panicking (a failure is only printed).
    fn drop(&mut self) {
        let base_url = self.base_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let work = async {
                    let mut admin = connect(&base_url).await?;
                    // Do not wait forever on a connection that still holds a lock in it.
                    sqlx::raw_sql("SET SESSION lock_wait_timeout = 20")
                        .execute(&mut admin)
                        .await
                        .map_err(|e| e.to_string())?;
                    sqlx::raw_sql(AssertSqlSafe(format!("DROP DATABASE IF EXISTS `{name}`")))
                        .execute(&mut admin)
                        .await
                        .map_err(|e| e.to_string())?;
                    let _ = admin.close().await;
                    Ok(())
                };
                match tokio::time::timeout(DROP_TIMEOUT, work).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("timed out after {DROP_TIMEOUT:?}")),
                }
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!(
                "warning: could not drop MariaDB database {}: {e}",
                self.name
            ),
            Err(_) => eprintln!(
                "warning: could not drop MariaDB database {}: the thread panicked",
                self.name
            ),
        }
    }
}

fn base_url() -> String {
    std::env::var("HERALD_TEST_MYSQL_URL")
        .ok()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_owned())
}

async fn connect(url: &str) -> Result<MySqlConnection, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, MySqlConnection::connect(url)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {CONNECT_TIMEOUT:?}")),
    }
}

/// `base` with its database path (if any) replaced by `/name`, keeping `?options`.
fn with_database(base: &str, name: &str) -> String {
    let (without_query, query) = match base.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (base, None),
    };
    let authority_start = without_query.find("://").map_or(0, |i| i + 3);
    let server = match without_query[authority_start..].find('/') {
        Some(slash) => &without_query[..authority_start + slash],
        None => without_query,
    };
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

/// The URL with its password (if any) replaced by `***`, for messages.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _password)) => {
            format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
        }
        None => url.to_owned(),
    }
}
