//! The `herald` command line: parses the arguments and hands each command to its module.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::{
    config::Settings,
    startup::{Application, stop_signal},
    store::Store,
    telemetry::{self, LogFormat},
};

mod check;
mod failed;
mod healthcheck;
mod migrate_state;
mod preview;
mod schedules;
mod seed;
mod suppressions;
mod trigger;

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
    /// Move an embedded Herald's state (its SQLite file) into PostgreSQL, to run on PostgreSQL
    /// and Redis from now on: stop the embedded Herald first.
    MigrateState(migrate_state::MigrateStateArgs),
    /// Validate the configuration, templates and connections, and say how to fix each problem.
    Check,
    /// Create demo users, tasks and focus sessions across 40 time zones.
    Seed(seed::SeedArgs),
    /// Send a schedule's emails now, as a test: keyed apart from the schedule's own, so the real
    /// email of that day still goes out, and once per user per local day.
    Trigger(trigger::TriggerArgs),
    /// List the schedules with their zone mode, catch-up window, watermark and next fires; with
    /// --user, the next emails that user will get, in local time and UTC.
    Schedules {
        /// Show the next emails of this user (by id), in their time zone and in UTC.
        #[arg(long = "user")]
        user_id: Option<String>,
    },
    /// Show the emails a user would get from a kind, with their data: nothing is planned or
    /// sent.
    Preview(preview::PreviewArgs),
    /// End every dashboard session.
    Sessions {
        #[command(subcommand)]
        command: preview::SessionsCommand,
    },
    /// Pause a schedule: every Herald process's planner skips its fires (they are not sent late
    /// after it) and triggers are refused, until `herald resume NAME`.
    Pause {
        /// The schedule's name (see `herald schedules`).
        name: String,
        /// Why, shown with the pause.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume a paused schedule: its fires are planned again from the planner's next tick.
    Resume {
        /// The schedule's name.
        name: String,
    },
    /// List, inspect, retry and purge deliveries that failed.
    Failed {
        #[command(subcommand)]
        command: failed::FailedCommand,
    },
    /// List, show and lift suppressed addresses (hard bounces, complaints).
    Suppressions {
        #[command(subcommand)]
        command: suppressions::SuppressionsCommand,
    },
    /// Exit 0 when the local daemon answers /healthz (for container health checks).
    Healthcheck {
        /// The daemon's address, host:port; defaults to http.addr.
        #[arg(long)]
        addr: Option<String>,
    },
}

/// Parses the command line, runs it, and turns an error into a message and exit code 1.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    match start(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::telemetry::chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Reads the configuration (but for `check`, which reads it to report every problem), sets the
/// allocator's option for an embedded daemon while the process has one thread, then runs the
/// command on the async runtime.
fn start(command: Command) -> anyhow::Result<ExitCode> {
    if let Command::Check = command {
        return runtime()?.block_on(check::check());
    }
    let settings = Settings::load(&crate::kinds::defaults())?;
    // On one file only: there it keeps the daemon under 40 MB; on PostgreSQL + Redis the
    // million-user plan was 2 s slower with it (BENCHMARKS.md, "One file under 40 MB").
    if matches!(command, Command::Run) && settings.servers().is_none() {
        crate::allocator::return_freed_memory_at_once();
    }
    runtime()?.block_on(run(command, settings))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Runtime::new().context("cannot start the async runtime")
}

async fn run(command: Command, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run => {
            let app = Application::build(settings).await?;
            app.run_until_stopped(stop_signal()).await?;
        }
        Command::Migrate => {
            let store = Store::open(&settings.home, 2).await?;
            crate::store::prepare(store, settings.source_url.as_ref()).await?;
            println!("migrations applied");
        }
        Command::MigrateState(args) => migrate_state::migrate(&settings, args).await?,
        Command::Seed(args) => seed::seed(&settings, args).await?,
        Command::Trigger(args) => trigger::trigger(&settings, args).await?,
        Command::Preview(args) => preview::preview(&settings, args).await?,
        Command::Sessions { command } => preview::sessions(&settings, command).await?,
        Command::Failed { command } => failed::failed(&settings, command).await?,
        Command::Suppressions { command } => suppressions::suppressions(&settings, command).await?,
        Command::Schedules { user_id } => schedules::schedules(&settings, user_id).await?,
        Command::Pause { name, reason } => {
            schedules::pause(&settings, &name, reason.as_deref()).await?
        }
        Command::Resume { name } => schedules::resume(&settings, &name).await?,
        Command::Healthcheck { addr } => {
            let addr = addr.unwrap_or_else(|| settings.http_addr.to_string());
            return healthcheck::healthcheck(addr).await;
        }
        Command::Check => unreachable!("handled by `start`"),
    }
    Ok(ExitCode::SUCCESS)
}

/// The store, migrated: every command but `run`, `migrate` and `check` starts here.
async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::open(&settings.home, 4).await?;
    crate::store::prepare(store, settings.source_url.as_ref()).await
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// `herald help` and `--help` explain every command and every argument.
    #[test]
    fn every_command_and_argument_has_help() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            let path = format!("{path} {}", command.get_name()).trim().to_owned();
            if command.get_about().is_none() && command.get_long_about().is_none() {
                missing.push(format!("the command `{path}`"));
            }
            for arg in command.get_arguments() {
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("`{path}`'s argument {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &path, missing);
            }
        }
        let mut command = Cli::command();
        command.build();
        let mut missing = Vec::new();
        walk(&command, "", &mut missing);
        assert!(missing.is_empty(), "no help text for: {missing:#?}");
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
