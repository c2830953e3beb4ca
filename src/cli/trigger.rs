//! `herald trigger`: plan a schedule's emails now, with the checks and messages of `POST /api/schedules/{name}/trigger`.

use chrono::{DateTime, Utc};
use clap::Args;

use crate::{
    clock::Clock,
    config::Settings,
    input,
    schedule::{PlanOptions, check_at, plan},
};

#[derive(Debug, Args)]
pub struct TriggerArgs {
    /// The schedule: one per kind of email, named after it (`herald schedules` lists them).
    name: String,
    /// Plan for this user only.
    #[arg(long = "user")]
    user_id: Option<String>,
    /// Show what would be sent; enqueue nothing.
    #[arg(long)]
    dry_run: bool,
    /// Plan as if now were this instant (RFC 3339 with Z or an offset, e.g.
    /// 2026-11-24T09:00:00Z): not in the future unless --dry-run, nor older than the shortest
    /// retention less 2 days.
    #[arg(long, value_parser = input::instant)]
    at: Option<DateTime<Utc>>,
    /// List the new deliveries' ids (always listed with --user).
    #[arg(long)]
    ids: bool,
}

pub async fn trigger(settings: &Settings, args: TriggerArgs) -> anyhow::Result<()> {
    let schedule = settings
        .schedule(&args.name)
        .ok_or_else(|| anyhow::anyhow!(input::no_schedule(&args.name)))?;
    let store = super::connect(settings).await?;
    let clock = Clock::System;
    let options = PlanOptions {
        at: check_at(args.at.unwrap_or_else(|| clock.now())).map_err(anyhow::Error::msg)?,
        user_id: args.user_id,
        dry_run: args.dry_run,
        ids: args.ids,
    };
    let report = plan(&store, schedule, &options, &clock, &settings.retention).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
