//! `herald seed`: add demo users (after removing earlier ones with `--reset`) and say how many there are.

use clap::Args;

use crate::config::Settings;

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
    if args.reset {
        let r = crate::seed::reset(&store).await?;
        println!(
            "removed {} seeded users (user<N>@example.com) and their {} tasks, {} focus sessions, \
             {} opt-outs, {} deliveries with {} attempts, and {} batch records left empty",
            r.users, r.tasks, r.focus_sessions, r.opt_outs, r.deliveries, r.attempts, r.batches
        );
    }
    let started = std::time::Instant::now();
    let r = crate::seed::seed(&store, args.users, args.seed, chrono::Utc::now()).await?;
    println!(
        "seeded {} users, {} tasks, {} focus sessions in {:.1?}",
        r.users,
        r.tasks,
        r.focus_sessions,
        started.elapsed()
    );
    println!("{} users now exist", store.count_users().await?);
    Ok(())
}
