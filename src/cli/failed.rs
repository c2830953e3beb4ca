//! `herald failed`: list, show, retry and purge failed deliveries, with the checks and messages of `/api/failed`.

use anyhow::Context;
use chrono::Utc;
use clap::Subcommand;

use crate::{
    clock::Clock,
    config::Settings,
    input::{self, FailedFilter, NotRetried, Since},
    kinds::Kind,
    store::{DeliveryStatus, Store},
};

#[derive(Debug, Subcommand)]
pub enum FailedCommand {
    /// List failed deliveries, newest first.
    List {
        /// Only deliveries of this kind of email (the schedules' names: `herald schedules`).
        #[arg(long, value_parser = input::kind)]
        kind: Option<Kind>,
        /// Only those that failed since an instant (2026-11-01T00:00:00Z) or an age (24h, 7d).
        #[arg(long, value_parser = Since::parse)]
        since: Option<Since>,
        /// Show at most this many, from 1 to 10000.
        #[arg(long, default_value_t = input::DEFAULT_LIMIT, value_parser = input::limit, allow_negative_numbers = true)]
        limit: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one delivery and every attempt with its error.
    Show {
        /// The delivery's id (the first column of `herald failed list`).
        id: i64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Send failed deliveries through the normal path again.
    Retry {
        /// The deliveries' ids; each must be failed, or nothing is retried.
        #[arg(required_unless_present = "all")]
        ids: Vec<i64>,
        /// Retry every failed delivery.
        #[arg(long, conflicts_with = "ids")]
        all: bool,
    },
    /// Delete failed deliveries older than an age.
    Purge {
        /// The age, e.g. 30d: failures older than this are deleted.
        #[arg(long)]
        older_than: String,
    },
}

pub async fn failed(settings: &Settings, command: FailedCommand) -> anyhow::Result<()> {
    let store = super::connect(settings).await?;
    match command {
        FailedCommand::List {
            kind,
            since,
            limit,
            json,
        } => {
            let filter = FailedFilter { kind, since, limit };
            list(&store, &filter, json).await
        }
        FailedCommand::Show { id, json } => show(&store, id, json).await,
        FailedCommand::Retry { ids, all } => retry(&store, (!all).then_some(ids)).await,
        FailedCommand::Purge { older_than } => {
            let age = crate::config::parse_duration(&older_than)
                .map_err(|e| anyhow::anyhow!("--older-than {e}"))?;
            let before = Utc::now()
                - chrono::Duration::from_std(age).context("--older-than is too large")?;
            let n = store.purge_failed(before).await?;
            println!("purged {n} failed deliveries older than {older_than}");
            Ok(())
        }
    }
}

async fn list(store: &Store, filter: &FailedFilter, json: bool) -> anyhow::Result<()> {
    let rows = filter.fetch(store, Clock::System.now()).await?;
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
    Ok(())
}

async fn show(store: &Store, id: i64, json: bool) -> anyhow::Result<()> {
    let d = store
        .delivery(id)
        .await?
        .with_context(|| input::no_delivery(id))?;
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
    Ok(())
}

/// Retries these deliveries (`None`: every failed one). An id that is unknown or not failed
/// is an error, as in the API, and then nothing is retried: a mistyped id does not half-run
/// the command.
async fn retry(store: &Store, ids: Option<Vec<i64>>) -> anyhow::Result<()> {
    let ids = ids.map(|mut ids| {
        ids.sort_unstable();
        ids.dedup();
        ids
    });
    if let Some(ids) = &ids {
        let refused = refusals(store, ids).await?;
        if !refused.is_empty() {
            anyhow::bail!("{}; nothing was retried", refused.join("; "));
        }
    }
    let retried = store
        .retry_failed(ids.as_deref(), Clock::System.now())
        .await?;
    let list = |ids: &[i64]| {
        ids.iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    if retried.is_empty() && ids.is_none() {
        println!("no failed deliveries to retry");
        return Ok(());
    }
    if !retried.is_empty() {
        println!(
            "queued {} deliveries again: {}",
            retried.len(),
            list(&retried)
        );
    }
    // Checked failed a moment ago, but someone else retried (or purged) them since.
    let late: Vec<_> = ids
        .unwrap_or_default()
        .into_iter()
        .filter(|id| !retried.contains(id))
        .collect();
    if !late.is_empty() {
        let mut why = refusals(store, &late).await?;
        if why.is_empty() {
            why.push(format!("{} changed meanwhile; run it again", list(&late)));
        }
        anyhow::bail!("not retried: {}", why.join("; "));
    }
    Ok(())
}

/// Why each of `ids` that is unknown or not failed cannot be retried.
async fn refusals(store: &Store, ids: &[i64]) -> anyhow::Result<Vec<String>> {
    let mut refused = Vec::new();
    for &id in ids {
        let found = store.delivery(id).await?;
        if found
            .as_ref()
            .is_none_or(|d| d.status != DeliveryStatus::Failed)
        {
            refused.push(NotRetried::explain(id, found.as_ref()).to_string());
        }
    }
    Ok(refused)
}
