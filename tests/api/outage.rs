//! A provider that is down opens a circuit: nothing is failed while it is away, and everything
//! that waited is sent once it is back.

use std::time::Duration;

use crate::{helpers::*, ports::HeldPort};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_smtp_server_refusing_connections_for_30_s_loses_and_fails_nothing() {
    // Nothing listens there, and no other test's server can take the port while it is held.
    let held = HeldPort::any();
    let port = held.port();
    let placeholder = SmtpServer::start().await;
    let mut env = Env::new(&placeholder);
    drop(placeholder);
    // Every connection is refused.
    env.set("SMTP_URL", &format!("smtp://127.0.0.1:{port}?tls=none"));
    let app = spawn_with(env).await;
    for i in 0..10 {
        app.add_late_user(&format!("o{i}@example.com")).await;
    }
    app.trigger_overdue().await;

    // Far longer than the 2 + 4 + 8 s of retries: still nothing failed.
    let down_until = tokio::time::Instant::now() + Duration::from_secs(30);
    while tokio::time::Instant::now() < down_until {
        assert_eq!(app.count_status("failed").await, 0);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let (_, ready) = app.get("/readyz").await;
    assert!(
        ready["providers"]["smtp"]
            .as_str()
            .unwrap()
            .contains("unreachable"),
        "{ready}"
    );

    let smtp = SmtpServer::start_on(held.release()).await;
    smtp.wait_for(10, Duration::from_secs(30)).await;
    app.wait_for_status("sent", 10, Duration::from_secs(10))
        .await;
    assert_eq!(app.count_status("failed").await, 0);
    // Each user got exactly one email: a copy is counted, not folded away.
    let mut per_user: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for m in smtp.messages() {
        *per_user.entry(m.to().to_owned()).or_default() += 1;
    }
    for i in 0..10 {
        let to = format!("o{i}@example.com");
        assert_eq!(per_user.get(&to), Some(&1), "{to}: {per_user:?}");
    }
    assert_eq!(per_user.len(), 10, "{per_user:?}");
    drop(smtp);
    app.finish().await;
}
