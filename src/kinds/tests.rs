//! The registry's tests: every kind listed, named, sampled and composed.

use std::path::Path;

use super::*;
use crate::render::Templates;

/// Fails for a registered kind without templates, with a sample that has nothing to say,
/// or with a sample its templates cannot render (a missing field is an error there).
#[test]
fn every_kind_has_templates_and_a_sample_that_renders() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let templates = Templates::load(&dir, &[]).expect("the templates parse");
    for kind in Kind::all() {
        for file in ["subject.txt", "body.txt", "body.html"] {
            let path = dir.join(kind.name()).join(file);
            assert!(
                path.is_file(),
                "kind {kind} has no template {}; add it",
                path.display()
            );
        }
        let samples = kind.samples();
        assert!(!samples.is_empty(), "{kind} has no sample; give it one");
        for sample in samples {
            let name = sample.name;
            assert!(
                sample.has_news,
                "the sample {name} of {kind} has nothing to say; make `samples` return data it would send"
            );
            assert_eq!(sample.payload.kind(), kind.name());
            let r = templates
                .render(kind.name(), &sample.payload.to_value(), sample.payload.at())
                .unwrap_or_else(|e| panic!("the sample {name} of {kind} does not render: {e}"));
            assert!(!r.subject.is_empty(), "{kind} renders an empty subject");
        }
    }
}

/// A kind's file or templates folder without its line in [`KINDS`] compiles and is never
/// sent: this names it.
#[test]
fn every_kind_file_and_templates_folder_is_registered() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let registered: Vec<&str> = Kind::all().map(Kind::name).collect();
    let names = |dir: &str, keep: fn(&Path) -> Option<String>| -> Vec<String> {
        std::fs::read_dir(root.join(dir))
            .unwrap()
            .filter_map(|e| keep(&e.unwrap().path()))
            .collect()
    };
    // A file of this folder that implements a kind.
    let files = names("src/kinds", |p| {
        let text = std::fs::read_to_string(p).ok()?;
        let implements = ["impl EmailKind for", "impl ItemKind for"];
        text.lines()
            .any(|l| implements.iter().any(|i| l.starts_with(i)))
            .then(|| p.file_stem()?.to_str().map(str::to_owned))?
    });
    // Every folder but `messages`, which holds each locale's words.
    let folders = names("templates", |p| {
        p.is_dir()
            .then(|| p.file_name()?.to_str().map(str::to_owned))?
            .filter(|name| name != "messages")
    });
    for (name, place) in files
        .iter()
        .map(|f| (f, "src/kinds/{}.rs"))
        .chain(folders.iter().map(|f| (f, "templates/{}/")))
    {
        assert!(
            registered.contains(&name.as_str()),
            "{} is not a registered kind: add `&{name}::…` to KINDS in src/kinds/mod.rs",
            place.replace("{}", name)
        );
    }
}

#[test]
fn kinds_have_distinct_names_and_valid_default_schedules() {
    let mut names: Vec<_> = Kind::all().map(Kind::name).collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), KINDS.len(), "two kinds share a name");
    for kind in Kind::all() {
        assert!(
            kind.name()
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_'),
            "{kind}: a name is lowercase with underscores (it is a config key)"
        );
        if kind.relative().is_some() {
            continue;
        }
        let s = kind.schedule();
        crate::domain::parse_cron(s.cron).unwrap_or_else(|e| panic!("{kind}: {e}"));
        if s.timezone != "recipient" {
            crate::domain::parse_zone(s.timezone).unwrap_or_else(|e| panic!("{kind}: {e}"));
        }
    }
}

#[test]
fn nothing_to_say_means_no_email() {
    let to = sample_recipient();
    let at = sample_at();
    assert!(payload(&task_reminders::TaskReminders, &to, at, &Vec::new()).is_none());
    let date = crate::domain::local_date(to.tz, at);
    assert!(
        task_reminders::TaskReminders
            .emails(&to, at, date, &Vec::new())
            .is_empty()
    );
    assert!(payload(&overdue_summary::OverdueSummary, &to, at, &Vec::new()).is_none());
    assert!(
        payload(
            &weekly_report::WeeklyReport,
            &to,
            at,
            &weekly_report::Week::default()
        )
        .is_none()
    );
}

#[test]
fn a_window_keeps_each_users_own_rows() {
    let at = sample_at();
    let users = [
        Recipient::new("1", "a", "a@x.y", chrono_tz::UTC),
        Recipient::new("2", "b", "b@x.y", chrono_tz::Asia::Tokyo),
    ];
    let today = Windows::new(&users, |tz| {
        crate::domain::local_day(tz, crate::domain::local_date(tz, at))
    });
    let hours = chrono::Duration::hours;
    let rows = vec![(1, at), (2, at - hours(3)), (1, at - hours(24))];
    let kept = today.keep(rows, |r| (r.0.to_string(), Some(r.1)));
    assert_eq!(kept["1"], [(1, at)]);
    // 14:00 UTC is 23:00 the day before in Tokyo, where 17:00 UTC is already 02:00.
    assert!(!kept.contains_key("2"));
}
