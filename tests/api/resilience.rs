//! Nothing is lost when Redis dies: readiness says so, and once Redis is back every planned email
//! is delivered, even though the restarted Redis remembers nothing.

use std::{process::Stdio, time::Duration};

use serde_json::json;

use crate::helpers::*;

/// A private, throwaway Redis server on a free port, so the test can kill it.
struct PrivateRedis {
    port: u16,
    child: std::process::Child,
}

impl PrivateRedis {
    fn start(port: u16) -> PrivateRedis {
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed");
        PrivateRedis { port, child }
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server on port {} did not start", self.port);
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_redis_dies_readiness_fails_and_no_email_is_lost() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = PrivateRedis::start(port);
    redis.wait_ready().await;
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("REDIS_URL", &format!("redis://127.0.0.1:{port}/0"));
    // Rows pushed to a Redis that then lost them are pushed again after this long.
    env.set("HERALD__QUEUE__REDISPATCH_AFTER", "3s");
    let app = spawn_with(env).await;
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, 200);

    redis.kill();
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["postgres"], "ok");
    assert!(body["redis"].as_str().unwrap() != "ok", "{body}");

    // Planning goes on without Redis: PostgreSQL is the record.
    for i in 0..20 {
        app.add_user(
            &format!("r{i}@example.com"),
            "UTC",
            &[("Late", at("2026-11-20T10:00:00Z"), None)],
        )
        .await;
    }
    let (status, report) = app
        .trigger(
            "overdue_summary",
            json!({ "at": at("2026-11-23T07:00:00Z") }),
        )
        .await;
    assert_eq!(
        (status, report["planned"].as_i64()),
        (202, Some(20)),
        "{report}"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(smtp.count(), 0);

    // Redis comes back empty; every email still arrives, once.
    let _redis = PrivateRedis::start(port);
    let mail = smtp.wait_for(20, Duration::from_secs(120)).await;
    app.wait_for_status("sent", 20, Duration::from_secs(30))
        .await;
    let mut to: Vec<_> = mail.iter().map(|m| m.to().to_owned()).collect();
    to.sort();
    to.dedup();
    assert_eq!(to.len(), 20);
    let (status, _) = app.get("/readyz").await;
    assert_eq!(status, 200);
    drop(smtp);
    app.finish().await;
}
