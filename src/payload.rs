//! What an email says, as its templates see it: composed by a kind, stored with the delivery,
//! rendered by `render`.
//!
//! Times are stored as instants (RFC 3339) and days as ISO dates, never as words: the template
//! filters of `render::time` write them in the recipient's zone when the email is rendered for
//! sending, so that "in 30 minutes" or "3 days ago" is true when it is read.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::Value;

/// One email's template data as JSON text: the kind's own fields, plus `kind` (its name), `user`
/// (a [`User`]) and `at` (the instant it was planned for), which every template may use.
#[derive(Debug, Clone, PartialEq)]
pub struct Payload {
    kind: &'static str,
    at: DateTime<Utc>,
    json: String,
}

impl Payload {
    /// `fields` (a struct or map that serializes to a JSON object) with `kind`, `user` and `at`
    /// added. Written straight to text: the planner composes up to a million at a fire.
    pub fn new(
        kind: &'static str,
        user: &User,
        at: DateTime<Utc>,
        fields: &impl Serialize,
    ) -> Payload {
        let mut json = Vec::with_capacity(512);
        json.extend_from_slice(b"{\"kind\":");
        serde_json::to_writer(&mut json, kind).expect("a name is JSON");
        json.extend_from_slice(b",\"user\":");
        serde_json::to_writer(&mut json, user).expect("a user is JSON");
        json.extend_from_slice(b",\"at\":\"");
        json.extend_from_slice(at.to_rfc3339_opts(SecondsFormat::Secs, true).as_bytes());
        json.push(b'"');
        let start = json.len();
        serde_json::to_writer(&mut json, fields).expect("the fields of an email are JSON");
        match &json[start..] {
            [b'{', b'}'] => {
                json.truncate(start);
                json.push(b'}');
            }
            [b'{', ..] => json[start] = b',',
            other => panic!(
                "the fields of a {kind} email must be a JSON object, not {}",
                String::from_utf8_lossy(other)
            ),
        }
        Payload {
            kind,
            at,
            json: String::from_utf8(json).expect("serde_json writes UTF-8"),
        }
    }

    /// The name of the kind that composed it, which names its templates folder.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The instant it was planned for: samples are rendered as read at that instant.
    pub fn at(&self) -> DateTime<Utc> {
        self.at
    }

    /// The payload as a JSON value, as the workers read it back from PostgreSQL.
    pub fn to_value(&self) -> Value {
        serde_json::from_str(&self.json).expect("the payload was written as JSON")
    }

    /// The payload as JSON text, as the planner stores it.
    pub fn into_json(self) -> String {
        self.json
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

/// An instant as a payload stores it: RFC 3339 in UTC, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Instant(pub DateTime<Utc>);

impl Serialize for Instant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.format("%Y-%m-%dT%H:%M:%SZ"))
    }
}

/// A task as templates see it: `task.title`, `task.due_at` (an instant, for the time filters)
/// and `task.path` when the app gives one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task<'a> {
    pub title: &'a str,
    pub due_at: Option<Instant>,
    /// The task's path in the app (`/tasks/42`), when the app gives one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<&'a str>,
}

impl<'a> From<&'a crate::source::TaskRow> for Task<'a> {
    fn from(t: &'a crate::source::TaskRow) -> Task<'a> {
        Task {
            title: &t.title,
            due_at: t.due_at.map(Instant),
            path: t.link_path.as_deref(),
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
        let at = DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let p = Payload::new("weekly_report", &user, at, &serde_json::json!({ "n": 1 }));
        assert_eq!(p.kind(), "weekly_report");
        let v = p.to_value();
        assert_eq!(v["user"]["name"], "Ada");
        assert_eq!(v["n"], 1);
        assert_eq!(v["at"], "2026-11-23T09:00:00Z");
        let empty = Payload::new("x", &user, at, &serde_json::json!({}));
        assert_eq!(empty.to_value()["kind"], "x");
    }
}
