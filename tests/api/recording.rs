//! Outcomes reach PostgreSQL whatever happens on the way (issue 19, items 4 and 6): a
//! PostgreSQL outage while sends are in flight, and a job whose worker apalis stops mid-send.
//! Copies are counted where the emails arrive, at the SMTP server, message by message.

use std::{net::ToSocketAddrs, time::Duration};

use crate::{
    helpers::*,
    servers::PrivateRedis,
    tcp_proxy::{Cut, TcpProxy},
};

/// `url` with its `host:port` replaced by `address`, and the address it named.
fn through(url: &str, address: &str) -> (String, std::net::SocketAddr) {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (user, rest) = rest.rsplit_once('@').map_or(("", rest), |(u, r)| (u, r));
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let upstream = host
        .to_socket_addrs()
        .expect("the PostgreSQL address resolves")
        .next()
        .unwrap();
    let user = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    (format!("{scheme}://{user}{address}/{path}"), upstream)
}

/// Issue 19, item 4: PostgreSQL becomes unreachable for 5 s (every connection dropped, new
/// ones reset) once a fire of 3,000 emails is under way. The outcomes of the sends in flight
/// are recorded once it is back, before their leases (10 s, as in the lifecycle test) run
/// out: no email arrives twice and none is lost.
/// Guarded: the code under test could block the runtime, and with it any deadline of the test.
#[test]
fn a_postgres_outage_of_5_s_mid_fire_makes_no_copy() {
    skip_without_servers!();
    let _watchdog = Watchdog::new(
        "a_postgres_outage_of_5_s_mid_fire_makes_no_copy",
        Duration::from_secs(180),
    );
    guarded_runtime().block_on(a_postgres_outage_of_5_s_mid_fire_makes_no_copy_run());
}

async fn a_postgres_outage_of_5_s_mid_fire_makes_no_copy_run() {
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    let direct = database_url(&env.database);
    let (_, upstream) = through(&direct, "unused:0");
    let proxy = TcpProxy::start(upstream).await;
    let (proxied, _) = through(&direct, &proxy.address());
    // Herald reaches PostgreSQL through the proxy only; the test reads it directly.
    env.set("DATABASE_URL", &proxied);
    env.set("HERALD__QUEUE__LEASE", "10s");
    env.set("HERALD__MAIL__TIMEOUT", "6s");
    let app = spawn_with(env).await;
    let n = 3_000;
    app.add_late_users("pg", n).await;
    let db = sqlx::PgPool::connect(&direct).await.unwrap();
    // Each message waits 10 ms for its `250`: the fire lasts a few seconds.
    smtp.set_delay(Duration::from_millis(10));
    app.trigger_overdue().await;
    smtp.wait_for_total(n as u64 / 5, Duration::from_secs(120))
        .await;
    let at_cut = smtp.total();
    proxy.cut(Duration::from_secs(5), Cut::Reset).await;
    let after_cut = smtp.total();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    loop {
        let sent: i64 =
            sqlx::query_scalar("SELECT count(*) FROM herald.deliveries WHERE status = 'sent'")
                .fetch_one(&db)
                .await
                .unwrap();
        if sent == n as i64 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {sent} of {n} deliveries sent 180 s after the outage"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A copy sent after a lease ran out would come after the record of the first: wait past
    // one lease before counting.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let counts = smtp.counts();
    let copies: Vec<_> = counts
        .per_delivery
        .iter()
        .filter(|(_, c)| **c > 1)
        .collect();
    assert_eq!(
        counts.per_delivery.len(),
        n,
        "lost emails ({at_cut} arrived before the outage, {after_cut} by its end)"
    );
    assert_eq!(
        counts.duplicates(),
        0,
        "{} copies after a 5 s PostgreSQL outage ({at_cut} arrived before it, {after_cut} by its end): {copies:?}",
        counts.duplicates()
    );
    db.close().await;
    app.finish().await;
}

/// Issue 19, item 6: Redis goes away while an email is at the SMTP server (held 3 s before its
/// `250`). apalis stops the worker and drops the job's handler; the job's own task still
/// records the answer, so the email arrives once and its row is `sent` with one attempt, even
/// though the lease (10 s) would have sent it again.
/// Guarded: the code under test could block the runtime, and with it any deadline of the test.
#[test]
fn a_send_under_way_when_its_worker_stops_is_recorded_not_sent_again() {
    skip_without_servers!();
    skip_without_programs!("redis-server");
    let _watchdog = Watchdog::new(
        "a_send_under_way_when_its_worker_stops_is_recorded_not_sent_again",
        Duration::from_secs(180),
    );
    guarded_runtime()
        .block_on(a_send_under_way_when_its_worker_stops_is_recorded_not_sent_again_run());
}

async fn a_send_under_way_when_its_worker_stops_is_recorded_not_sent_again_run() {
    let mut redis = tokio::task::block_in_place(PrivateRedis::start);
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("REDIS_URL", &redis.url());
    env.set("HERALD__QUEUE__LEASE", "10s");
    env.set("HERALD__MAIL__TIMEOUT", "6s");
    let app = spawn_with(env).await;
    app.add_late_user("held@example.com").await;
    smtp.set_delay(Duration::from_secs(3));
    let id = app.trigger_overdue().await[0];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while smtp.counts().offered("held@example.com") == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the email never reached the SMTP server"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    smtp.set_delay(Duration::ZERO);
    redis.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    tokio::task::block_in_place(|| redis.resume());

    app.wait_for_status("sent", 1, Duration::from_secs(60))
        .await;
    // Past the lease: a send thrown away would have gone again by now.
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(
        smtp.counts().recipient("held@example.com"),
        1,
        "the email arrived more than once: its answer was thrown away with the job"
    );
    let attempts = app.store.attempts(id).await.unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:?}");
    assert_eq!(app.count_status("sent").await, 1);
    drop(smtp);
    app.finish().await;
}
