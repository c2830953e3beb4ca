//! Golden files: each built-in kind rendered from fixed data must stay byte-for-byte what is
//! stored under `tests/golden/<kind>/<case>/`. `HERALD_BLESS=1 cargo test --test golden` writes
//! the files for a new case; never bless to make a changed email pass.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use herald::{
    kinds::{
        self, Kind, Recipient,
        overdue_summary::OverdueSummary,
        task_reminders::TaskReminders,
        weekly_report::{Week, WeeklyReport},
    },
    payload::Payload,
    render::{Rendered, Templates},
    source::{FocusRow, TaskRow, UserRow},
};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn user(name: &str, email: &str, tz: Tz) -> UserRow {
    UserRow {
        id: "42".into(),
        email: email.into(),
        display_name: name.into(),
        time_zone: Some(tz.name().into()),
        locale: None,
    }
}

fn task(id: i64, title: &str, due: DateTime<Utc>, done: Option<DateTime<Utc>>) -> TaskRow {
    TaskRow {
        id: id.to_string(),
        user_id: "42".into(),
        title: title.into(),
        due_at: Some(due),
        completed_at: done,
        link_path: None,
    }
}

fn focus(started: DateTime<Utc>, minutes: i64) -> FocusRow {
    FocusRow {
        user_id: "42".into(),
        started_at: started,
        minutes,
    }
}

/// What one user had at one instant: open tasks, completed tasks, focus sessions.
struct Case {
    name: &'static str,
    user: UserRow,
    tz: Tz,
    at: DateTime<Utc>,
    open: Vec<TaskRow>,
    completed: Vec<TaskRow>,
    focus: Vec<FocusRow>,
}

/// The payload a kind composes for a case.
fn payload(kind: &str, c: &Case) -> Payload {
    let to = Recipient::new(&c.user.id, &c.user.display_name, &c.user.email, c.tz);
    match kind {
        "task_reminders" => kinds::payload(&TaskReminders, &to, c.at, &c.open),
        "overdue_summary" => kinds::payload(&OverdueSummary, &to, c.at, &c.open),
        "weekly_report" => {
            let week = Week {
                overdue: c.open.clone(),
                completed: c.completed.clone(),
                focus: c.focus.clone(),
            };
            kinds::payload(&WeeklyReport, &to, c.at, &week)
        }
        other => panic!("no golden cases for {other}"),
    }
    .expect("the case has something to say")
}

/// The fixed cases of each kind, besides its start-up sample.
fn cases(kind: &str) -> Vec<Case> {
    let ny = chrono_tz::America::New_York;
    let kolkata = chrono_tz::Asia::Kolkata;
    let grace = || user("Grace Hopper", "grace@example.com", ny);
    let monday = at("2026-11-23T14:00:00Z");
    match kind {
        "task_reminders" => vec![Case {
            name: "two_tasks_new_york",
            user: grace(),
            tz: ny,
            at: monday,
            open: vec![
                task(1, "Call the bank", at("2026-11-24T14:30:00Z"), None),
                task(2, "Ship <v2> & celebrate", at("2026-11-24T22:00:00Z"), None),
            ],
            completed: vec![],
            focus: vec![],
        }],
        "overdue_summary" => vec![Case {
            name: "three_tasks_kolkata",
            user: user("Ravi \"R\" Kumar", "ravi@example.com", kolkata),
            tz: kolkata,
            at: at("2026-11-23T01:30:00Z"),
            open: vec![
                task(1, "Renew the passport", at("2026-11-18T09:00:00Z"), None),
                task(2, "Reply to Ana", at("2026-11-22T00:15:00Z"), None),
                task(3, "Pay rent", at("2026-11-23T01:00:00Z"), None),
            ],
            completed: vec![],
            focus: vec![],
        }],
        "weekly_report" => vec![
            Case {
                name: "busy_week_new_york",
                user: grace(),
                tz: ny,
                at: at("2026-11-22T22:00:00Z"),
                open: vec![
                    task(1, "File taxes", at("2026-11-10T15:00:00Z"), None),
                    task(2, "Fix the <fence>", at("2026-11-21T16:00:00Z"), None),
                ],
                completed: vec![
                    task(
                        3,
                        "Plan the trip",
                        at("2026-11-16T15:00:00Z"),
                        Some(at("2026-11-16T18:00:00Z")),
                    ),
                    task(
                        4,
                        "Buy a gift",
                        at("2026-11-19T15:00:00Z"),
                        Some(at("2026-11-20T02:30:00Z")),
                    ),
                    task(
                        5,
                        "Write to Mum",
                        at("2026-11-21T15:00:00Z"),
                        Some(at("2026-11-22T20:00:00Z")),
                    ),
                ],
                focus: vec![
                    focus(at("2026-11-17T14:00:00Z"), 25),
                    focus(at("2026-11-19T14:00:00Z"), 50),
                    focus(at("2026-11-21T14:00:00Z"), 15),
                ],
            },
            Case {
                name: "one_focus_session",
                user: grace(),
                tz: ny,
                at: at("2026-11-22T22:00:00Z"),
                open: vec![],
                completed: vec![],
                focus: vec![focus(at("2026-11-20T14:00:00Z"), 1)],
            },
        ],
        other => panic!("no golden cases for {other}"),
    }
}

fn templates() -> Templates {
    Templates::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("templates"),
        &kinds::samples(),
    )
    .expect("the repository's templates load")
}

/// Compares one rendered email with its stored files, or writes them when blessing.
fn check(kind: &str, case: &str, r: &Rendered, failures: &mut Vec<String>) {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(kind)
        .join(case);
    let bless = std::env::var("HERALD_BLESS").is_ok_and(|v| v == "1");
    for (file, got) in [
        ("subject.txt", &r.subject),
        ("body.txt", &r.text),
        ("body.html", &r.html),
    ] {
        let path = dir.join(file);
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, got).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(want) if &want == got => {}
            Ok(want) => failures.push(format!(
                "{} differs from what the code renders now.\n--- stored\n{want}\n--- rendered\n{got}",
                path.display()
            )),
            Err(e) => failures.push(format!(
                "cannot read {} ({e}); a new case is written with HERALD_BLESS=1 cargo test --test golden",
                path.display()
            )),
        }
    }
}

#[test]
fn the_built_in_kinds_render_byte_for_byte_as_stored() {
    let templates = templates();
    let mut failures = Vec::new();
    for kind in ["task_reminders", "overdue_summary", "weekly_report"] {
        let sample = Kind::find(kind).expect("a built-in kind").sample().payload;
        let rendered = templates.render(kind, sample.as_value()).unwrap();
        check(kind, "sample", &rendered, &mut failures);
        for case in cases(kind) {
            let rendered = templates
                .render(kind, payload(kind, &case).as_value())
                .unwrap();
            check(kind, case.name, &rendered, &mut failures);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
