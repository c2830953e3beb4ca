//! The edges of authentication: the token before a 404 or a 405 under /api, a limit on failed
//! attempts per address (429), `http.secure_cookies`, ending every dashboard session, /readyz's
//! detail behind the token, and 409 for retrying what did not fail.

use std::net::{IpAddr, Ipv4Addr};

use crate::helpers::*;

/// A client whose connections come from `127.0.0.<n>`.
fn client_from(n: u8) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, n)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_paths_and_wrong_methods_under_api_ask_for_the_token_first() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let http = client_from(1);
    let r = http
        .get(format!("{}/api/nothing-here", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains("/api/stats"),
        "no route is listed without the token: {text}"
    );
    let r = http
        .delete(format!("{}/api/stats", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        401,
        "a wrong method is not told without the token"
    );

    let r = http
        .get(format!("{}/api/nothing-here", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("GET /api/stats"));
    let r = http
        .delete(format!("{}/api/stats", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_that_fails_the_token_ten_times_is_told_to_wait_and_others_are_not() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let guesser = client_from(2);
    let stats = format!("{}/api/stats", app.address);
    for _ in 0..10 {
        let r = guesser
            .get(&stats)
            .bearer_auth("wrong-token-0123456789")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = guesser
        .get(&stats)
        .bearer_auth("wrong-token-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let body: serde_json::Value = r.json().await.unwrap();
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("too many failed attempts") && error.contains("Retry-After"),
        "{error}"
    );
    // Locked out, even with the right token; another address is not.
    let r = guesser.get(&stats).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), 429);
    let r = client_from(3)
        .get(&stats)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The dashboard's login counts the same way.
    let login = format!("{}/ui/login", app.address);
    let other = client_from(4);
    for _ in 0..10 {
        let r = other
            .post(&login)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("token=wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401);
    }
    let r = other
        .post(&login)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(r.text().await.unwrap().contains("too many failed attempts"));
    drop(smtp);
    app.finish().await;
}

/// Logs in from `client` and returns the `Set-Cookie` header.
async fn log_in(client: &reqwest::Client, app: &TestApp, forwarded_https: bool) -> String {
    let mut req = client
        .post(format!("{}/ui/login", app.address))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"));
    if forwarded_https {
        req = req.header("x-forwarded-proto", "https");
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 303);
    r.headers()["set-cookie"].to_str().unwrap().to_owned()
}

/// The `name=value` of a `Set-Cookie`.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secure_cookies_and_ending_every_session() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    let http = client_from(5);
    // Development: Secure only behind a proxy that says https.
    assert!(!log_in(&http, &app, false).await.contains("Secure"));
    assert!(log_in(&http, &app, true).await.contains("; Secure"));

    // Every session ends with POST /api/sessions/end, and the token still opens the API.
    let cookie = pair(&log_in(&http, &app, false).await);
    let overview = |cookie: String| {
        let http = http.clone();
        let url = format!("{}/ui", app.address);
        async move {
            http.get(url)
                .header("cookie", cookie)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(overview(cookie.clone()).await, 200);
    let r = http
        .post(format!("{}/api/sessions/end", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        overview(cookie).await,
        303,
        "the old session goes to the login form"
    );
    let (status, _) = app.get("/api/stats").await;
    assert_eq!(status, 200);

    // And with `herald sessions end`, for every process (this one reads the key again within 2 s).
    let cookie = pair(&log_in(&http, &app, false).await);
    assert_eq!(overview(cookie.clone()).await, 200);
    let out = herald_ok(&app.env, &["sessions", "end"]);
    assert!(out.contains("every dashboard session has ended"), "{out}");
    tokio::time::sleep(std::time::Duration::from_millis(2200)).await;
    assert_eq!(overview(cookie).await, 303);
    drop(smtp);
    app.finish().await;

    // http.secure_cookies: Secure without any proxy header.
    let smtp = SmtpServer::start().await;
    let mut env = Env::new(&smtp);
    env.set("HERALD__HTTP__SECURE_COOKIES", "true");
    let app = spawn_with(env).await;
    assert!(log_in(&http, &app, false).await.contains("; Secure"));
    drop(smtp);
    app.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_keeps_why_for_the_token_and_a_retry_of_what_did_not_fail_is_a_conflict() {
    skip_without_servers!();
    let smtp = SmtpServer::start().await;
    let app = spawn_app(&smtp).await;
    app.add_late_user("sent@example.com").await;
    let id = app.trigger_overdue().await[0];
    app.wait_for_status("sent", 1, std::time::Duration::from_secs(30))
        .await;
    let r = app
        .http
        .post(format!("{}/api/failed/{id}/retry", app.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let body: serde_json::Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("is sent, not failed"),
        "{body}"
    );

    // PostgreSQL goes away (for this app): the open /readyz says so without PostgreSQL's words.
    app.state.store.pg().close().await;
    let r = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let open: serde_json::Value = r.json().await.unwrap();
    let pg = open["postgres"].as_str().unwrap();
    assert!(
        pg.starts_with("unreachable (the reason: GET /readyz with the API token"),
        "{open}"
    );
    let (status, detailed) = app.get("/readyz").await;
    assert_eq!(status, 503);
    let pg = detailed["postgres"].as_str().unwrap();
    assert!(
        pg.starts_with("unreachable: ") && pg.contains("closed"),
        "{detailed}"
    );
    drop(smtp);
    app.finish().await;
}
