//! Loading as a whole: layers, overrides, and every problem reported with its input and fix.

use super::*;
use crate::kinds::Kind;

/// [`Settings::load_from`] with every kind's defaults, as `herald` loads them.
fn load_from(file: Option<&str>, env: &[(String, String)]) -> Result<Settings, ConfigError> {
    Settings::load_from(&crate::kinds::defaults(), file, env)
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_valid() {
    let s = load_from(None, &[]).unwrap();
    // Every kind has a schedule of its name, at the kind's own time.
    assert_eq!(s.schedules.len(), Kind::all().count());
    for kind in Kind::all() {
        let schedule = s.schedule(kind.name()).unwrap();
        assert_eq!(schedule.cron_expr, kind.schedule().cron);
        assert_eq!(schedule.zone.to_string(), kind.schedule().timezone);
        assert_eq!(schedule.relative, kind.relative());
        assert_eq!(schedule.enabled, kind.on_by_default(), "{kind}");
    }
    // A kind that repeats another's news task by task is off until switched on.
    assert!(!s.schedule("overdue_morning").unwrap().enabled);
    assert!(s.schedule("due_soon").unwrap().enabled);
    assert_eq!(s.queue.retry_delays, [2, 4, 8].map(Duration::from_secs));
    assert!(matches!(s.mail.providers[..], [ProviderSettings::File(_)]));
    assert!(s.api_token.is_none());
}

#[test]
fn a_kind_relative_to_tasks_takes_before_and_refuses_a_cron_a_zone_and_a_spread() {
    let s = load_from(
        None,
        &env(&[
            ("HERALD__SCHEDULES__DUE_SOON__BEFORE", "45m"),
            ("HERALD__SCHEDULES__OVERDUE_MORNING__ENABLED", "true"),
        ]),
    )
    .unwrap();
    let due_soon = s.schedule("due_soon").unwrap();
    assert_eq!(
        due_soon.relative,
        Some(crate::domain::When::Before(Duration::from_secs(45 * 60)))
    );
    assert_eq!(due_soon.when(), "45m before each task is due");
    assert!(s.schedule("overdue_morning").unwrap().enabled);

    let err = load_from(
        None,
        &env(&[
            ("HERALD__SCHEDULES__DUE_SOON__CRON", "0 0 9 * * *"),
            ("HERALD__SCHEDULES__DUE_SOON__TIMEZONE", "Europe/Paris"),
            ("HERALD__SCHEDULES__DUE_SOON__SPREAD", "5m"),
            ("HERALD__SCHEDULES__TASK_REMINDERS__BEFORE", "1h"),
            ("HERALD__SCHEDULES__OVERDUE_MORNING__BEFORE", "1h"),
        ]),
    )
    .unwrap_err()
    .to_string();
    for want in [
        "schedules.due_soon.cron (HERALD__SCHEDULES__DUE_SOON__CRON): due_soon is sent relative to each task's due time, so it has no cron; set `before`",
        "schedules.due_soon.timezone (HERALD__SCHEDULES__DUE_SOON__TIMEZONE): due_soon is sent relative",
        "schedules.due_soon.spread (HERALD__SCHEDULES__DUE_SOON__SPREAD): due_soon is sent relative",
        "schedules.task_reminders.before (HERALD__SCHEDULES__TASK_REMINDERS__BEFORE): task_reminders fires at a wall-clock time",
        "schedules.overdue_morning.before (HERALD__SCHEDULES__OVERDUE_MORNING__BEFORE): overdue_morning is sent at 08:00 local after each task falls due; it takes no `before`",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
    let err = load_from(None, &env(&[("HERALD__MAIL__REPLY_TO", "support@")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("mail.reply_to (HERALD__MAIL__REPLY_TO): "),
        "{err}"
    );
    let err = load_from(
        None,
        &env(&[("HERALD__SCHEDULES__DUE_SOON__BEFORE", "10s")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("give a time between 1 minute and 7 days"),
        "{err}"
    );
}

#[test]
fn environment_overrides() {
    let s = load_from(
        None,
        &env(&[
            ("SMTP_URL", "smtp://u:p@mail.example.com"),
            ("HERALD__QUEUE__CONCURRENCY", "7"),
            ("HERALD__SCHEDULES__WEEKLY_REPORT__ENABLED", "false"),
        ]),
    )
    .unwrap();
    assert_eq!(s.queue.concurrency, 7);
    assert!(!s.schedule("weekly_report").unwrap().enabled);
    let [ProviderSettings::Smtp(smtp)] = &s.mail.providers[..] else {
        panic!()
    };
    assert_eq!((smtp.port, smtp.tls), (587, SmtpTls::StartTls));
    assert_eq!(smtp.credentials, Some(("u".into(), Secret::new("p"))));
}

#[test]
fn one_setting_switches_every_schedule_off_and_a_schedule_can_stay_on() {
    let s = load_from(
        None,
        &env(&[
            ("HERALD__SCHEDULES__ENABLED", "false"),
            ("HERALD__SCHEDULES__TASK_REMINDERS__ENABLED", "true"),
            ("HERALD__SCHEDULES__WEEKLY_REPORT__CRON", "0 0 18 * * Sun"),
        ]),
    )
    .unwrap();
    let on: Vec<_> = s.schedules.iter().filter(|s| s.enabled).collect();
    assert_eq!(on.len(), 1);
    assert_eq!(on[0].name, "task_reminders");
    let weekly = s.schedule("weekly_report").unwrap();
    assert_eq!(weekly.cron_expr, "0 0 18 * * Sun");
    assert_eq!(weekly.zone, ZoneMode::Recipient);

    let err = load_from(
        None,
        &env(&[("HERALD__SCHEDULES__MONTHLY__CRON", "0 0 9 1 * *")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains(
            "schedules.monthly (HERALD__SCHEDULES__MONTHLY__CRON): is not a known schedule; the schedules are task_reminders"
        ),
        "{err}"
    );
}

#[test]
fn providers_follow_the_keys_or_the_list() {
    let both = load_from(
        None,
        &env(&[
            ("SMTP_URL", "smtp://127.0.0.1:25?tls=none"),
            ("RESEND_API_KEY", "re_123"),
        ]),
    )
    .unwrap();
    let names: Vec<_> = both.mail.providers.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["resend", "smtp"]);
    let ProviderSettings::Resend(r) = &both.mail.providers[0] else {
        panic!()
    };
    assert_eq!((r.batch_size, r.requests_per_second), (100, 2));
    assert_eq!(r.base_url.as_str(), "https://api.resend.com/");

    let err = load_from(
        None,
        &env(&[
            (
                "HERALD__MAIL__PROVIDERS",
                "[\"resend\", \"sendgrid\", \"smtp\"]",
            ),
            ("HERALD__MAIL__RESEND__BATCH_SIZE", "101"),
        ]),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("RESEND_API_KEY"), "{err}");
    assert!(err.contains("\"sendgrid\" is not a provider"), "{err}");
    assert!(err.contains("SMTP_URL (mail.smtp_url) is empty"), "{err}");
    assert!(
        err.contains("mail.resend.batch_size (HERALD__MAIL__RESEND__BATCH_SIZE): is 101"),
        "{err}"
    );
}

#[test]
fn problems_name_the_key_and_the_fix() {
    let err = load_from(
        None,
        &env(&[
            ("HERALD__SCHEDULES__WEEKLY_REPORT__CRON", "0 17 * * Sun"),
            (
                "HERALD__SCHEDULES__TASK_REMINDERS__TIMEZONE",
                "Mars/Olympus",
            ),
            ("HERALD__QUEUE__LEASE", "soon"),
            ("MAIL_FROM", "not an address"),
        ]),
    )
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.0.len(), 4, "{text}");
    assert!(
        text.contains(
            "schedules.weekly_report.cron (HERALD__SCHEDULES__WEEKLY_REPORT__CRON): \"0 17 * * Sun\" has 5 fields; expected 6"
        ),
        "{text}"
    );
    assert!(text.contains("schedules.task_reminders.timezone"), "{text}");
    assert!(text.contains("queue.lease"), "{text}");
    assert!(text.contains("MAIL_FROM"), "{text}");
}

#[test]
fn any_redis_database_is_accepted() {
    for db in [0, 11, 15] {
        let url = format!("redis://127.0.0.1:6379/{db}");
        let settings = load_from(
            None,
            &env(&[
                ("REDIS_URL", url.as_str()),
                ("DATABASE_URL", "postgres://127.0.0.1/herald"),
            ]),
        );
        assert!(settings.is_ok(), "database {db}: {settings:?}");
    }
}

/// The problems loading these variables over the defaults gives, as text.
fn problems(pairs: &[(&str, &str)]) -> Vec<String> {
    match load_from(None, &env(pairs)) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

/// A document as one line of words, without Markdown's backticks or TOML's comment marks.
fn words(text: &str) -> String {
    text.replace(['`', '#'], "")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn a_lease_too_short_for_a_send_is_refused_in_the_words_of_the_readme() {
    // The README and config/default.toml state the rule as the message does.
    let rule = format!("queue.lease (2m): {LEASE_RULE}.");
    assert!(
        words(include_str!("../../README.md")).contains(&rule),
        "README.md: {rule}"
    );
    assert!(
        words(DEFAULTS).contains(LEASE_RULE),
        "config/default.toml: {LEASE_RULE}"
    );

    assert_eq!(
        problems(&[("HERALD__QUEUE__LEASE", "10s")]),
        [format!(
            "queue.lease (HERALD__QUEUE__LEASE): is 10s; a send could outlive its claim and go out twice. A lease must be {LEASE_RULE}. With mail.timeout at 30s, use at least 34s"
        )]
    );
    let zero = problems(&[("HERALD__QUEUE__LEASE", "0s")]);
    assert_eq!(zero.len(), 1, "{zero:?}");
    assert!(
        zero[0].starts_with(
            "queue.lease (HERALD__QUEUE__LEASE): is 0s; every claim would expire at once"
        ) && zero[0].contains(LEASE_RULE)
            && zero[0].ends_with("use at least 34s"),
        "{zero:?}"
    );
    assert!(problems(&[("HERALD__QUEUE__LEASE", "34s")]).is_empty());
    // The floor follows mail.timeout; the default lease is named without an input.
    assert_eq!(
        problems(&[("HERALD__MAIL__TIMEOUT", "2m")]),
        [format!(
            "queue.lease: is 2m; a send could outlive its claim and go out twice. A lease must be {LEASE_RULE}. With mail.timeout at 2m, use at least 2m 4s"
        )]
    );
    // And mail.resend.timeout, when Resend is a provider and its timeout is the longer one.
    let resend = [
        ("RESEND_API_KEY", "re_123"),
        ("HERALD__MAIL__RESEND__TIMEOUT", "3m"),
    ];
    assert_eq!(
        problems(&resend),
        [format!(
            "queue.lease: is 2m; a send could outlive its claim and go out twice. A lease must be {LEASE_RULE}. With mail.resend.timeout at 3m, use at least 3m 4s"
        )]
    );
    let smtp_only = [
        ("HERALD__MAIL__PROVIDERS", r#"["smtp"]"#),
        ("SMTP_URL", "smtp://127.0.0.1:2525?tls=none"),
        ("HERALD__MAIL__RESEND__TIMEOUT", "3m"),
    ];
    assert!(
        problems(&smtp_only).is_empty(),
        "{:?}",
        problems(&smtp_only)
    );
}

#[test]
fn the_dispatch_interval_is_above_zero_and_at_most_a_minute() {
    let zero = problems(&[("HERALD__QUEUE__DISPATCH_INTERVAL", "0s")]);
    assert_eq!(zero.len(), 1, "{zero:?}");
    assert!(
        zero[0].starts_with("queue.dispatch_interval (HERALD__QUEUE__DISPATCH_INTERVAL): is 0s;")
            && zero[0].contains("\"200ms\""),
        "{zero:?}"
    );
    let long = problems(&[("HERALD__QUEUE__DISPATCH_INTERVAL", "5m")]);
    assert_eq!(long.len(), 1, "{long:?}");
    assert!(
        long[0].starts_with("queue.dispatch_interval (HERALD__QUEUE__DISPATCH_INTERVAL): is 5m;")
            && long[0].contains("Use at most 1m"),
        "{long:?}"
    );
    assert!(problems(&[("HERALD__QUEUE__DISPATCH_INTERVAL", "1m")]).is_empty());
}

#[test]
fn redispatch_after_is_at_least_ten_seconds() {
    for value in ["0s", "3s"] {
        let got = problems(&[("HERALD__QUEUE__REDISPATCH_AFTER", value)]);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            got[0].starts_with(&format!(
                "queue.redispatch_after (HERALD__QUEUE__REDISPATCH_AFTER): is {value};"
            )) && got[0].contains("Use at least 10s"),
            "{got:?}"
        );
    }
    assert!(problems(&[("HERALD__QUEUE__REDISPATCH_AFTER", "10s")]).is_empty());
}

#[test]
fn a_bad_or_zero_shutdown_grace_is_refused() {
    let bad = problems(&[("HERALD__SHUTDOWN__GRACE", "soon")]);
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert!(
        bad[0].starts_with("shutdown.grace (HERALD__SHUTDOWN__GRACE): \"soon\" is not a duration"),
        "{bad:?}"
    );
    let zero = problems(&[("HERALD__SHUTDOWN__GRACE", "0s")]);
    assert_eq!(zero.len(), 1, "{zero:?}");
    assert!(
        zero[0].starts_with("shutdown.grace (HERALD__SHUTDOWN__GRACE): is 0s;")
            && zero[0].contains("\"25s\""),
        "{zero:?}"
    );
    let s = load_from(None, &env(&[("HERALD__SHUTDOWN__GRACE", "40s")])).unwrap();
    assert_eq!(s.shutdown_grace, Duration::from_secs(40));
}

#[test]
fn retention_defaults_and_problems_name_the_key() {
    let s = load_from(None, &[]).unwrap();
    assert_eq!(s.retention, RetentionSettings::default());
    assert_eq!(s.retention.shortest().1, Duration::from_secs(30 * 86_400));
    assert_eq!(
        s.retention.trigger_horizon(),
        Duration::from_secs(28 * 86_400)
    );

    let err = load_from(
        None,
        &env(&[
            ("HERALD__RETENTION__SENT", "0s"),
            ("HERALD__RETENTION__FAILED", "a while"),
            ("HERALD__RETENTION__SKIPPED", "1d"),
        ]),
    )
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.0.len(), 3, "{text}");
    assert!(
        text.contains(
            "retention.sent (HERALD__RETENTION__SENT): is 0s; keep deliveries at least 3days"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "retention.failed (HERALD__RETENTION__FAILED): \"a while\" is not a duration"
        ),
        "{text}"
    );
    assert!(
        text.contains("retention.skipped (HERALD__RETENTION__SKIPPED): is 1day;"),
        "{text}"
    );

    let s = load_from(None, &env(&[("HERALD__RETENTION__SKIPPED", "7d")])).unwrap();
    assert_eq!(s.retention.shortest().0, "retention.skipped");
    assert_eq!(
        s.retention.trigger_horizon(),
        Duration::from_secs(5 * 86_400)
    );
}

#[test]
fn a_catch_up_as_long_as_the_retention_is_refused() {
    let err = load_from(
        None,
        &env(&[
            ("HERALD__RETENTION__SENT", "3d"),
            ("HERALD__SCHEDULES__TASK_REMINDERS__CATCH_UP", "2d"),
        ]),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(
            "schedules.task_reminders.catch_up (HERALD__SCHEDULES__TASK_REMINDERS__CATCH_UP): is 2days, not shorter than 1day (retention.sent less 2 days)"
        ),
        "{err}"
    );
}

#[test]
fn unknown_keys_are_refused() {
    let err = load_from(None, &env(&[("HERALD__QUEUE__CONCURENCY", "3")])).unwrap_err();
    assert!(err.to_string().contains("queue"), "{err}");
    assert!(err.to_string().contains("concurency"), "{err}");
}

#[test]
fn smtp_urls() {
    let s = parse_smtp_url("smtp://127.0.0.1:1025?tls=none").unwrap();
    assert_eq!((s.port, s.tls), (1025, SmtpTls::None));
    let s = parse_smtp_url("smtps://a:b%40c@h").unwrap();
    assert_eq!((s.port, s.tls), (465, SmtpTls::Implicit));
    assert_eq!(s.credentials.unwrap().1.expose(), "b@c");
    assert!(parse_smtp_url("http://h").unwrap_err().contains("smtp://"));
    assert!(
        parse_smtp_url("smtp://h?tls=maybe")
            .unwrap_err()
            .contains("tls=none")
    );
}

#[test]
fn every_problem_is_reported_at_once_each_with_its_input() {
    let dir = std::env::temp_dir().join(format!("herald-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("herald.toml");
    std::fs::write(
        &file,
        r#"
[queue]
concurency = 3

[schedules.weekly_report]
cron = "0 17 * * Sun"
timezone = "Mars/Olympus"
colour = "blue"

[ui]
retry_per_second = "fast"
"#,
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let err = load_from(
        Some(path),
        &env(&[
            ("HERALD_HTTP_ADDR", "localhost"),
            ("HERALD__RETENTION__SENT", "1d"),
        ]),
    )
    .unwrap_err();
    std::fs::remove_dir_all(&dir).unwrap();
    let text = err.to_string();
    let expected = [
        // Unknown keys, in a section and in a schedule, and a value of the wrong type...
        format!("queue.concurency (in {path}): unknown field `concurency`"),
        format!("schedules.weekly_report.colour (in {path}): unknown field `colour`"),
        format!("ui.retry_per_second (in {path}): invalid type: string \"fast\", expected u32"),
        // ...do not hide the values that read but are wrong, in the same schedule and elsewhere.
        format!("schedules.weekly_report.cron (in {path}): \"0 17 * * Sun\" has 5 fields"),
        format!("schedules.weekly_report.timezone (in {path}): \"Mars/Olympus\""),
        "http.addr (HERALD_HTTP_ADDR): \"localhost\" has no port".to_owned(),
        "retention.sent (HERALD__RETENTION__SENT): is 1day".to_owned(),
    ];
    for line in &expected {
        assert!(text.contains(line), "{line}\n{text}");
    }
    assert_eq!(err.0.len(), expected.len(), "{text}");
    // Each says how to fix it.
    assert!(
        text.contains("remove it or correct its name")
            && text.contains("config/default.toml shows every key with a value of its type")
            && text.contains("expected 6 (seconds first)")
            && text.contains("use a name like")
            && text.contains("\"localhost:8080\""),
        "{text}"
    );
}

#[test]
fn a_file_that_cannot_be_read_does_not_hide_the_environment_s_problems() {
    let err = load_from(
        Some("/nonexistent/herald.toml"),
        &env(&[
            ("HERALD__QUEUE__LEASE", "soon"),
            ("HERALD__QUEUE__LEASE__X", "1"),
        ]),
    )
    .unwrap_err();
    let text = err.to_string();
    assert_eq!(err.0.len(), 3, "{text}");
    assert!(
        text.contains("HERALD_CONFIG=/nonexistent/herald.toml: cannot read the file")
            && text.contains("fix the path or unset HERALD_CONFIG"),
        "{text}"
    );
    assert!(
        text.contains(
            "HERALD__QUEUE__LEASE__X: sets \"queue.lease.x\", but lease is not a section"
        ),
        "{text}"
    );
    assert!(
        text.contains("queue.lease (HERALD__QUEUE__LEASE): \"soon\" is not a duration"),
        "{text}"
    );
}

#[test]
fn a_file_that_is_not_toml_is_named_with_its_line_but_not_quoted() {
    let file = std::env::temp_dir().join(format!("herald-config-bad-{}.toml", std::process::id()));
    std::fs::write(&file, "[http]\napi_token = s3cr3t-unquoted\n").unwrap();
    let path = file.to_str().unwrap();
    let err = load_from(Some(path), &env(&[("MAIL_FROM", "nobody")])).unwrap_err();
    std::fs::remove_file(&file).unwrap();
    let text = err.to_string();
    assert_eq!(err.0.len(), 2, "{text}");
    assert!(
        text.contains(&format!(
            "HERALD_CONFIG={path}: is not valid TOML at line 2: "
        )) && text.contains("; fix the file or unset HERALD_CONFIG"),
        "{text}"
    );
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(text.contains("mail.from (MAIL_FROM): \"nobody\""), "{text}");
}

#[test]
fn the_http_address_may_be_a_host_name() {
    let addr =
        |value: &str| load_from(None, &env(&[("HERALD_HTTP_ADDR", value)])).map(|s| s.http_addr);
    let local = addr("localhost:8080").unwrap();
    assert!(local.ip().is_loopback() && local.port() == 8080, "{local}");
    assert_eq!(addr("0.0.0.0:9000").unwrap().to_string(), "0.0.0.0:9000");
    assert_eq!(addr("[::1]:8080").unwrap().to_string(), "[::1]:8080");

    let problem = |value: &str| addr(value).unwrap_err().0[0].to_string();
    // `.invalid` never resolves (RFC 6761).
    let unknown = problem("no-such-host.invalid:8080");
    assert!(
        unknown.starts_with(
            "http.addr (HERALD_HTTP_ADDR): \"no-such-host.invalid\" does not resolve ("
        ) && unknown.ends_with(
            "write it as host:port, e.g. \"127.0.0.1:8080\", \"0.0.0.0:8080\" (every interface) or \"localhost:8080\""
        ),
        "{unknown}"
    );
    assert!(problem("localhost").contains("\"localhost\" has no port;"));
    assert!(problem("localhost:http").contains("has no port number after its ':'"));
    assert!(problem("http://localhost:8080").contains(
        "\"http://localhost\" is neither an IP address nor a host name; write it as host:port"
    ));
}

#[test]
fn max_attempts_leaves_every_retry_its_claim() {
    assert_eq!(load_from(None, &env(&[])).unwrap().queue.max_attempts, 10);
    let err = load_from(None, &env(&[("HERALD__QUEUE__MAX_ATTEMPTS", "3")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("queue.max_attempts (HERALD__QUEUE__MAX_ATTEMPTS): is 3; with 3 queue.retry_delays a delivery gets up to 4 attempts")
            && err.contains("Use at least 4"),
        "{err}"
    );
}
