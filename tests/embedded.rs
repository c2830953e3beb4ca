//! Herald with nothing but itself: no `DATABASE_URL`, no `REDIS_URL`. The state and the queue in
//! one SQLite file, the demo app's tables and views in that same file, the gate in the process.
//! A seeded demo gets its emails from a trigger, each user once, at a real SMTP server; a second
//! process on the same file is refused with the first one's pid; after a restart on the same
//! file, the same trigger sends nothing twice. Needs no server: it always runs.

#[path = "support/smtp_sink.rs"]
mod smtp_sink;

use std::{path::PathBuf, time::Duration};

use herald::{
    config::{Home, Settings},
    source::demo::Demo,
    startup::Application,
};
use serde_json::{Value, json};
use smtp_sink::SmtpSink;
use tokio::sync::oneshot;

const TOKEN: &str = "embedded-test-token-0123456789";
const USERS: usize = 30;

/// A folder of its own, removed at the end (also when the test fails).
struct Folder(PathBuf);

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The settings of an embedded Herald on `dir/herald.db`, sending through `smtp`.
fn settings(dir: &Folder, smtp: &SmtpSink) -> Settings {
    let file = dir.0.join("herald.toml");
    let templates = concat!(env!("CARGO_MANIFEST_DIR"), "/templates");
    std::fs::write(
        &file,
        format!(
            "[database]\nurl = \"\"\n[redis]\nurl = \"\"\n[state]\nfile = \"{}\"\n\
             [templates]\ndir = \"{templates}\"\n",
            dir.0.join("herald.db").display()
        ),
    )
    .unwrap();
    let env: Vec<(String, String)> = [
        ("SMTP_URL", smtp.url()),
        ("MAIL_FROM", "Herald <herald@example.com>".to_owned()),
        ("HERALD_API_TOKEN", TOKEN.to_owned()),
        ("HERALD_HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("HERALD__SCHEDULES__ENABLED", "false".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let settings = Settings::load_from(
        &herald::kinds::defaults(),
        Some(file.to_str().unwrap()),
        &env,
    )
    .expect("valid settings");
    assert!(
        matches!(settings.home, Home::Embedded { .. }),
        "{:?}",
        settings.home
    );
    settings
}

/// A running Herald and how to stop it.
struct Running {
    address: String,
    stop: oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start(settings: Settings) -> Running {
    let app = Application::build(settings).await.expect("the app builds");
    let address = format!("http://{}", app.address());
    let (stop, rx) = oneshot::channel();
    let handle = tokio::spawn(app.run_until_stopped(async move {
        let _ = rx.await;
    }));
    Running {
        address,
        stop,
        handle,
    }
}

impl Running {
    async fn trigger(&self, schedule: &str) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}/api/schedules/{schedule}/trigger", self.address))
            .bearer_auth(TOKEN)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 202);
        r.json().await.unwrap()
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = reqwest::Client::new()
            .get(format!("{}{path}", self.address))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    async fn finish(self) {
        let _ = self.stop.send(());
        self.handle.await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn a_seeded_demo_gets_its_emails_once_from_one_file_across_a_restart() {
    let dir = Folder(
        std::env::temp_dir().join(format!("herald-embedded-{}", uuid::Uuid::new_v4().simple())),
    );
    std::fs::create_dir_all(&dir.0).unwrap();
    let smtp = SmtpSink::recording().await;
    let db = dir.0.join("herald.db");

    // `herald seed`'s path: the demo's tables and views in the state file.
    let demo = Demo::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    herald::seed::seed(&demo, USERS, 7, chrono::Utc::now())
        .await
        .unwrap();
    demo.close().await;

    let first = start(settings(&dir, &smtp)).await;
    // One process per file: a second one is refused, naming the first.
    let second = Application::build(settings(&dir, &smtp)).await.unwrap_err();
    let second = format!("{second:#}");
    assert!(
        second.contains(&format!("pid {}", std::process::id())) && second.contains("herald.db"),
        "{second}"
    );
    // Readiness and metrics name what this home has: the file and its queue, not PostgreSQL and
    // Redis.
    let (status, readyz) = first.get("/readyz").await;
    let readyz: Value = serde_json::from_str(&readyz).unwrap();
    assert_eq!(status, 200, "{readyz}");
    assert_eq!(readyz["home"], "embedded", "{readyz}");
    assert_eq!(readyz["state_file"], "ok", "{readyz}");
    assert_eq!(readyz["queue"], "ok", "{readyz}");
    assert!(
        readyz.get("postgres").is_none() && readyz.get("redis").is_none(),
        "{readyz}"
    );
    let (_, metrics) = first.get("/metrics").await;
    for dependency in ["state_file", "queue"] {
        let up = format!("herald_up{{dependency=\"{dependency}\"}} 1");
        assert!(metrics.contains(&up), "{up} missing:\n{metrics}");
    }
    assert!(!metrics.contains("dependency=\"postgres\""), "{metrics}");

    // Seeded users each have overdue tasks: one summary each.
    let report = first.trigger("overdue_summary").await;
    let planned = report["planned"].as_u64().unwrap();
    assert!(planned > 0 && planned <= USERS as u64, "{report}");
    smtp.wait_for_total(planned, Duration::from_secs(30)).await;
    first.finish().await;

    // Restarted on the same file: the same trigger finds everything planned and sends nothing.
    let again = start(settings(&dir, &smtp)).await;
    let report = again.trigger("overdue_summary").await;
    assert_eq!(report["planned"], 0, "{report}");
    assert_eq!(
        report["already_planned"].as_u64(),
        Some(planned),
        "{report}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    again.finish().await;
    let counts = smtp.counts();
    assert_eq!(smtp.total(), planned, "every email once");
    assert_eq!(counts.duplicates(), 0);
}
