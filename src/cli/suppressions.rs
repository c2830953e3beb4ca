//! `herald suppressions`: list, show and lift the addresses Herald does not email, as
//! `/api/suppressions` does.

use anyhow::bail;
use clap::Subcommand;

use crate::{config::Settings, input};

#[derive(Debug, Subcommand)]
pub enum SuppressionsCommand {
    /// List suppressed addresses, newest first.
    List {
        /// Show at most this many, from 1 to 10000.
        #[arg(long, default_value_t = input::DEFAULT_LIMIT, value_parser = input::limit, allow_negative_numbers = true)]
        limit: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show why one address is suppressed.
    Show {
        /// The email address, in any case.
        address: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Lift a suppression: the address gets email again.
    Lift {
        /// The email address, in any case.
        address: String,
    },
}

pub async fn suppressions(settings: &Settings, command: SuppressionsCommand) -> anyhow::Result<()> {
    let store = super::connect(settings).await?;
    match command {
        SuppressionsCommand::List { limit, json } => {
            let rows = store.suppressions(limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no address is suppressed");
            } else {
                println!("{:<40} {:<11} {:<20} since", "address", "reason", "event");
                for r in rows {
                    println!(
                        "{:<40} {:<11} {:<20} {}",
                        r.address,
                        r.reason,
                        r.event,
                        r.created_at.to_rfc3339()
                    );
                }
            }
        }
        SuppressionsCommand::Show { address, json } => {
            let Some(s) = store.suppression(&address).await? else {
                bail!(
                    "{address:?} is not suppressed; `herald suppressions list` shows those that are"
                );
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                println!("address:   {}", s.address);
                println!("reason:    {}", s.reason);
                println!("event:     {}", s.event);
                println!("detail:    {}", s.detail.as_deref().unwrap_or("-"));
                println!(
                    "delivery:  {}",
                    s.delivery_id.map_or("-".into(), |id| id.to_string())
                );
                println!("since:     {}", s.created_at.to_rfc3339());
            }
        }
        SuppressionsCommand::Lift { address } => {
            if !store.lift_suppression(&address).await? {
                bail!(
                    "{address:?} is not suppressed; `herald suppressions list` shows those that are"
                );
            }
            println!("lifted: {} gets email again", address.to_lowercase());
        }
    }
    Ok(())
}
