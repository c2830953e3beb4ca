//! Whether a test can run here: the shared PostgreSQL and Redis answer (asked once per test
//! binary), or the programs a test starts its private servers with are installed. When they are
//! not, the test is skipped with a loud `SKIPPED:` line, unless `HERALD_REQUIRE_SERVERS=1` (which
//! `.ci/run` sets after starting them), which makes it a failure instead.
//!
//! Include it at the root of the test crate, before the modules that use its macros:
//!
//! ```ignore
//! #[macro_use]
//! #[path = "support/shared_servers.rs"]
//! mod shared_servers;
//! ```
//!
//! and open each test that needs the servers with `skip_without_servers!();` (tests/house.rs
//! checks that every test of `tests/api/`, `tests/focus_streak.rs` and `tests/browser.rs` does),
//! or with `skip_without_programs!("redis-server", ...)` for private servers.
//!
//! The servers are those the tests use: `DATABASE_URL`'s and `REDIS_URL`'s when set (empty counts
//! as unset), else `127.0.0.1:5432` and `127.0.0.1:6379`. Each answers when a TCP connection
//! opens within 2 s and it then speaks its protocol: PostgreSQL answers an `SSLRequest` with `S`
//! or `N`, Redis answers `PING` with a reply (`+PONG`, or `-NOAUTH` from one with a password).
//!
//! The `SKIPPED:` lines go straight to the process's stderr, not through `eprintln!`: the test
//! harness captures `eprintln!` and shows it only for a failing test, so a skipped test (which
//! passes) would say nothing under a plain `cargo test`.

#![allow(dead_code, unused_macros)]

use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

/// Opens a test that needs the shared PostgreSQL and Redis: returns from it (skipped, with a
/// loud line) when either is missing, or fails it when `HERALD_REQUIRE_SERVERS=1`.
macro_rules! skip_without_servers {
    () => {
        if !$crate::shared_servers::servers_answer(&$crate::shared_servers::test_name({
            fn here() {}
            std::any::type_name_of_val(&here)
        })) {
            return;
        }
    };
}

/// Opens a test that starts private servers from these programs (`redis-server` on `PATH`;
/// `initdb` and `pg_ctl` under `/usr/lib/postgresql/<version>/bin`): returns from it (skipped)
/// when one is missing, or fails it when `HERALD_REQUIRE_SERVERS=1`.
macro_rules! skip_without_programs {
    ($($program:literal),+ $(,)?) => {
        if !$crate::shared_servers::programs_installed(
            &$crate::shared_servers::test_name({
                fn here() {}
                std::any::type_name_of_val(&here)
            }),
            &[$($program),+],
        ) {
            return;
        }
    };
}

/// Set to `1` to make a missing server or program a failure instead of a skip.
pub const REQUIRE: &str = "HERALD_REQUIRE_SERVERS";
/// The PostgreSQL server the tests use when `DATABASE_URL` is not set.
pub const DEFAULT_PG: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// The Redis the tests use when `REDIS_URL` is not set.
pub const DEFAULT_REDIS: &str = "redis://127.0.0.1:6379/0";
const TIMEOUT: Duration = Duration::from_secs(2);

/// Whether the shared PostgreSQL and Redis answer; `false` after a loud `SKIPPED:` line; a panic
/// when they do not and `HERALD_REQUIRE_SERVERS=1`.
pub fn servers_answer(test: &str) -> bool {
    decide(
        test,
        missing_servers(),
        "start them (`bash .ci/run` starts PostgreSQL, Redis and MariaDB) or point DATABASE_URL \
         and REDIS_URL at running ones",
    )
}

/// Whether these programs are installed; `false` after a loud `SKIPPED:` line; a panic when
/// they are not and `HERALD_REQUIRE_SERVERS=1`.
pub fn programs_installed(test: &str, programs: &[&str]) -> bool {
    let missing: Vec<String> = programs
        .iter()
        .filter(|p| program(p).is_none())
        .map(|p| match *p {
            "initdb" | "pg_ctl" => format!("{p} is not under /usr/lib/postgresql/<version>/bin"),
            _ => format!("{p} is not on PATH"),
        })
        .collect();
    decide(
        test,
        &missing,
        "install them (apt-get install -y redis-server postgresql)",
    )
}

/// Why the shared servers cannot be used (nothing when both answer), found once per process.
pub fn missing_servers() -> &'static [String] {
    static MISSING: OnceLock<Vec<String>> = OnceLock::new();
    MISSING.get_or_init(|| {
        let pg = server_url("DATABASE_URL", DEFAULT_PG);
        let redis = server_url("REDIS_URL", DEFAULT_REDIS);
        [
            probe_postgres(&pg)
                .err()
                .map(|why| format!("PostgreSQL at {} is not reachable ({why})", shown(&pg))),
            probe_redis(&redis)
                .err()
                .map(|why| format!("Redis at {} is not reachable ({why})", shown(&redis))),
        ]
        .into_iter()
        .flatten()
        .collect()
    })
}

/// Whether `HERALD_REQUIRE_SERVERS=1`.
pub fn required() -> bool {
    std::env::var(REQUIRE).is_ok_and(|v| v.trim() == "1")
}

/// The test's path from the `type_name` of a function declared in it
/// (`api::startup::a_test::{{closure}}::here` → `startup::a_test`), as the harness names it.
pub fn test_name(type_name: &str) -> String {
    let name = type_name.strip_suffix("::here").unwrap_or(type_name);
    let name = name.replace("::{{closure}}", "");
    match name.split_once("::") {
        Some((_crate, path)) => path.to_owned(),
        None => name,
    }
}

/// Fails a test that reached the servers without opening with `skip_without_servers!()` while
/// they are missing: with the macro it would have been skipped, without it it would fail or
/// hang on a connection.
pub fn assert_guarded(reached: &str) {
    let missing = missing_servers();
    assert!(
        missing.is_empty(),
        "{reached} needs the shared servers, which are missing ({}), and this test does not open \
         with skip_without_servers!(), which would have skipped it: add it",
        missing.join("; ")
    );
}

fn decide(test: &str, missing: &[String], fix: &str) -> bool {
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join("; ");
    if required() {
        panic!("{REQUIRE}=1 and {test} cannot run: {missing}; {fix}, or unset {REQUIRE} to skip");
    }
    shout(&format!(
        "SKIPPED: {test}: {missing}; {fix}, or set {REQUIRE}=1 to make this a failure"
    ));
    false
}

/// One line straight to the process's stderr, past the harness's capture.
pub fn shout(line: &str) {
    let _ = std::io::stderr().write_all(format!("!!!!!!!! {line}\n").as_bytes());
}

/// The URL in `var` (empty counts as unset), else `default`.
fn server_url(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| default.to_owned())
}

/// Where a server listens: a TCP address or a Unix socket. `None` when the URL does not say in a
/// way this module reads; then the test runs and reports the URL itself.
enum Address {
    Tcp(String),
    Unix(PathBuf),
}

fn address(url: &str, default_port: u16) -> Option<Address> {
    let parsed = url::Url::parse(url).ok()?;
    if parsed.scheme().ends_with("unix") {
        return Some(Address::Unix(PathBuf::from(parsed.path())));
    }
    let port = parsed.port().unwrap_or(default_port);
    let socket_dir = parsed
        .query_pairs()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| v.into_owned());
    match (parsed.host_str(), socket_dir) {
        // PostgreSQL's `?host=/run/postgresql`: a socket folder.
        (_, Some(dir)) if dir.starts_with('/') => Some(Address::Unix(
            Path::new(&dir).join(format!(".s.PGSQL.{port}")),
        )),
        (Some(host), _) if !host.is_empty() => Some(Address::Tcp(format!("{host}:{port}"))),
        _ => None,
    }
}

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn open(address: &Address) -> Result<Box<dyn Stream>, String> {
    match address {
        Address::Tcp(host_port) => {
            let addrs: Vec<_> = host_port
                .to_socket_addrs()
                .map_err(|e| format!("{host_port} does not resolve: {e}"))?
                .collect();
            let mut last = format!("{host_port} resolves to no address");
            for addr in addrs {
                match TcpStream::connect_timeout(&addr, TIMEOUT) {
                    Ok(s) => {
                        s.set_read_timeout(Some(TIMEOUT))
                            .map_err(|e| e.to_string())?;
                        s.set_write_timeout(Some(TIMEOUT))
                            .map_err(|e| e.to_string())?;
                        return Ok(Box::new(s));
                    }
                    Err(e) => last = format!("connect: {e}"),
                }
            }
            Err(last)
        }
        Address::Unix(path) => {
            let s = std::os::unix::net::UnixStream::connect(path)
                .map_err(|e| format!("connect to {}: {e}", path.display()))?;
            s.set_read_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
            s.set_write_timeout(Some(TIMEOUT))
                .map_err(|e| e.to_string())?;
            Ok(Box::new(s))
        }
    }
}

/// Writes `request` and reads the first bytes of the answer.
fn ask(url: &str, default_port: u16, request: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let Some(address) = address(url, default_port) else {
        return Ok(None);
    };
    let mut stream = open(&address)?;
    stream
        .write_all(request)
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = [0u8; 16];
    let n = stream.read(&mut answer).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("no answer within {TIMEOUT:?}")
        }
        _ => format!("read: {e}"),
    })?;
    Ok(Some(answer[..n].to_vec()))
}

/// An `SSLRequest` (length 8, code 80877103): a PostgreSQL server answers one byte, `S` or `N`.
fn probe_postgres(url: &str) -> Result<(), String> {
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    match ask(url, 5432, &SSL_REQUEST)? {
        None => Ok(()),
        Some(a) if matches!(a.first(), Some(b'S' | b'N')) => Ok(()),
        Some(a) => Err(format!(
            "it answered {:?}, not as PostgreSQL",
            String::from_utf8_lossy(&a)
        )),
    }
}

/// `PING`: a Redis answers `+PONG`, or an error such as `-NOAUTH` when it wants a password.
fn probe_redis(url: &str) -> Result<(), String> {
    match ask(url, 6379, b"PING\r\n")? {
        None => Ok(()),
        Some(a) if matches!(a.first(), Some(b'+' | b'-')) => Ok(()),
        Some(a) => Err(format!(
            "it answered {:?}, not as Redis",
            String::from_utf8_lossy(&a)
        )),
    }
}

/// The URL with its password (if any) replaced by `***`, for messages.
fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Where `program` is: `initdb` and `pg_ctl` under the newest `/usr/lib/postgresql/<version>/bin`
/// (where tests/support/servers.rs runs them from), anything else on `PATH`.
fn program(program: &str) -> Option<PathBuf> {
    if matches!(program, "initdb" | "pg_ctl") {
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .ok()?
            .filter_map(|e| {
                let e = e.ok()?;
                let v = e.file_name().to_str()?.parse().ok()?;
                Some((v, e.path().join("bin")))
            })
            .filter(|(_, bin)| bin.join("initdb").is_file())
            .collect();
        versions.sort();
        let (_, bin) = versions.pop()?;
        return Some(bin.join(program)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    // `super::` paths, no `use`: the email bench includes this file too, built with cfg(test)
    // but no test harness, which drops these tests and would leave the imports unused.
    #[test]
    fn a_test_is_named_as_the_harness_names_it() {
        assert_eq!(
            super::test_name("api::startup::a_test::{{closure}}::here"),
            "startup::a_test"
        );
        assert_eq!(super::test_name("lifecycle::a_test::here"), "a_test");
    }

    #[test]
    fn the_address_comes_from_the_url() {
        let tcp = |url| match super::address(url, 5432) {
            Some(super::Address::Tcp(a)) => a,
            _ => panic!("{url}: not TCP"),
        };
        assert_eq!(tcp(super::DEFAULT_PG), "127.0.0.1:5432");
        assert_eq!(
            tcp("postgres://u:pw@db.internal/x?sslmode=disable"),
            "db.internal:5432"
        );
        assert_eq!(tcp("redis://127.0.0.1:1/0"), "127.0.0.1:1");
        match super::address("redis+unix:///run/redis.sock?db=2", 6379) {
            Some(super::Address::Unix(p)) => assert_eq!(p, std::path::Path::new("/run/redis.sock")),
            _ => panic!("not a socket"),
        }
        match super::address("postgres:///db?host=/run/postgresql", 5432) {
            Some(super::Address::Unix(p)) => {
                assert_eq!(p, std::path::Path::new("/run/postgresql/.s.PGSQL.5432"))
            }
            _ => panic!("not a socket"),
        }
        assert!(super::address("not a url", 5432).is_none());
    }

    #[test]
    fn a_closed_port_is_not_reachable_and_says_why() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let e =
            super::probe_postgres(&format!("postgres://postgres@127.0.0.1:{port}/x")).unwrap_err();
        assert!(e.starts_with("connect: "), "{e}");
        let e = super::probe_redis(&format!("redis://127.0.0.1:{port}/0")).unwrap_err();
        assert!(e.starts_with("connect: "), "{e}");
    }

    #[test]
    fn a_server_that_speaks_another_protocol_is_not_taken_for_one() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            // Reads the request first: an answer to a request not yet read could be lost to a
            // reset.
            for stream in listener.incoming().take(2) {
                let mut stream = stream.unwrap();
                let _ = std::io::Read::read(&mut stream, &mut [0u8; 16]);
                let _ = std::io::Write::write_all(&mut stream, b"HTTP/1.1 400 Bad Request\r\n\r\n");
            }
        });
        let e =
            super::probe_postgres(&format!("postgres://postgres@127.0.0.1:{port}/x")).unwrap_err();
        assert!(e.contains("not as PostgreSQL"), "{e}");
        let e = super::probe_redis(&format!("redis://127.0.0.1:{port}/0")).unwrap_err();
        assert!(e.contains("not as Redis"), "{e}");
    }

    #[test]
    fn passwords_never_show() {
        assert_eq!(
            super::shown("postgres://u:hunter2@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(super::shown(super::DEFAULT_REDIS), super::DEFAULT_REDIS);
    }
}
