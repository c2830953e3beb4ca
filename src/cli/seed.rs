//! `herald seed`: add demo users (after removing earlier ones with `--reset`) and say how many there are.

use clap::Args;

use crate::{config::Settings, source::demo::Demo};

#[derive(Debug, Args)]
pub struct SeedArgs {
    /// How many users to add.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Random seed: the same seed gives the same data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// First delete the users an earlier seed made (user<N>@example.com) with their tasks,
    /// focus sessions, opt-outs and deliveries, in one transaction; other users stay.
    #[arg(long)]
    reset: bool,
}

pub async fn seed(settings: &Settings, args: SeedArgs) -> anyhow::Result<()> {
    let store = super::connect(settings).await?;
    // The demo app lives where the source is: Herald's own database (PostgreSQL, or the
    // embedded mode's SQLite file) unless source.url says.
    let url = settings
        .source_url
        .as_ref()
        .map_or(store.url(), |u| u.expose());
    let demo = Demo::connect(url).await?;
    if args.reset {
        let r = crate::seed::reset(&demo, &store).await?;
        let s = r.state;
        println!(
            "removed {} seeded users (user<N>@example.com) and their {} tasks, {} focus sessions, \
             {} opt-outs, {} deliveries with {} attempts, and {} batch records left empty",
            r.users, r.tasks, r.focus_sessions, s.opt_outs, s.deliveries, s.attempts, s.batches
        );
    }
    let started = std::time::Instant::now();
    let r = crate::seed::seed(&demo, args.users, args.seed, chrono::Utc::now()).await?;
    println!(
        "seeded {} users, {} tasks, {} focus sessions in {:.1?}",
        r.users,
        r.tasks,
        r.focus_sessions,
        started.elapsed()
    );
    println!(
        "{} demo users now exist ({}, read through the herald_users view)",
        demo.count_users().await?,
        demo.users_table()
    );
    demo.close().await;
    Ok(())
}
