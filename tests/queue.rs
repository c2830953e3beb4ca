//! The queue's promises, each written once and run on both backends where both make it: jobs
//! pushed are each processed once by the workers and leave the queue at its baseline (nothing
//! stored), an undecodable job is dead-lettered without wedging the worker, and the dispatcher
//! feeds the workers from the state store. The embedded queue's own: a restart gets back the jobs
//! the previous process held, the janitor those of a silent worker, and a thousand emails share
//! the store's one writer without a busy file.
//!
//! The state is the embedded store (a SQLite file in a folder of its own, removed after) in both;
//! the queue is apalis-sqlite in the same file, or apalis-redis on the shared Redis (a queue name
//! of its own, its keys deleted after; skipped loudly without the servers). The providers write
//! to an outbox folder; the gate is in the process. No mock: the real workers, store and files.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use chrono::Utc;
use herald::{
    config::Settings,
    gate::{Gate, Pauses},
    kinds::Kind,
    mail::Provider,
    queue::{self, Queue},
    render::Templates,
    source::Source,
    store::{DeliveryStatus, NewDelivery, Store},
    worker::{InHand, WorkerDeps},
};

#[path = "support/shared_servers.rs"]
#[macro_use]
mod shared_servers;

/// A state file, a queue, and the settings that go with them.
struct Home {
    dir: PathBuf,
    store: Store,
    queue: Queue,
    settings: Settings,
}

fn settings(dir: &Path) -> Settings {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let templates = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let vars: Vec<(String, String)> = [
        ("REDIS_URL", redis_url()),
        // Only the queue's and the mail's settings are read: the store is opened by hand.
        ("DATABASE_URL", "postgres://127.0.0.1/unused".to_owned()),
        ("MAIL_FROM", "Herald <herald@example.com>".to_owned()),
        ("HERALD__QUEUE__NAME", format!("herald-queue-test-{id}")),
        (
            "HERALD__MAIL__OUTBOX_DIR",
            dir.join("outbox").display().to_string(),
        ),
        ("HERALD__TEMPLATES__DIR", templates.display().to_string()),
        ("HERALD__SCHEDULES__ENABLED", "false".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    Settings::load_from(&herald::kinds::defaults(), None, &vars).expect("test settings are valid")
}

fn redis_url() -> String {
    std::env::var("REDIS_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned())
}

async fn open_store(dir: &Path) -> Store {
    // The deliveries are fresh: the claim never reads the app's data.
    let source = Source::connect("postgres://127.0.0.1:9/unused", 1)
        .await
        .unwrap();
    Store::open_embedded(&dir.join("herald.db"), source)
        .await
        .unwrap()
}

async fn home(in_redis: bool) -> Home {
    let dir = std::env::temp_dir().join(format!("herald-queue-{}", uuid::Uuid::new_v4().simple()));
    let settings = settings(&dir);
    let store = open_store(&dir).await;
    let queue = if in_redis {
        Queue::new(queue::connect(&redis_url()).await.unwrap(), &settings.queue)
    } else {
        Queue::embedded(&store, &settings.queue).await.unwrap()
    };
    Home {
        dir,
        store,
        queue,
        settings,
    }
}

impl Home {
    /// Deletes the queue's keys or rows and the folder.
    async fn gone(self) {
        self.queue.delete_all_keys().await.unwrap();
        drop(self.queue);
        drop(self.store);
        std::fs::remove_dir_all(&self.dir).unwrap();
    }

    fn deps(&self) -> Arc<WorkerDeps> {
        let s = &self.settings;
        let m = &s.mail;
        Arc::new(WorkerDeps {
            store: self.store.clone(),
            recorder: herald::recorder::Recorder::start(self.store.clone()),
            in_hand: InHand::new(s.queue.concurrency),
            templates: Arc::new(Templates::from_settings(s, &herald::kinds::samples()).unwrap()),
            providers: Provider::build_all(m).unwrap(),
            gate: Gate::in_process(Pauses {
                configuration: m.configuration_pause,
                probe_interval: m.probe_interval,
                throttle: m.throttle_pause,
                probe_lease: herald::mail::send_timeout(m),
                max: m.max_pause,
            }),
            retry_delays: s.queue.retry_delays.clone(),
            max_attempts: s.queue.max_attempts as i32,
            lease: s.queue.lease,
            message_id_domain: m.from.domain().to_owned(),
            clock: herald::clock::Clock::System,
            health: Default::default(),
            metrics: Default::default(),
            links: None,
        })
    }

    /// Runs the workers until the returned trigger is pulled and the handle awaited.
    fn start_workers(&self) -> Workers {
        let (trigger, shutdown) = herald::shutdown::channel();
        let run = queue::run_workers(
            self.queue.clone(),
            self.store.clone(),
            self.deps(),
            self.settings.queue.clone(),
            Duration::from_secs(5),
            Default::default(),
            shutdown,
        );
        Workers {
            trigger,
            handle: tokio::spawn(run),
        }
    }

    /// One due overdue summary per address, taken for dispatch; their ids.
    async fn due(&self, emails: &[String]) -> Vec<i64> {
        let ids = self.waiting(emails).await;
        let taken = self.store.take_due(10_000, Utc::now()).await.unwrap();
        assert_eq!(taken.len(), ids.len());
        ids
    }

    /// Inserts one due overdue summary per address, left for the dispatcher; their ids.
    async fn waiting(&self, emails: &[String]) -> Vec<i64> {
        let kind = Kind::find("overdue_summary").expect("a registered kind");
        let now = Utc::now();
        let rows: Vec<NewDelivery> = emails
            .iter()
            .map(|email| NewDelivery {
                status: DeliveryStatus::Queued,
                note: None,
                kind: kind.name().to_owned(),
                user_id: format!("user-{email}"),
                dedup_key: format!("queue-test:{email}"),
                recipient: email.clone(),
                payload: kind.samples().remove(0).payload.into_json(),
                planned_for: now,
                due_at: now - chrono::Duration::minutes(1),
            })
            .collect();
        let ids = self.store.insert_deliveries(&rows).await.unwrap();
        assert_eq!(ids.len(), emails.len());
        ids
    }

    /// Waits until every one of `ids` is sent.
    async fn wait_sent(&self, ids: &[i64]) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut sent = 0;
            for id in ids {
                let d = self.store.delivery(*id).await.unwrap().unwrap();
                if d.status == DeliveryStatus::Sent {
                    sent += 1;
                }
            }
            if sent == ids.len() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{sent} of {} sent",
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the queue stores no job.
    async fn wait_empty(&self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let n = self.queue.stored_jobs().await.unwrap();
            if n == 0 {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{n} jobs still stored: {:?}",
                self.queue.keys().await.unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// How many emails the outbox holds for each recipient.
    fn outbox(&self) -> HashMap<String, usize> {
        let mut per = HashMap::new();
        let Ok(files) = std::fs::read_dir(self.dir.join("outbox")) else {
            return per;
        };
        for file in files {
            let text = std::fs::read_to_string(file.unwrap().path()).unwrap();
            let to = text
                .lines()
                .find_map(|l| l.strip_prefix("To: "))
                .expect("an email has a To header")
                .trim()
                .to_owned();
            *per.entry(to).or_insert(0) += 1;
        }
        per
    }
}

struct Workers {
    trigger: herald::shutdown::Trigger,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Workers {
    async fn stop(self) {
        self.trigger.trigger();
        self.handle.await.unwrap().unwrap();
    }
}

fn emails(prefix: &str, n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("{prefix}-{i}@example.com"))
        .collect()
}

/// Each scenario as one test per backend.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {
        mod embedded {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let home = super::home(false).await;
                assert!(home.queue.embedded_half().is_some());
                super::$scenario(&home).await;
                home.gone().await;
            })*
        }
        mod redis {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                skip_without_servers!();
                let home = super::home(true).await;
                assert!(home.queue.redis().is_some());
                super::$scenario(&home).await;
                home.gone().await;
            })*
        }
    };
}

on_both!(
    every_job_is_processed_once_and_the_queue_ends_empty,
    an_undecodable_job_is_dead_lettered_and_the_worker_carries_on,
    the_dispatcher_feeds_the_workers_from_the_state_store,
);

async fn every_job_is_processed_once_and_the_queue_ends_empty(home: &Home) {
    let to = emails("once", 25);
    let ids = home.due(&to).await;
    // Jobs of 4: six full ones and one of 1.
    home.queue.push(&ids, 4).await.unwrap();
    assert_eq!(home.queue.depth().await.unwrap(), 7);
    let workers = home.start_workers();
    home.wait_sent(&ids).await;
    home.wait_empty().await;
    workers.stop().await;
    let outbox = home.outbox();
    assert_eq!(outbox.len(), to.len(), "{outbox:?}");
    assert!(outbox.values().all(|&n| n == 1), "{outbox:?}");
    assert_eq!(home.queue.depth().await.unwrap(), 0);
    assert_eq!(home.queue.stored_jobs().await.unwrap(), 0);
    assert!(home.queue.dead_letters().await.unwrap().is_empty());
}

async fn an_undecodable_job_is_dead_lettered_and_the_worker_carries_on(home: &Home) {
    let garbage: &[u8] = b"\xff\xfe not a delivery id {";
    let counted = herald::metrics::dead_letters();
    let workers = home.start_workers();
    home.queue.push_bytes(garbage).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let letters = home.queue.dead_letters().await.unwrap();
        if !letters.is_empty() {
            assert_eq!(letters, [garbage.to_vec()]);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the job was not dead-lettered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(herald::metrics::dead_letters() > counted);
    // The worker is alive: the next job goes out.
    let ids = home.due(&emails("after", 1)).await;
    home.queue.push(&ids, 4).await.unwrap();
    home.wait_sent(&ids).await;
    home.wait_empty().await;
    workers.stop().await;
    assert_eq!(home.outbox().len(), 1);
    assert_eq!(home.queue.dead_letters().await.unwrap(), [garbage.to_vec()]);
}

async fn the_dispatcher_feeds_the_workers_from_the_state_store(home: &Home) {
    let to = emails("dispatched", 30);
    let ids = home.waiting(&to).await;
    let workers = home.start_workers();
    let (trigger, shutdown) = herald::shutdown::channel();
    let dispatcher = tokio::spawn(queue::Dispatcher::new(4).run(
        home.store.clone(),
        home.queue.clone(),
        home.settings.queue.clone(),
        herald::clock::Clock::System,
        Default::default(),
        shutdown,
    ));
    home.wait_sent(&ids).await;
    home.wait_empty().await;
    trigger.trigger();
    dispatcher.await.unwrap();
    workers.stop().await;
    let outbox = home.outbox();
    assert_eq!(outbox.len(), to.len(), "{outbox:?}");
    assert!(outbox.values().all(|&n| n == 1), "{outbox:?}");
}

/// A process died holding jobs, one of its deliveries claimed (mid-send, its lease still
/// running): the next process on the file gets the jobs back and sends every delivery once,
/// the claimed one at once rather than when its lease runs out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_gets_back_the_jobs_the_previous_process_held() {
    let home = home(false).await;
    let to = emails("restart", 6);
    let ids = home.due(&to).await;
    home.queue.push(&ids, 2).await.unwrap();
    // What the dead process left: a worker row, its jobs fetched (`Queued` under it), and one
    // delivery claimed under its name with an hour of lease.
    let gone = "herald-gone-1-deadbeef.0-0";
    let q = home.queue.name().to_owned();
    let writer = &home.store.lite().unwrap().writer;
    sqlx::query(
        "INSERT INTO Workers (id, worker_type, storage_name, last_seen, started_at)
         VALUES (?, ?, 'SqliteStorage', strftime('%s', 'now'), strftime('%s', 'now'))",
    )
    .bind(gone)
    .bind(&q)
    .execute(writer)
    .await
    .unwrap();
    let held = sqlx::query(
        "UPDATE Jobs SET status = 'Queued', lock_by = ?, lock_at = strftime('%s', 'now')
         WHERE job_type = ?",
    )
    .bind(gone)
    .bind(&q)
    .execute(writer)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(held, 3);
    let (claimed, _) = home
        .store
        .claim_many(
            &ids[..1],
            Duration::from_secs(3600),
            "example.com",
            10,
            Utc::now(),
            Some(gone),
        )
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(home.queue.depth().await.unwrap(), 0);

    // The next process: the same file, opened again.
    let Home {
        dir,
        store,
        queue,
        settings,
    } = home;
    drop(queue);
    drop(store);
    let store = open_store(&dir).await;
    let queue = Queue::embedded(&store, &settings.queue).await.unwrap();
    let home = Home {
        dir,
        store,
        queue,
        settings,
    };
    let workers = home.start_workers();
    home.wait_sent(&ids).await;
    home.wait_empty().await;
    workers.stop().await;
    let outbox = home.outbox();
    assert_eq!(outbox.len(), to.len(), "{outbox:?}");
    assert!(outbox.values().all(|&n| n == 1), "{outbox:?}");
    // Nothing of the dead worker is left, nor of this one after its shutdown.
    assert_eq!(home.queue.keys().await.unwrap(), Vec::new());
    home.gone().await;
}

/// The embedded queue's writes (pushes, fetches, heartbeats, acks) share the store's one writer
/// with the claims and the recorder: a thousand emails go out once each, the state file never
/// reported down (a `SQLITE_BUSY` would fail a job and put it back for 5 s), and the rate is
/// printed for the record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_emails_share_the_one_writer_without_a_busy_file() {
    let home = home(false).await;
    let to = emails("busy", 1000);
    let ids = home.due(&to).await;
    let health = herald::health::Health::default();
    let (trigger, shutdown) = herald::shutdown::channel();
    let started = std::time::Instant::now();
    // Jobs of 10, so that many run side by side, each with its own claim, records and ack.
    home.queue.push(&ids, 10).await.unwrap();
    let workers = tokio::spawn(queue::run_workers(
        home.queue.clone(),
        home.store.clone(),
        home.deps(),
        home.settings.queue.clone(),
        Duration::from_secs(5),
        health.clone(),
        shutdown,
    ));
    home.wait_sent(&ids).await;
    home.wait_empty().await;
    let took = started.elapsed();
    trigger.trigger();
    workers.await.unwrap().unwrap();
    eprintln!(
        "1000 emails through the embedded queue in {took:?} ({:.0}/s)",
        1000.0 / took.as_secs_f64()
    );
    assert_eq!(health.is_down(herald::health::Dependency::State), None);
    // Each claimed once: no job failed and came back.
    for id in &ids {
        assert_eq!(home.store.delivery(*id).await.unwrap().unwrap().attempts, 1);
    }
    let outbox = home.outbox();
    assert_eq!(outbox.len(), to.len());
    assert!(outbox.values().all(|&n| n == 1));
    home.gone().await;
}

/// A worker of this process that apalis stopped and replaced falls silent: the janitor puts its
/// jobs back within a few seconds of [`queue::ORPHAN_AFTER`] and deletes its row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_janitor_puts_back_the_jobs_of_a_silent_worker() {
    let home = home(false).await;
    let ids = home.due(&emails("silent", 4)).await;
    home.queue.push(&ids, 2).await.unwrap();
    let silent = "herald-silent-1-0badf00d.0-0";
    let q = home.queue.name().to_owned();
    let writer = &home.store.lite().unwrap().writer;
    let long_ago = Utc::now().timestamp() - queue::ORPHAN_AFTER.as_secs() as i64 - 1;
    sqlx::query(
        "INSERT INTO Workers (id, worker_type, storage_name, last_seen, started_at)
         VALUES (?, ?, 'SqliteStorage', ?, ?)",
    )
    .bind(silent)
    .bind(&q)
    .bind(long_ago)
    .bind(long_ago)
    .execute(writer)
    .await
    .unwrap();
    sqlx::query("UPDATE Jobs SET status = 'Queued', lock_by = ? WHERE job_type = ?")
        .bind(silent)
        .bind(&q)
        .execute(writer)
        .await
        .unwrap();
    assert_eq!(home.queue.depth().await.unwrap(), 0);
    let (trigger, shutdown) = herald::shutdown::channel();
    let janitor = tokio::spawn(queue::janitor(
        home.queue.clone(),
        home.store.clone(),
        Default::default(),
        shutdown,
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while home.queue.depth().await.unwrap() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            home.queue.keys().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    trigger.trigger();
    janitor.await.unwrap();
    assert_eq!(
        home.queue
            .live_workers(Duration::from_secs(3600))
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        home.queue.keys().await.unwrap(),
        [(format!("{q}:jobs:Pending"), 2)]
    );
    home.gone().await;
}
