//! The email bench's own PostgreSQL databases (a seeded template per size, copied for each run),
//! its Redis queue and folder, the daemon's variables, and the reads that time a fire without
//! adding to what it measures.

use std::{
    path::PathBuf,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context;
use chrono::{DateTime, Utc};
use herald::{
    config::Settings,
    schedule::{PlanOptions, plan},
    store::Store,
};
use sqlx::{Connection, PgConnection, PgPool};

use crate::{STALL, support, support::daemon::Daemon, support::sink::Sink};

/// What the daemon sends through.
#[derive(Clone, Copy, PartialEq)]
pub enum Transport {
    Smtp,
    Null,
}

/// The bench's own databases, queue and folder.
pub struct Bench {
    /// The PostgreSQL server the databases are made on.
    pub pg: url::Url,
    pub admin: PgPool,
    pub redis_url: String,
    pub redis: redis::aio::MultiplexedConnection,
    /// The database each run gets afresh; templates are `<name>_seed_<users>`.
    pub name: String,
    pub queue: String,
    pub token: String,
    pub dir: PathBuf,
    pub seeded: Vec<usize>,
}

impl Bench {
    pub async fn new() -> anyhow::Result<Bench> {
        let id = std::process::id();
        let pg = support::pg_server()?;
        let admin = Store::connect(&support::database(&pg, "postgres"), 2, false)
            .await
            .context("the bench needs PostgreSQL (DATABASE_URL's server, else 127.0.0.1:5432)")?
            .pg()
            .clone();
        let redis_url = support::redis_url()?;
        let redis = redis::Client::open(redis_url.as_str())?
            .get_multiplexed_async_connection()
            .await
            .context("the bench needs Redis (REDIS_URL, else 127.0.0.1:6379)")?;
        let dir = std::env::temp_dir().join(format!("herald-bench-email-{id}"));
        std::fs::create_dir_all(&dir)?;
        Ok(Bench {
            pg,
            admin,
            redis_url,
            redis,
            name: format!("herald_bench_email_{id}"),
            queue: format!("herald-bench-email-{id}"),
            token: uuid::Uuid::new_v4().simple().to_string(),
            dir,
            seeded: Vec::new(),
        })
    }

    pub async fn exec(&self, sql: String) -> anyhow::Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(&self.admin)
            .await?;
        Ok(())
    }

    pub fn url(&self) -> String {
        support::database(&self.pg, &self.name)
    }

    /// A fresh database holding `users` seeded users (a copy of a template seeded once per size)
    /// and an empty queue.
    pub async fn fresh(&mut self, users: usize) -> anyhow::Result<()> {
        let template = format!("{}_seed_{users}", self.name);
        if !self.seeded.contains(&users) {
            self.exec(format!("CREATE DATABASE {template}")).await?;
            self.seeded.push(users);
            let store = Store::connect(&support::database(&self.pg, &template), 8, true).await?;
            store.migrate().await?;
            let started = Instant::now();
            let seeded = herald::seed::seed(
                &herald::source::demo::Demo::connect(store.url()).await?,
                users,
                1,
                Utc::now(),
            )
            .await?;
            store.pg().close().await;
            println!(
                "# seed users={} tasks={} seconds={:.1}",
                seeded.users,
                seeded.tasks,
                started.elapsed().as_secs_f64()
            );
        }
        self.exec(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await?;
        self.exec(format!("CREATE DATABASE {} TEMPLATE {template}", self.name))
            .await?;
        herald::queue::delete_queue_keys(&mut self.redis, &self.queue).await?;
        Ok(())
    }

    /// The daemon's whole configuration: nothing comes from the caller's environment.
    pub fn vars(&self, sink: Option<&Sink>, addr: &str) -> Vec<(String, String)> {
        let mut vars = support::daemon::bench_vars(addr, &self.token);
        let mut add = |key: &str, value: String| vars.push((key.to_owned(), value));
        add("DATABASE_URL", self.url());
        add("REDIS_URL", self.redis_url.clone());
        add("HERALD__QUEUE__NAME", self.queue.clone());
        match sink {
            Some(sink) => {
                add("SMTP_URL", sink.url());
                add("HERALD__MAIL__PROVIDERS", r#"["smtp"]"#.to_owned());
            }
            None => add("HERALD__MAIL__PROVIDERS", r#"["null"]"#.to_owned()),
        }
        vars
    }

    /// Redis's `total_commands_processed`.
    pub async fn redis_commands(&mut self) -> anyhow::Result<u64> {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut self.redis)
            .await?;
        info.lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|v| v.trim().parse().ok())
            .context("Redis's INFO stats has no total_commands_processed")
    }

    /// `xact_commit` of the run's database, once no session is left on it: a backend reports
    /// its counts when it exits (or, while idle, up to seconds later).
    pub async fn commits(&self) -> anyhow::Result<i64> {
        for _ in 0..200 {
            let sessions: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                    .bind(&self.name)
                    .fetch_one(&self.admin)
                    .await?;
            if sessions == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(sqlx::query_scalar(
            "SELECT coalesce(xact_commit, 0) FROM pg_stat_database WHERE datname = $1",
        )
        .bind(&self.name)
        .fetch_one(&self.admin)
        .await?)
    }

    /// Plans one overdue summary per user with something overdue (as the trigger would) and
    /// keeps the first `keep` of them, all queued.
    pub async fn plan_overdue(&self, keep: i64) -> anyhow::Result<(Store, i64)> {
        let settings = Settings::load_from(
            &herald::kinds::defaults(),
            None,
            &self.vars(None, "127.0.0.1:0"),
        )?;
        let store = Store::connect(&self.url(), 4, true).await?;
        let schedule = settings
            .schedule("overdue_summary")
            .context("the built-in overdue_summary schedule")?;
        let options = PlanOptions {
            at: Utc::now(),
            user_id: None,
            dry_run: false,
            ids: false,
        };
        let clock = herald::clock::Clock::System;
        plan(&store, schedule, &options, &clock, &settings.retention).await?;
        sqlx::query(
            "DELETE FROM herald.deliveries WHERE id NOT IN
               (SELECT id FROM herald.deliveries WHERE status = 'queued' ORDER BY id LIMIT $1)",
        )
        .bind(keep)
        .execute(store.pg())
        .await?;
        let n = sqlx::query_scalar("SELECT count(*) FROM herald.deliveries")
            .fetch_one(store.pg())
            .await?;
        Ok((store, n))
    }

    pub async fn start(
        &self,
        vars: &[(String, String)],
        addr: &str,
        tag: &str,
    ) -> anyhow::Result<Daemon> {
        let mut daemon = Daemon::start(vars, &self.dir.join(format!("herald-{tag}.log")))?;
        daemon.wait_ready(addr, Duration::from_secs(60)).await?;
        Ok(daemon)
    }

    /// Removes the bench's databases, queue keys and folder.
    pub async fn clean_up(mut self) -> anyhow::Result<()> {
        self.exec(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .await?;
        for users in std::mem::take(&mut self.seeded) {
            self.exec(format!(
                "DROP DATABASE IF EXISTS {}_seed_{users} WITH (FORCE)",
                self.name
            ))
            .await?;
        }
        herald::queue::delete_queue_keys(&mut self.redis, &self.queue).await?;
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

/// Waits until `n` deliveries are sent or failed and returns the last `sent_at`. The reads run in
/// one transaction that is rolled back, so they add nothing to the database's commits.
pub async fn wait_rows_done(url: &str, n: i64) -> anyhow::Result<SystemTime> {
    let mut conn = PgConnection::connect(url).await?;
    let mut reads = conn.begin().await?;
    let mut progress = (-1, Instant::now());
    loop {
        let (done, last): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status IN ('sent', 'failed')), max(sent_at) FROM herald.deliveries",
        )
        .fetch_one(&mut *reads)
        .await?;
        if done >= n {
            reads.rollback().await?;
            conn.close().await?;
            return Ok(last.map(SystemTime::from).unwrap_or_else(SystemTime::now));
        }
        if done != progress.0 {
            progress = (done, Instant::now());
        } else if progress.1.elapsed() > STALL {
            anyhow::bail!("{done} of {n} deliveries were done and no more for {STALL:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
