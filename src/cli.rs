//! The `herald` command line: run the daemon, migrate, seed, check, trigger, and the failed set.

use std::{process::ExitCode, time::Duration};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};

use crate::{
    clock::Clock,
    config::Settings,
    gate::State,
    mail::Provider,
    queue::{self, Queue},
    render::Templates,
    schedule::{PlanOptions, plan},
    startup::{Application, stop_signal},
    store::Store,
    telemetry::{self, LogFormat},
};

#[derive(Debug, Parser)]
#[command(
    name = "herald",
    version,
    about = "Scheduled email notifications: cron → Redis queue → Resend or SMTP"
)]
pub struct Cli {
    /// Log format (logs go to stderr).
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the schedules, the workers and the HTTP server until SIGTERM or SIGINT.
    Run,
    /// Create the database if needed and apply the migrations.
    Migrate,
    /// Validate the configuration, templates and connections, and say how to fix each problem.
    Check,
    /// Create demo users, tasks and focus sessions across 40 time zones.
    Seed {
        #[arg(long, default_value_t = 100)]
        users: usize,
        /// Random seed: the same seed gives the same data.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Send a schedule's emails now, as a test: keyed apart from the schedule's own, so the real
    /// email of that day still goes out, and once per user per local day.
    Trigger {
        /// The schedule: one per kind of email, named after it (`herald schedules` lists them).
        name: String,
        /// Plan for this user only.
        #[arg(long = "user")]
        user_id: Option<i64>,
        /// Show what would be sent; enqueue nothing.
        #[arg(long)]
        dry_run: bool,
        /// Plan as if now were this instant (RFC 3339, e.g. 2026-11-24T09:00:00Z): not in the
        /// future unless --dry-run, nor older than the shortest retention less 2 days.
        #[arg(long)]
        at: Option<DateTime<Utc>>,
        /// List the new deliveries' ids (always listed with --user).
        #[arg(long)]
        ids: bool,
    },
    /// List the schedules with their zone mode, catch-up window, watermark and next fires; with
    /// --user, the next emails that user will get, in local time and UTC.
    Schedules {
        #[arg(long = "user")]
        user_id: Option<i64>,
    },
    /// List, inspect, retry and purge deliveries that failed.
    Failed {
        #[command(subcommand)]
        command: FailedCommand,
    },
    /// Exit 0 when the local daemon answers /healthz (for container health checks).
    Healthcheck {
        /// Defaults to http.addr.
        #[arg(long)]
        addr: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum FailedCommand {
    /// List failed deliveries, newest first.
    List {
        #[arg(long)]
        kind: Option<String>,
        /// An instant (2026-11-01T00:00:00Z) or an age (24h, 7d).
        #[arg(long)]
        since: Option<String>,
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Show one delivery and every attempt with its error.
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// Send failed deliveries through the normal path again.
    Retry {
        #[arg(required_unless_present = "all")]
        ids: Vec<i64>,
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Delete failed deliveries older than an age.
    Purge {
        /// e.g. 30d
        #[arg(long)]
        older_than: String,
    },
}

/// Parses the command line, runs it, and turns an error into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::telemetry::chain(&e));
            ExitCode::FAILURE
        }
    }
}

pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    if let Command::Check = command {
        return check().await;
    }
    let settings = Settings::load()?;
    match command {
        Command::Run => {
            let app = Application::build(settings).await?;
            app.run_until_stopped(stop_signal()).await?;
        }
        Command::Migrate => {
            let store = Store::connect(&settings.database_url, 2, true).await?;
            store.migrate().await?;
            println!("migrations applied");
        }
        Command::Seed { users, seed } => {
            let store = connect(&settings).await?;
            let started = std::time::Instant::now();
            let r = crate::seed::seed(&store, users, seed, Utc::now()).await?;
            println!(
                "seeded {} users, {} tasks, {} focus sessions in {:.1?}",
                r.users,
                r.tasks,
                r.focus_sessions,
                started.elapsed()
            );
        }
        Command::Trigger {
            name,
            user_id,
            dry_run,
            at,
            ids,
        } => {
            let schedule = settings.schedule(&name).with_context(|| {
                format!(
                    "no schedule named {name:?}; the schedules are {}",
                    crate::kinds::Kind::names()
                )
            })?;
            let store = connect(&settings).await?;
            let clock = Clock::System;
            let report = plan(
                &store,
                schedule,
                &PlanOptions {
                    at: crate::schedule::check_at(at.unwrap_or_else(|| clock.now()))
                        .map_err(anyhow::Error::msg)?,
                    user_id,
                    dry_run,
                    ids,
                },
                &clock,
                &settings.retention,
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Failed { command } => failed(&settings, command).await?,
        Command::Schedules { user_id } => schedules(&settings, user_id).await?,
        Command::Healthcheck { addr } => {
            return healthcheck(addr.unwrap_or_else(|| settings.http_addr.to_string())).await;
        }
        Command::Check => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(&settings.database_url, 4, true).await?;
    store.migrate().await?;
    Ok(store)
}

async fn failed(settings: &Settings, command: FailedCommand) -> anyhow::Result<()> {
    let store = connect(settings).await?;
    match command {
        FailedCommand::List {
            kind,
            since,
            limit,
            json,
        } => {
            let since = since.map(|s| parse_since(&s)).transpose()?;
            let rows = store.failed(kind.as_deref(), since, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(());
            }
            if rows.is_empty() {
                println!("no failed deliveries");
                return Ok(());
            }
            println!(
                "{:>8}  {:<16}  {:<28}  {:>3}  {:<20}  last error",
                "id", "kind", "recipient", "att", "failed at"
            );
            for r in rows {
                let error = r.last_error.unwrap_or_default();
                let error: String = error.chars().take(80).collect();
                println!(
                    "{:>8}  {:<16}  {:<28}  {:>3}  {:<20}  {}",
                    r.id,
                    r.kind,
                    r.recipient,
                    r.attempts,
                    r.updated_at.format("%Y-%m-%d %H:%M:%S"),
                    error
                );
            }
        }
        FailedCommand::Show { id, json } => {
            let d = store
                .delivery(id)
                .await?
                .with_context(|| format!("no delivery with id {id}"))?;
            let attempts = store.attempts(id).await?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({ "delivery": d, "attempts": attempts })
                    )?
                );
                return Ok(());
            }
            println!("delivery {}  {}  {}", d.id, d.kind, d.status);
            println!("  to:         {}", d.recipient);
            println!("  dedup key:  {}", d.dedup_key);
            println!("  planned:    {}", d.planned_for);
            println!("  message-id: {}", d.message_id.as_deref().unwrap_or("-"));
            println!("  last error: {}", d.last_error.as_deref().unwrap_or("-"));
            println!("  attempts:");
            for a in attempts {
                println!(
                    "    #{} {} {} {} code={} {}",
                    a.attempt,
                    a.at.format("%Y-%m-%d %H:%M:%S%.3f"),
                    a.provider,
                    a.outcome,
                    a.code.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
                    a.error.unwrap_or_default()
                );
            }
        }
        FailedCommand::Retry { ids, all } => {
            let retried = store
                .retry_failed(
                    if all { None } else { Some(&ids) },
                    crate::clock::Clock::System.now(),
                )
                .await?;
            let missing: Vec<_> = ids.iter().filter(|i| !retried.contains(i)).collect();
            let list = |ids: &mut dyn Iterator<Item = &i64>| {
                ids.map(i64::to_string).collect::<Vec<_>>().join(", ")
            };
            println!(
                "queued {} deliveries again: {}",
                retried.len(),
                list(&mut retried.iter())
            );
            if !missing.is_empty() {
                println!(
                    "not failed (or not found), left alone: {}",
                    list(&mut missing.into_iter())
                );
            }
        }
        FailedCommand::Purge { older_than } => {
            let age = crate::config::parse_duration(&older_than)
                .map_err(|e| anyhow::anyhow!("--older-than {e}"))?;
            let before = Utc::now()
                - chrono::Duration::from_std(age).context("--older-than is too large")?;
            let n = store.purge_failed(before).await?;
            println!("purged {n} failed deliveries older than {older_than}");
        }
    }
    Ok(())
}

async fn schedules(settings: &Settings, user_id: Option<i64>) -> anyhow::Result<()> {
    use crate::{config::ZoneMode, schedule::occurrences};
    let store = connect(settings).await?;
    let now = Utc::now();
    if let Some(id) = user_id {
        let user = store
            .user(id)
            .await?
            .with_context(|| format!("no user with id {id}"))?;
        let own = crate::domain::parse_zone(&user.timezone);
        println!(
            "user {} <{}>, time zone {}",
            user.id, user.email, user.timezone
        );
        if own.is_err() {
            println!("  (not a valid zone: recipient schedules use their fallback zone)");
        }
        for s in settings.schedules.iter() {
            let tz = match s.zone {
                ZoneMode::Fixed(tz) => tz,
                ZoneMode::Recipient => own.clone().unwrap_or(s.fallback_timezone),
            };
            let state = if s.enabled { "" } else { "  (disabled)" };
            println!("{}{state}", s.name);
            for fire in occurrences::next(&s.cron, tz, now, 3) {
                let at = fire.at + occurrences::spread_offset(user.id, s.spread);
                println!(
                    "  {}  =  {}",
                    at.with_timezone(&tz).format("%a %Y-%m-%d %H:%M %Z (%:z)"),
                    at.format("%Y-%m-%d %H:%M UTC")
                );
            }
        }
        return Ok(());
    }
    let zones: Vec<_> = store
        .user_timezones()
        .await?
        .iter()
        .filter_map(|z| crate::domain::parse_zone(z).ok())
        .collect();
    for s in &settings.schedules {
        let watermark = store.watermark(&s.name).await?;
        println!(
            "{}  cron {:?}  zone {}  catch-up {}  spread {}{}",
            s.name,
            s.cron_expr,
            s.zone,
            humantime::format_duration(s.catch_up),
            humantime::format_duration(s.spread),
            if s.enabled { "" } else { "  (disabled)" }
        );
        println!(
            "  planned up to: {}",
            watermark
                .map(|w| w.to_rfc3339())
                .unwrap_or_else(|| "never (starts at the next run)".into())
        );
        let mut fires: Vec<(chrono::DateTime<Utc>, chrono_tz::Tz)> = match s.zone {
            ZoneMode::Fixed(tz) => occurrences::next(&s.cron, tz, now, 5)
                .into_iter()
                .map(|f| (f.at, tz))
                .collect(),
            ZoneMode::Recipient => zones
                .iter()
                .flat_map(|tz| {
                    occurrences::next(&s.cron, *tz, now, 5)
                        .into_iter()
                        .map(move |f| (f.at, *tz))
                })
                .collect(),
        };
        fires.sort_by_key(|f| f.0);
        fires.dedup_by_key(|f| f.0);
        for (at, tz) in fires.into_iter().take(5) {
            println!(
                "  next: {}  ({} {})",
                at.format("%Y-%m-%d %H:%M UTC"),
                at.with_timezone(&tz).format("%H:%M"),
                tz.name()
            );
        }
    }
    Ok(())
}

fn parse_since(text: &str) -> anyhow::Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    let age = crate::config::parse_duration(text).map_err(|_| {
        anyhow::anyhow!(
            "--since {text:?} is neither an instant (2026-11-01T00:00:00Z) nor an age (24h, 7d)"
        )
    })?;
    Ok(Utc::now() - chrono::Duration::from_std(age)?)
}

/// `herald check`: every problem, each with where it is and what to do.
async fn check() -> anyhow::Result<ExitCode> {
    let mut ok = true;
    let mut report = |name: &str, result: anyhow::Result<()>| match result {
        Ok(()) => println!("ok    {name}"),
        Err(e) => {
            ok = false;
            println!("FAIL  {name}: {}", crate::telemetry::chain(&e));
        }
    };
    let settings = match Settings::load() {
        Ok(s) => {
            report("configuration", Ok(()));
            s
        }
        Err(e) => {
            report("configuration", Err(anyhow::anyhow!("{e}")));
            return Ok(ExitCode::FAILURE);
        }
    };
    report(
        "templates",
        Templates::load(&settings.templates_dir, &crate::kinds::samples())
            .map(|_| ())
            .map_err(Into::into),
    );
    let pg = async {
        let store = Store::connect(&settings.database_url, 1, false).await?;
        store.ping().await
    };
    report("postgresql", timeout(pg).await);
    let redis = async {
        Queue::new(queue::connect(&settings.redis_url).await?, &settings.queue)
            .ping()
            .await
            .map_err(Into::into)
    };
    report("redis", timeout(redis).await);
    for s in &settings.mail.providers {
        let p = match Provider::build(s, &settings.mail) {
            Ok(p) => p,
            Err(e) => {
                report(&format!("mail provider {} ({s})", s.name()), Err(e));
                continue;
            }
        };
        report(
            &format!("mail provider {} ({s})", p.name()),
            timeout(p.test_connection()).await,
        );
        // What the workers found out: a pause for a configuration problem names the fix.
        let state = async {
            let redis = queue::connect(&settings.redis_url).await?;
            crate::startup::gate(redis, &settings).state(&p).await
        };
        match timeout_value(state).await {
            Ok(State::Ok) => {}
            Ok(s) if s.needs_operator() => {
                report(
                    &format!("mail provider {} (as the workers found it)", p.name()),
                    Err(anyhow::anyhow!("{}", s.describe())),
                );
            }
            Ok(s) => println!("note  mail provider {}: {}", p.name(), s.describe()),
            Err(e) => println!(
                "note  mail provider {}: state unknown: {}",
                p.name(),
                crate::telemetry::chain(&e)
            ),
        }
    }
    if let Some(warning) = settings.mail.outbox_warning() {
        println!("warn  {warning}");
    }
    if settings.api_token.is_none() {
        println!("note  http.api_token is empty: /api answers 403 until HERALD_API_TOKEN is set");
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

async fn timeout_value<T>(f: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within 10 s")))
}

async fn timeout(f: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("no answer within 10 s")))
}

/// A minimal HTTP/1.0 GET, so the container image needs no curl.
async fn healthcheck(addr: String) -> anyhow::Result<ExitCode> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = addr.replace("0.0.0.0", "127.0.0.1");
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(&addr).await?;
        stream
            .write_all(b"GET /healthz HTTP/1.0\r\nHost: localhost\r\n\r\n")
            .await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(
            response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200"),
        )
    };
    match tokio::time::timeout(Duration::from_secs(3), probe).await {
        Ok(Ok(true)) => Ok(ExitCode::SUCCESS),
        Ok(Ok(false)) => {
            eprintln!("{addr} answered /healthz with an error");
            Ok(ExitCode::FAILURE)
        }
        Ok(Err(e)) => {
            eprintln!("cannot reach {addr}: {e}");
            Ok(ExitCode::FAILURE)
        }
        Err(_) => {
            eprintln!("{addr} did not answer within 3 s");
            Ok(ExitCode::FAILURE)
        }
    }
}
