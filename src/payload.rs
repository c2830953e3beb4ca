//! What an email says, as its templates see it: composed by a kind, stored with the delivery,
//! rendered by `render`.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::Value;

/// One email's template data: the kind's own fields, plus `kind` (its name) and `user` (a
/// [`User`]), which every template may use.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload(Value);

impl Payload {
    /// `fields` (a JSON object, as `json!({…})` builds) with `kind` and `user` added.
    pub fn new(kind: &str, user: &User, fields: Value) -> Payload {
        let Value::Object(mut map) = fields else {
            panic!("the fields of a {kind} email must be a JSON object, not {fields}");
        };
        map.insert(
            "user".into(),
            serde_json::to_value(user).expect("a user is JSON"),
        );
        map.insert("kind".into(), Value::from(kind));
        Payload(Value::Object(map))
    }

    /// The name of the kind that composed it, which names its templates folder.
    pub fn kind(&self) -> &str {
        self.0["kind"].as_str().unwrap_or_default()
    }

    pub fn as_value(&self) -> &Value {
        &self.0
    }

    /// The payload as JSON text, as the planner stores it.
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("a JSON value serializes")
    }
}

/// The recipient as templates see them: `user.name`, `user.email` and `user.timezone`, the zone
/// the email's times are written in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub name: String,
    pub email: String,
    pub timezone: String,
    /// The user's BCP 47 locale from the app, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
}

/// A task as templates see it, its times written in the recipient's zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    pub title: String,
    /// "Mon 23 Nov, 09:00".
    pub due: Option<String>,
    /// "09:00".
    pub due_time: Option<String>,
    /// Whole days between the due time and the email's instant; 0 when not yet due.
    pub days_overdue: Option<i64>,
    /// The task's path in the app (`/tasks/42`), when the app gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

impl Task {
    /// A task due at `due_at`, for an email in `tz` at the instant `at`.
    pub fn new(title: &str, due_at: Option<DateTime<Utc>>, tz: Tz, at: DateTime<Utc>) -> Task {
        Task::at_path(title, due_at, None, tz, at)
    }

    /// As [`Task::new`], with the task's path in the app.
    pub fn at_path(
        title: &str,
        due_at: Option<DateTime<Utc>>,
        path: Option<&str>,
        tz: Tz,
        at: DateTime<Utc>,
    ) -> Task {
        let local = |t: DateTime<Utc>| t.with_timezone(&tz);
        Task {
            title: title.to_owned(),
            due: due_at.map(|d| local(d).format("%a %-d %b, %H:%M").to_string()),
            due_time: due_at.map(|d| local(d).format("%H:%M").to_string()),
            days_overdue: due_at.map(|d| (at - d).num_days().max(0)),
            path: path.map(str::to_owned),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_and_user_are_added_to_the_fields() {
        let user = User {
            name: "Ada".into(),
            email: "ada@example.com".into(),
            timezone: "UTC".into(),
            locale: None,
        };
        let p = Payload::new("weekly_report", &user, serde_json::json!({ "n": 1 }));
        assert_eq!(p.kind(), "weekly_report");
        assert_eq!(p.as_value()["user"]["name"], "Ada");
        assert_eq!(p.as_value()["n"], 1);
    }
}
