//! `herald migrate-state --to postgres://…`: moves the embedded state into PostgreSQL
//! ([`crate::store::migrate_state`]), then prints the counts per table and the settings to change.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::{
    config::{Home, Settings, redact},
    store::migrate_state::{DemoMove, Moved, migrate_state},
};

#[derive(Debug, Args)]
pub struct MigrateStateArgs {
    /// The PostgreSQL database to move the state into (created if missing; it must hold no
    /// Herald state yet), e.g. postgres://herald:password@127.0.0.1:5432/herald.
    #[arg(long, value_name = "URL")]
    to: String,
    /// The embedded state file; defaults to state.file of the settings.
    #[arg(long, value_name = "FILE")]
    from: Option<PathBuf>,
}

pub async fn migrate(settings: &Settings, args: MigrateStateArgs) -> anyhow::Result<()> {
    let from = match (&args.from, &settings.home) {
        (Some(file), _) => file.clone(),
        (None, Home::Embedded { file }) => file.clone(),
        (None, Home::Servers(_)) => anyhow::bail!(
            "the settings put Herald on PostgreSQL and Redis (DATABASE_URL and REDIS_URL, or \
             [database] and [redis]), so they name no state file to move: pass --from with the \
             embedded Herald's file (herald.db)"
        ),
    };
    let demo = reads_the_file(settings, &from);
    let moved = migrate_state(&from, &args.to, demo).await?;
    print!("{}", report(&moved, &from, &args.to, settings));
    Ok(())
}

/// Whether the embedded Herald read the app's data from the state file itself (no `source.url`,
/// or one naming that file): then the file's demo goes along.
fn reads_the_file(settings: &Settings, from: &Path) -> bool {
    let Some(url) = &settings.source_url else {
        return true;
    };
    let url = url.expose();
    let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    else {
        return false;
    };
    let path = Path::new(path.split('?').next().unwrap_or(path));
    match (path.canonicalize(), from.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => path == from,
    }
}

/// What the move did and what to set now.
fn report(moved: &Moved, from: &Path, to: &str, settings: &Settings) -> String {
    let file = from.display();
    let to = redact(to);
    let mut out = format!("Moved the state of {file} into {to}.\n\n");
    let width = moved
        .counts
        .iter()
        .map(|c| c.table.len())
        .max()
        .unwrap_or(0)
        .max("table".len());
    out += &format!(
        "  {:width$}  {:>10}  {:>10}\n",
        "table", "file", "PostgreSQL"
    );
    for c in &moved.counts {
        out += &format!("  {:width$}  {:>10}  {:>10}\n", c.table, c.file, c.target);
    }
    out += &format!(
        "\nThe embedded queue held {} jobs; they stay in the file. {} deliveries it had queued \
         and {} the stopped process had claimed are queued in PostgreSQL: the new home's \
         dispatcher pushes them to Redis when they are due.\n",
        moved.queue_jobs, moved.redispatched, moved.released_claims
    );
    out += match moved.demo {
        DemoMove::Copied => {
            "The demo app's users, tasks and focus sessions are in the schema herald_demo, read \
             through the herald_users, herald_tasks and herald_focus_sessions views: nothing to \
             set for them.\n"
        }
        DemoMove::TargetHasViews => {
            "The database has herald_users views of its own: they are left as they are, and the \
             file's demo app was not copied.\n"
        }
        DemoMove::NotThere => "",
    };
    out += &format!(
        "\nNow point Herald at its new home, both at once (one without the other is refused):\n  \
         DATABASE_URL={to}   (the --to URL, with its password; or url in [database] of the configuration file)\n  \
         REDIS_URL=redis://127.0.0.1:6379   (your Redis; or url in [redis])\n\
         With both set, state.file is no longer read. Keep {file} as a backup: it is marked as \
         moved, and an embedded Herald refuses to start on it (it would send what it still holds \
         queued a second time).\n"
    );
    match (&settings.source_url, moved.demo) {
        (Some(source), DemoMove::Copied) => {
            out += &format!(
                "Unset source.url ({source}, the old file): the demo app is read from PostgreSQL now.\n"
            )
        }
        (Some(source), _) => {
            out += &format!(
                "source.url stays {source}: the app's data is read from there as before.\n"
            )
        }
        (None, _) => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(source_url: Option<&str>) -> Settings {
        let vars: Vec<(String, String)> = source_url
            .map(|u| ("SOURCE_URL".to_owned(), u.to_owned()))
            .into_iter()
            .collect();
        Settings::load_from(&crate::kinds::defaults(), None, &vars).unwrap()
    }

    #[test]
    fn the_demo_goes_along_only_when_the_app_data_was_read_from_the_file_itself() {
        let from = Path::new("state/herald.db");
        assert!(reads_the_file(&settings(None), from));
        assert!(reads_the_file(
            &settings(Some("sqlite://state/herald.db")),
            from
        ));
        assert!(reads_the_file(
            &settings(Some("sqlite:state/herald.db")),
            from
        ));
        assert!(!reads_the_file(&settings(Some("sqlite://app.db")), from));
        assert!(!reads_the_file(
            &settings(Some("postgres://app@127.0.0.1/app")),
            from
        ));
    }
}
