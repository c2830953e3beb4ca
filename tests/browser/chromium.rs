//! The browser tests' harness: finding Chromium and chromedriver (or why they cannot run), a
//! driver in a process group of its own that is ended whole, a headless browser on it, page
//! helpers (screenshots, clicks, text), and a logged-in HTTP client for the dashboard's forms.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use fantoccini::{Client, ClientBuilder, Locator};
use tokio::process::{Child, Command};

use crate::helpers::TOKEN;

/// Where the browser's binaries are, or why the test cannot run.
pub fn browser() -> Result<(PathBuf, PathBuf), String> {
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
pub fn browser_or_skip() -> Option<(PathBuf, PathBuf)> {
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
pub struct Driver {
    pub url: String,
    pub child: Child,
    /// The TMPDIR of chromedriver and the Chromium it starts, removed after them (Chromium
    /// outlives a killed driver and leaves its `org.chromium.Chromium.*` folders behind).
    pub tmp: PathBuf,
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

pub async fn start_driver(driver: &Path) -> Driver {
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

pub async fn open_browser(chromium: &Path, driver: &Driver) -> Client {
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

pub fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub async fn shot(c: &Client, name: &str) {
    let png = c.screenshot().await.unwrap();
    std::fs::write(screenshots().join(format!("{name}.png")), png).unwrap();
}

/// Clicks the element `css` names.
pub async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Types `keys` into the field `css` names.
pub async fn fill(c: &Client, css: &str, keys: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap()
        .send_keys(keys)
        .await
        .unwrap();
}

pub async fn text(c: &Client, css: &str) -> String {
    match c.wait().for_element(Locator::Css(css)).await {
        Ok(e) => e.text().await.unwrap(),
        Err(e) => panic!("no {css} on {:?}: {e}", c.current_url().await),
    }
}

/// A logged-in HTTP client: its cookie header and CSRF token.
pub struct LoggedIn {
    pub http: reqwest::Client,
    pub cookie: String,
    pub csrf: String,
}

impl LoggedIn {
    /// A dashboard page's HTML, with the session's cookie.
    pub async fn page(&self, url: &str) -> String {
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
    pub async fn post_form(&self, url: &str, body: String) -> reqwest::Response {
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

pub async fn login(base: &str) -> LoggedIn {
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
