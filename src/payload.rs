//! What an email says, as its templates see it: composed by a kind, stored with the delivery,
//! rendered by `render`.
//!
//! Times are stored as instants (RFC 3339) and days as ISO dates, never as words: the template
//! filters of `render::time` write them in the recipient's zone when the email is rendered for
//! sending, so that "in 30 minutes" or "3 days ago" is true when it is read.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
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
        let mut text = [0u8; 20];
        match self.write(&mut text) {
            Some(text) => s.serialize_str(text),
            // Outside four-digit years RFC 3339 has no form; chrono's own is as good as any.
            None => s.serialize_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true)),
        }
    }
}

impl Instant {
    /// `2026-11-22T17:00:00Z`, written digit by digit: a fire writes a few million of these, and
    /// chrono's `format` parses its pattern again on every call (a tenth of a plan's time).
    fn write<'b>(&self, text: &'b mut [u8; 20]) -> Option<&'b str> {
        let t = self.0;
        let year = u32::try_from(t.year()).ok().filter(|y| *y <= 9999)?;
        let mut put = |at: usize, width: usize, mut n: u32| {
            for i in (at..at + width).rev() {
                text[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, year);
        put(5, 2, t.month());
        put(8, 2, t.day());
        put(11, 2, t.hour());
        put(14, 2, t.minute());
        put(17, 2, t.second());
        for (at, sep) in [
            (4, b'-'),
            (7, b'-'),
            (10, b'T'),
            (13, b':'),
            (16, b':'),
            (19, b'Z'),
        ] {
            text[at] = sep;
        }
        Some(std::str::from_utf8(text).expect("digits and separators are ASCII"))
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

    #[test]
    fn an_instant_is_written_as_chrono_writes_it() {
        // Every second of a leap day, the first and last instants of four-digit years, and a
        // sweep of a century in uneven steps.
        let start = DateTime::parse_from_rfc3339("2024-02-29T00:00:00Z")
            .unwrap()
            .to_utc();
        let mut instants: Vec<DateTime<Utc>> = (0..86_400)
            .map(|s| start + chrono::Duration::seconds(s))
            .collect();
        instants.extend((0..40_000).map(|i| start + chrono::Duration::seconds(i * 86_399 + 7)));
        for edge in [
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
            "1970-01-01T00:00:00Z",
        ] {
            instants.push(DateTime::parse_from_rfc3339(edge).unwrap().to_utc());
        }
        for t in instants {
            let ours = serde_json::to_string(&Instant(t)).unwrap();
            assert_eq!(
                ours,
                format!("\"{}\"", t.format("%Y-%m-%dT%H:%M:%SZ")),
                "{t:?}"
            );
        }
        let far = DateTime::<Utc>::from_timestamp(253_402_300_800, 0).unwrap(); // year 10000
        let ours = serde_json::to_string(&Instant(far)).unwrap();
        assert_eq!(
            ours,
            format!("\"{}\"", far.to_rfc3339_opts(SecondsFormat::Secs, true))
        );
    }
}
