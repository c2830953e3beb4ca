//! The dashboard in a real browser: Debian's headless Chromium, driven through chromedriver
//! (WebDriver, with fantoccini), against a running Herald with real deliveries and a real SMTP
//! server. It logs in, filters the failed set to one error class, retries one delivery and sees
//! it sent; requests without the cookie or without the CSRF token are refused. Each page's
//! screenshot goes to `target/screenshots/`.
//!
//! Without `chromium` and `chromedriver` (`apt-get install -y chromium chromium-driver`) the
//! browser test prints a loud message and passes, unless `HERALD_REQUIRE_BROWSER=1` (CI sets it).
//! Without PostgreSQL or Redis every test here is skipped as loudly, unless
//! `HERALD_REQUIRE_SERVERS=1` (tests/support/shared_servers.rs).

#[macro_use]
#[path = "support/shared_servers.rs"]
mod shared_servers;

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};
use helpers::{Env, SmtpServer, TOKEN, spawn_with};
use tokio::process::{Child, Command};

/// Where the browser's binaries are, or why the test cannot run.
fn browser() -> Result<(PathBuf, PathBuf), String> {
    let find = |var: &str, names: &[&str]| -> Option<PathBuf> {
        if let Ok(p) = std::env::var(var) {
            return Some(PathBuf::from(p)).filter(|p| p.is_file());
        }
        let path = std::env::var("PATH").unwrap_or_default();
        names.iter().find_map(|n| {
            std::env::split_paths(&path)
                .map(|d| d.join(n))
                .find(|p| p.is_file())
        })
    };
    let chromium = find("CHROMIUM", &["chromium", "chromium-browser"]);
    let driver = find("CHROMEDRIVER", &["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Ok((c, d)),
        (c, d) => Err(format!(
            "chromium: {}, chromedriver: {}",
            c.map_or("missing".into(), |p| p.display().to_string()),
            d.map_or("missing".into(), |p| p.display().to_string())
        )),
    }
}

/// `None` (after a loud message) when the browser is missing and not required.
fn browser_or_skip() -> Option<(PathBuf, PathBuf)> {
    match browser() {
        Ok(found) => Some(found),
        Err(why) => {
            let required = std::env::var("HERALD_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
            let banner = "#".repeat(78);
            // Straight to the process's stderr: the test harness captures eprintln! of a
            // passing test, and this must be seen.
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!(
                    "\n{banner}\n# SKIPPED: the dashboard's browser test needs Chromium ({why}).\n\
                     # To run it: apt-get install -y chromium chromium-driver (or set CHROMIUM and\n\
                     # CHROMEDRIVER to their paths), then HERALD_REQUIRE_BROWSER=1 cargo test --test browser\n{banner}\n"
                )
                .as_bytes(),
            );
            assert!(
                !required,
                "HERALD_REQUIRE_BROWSER=1 but the browser test cannot run ({why}): install them \
                 with apt-get install -y chromium chromium-driver, or set CHROMIUM and CHROMEDRIVER \
                 to their paths"
            );
            None
        }
    }
}

/// chromedriver on a free port, killed when dropped.
struct Driver {
    url: String,
    child: Child,
    /// The TMPDIR of chromedriver and the Chromium it starts, removed after them (Chromium
    /// outlives a killed driver and leaves its `org.chromium.Chromium.*` folders behind).
    tmp: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // chromedriver leads a process group of its own (`process_group(0)`), which the Chromium
        // it starts joins: end the whole group, then remove their TMPDIR once nothing writes
        // there any more. Best effort: the test's verdict is made.
        // `-s KILL -- -PID`, never `-KILL -PID`: Debian's kill (procps) keeps only the first
        // digit of the latter's "-PID", so -4852 signals group 4 and -1999 is kill(-1): every
        // process on the machine (a CI run died so). Checked under strace.
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-s", "KILL", "--", &format!("-{pid}")])
                .stderr(Stdio::null())
                .status();
        }
        for _ in 0..50 {
            if std::fs::remove_dir_all(&self.tmp).is_ok() || !self.tmp.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

async fn start_driver(driver: &Path) -> Driver {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = std::env::temp_dir().join(format!("herald-browser-{port}"));
    std::fs::create_dir_all(&tmp).unwrap();
    let child = Command::new(driver)
        .arg(format!("--port={port}"))
        .env("TMPDIR", &tmp)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("cannot start chromedriver");
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{url}/status")).send().await
            && r.status().is_success()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "chromedriver did not answer on {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Driver { url, child, tmp }
}

async fn open_browser(chromium: &Path, driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1400", "--no-first-run", "--disable-extensions"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("cannot open a Chromium session through chromedriver")
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// Clicks the element `css` names.
async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Types `keys` into the field `css` names.
async fn fill(c: &Client, css: &str, keys: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(keys)
        .await
        .unwrap();
}

async fn text(c: &Client, css: &str) -> String {
    match c.wait().for_element(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap(),
        Err(e) => panic!("no {css} on {:?}: {e}", c.current_url().await),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_filters_the_failed_set_retries_one_and_sees_it_sent() {
    skip_without_servers!();
    let Some((chromium, driver)) = browser_or_skip() else {
        return;
    };
    let smtp = SmtpServer::start().await;
    // gone@ refuses once (550 for policy: permanent, and not a refusal of the mailbox, which
    // would suppress the address), flaky@ answers 451 to every try (transient, failed after its
    // retries), ok@ accepts.
    smtp.script(&[
        ("gone@example.com", &["550 5.7.1 No such user here"]),
        ("flaky@example.com", &["451 a", "451 b", "451 c", "451 d"]),
    ]);
    let mut env = Env::new(&smtp);
    env.set(
        "HERALD__QUEUE__RETRY_DELAYS",
        r#"["100ms", "100ms", "100ms"]"#,
    );
    let app = spawn_with(env).await;
    for email in ["gone@example.com", "flaky@example.com", "ok@example.com"] {
        app.add_late_user(email).await;
    }
    app.trigger_overdue().await;
    app.wait_for_status("failed", 2, Duration::from_secs(60))
        .await;
    smtp.wait_for(1, Duration::from_secs(30)).await;
    let gone: i64 =
        sqlx::query_scalar("SELECT id FROM deliveries WHERE recipient = 'gone@example.com'")
            .fetch_one(app.store.pg())
            .await
            .unwrap();
    let flaky: i64 =
        sqlx::query_scalar("SELECT id FROM deliveries WHERE recipient = 'flaky@example.com'")
            .fetch_one(app.store.pg())
            .await
            .unwrap();

    let driver = start_driver(&driver).await;
    let c = open_browser(&chromium, &driver).await;
    let base = &app.address;

    // Not logged in: the overview sends the browser to the login form.
    c.goto(&format!("{base}/ui")).await.unwrap();
    c.wait().for_element(Locator::Css("#token")).await.unwrap();
    assert!(c.current_url().await.unwrap().path().ends_with("/ui/login"));
    shot(&c, "login").await;
    fill(&c, "#token", "not the token").await;
    click(&c, "#login").await;
    assert!(
        text(&c, "#login-error")
            .await
            .contains("not HERALD_API_TOKEN")
    );
    fill(&c, "#token", TOKEN).await;
    click(&c, "#login").await;

    // The overview: one sent, two failed in the last hour, and the SMTP provider sending.
    assert_eq!(text(&c, "#sent-hour").await, "1");
    assert_eq!(text(&c, "#failed-hour").await, "2");
    let providers = text(&c, "#providers").await;
    assert!(
        providers.contains("smtp") && providers.contains("sending"),
        "{providers}"
    );
    assert!(text(&c, "#schedules").await.contains("overdue_summary"));
    shot(&c, "overview").await;

    // The failed set, filtered to one error class.
    c.goto(&format!("{base}/ui/failed")).await.unwrap();
    assert!(text(&c, "#count").await.starts_with("2 failed"));
    c.find(Locator::Css("#f-class"))
        .await
        .unwrap()
        .select_by_value("permanent")
        .await
        .unwrap();
    click(&c, "#apply").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !c
        .current_url()
        .await
        .unwrap()
        .query()
        .is_some_and(|q| q.contains("class=permanent"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the filter did not apply"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(text(&c, "#count").await.starts_with("1 failed"));
    let table = text(&c, "#failed").await;
    assert!(
        table.contains("gone@example.com") && !table.contains("flaky@example.com"),
        "{table}"
    );
    shot(&c, "failed").await;

    // Retry it; the SMTP server accepts this time.
    click(&c, &format!("#retry-{gone}")).await;
    let done = text(&c, "#done").await;
    assert!(done.contains("queued 1 again"), "{done}");
    let received = smtp.wait_for(2, Duration::from_secs(30)).await;
    assert!(received.iter().any(|m| m.to() == "gone@example.com"));

    // The delivery page says sent, with both attempts and the rendered email.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        c.goto(&format!("{base}/ui/deliveries/{gone}"))
            .await
            .unwrap();
        if text(&c, "#status").await == "sent" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "delivery {gone} is not sent"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let attempts = text(&c, "#attempts").await;
    assert!(
        attempts.contains("permanent") && attempts.contains("550") && attempts.contains("sent"),
        "{attempts}"
    );
    assert!(!text(&c, "#subject").await.is_empty());
    c.find(Locator::Css("iframe.email")).await.unwrap();
    shot(&c, "delivery").await;

    // Search, schedules and a dry run (nothing is queued by it).
    c.goto(&format!("{base}/ui/deliveries?q=gone%40example.com"))
        .await
        .unwrap();
    assert!(text(&c, "#results").await.contains(&gone.to_string()));
    shot(&c, "search").await;
    c.goto(&format!("{base}/ui/schedules")).await.unwrap();
    c.wait()
        .for_element(Locator::Css("#dry-run-overdue_summary"))
        .await
        .unwrap();
    shot(&c, "schedules").await;
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
        .fetch_one(app.store.pg())
        .await
        .unwrap();
    click(&c, "#dry-run-overdue_summary").await;
    let report = text(&c, "#plan-report").await;
    assert!(report.contains("3 would be sent"), "{report}");
    assert!(text(&c, "#recipients").await.contains("ok@example.com"));
    shot(&c, "dry-run").await;
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries")
        .fetch_one(app.store.pg())
        .await
        .unwrap();
    assert_eq!(before, after, "a dry run queues nothing");

    // Without the cookie, or with it but without the CSRF token, a POST is refused.
    let session = c
        .get_named_cookie("herald_session")
        .await
        .unwrap()
        .value()
        .to_owned();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let form = format!("action=retry%3A{flaky}");
    let r = http
        .post(format!("{base}/ui/failed"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("{form}&csrf=whatever"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "no cookie");
    for body in [form.clone(), format!("{form}&csrf=0123abcd")] {
        let r = http
            .post(format!("{base}/ui/failed"))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", format!("herald_session={session}"))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{body}");
        assert!(r.text().await.unwrap().contains("CSRF"));
    }
    let r = http.get(format!("{base}/ui/failed")).send().await.unwrap();
    assert_eq!(
        r.status(),
        303,
        "a GET without the cookie goes to the login form"
    );
    assert_eq!(r.headers()["location"], "/ui/login");
    let status: String = sqlx::query_scalar("SELECT status FROM deliveries WHERE id = $1")
        .bind(flaky)
        .fetch_one(app.store.pg())
        .await
        .unwrap();
    assert_eq!(status, "failed", "the refused retries changed nothing");

    // Logging out ends the session in the browser.
    c.goto(&format!("{base}/ui")).await.unwrap();
    click(&c, "header form button").await;
    c.wait().for_element(Locator::Css("#token")).await.unwrap();

    c.close().await.unwrap();
    drop(driver);
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_closed_without_a_token() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("HERALD_API_TOKEN", "");
    let app = spawn_with(env).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for path in ["/ui", "/ui/login", "/ui/failed"] {
        let r = http
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 403, "{path}");
        assert!(r.text().await.unwrap().contains("set HERALD_API_TOKEN"));
    }
    let r = http
        .post(format!("{}/ui/login", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_retry_spreads_the_failures_at_the_configured_rate() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    smtp.script(&[("*", &["550 5.1.1 No such user here"; 12])]);
    let mut env = Env::new(&smtp);
    env.set("HERALD__UI__RETRY_PER_SECOND", "2");
    let app = spawn_with(env).await;
    for i in 0..6 {
        app.add_late_user(&format!("u{i}@example.com")).await;
    }
    app.trigger_overdue().await;
    app.wait_for_status("failed", 6, Duration::from_secs(60))
        .await;
    // What the retry wrote, not what was sent since: the workers fail them again meanwhile.
    let c = login(&app.address).await;
    let r = c
        .http
        .post(format!("{}/ui/failed", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", &c.cookie)
        .body(format!("action=retry_all&csrf={}", c.csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.contains("queued+6+again"), "{location}");
    // Two per second: due at +0, +0, +1, +1, +2, +2 seconds from the first.
    let offsets: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM due_at - min(due_at) OVER ())::float8 FROM deliveries ORDER BY due_at, id",
    )
    .fetch_all(app.store.pg())
    .await
    .unwrap();
    assert_eq!(offsets, vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0]);
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trigger_button_keeps_the_apis_rules_and_a_purge_wants_confirming() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    smtp.script(&[("gone@example.com", &["550 5.1.1 No such user here"])]);
    let app = spawn_with(Env::new(&smtp)).await;
    app.add_late_user("gone@example.com").await;
    let c = login(&app.address).await;
    let post = |path: &str, body: String| {
        c.http
            .post(format!("{}{path}", app.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("cookie", &c.cookie)
            .body(body)
            .send()
    };
    let count = |sql: &'static str| {
        let pool = app.store.pg().clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let csrf = &c.csrf;
    let trigger = "/ui/schedules/overdue_summary/trigger";

    // A future instant is refused unless it is a dry run; nothing is queued either way.
    let r = post(trigger, format!("csrf={csrf}&at=2099-01-01T00%3A00"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("is in the future"));
    let r = post(
        "/ui/schedules/overdue_summary/dry-run",
        format!("csrf={csrf}&at=2099-01-01T00%3A00"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("gone@example.com"));
    assert_eq!(count("SELECT count(*) FROM deliveries").await, 0);
    // Without the CSRF token, nothing either.
    let r = post(trigger, "at=2026-11-23T07%3A00".into()).await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(count("SELECT count(*) FROM deliveries").await, 0);
    let r = post("/ui/schedules/nope/trigger", format!("csrf={csrf}"))
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // A trigger for everyone asks first, and queues nothing until confirmed.
    let r = post(trigger, format!("csrf={csrf}&at=2026-11-23T07%3A00"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(
        page.contains("id=\"confirm-trigger\"") && page.contains("Send 1 emails now"),
        "{page}"
    );
    assert_eq!(count("SELECT count(*) FROM deliveries").await, 0);
    // Confirmed, it is a test send, keyed manual:, and twice is once.
    for _ in 0..2 {
        let r = post(
            trigger,
            format!("csrf={csrf}&at=2026-11-23T07%3A00&confirm=yes"),
        )
        .await
        .unwrap();
        assert_eq!(r.status(), 200);
    }
    assert_eq!(
        count("SELECT count(*) FROM deliveries WHERE dedup_key LIKE 'manual:overdue_summary:%'")
            .await,
        1
    );
    app.wait_for_status("failed", 1, Duration::from_secs(60))
        .await;

    // A purge needs its confirmation tick.
    let r = post("/ui/failed", format!("csrf={csrf}&action=purge_all"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(app.count_status("failed").await, 1);
    let r = post(
        "/ui/failed",
        format!("csrf={csrf}&action=purge_all&confirm=yes&class=permanent"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 303);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("purged+1")
    );
    assert_eq!(count("SELECT count(*) FROM deliveries").await, 0);
    drop(smtp);
    app.finish().await;
}

/// A logged-in HTTP client: its cookie header and CSRF token.
struct LoggedIn {
    http: reqwest::Client,
    cookie: String,
    csrf: String,
}

impl LoggedIn {
    /// A dashboard page's HTML, with the session's cookie.
    async fn page(&self, url: &str) -> String {
        self.http
            .get(url)
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// A form posted with the session's cookie (the body says whether it carries the token).
    async fn post_form(&self, url: &str, body: String) -> reqwest::Response {
        self.http
            .post(url)
            .header("cookie", &self.cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap()
    }
}

async fn login(base: &str) -> LoggedIn {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http
        .post(format!("{base}/ui/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attr), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_owned();
    let page = http
        .get(format!("{base}/ui/failed"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("a CSRF field")
        .to_owned();
    LoggedIn { http, cookie, csrf }
}

/// The page an email's unsubscribe link opens, in a real browser: it shows the buttons and
/// changes nothing until one is pressed; the first opts the user out of that kind only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unsubscribe_page_opts_out_of_one_kind_when_its_button_is_pressed() {
    skip_without_servers!();
    let Some((chromium, driver)) = browser_or_skip() else {
        return;
    };
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("HERALD_PUBLIC_URL", "https://herald.example.com");
    env.set(
        "HERALD_UNSUBSCRIBE_KEY",
        "browser-unsubscribe-key-0123456789abcdef",
    );
    let app = spawn_with(env).await;
    let ada = app.add_late_user("ada@example.com").await.to_string();
    let links = herald::unsubscribe::Links::from_settings(&app.env.settings()).unwrap();
    let link = links.url(&ada, "weekly_report", chrono::Utc::now());
    let path = link.strip_prefix("https://herald.example.com").unwrap();

    let driver = start_driver(&driver).await;
    let c = open_browser(&chromium, &driver).await;
    c.goto(&format!("{}{path}", app.address)).await.unwrap();
    let page = text(&c, "body").await;
    assert!(
        page.contains("Stop getting emails about tasks completed"),
        "{page}"
    );
    shot(&c, "unsubscribe").await;
    assert!(
        app.store.opt_outs(&ada).await.unwrap().is_empty(),
        "a GET opted out"
    );

    click(&c, "#this-kind").await;
    c.wait()
        .for_element(Locator::XPath("//h1[text()='Unsubscribed']"))
        .await
        .expect("the page after the button says Unsubscribed");
    assert_eq!(app.store.opt_outs(&ada).await.unwrap(), ["weekly_report"]);

    c.close().await.unwrap();
    drop(driver);
    drop(smtp);
    app.finish().await;
}

/// The suppression list on the dashboard: listed with its reason and the rates, lifted with
/// the row's button (a form with the session's CSRF token).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_sees_a_suppressed_address_and_lifts_it() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_with(Env::new(&smtp)).await;
    app.store
        .suppress(
            "Gone@Example.com",
            "bounced",
            "smtp 550 5.1.1",
            Some("550 5.1.1 User unknown"),
            None,
        )
        .await
        .unwrap();
    let base = &app.address;
    let s = login(base).await;
    let page = s.page(&format!("{base}/ui/suppressions")).await;
    assert!(page.contains("gone@example.com"), "{page}");
    assert!(
        page.contains("smtp 550 5.1.1") && page.contains("24 hours"),
        "{page}"
    );
    // The overview shows the same rates table.
    let overview = s.page(&format!("{base}/ui")).await;
    assert!(
        overview.contains("Bounces and complaints") && overview.contains("<td>7 days</td>"),
        "{overview}"
    );

    // Without the CSRF token: refused, nothing lifted.
    let r = s
        .post_form(
            &format!("{base}/ui/suppressions"),
            "address=gone%40example.com".into(),
        )
        .await;
    assert_eq!(r.status(), 403);
    assert!(
        app.store
            .suppression("gone@example.com")
            .await
            .unwrap()
            .is_some()
    );

    let r = s
        .post_form(
            &format!("{base}/ui/suppressions"),
            format!("csrf={}&address=gone%40example.com", s.csrf),
        )
        .await;
    assert_eq!(r.status(), 303);
    assert_eq!(
        r.headers()["location"],
        "/ui/suppressions?lifted=gone%40example.com"
    );
    assert!(
        app.store
            .suppression("gone@example.com")
            .await
            .unwrap()
            .is_none()
    );
    drop(smtp);
    app.finish().await;
}

/// What an operator coming from Sidekiq Web, Horizon or bull-board looks for: the overview
/// refreshes itself and shows waits and lag, its chart's label is whole at 1,000s a minute,
/// a schedule pauses from the dashboard (and a disabled one shows no next fire), the "At" field
/// says UTC and takes text, the Deliveries page lists by status before any search, and a failed
/// delivery's own page retries and deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_pauses_a_schedule_browses_by_status_and_retries_from_a_delivery_page() {
    skip_without_servers!();
    let Some((chromium, driver)) = browser_or_skip() else {
        return;
    };
    let smtp = SmtpServer::start().await;
    smtp.script(&[
        ("gone@example.com", &["550 5.7.1 No such user here"]),
        ("lost@example.com", &["550 5.7.1 No such user here"]),
    ]);
    let app = spawn_with(Env::new(&smtp)).await;
    for email in ["gone@example.com", "lost@example.com", "ok@example.com"] {
        app.add_late_user(email).await;
    }
    app.trigger_overdue().await;
    app.wait_for_status("failed", 2, Duration::from_secs(60))
        .await;
    app.wait_for_status("sent", 1, Duration::from_secs(60))
        .await;
    let id = |email: &'static str| {
        let pool = app.store.pg().clone();
        async move {
            sqlx::query_scalar::<_, i64>("SELECT id FROM deliveries WHERE recipient = $1")
                .bind(email)
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let (gone, lost) = (id("gone@example.com").await, id("lost@example.com").await);
    // A busy minute: 1,942 more sent in it, so the chart's top label is four digits wide.
    sqlx::query(
        "INSERT INTO deliveries (kind, user_id, dedup_key, recipient, payload, planned_for, due_at, status, sent_at, updated_at)
         SELECT 'overdue_summary', 'bulk', 'bulk:' || g, 'bulk@example.com', '{}', now(), now(), 'sent', now(), now()
         FROM generate_series(1, 1942) g",
    )
    .execute(app.store.pg())
    .await
    .unwrap();

    let driver = start_driver(&driver).await;
    let c = open_browser(&chromium, &driver).await;
    let base = &app.address;
    c.goto(&format!("{base}/ui/login")).await.unwrap();
    fill(&c, "#token", TOKEN).await;
    click(&c, "#login").await;

    // The overview: waits and lag, the whole chart label, auto-refresh on a click.
    assert!(text(&c, "#lag").await.ends_with(" s"), "a lag in seconds");
    text(&c, "#oldest-due").await;
    let label_x = c
        .execute(
            "const t = [...document.querySelectorAll('svg.chart text')].find(e => e.textContent.endsWith('/min')); \
             return [t.textContent, t.getBBox().x];",
            vec![],
        )
        .await
        .unwrap();
    assert!(
        label_x[0].as_str().unwrap().starts_with("19"),
        "{label_x:?}"
    );
    assert!(
        label_x[1].as_f64().unwrap() >= 0.0,
        "the label is clipped: {label_x:?}"
    );
    assert!(text(&c, "#schedules").await.contains("Missed"));
    let overview = text(&c, "#overview-overdue_summary").await;
    assert!(overview.contains("none: disabled"), "{overview}");
    assert!(
        overview.contains("1 planned") || overview.contains("3 planned"),
        "the trigger shows: {overview}"
    );
    click(&c, "#refresh-5").await;
    c.wait()
        .for_element(Locator::Css("#refresh b"))
        .await
        .unwrap();
    assert!(
        c.source()
            .await
            .unwrap()
            .contains(r#"<meta http-equiv="refresh" content="5">"#)
    );
    shot(&c, "overview-refresh").await;

    // Schedules: a disabled schedule has no next fire; pause and resume; the At field.
    c.goto(&format!("{base}/ui/schedules")).await.unwrap();
    assert!(
        text(&c, "#next-overdue_summary").await.contains("disabled"),
        "a disabled schedule shows no next fire"
    );
    assert!(
        text(&c, "#last-trigger-overdue_summary")
            .await
            .contains("3 planned")
    );
    let at = c.find(Locator::Css("#at-overdue_summary")).await.unwrap();
    assert_eq!(at.attr("type").await.unwrap().as_deref(), Some("text"));
    assert!(
        text(&c, "#schedule-overdue_summary")
            .await
            .contains("At, in UTC")
    );
    click(&c, "#pause-overdue_summary").await;
    assert!(
        text(&c, "#paused-overdue_summary")
            .await
            .contains("paused since")
    );
    assert!(
        app.store
            .schedule_pause("overdue_summary")
            .await
            .unwrap()
            .is_some()
    );
    shot(&c, "schedule-paused").await;
    click(&c, "#resume-overdue_summary").await;
    c.wait()
        .for_element(Locator::Css("#pause-overdue_summary"))
        .await
        .unwrap();
    assert!(
        app.store
            .schedule_pause("overdue_summary")
            .await
            .unwrap()
            .is_none()
    );

    // Deliveries before any search: the recent list (the busy minute's); then the failed one.
    c.goto(&format!("{base}/ui/deliveries")).await.unwrap();
    assert!(text(&c, "#results").await.contains("bulk@example.com"));
    click(&c, "#list-failed").await;
    c.wait()
        .for_element(Locator::Css("#list-recent"))
        .await
        .unwrap();
    let failed = text(&c, "#results").await;
    assert!(
        failed.contains("gone@example.com") && !failed.contains("ok@example.com"),
        "{failed}"
    );
    shot(&c, "deliveries-failed").await;

    // A failed delivery's page retries it (the server accepts this time) ...
    c.goto(&format!("{base}/ui/deliveries/{gone}"))
        .await
        .unwrap();
    click(&c, "#retry").await;
    assert!(text(&c, "#done").await.contains("Queued again"));
    smtp.wait_for(2, Duration::from_secs(30)).await;
    // ... and deletes another, once confirmed.
    c.goto(&format!("{base}/ui/deliveries/{lost}"))
        .await
        .unwrap();
    click(&c, "#confirm-delete").await;
    click(&c, "#delete").await;
    assert!(
        text(&c, "#done")
            .await
            .contains(&format!("Deleted delivery {lost}"))
    );
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM deliveries WHERE id = $1")
        .bind(lost)
        .fetch_one(app.store.pg())
        .await
        .unwrap();
    assert_eq!(left, 0);

    c.close().await.unwrap();
    drop(driver);
    drop(smtp);
    app.finish().await;
}
