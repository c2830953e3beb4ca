//! `herald preview KIND --user ID [--at T] [--format text|html|eml]`: the emails a user would
//! get, with their data, nothing planned or sent; the same path as `GET /api/preview/{kind}`
//! ([`crate::preview`]). And `herald sessions end`, which ends every dashboard session.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};

use crate::{
    clock::Clock,
    config::Settings,
    input,
    preview::{Previewer, as_text},
    render::Templates,
};

#[derive(Debug, Args)]
pub struct PreviewArgs {
    /// The kind of email (`task_reminders`, `overdue_summary`, `weekly_report`, `focus_streak`,
    /// `due_soon`, `overdue_morning`).
    kind: String,
    /// The app's id of the user.
    #[arg(long = "user")]
    user_id: String,
    /// Preview as of this instant (RFC 3339 with Z or an offset, e.g. 2026-11-24T09:00:00Z);
    /// default now.
    #[arg(long, value_parser = input::instant)]
    at: Option<DateTime<Utc>>,
    /// What to print: the headers and the text part, the HTML part, or the whole message.
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

/// What `herald preview` prints of each email.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// The headers, a blank line, the text part.
    Text,
    /// The HTML part.
    Html,
    /// The whole message as an SMTP server would get it (`.eml`).
    Eml,
}

pub async fn preview(settings: &Settings, args: PreviewArgs) -> anyhow::Result<()> {
    let templates = Templates::from_settings(settings, &crate::kinds::samples())?;
    let previewer = Previewer {
        settings: Arc::new(settings.clone()),
        templates: Arc::new(templates),
        links: crate::unsubscribe::Links::from_settings(settings),
        clock: Clock::System,
    };
    // An unknown kind is said before connecting.
    previewer.schedule(&args.kind)?;
    let store = super::connect(settings).await?;
    let answer = previewer
        .preview(&store, &args.kind, &args.user_id, args.at)
        .await?;
    if let Some(why) = &answer.none_because {
        println!("no email: {why}");
    }
    let many = answer.emails.len() > 1;
    for (i, email) in answer.emails.iter().enumerate() {
        if many && !matches!(args.format, Format::Eml) {
            println!(
                "==== email {} of {}: {}",
                i + 1,
                answer.emails.len(),
                email.dedup_key
            );
        }
        match args.format {
            Format::Text => println!("{}", as_text(email)),
            Format::Html => println!("{}", email.html),
            Format::Eml => print!("{}", email.eml),
        }
    }
    Ok(())
}

/// `herald sessions …`.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// End every dashboard session of every Herald process (each browser signs in again) by
    /// replacing the session key; the API token is not changed.
    End,
}

pub async fn sessions(settings: &Settings, command: SessionsCommand) -> anyhow::Result<()> {
    match command {
        SessionsCommand::End => {
            let store = super::connect(settings).await?;
            let at = store.rotate_session_key().await?;
            println!(
                "every dashboard session has ended ({}); other processes follow within {} s",
                at.to_rfc3339(),
                crate::http::sessions::KEY_TTL.as_secs()
            );
        }
    }
    Ok(())
}
