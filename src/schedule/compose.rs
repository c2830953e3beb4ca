//! What one user's email says: a pure function of the user, the tick instant and their data.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::{
    domain::{self, Kind},
    store::{FocusRow, TaskRow, UserRow},
};

/// The rows the planner loaded for one user.
#[derive(Debug, Default, Clone)]
pub struct UserData<'a> {
    /// Open tasks in the window the kind asked for (due tomorrow, or overdue).
    pub open: Vec<&'a TaskRow>,
    /// Tasks completed in the week (weekly report only).
    pub completed: Vec<&'a TaskRow>,
    /// Focus sessions in the week (weekly report only).
    pub focus: Vec<&'a FocusRow>,
}

/// The window of open tasks a kind needs, for a user in `tz` at `at`.
pub fn open_window(kind: Kind, tz: Tz, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    match kind {
        Kind::TaskReminders => {
            let (_, start, end) = domain::tomorrow(tz, at);
            (start, end)
        }
        // Overdue means past its due time at the tick and not completed.
        Kind::OverdueSummary | Kind::WeeklyReport => (DateTime::<Utc>::UNIX_EPOCH, at),
    }
}

/// The template data for one user's email, or `None` when there is nothing to say.
pub fn compose(
    kind: Kind,
    user: &UserRow,
    tz: Tz,
    at: DateTime<Utc>,
    data: &UserData<'_>,
) -> Option<Value> {
    let local = |t: DateTime<Utc>| t.with_timezone(&tz);
    let task = |t: &TaskRow| {
        json!({
            "title": t.title,
            "due": t.due_at.map(|d| local(d).format("%a %-d %b, %H:%M").to_string()),
            "due_time": t.due_at.map(|d| local(d).format("%H:%M").to_string()),
            "days_overdue": t.due_at.map(|d| (at - d).num_days().max(0)),
        })
    };
    let user_json =
        json!({ "name": user.display_name, "email": user.email, "timezone": tz.name() });
    let body = match kind {
        Kind::TaskReminders => {
            if data.open.is_empty() {
                return None;
            }
            let (date, _, _) = domain::tomorrow(tz, at);
            json!({
                "date": date.format("%A %-d %B %Y").to_string(),
                "tasks": data.open.iter().map(|t| task(t)).collect::<Vec<_>>(),
            })
        }
        Kind::OverdueSummary => {
            if data.open.is_empty() {
                return None;
            }
            json!({
                "date": local(at).format("%A %-d %B %Y").to_string(),
                "tasks": data.open.iter().map(|t| task(t)).collect::<Vec<_>>(),
            })
        }
        Kind::WeeklyReport => {
            if data.open.is_empty() && data.completed.is_empty() && data.focus.is_empty() {
                return None;
            }
            let (from, to) = domain::week_before(tz, at);
            let minutes: i64 = data.focus.iter().map(|f| i64::from(f.minutes)).sum();
            json!({
                "week_start": local(from).format("%a %-d %b").to_string(),
                "week_end": local(to).format("%a %-d %b").to_string(),
                "completed": data.completed.iter().map(|t| json!({
                    "title": t.title,
                    "completed": t.completed_at.map(|c| local(c).format("%a %-d %b").to_string()),
                })).collect::<Vec<_>>(),
                "focus_minutes": minutes,
                "focus_sessions": data.focus.len(),
                "overdue": data.open.iter().map(|t| task(t)).collect::<Vec<_>>(),
            })
        }
    };
    let mut v = body;
    v["user"] = user_json;
    v["kind"] = json!(kind.name());
    Some(v)
}

/// A realistic payload for each kind, used to check the templates at start-up.
pub fn sample(kind: Kind) -> Value {
    let user = UserRow {
        id: 1,
        email: "ada@example.com".into(),
        display_name: "Ada Lovelace".into(),
        timezone: "Europe/London".into(),
        opted_out: false,
    };
    let at = DateTime::parse_from_rfc3339("2026-11-22T17:00:00Z")
        .expect("valid")
        .with_timezone(&Utc);
    let open = TaskRow {
        id: 1,
        owner_id: 1,
        title: "Write the <report>".into(),
        due_at: Some(at - chrono::Duration::days(2)),
        completed_at: None,
    };
    let mut done = open.clone();
    done.completed_at = Some(at - chrono::Duration::days(1));
    let focus = FocusRow {
        owner_id: 1,
        started_at: at,
        minutes: 25,
    };
    let data = UserData {
        open: vec![&open],
        completed: vec![&done],
        focus: vec![&focus],
    };
    compose(kind, &user, chrono_tz::Europe::London, at, &data)
        .expect("sample data has something to say")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> UserRow {
        UserRow {
            id: 7,
            email: "u@example.com".into(),
            display_name: "U".into(),
            timezone: "UTC".into(),
            opted_out: false,
        }
    }

    #[test]
    fn nothing_to_say_means_no_email() {
        let at = Utc::now();
        for kind in Kind::ALL {
            assert!(compose(kind, &user(), chrono_tz::UTC, at, &UserData::default()).is_none());
        }
    }

    #[test]
    fn samples_have_every_field() {
        for kind in Kind::ALL {
            let v = sample(kind);
            assert_eq!(v["user"]["name"], "Ada Lovelace");
            assert_eq!(v["kind"], kind.name());
        }
        assert_eq!(sample(Kind::WeeklyReport)["focus_minutes"], 25);
    }
}
