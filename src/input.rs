//! What an operator types, read one way for the CLI and the API alike: kinds, instants, ages, limits, and the messages for what is not there.
//!
//! Each parser returns a message that shows the value given and the fix; the caller names the
//! input (clap says `--limit`, the API says `"limit"`), so the two answer the same thing.

use chrono::{DateTime, FixedOffset, NaiveDateTime, Utc};

use crate::{kinds::Kind, store::DeliveryRow};

/// Rows a failed list shows unless told otherwise.
pub const DEFAULT_LIMIT: i64 = 100;
/// The most rows one failed list shows: narrow it with a kind or a `since` to see the rest.
pub const MAX_LIMIT: i64 = 10_000;

/// A kind of email, by name.
pub fn kind(text: &str) -> Result<Kind, String> {
    Kind::find(text)
        .ok_or_else(|| format!("there is no kind {text:?}; the kinds are {}", Kind::names()))
}

/// How many rows to show: a whole number from 1 to [`MAX_LIMIT`].
pub fn limit(text: &str) -> Result<i64, String> {
    match text.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?} is not a limit; give a whole number from 1 to {MAX_LIMIT}"
        )),
    }
}

/// An instant in RFC 3339, with its offset: `2026-11-30T09:00:00Z` or `…+01:00` (the seconds
/// may be left out: `2026-11-30T09:00Z`). A time with no offset is refused, because it could be
/// any of 27 hours.
pub fn instant(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = text
        .parse::<DateTime<FixedOffset>>()
        .or_else(|_| DateTime::parse_from_str(text, "%Y-%m-%dT%H:%M%#z"))
    {
        return Ok(t.with_timezone(&Utc));
    }
    let no_offset = [
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M",
    ]
    .iter()
    .any(|f| NaiveDateTime::parse_from_str(text, f).is_ok());
    Err(if no_offset {
        format!("{text:?} has no offset; add Z for UTC ({text}Z) or an offset such as {text}+01:00")
    } else {
        format!("{text:?} is not an instant; write it in RFC 3339, like 2026-11-30T09:00:00Z")
    })
}

/// Where a list of failed deliveries starts: an instant, or an age before now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    At(DateTime<Utc>),
    Age(std::time::Duration),
}

impl Since {
    /// An instant (`2026-11-01T00:00:00Z`) or an age (`24h`, `7d`).
    pub fn parse(text: &str) -> Result<Since, String> {
        if let Ok(age) = crate::config::parse_duration(text) {
            return Ok(Since::Age(age));
        }
        match instant(text) {
            Ok(t) => Ok(Since::At(t)),
            // A time that only lacks its offset: say so, rather than the general advice.
            Err(e) if e.contains("has no offset") => Err(e),
            Err(_) => Err(format!(
                "{text:?} is neither an instant (2026-11-01T00:00:00Z) nor an age (24h, 7d)"
            )),
        }
    }

    /// The instant this stands for when it is `now`. An age that reaches back before 1970
    /// means since 1970: Herald holds nothing older.
    pub fn resolve(self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Since::At(t) => t,
            Since::Age(age) => chrono::Duration::from_std(age)
                .ok()
                .and_then(|age| now.checked_sub_signed(age))
                .map_or(DateTime::UNIX_EPOCH, |t| t.max(DateTime::UNIX_EPOCH)),
        }
    }
}

/// Which failed deliveries to list, as `herald failed list` and `GET /api/failed` take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedFilter {
    pub kind: Option<Kind>,
    pub since: Option<Since>,
    pub limit: i64,
}

impl FailedFilter {
    /// The failed deliveries that match, newest first.
    pub async fn fetch(
        &self,
        store: &crate::store::Store,
        now: DateTime<Utc>,
    ) -> sqlx::Result<Vec<DeliveryRow>> {
        let since = self.since.map(|s| s.resolve(now));
        store
            .failed(self.kind.map(Kind::name), since, self.limit)
            .await
    }
}

/// Why a delivery was not retried: it does not exist (the API's 404), or it is not failed
/// (the API's 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotRetried {
    #[error("{0}")]
    Unknown(String),
    #[error("{0}")]
    NotFailed(String),
}

impl NotRetried {
    /// Delivery `id`, as found now (`None`: there is none).
    pub fn explain(id: i64, found: Option<&DeliveryRow>) -> NotRetried {
        match found {
            None => NotRetried::Unknown(no_delivery(id)),
            Some(d) => NotRetried::NotFailed(format!(
                "delivery {id} is {}, not failed; only failed deliveries can be retried",
                d.status
            )),
        }
    }
}

/// A user's id as the app gives it: a string (UUID, cuid, digits) or a whole number, which
/// becomes its digits. 1 to 255 characters, no control characters.
pub fn user_id(value: &serde_json::Value) -> Result<String, String> {
    let id = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        other => {
            return Err(format!(
                "{other} is not a user id; give the app's id of the user as a string (\"42\", a UUID) or a whole number"
            ));
        }
    };
    text_id(&id)
}

/// A user's id typed as text (a path segment, a command-line argument): 1 to 255 characters,
/// no control characters.
pub fn text_id(id: &str) -> Result<String, String> {
    if id.is_empty() || id.len() > 255 || id.chars().any(char::is_control) {
        return Err(format!(
            "{id:?} is not a user id; a user id is 1 to 255 characters without control characters, as the app's herald_users view gives it"
        ));
    }
    Ok(id.to_owned())
}

/// The message for a name that is no schedule's.
pub fn no_schedule(name: &str) -> String {
    format!(
        "no schedule named {name:?}; the schedules are {}",
        Kind::names()
    )
}

/// The message for an id that names no delivery.
pub fn no_delivery(id: i64) -> String {
    format!("there is no delivery {id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kind_is_one_of_the_kinds() {
        assert_eq!(kind("weekly_report").unwrap().name(), "weekly_report");
        let e = kind("nope").unwrap_err();
        assert!(e.contains("\"nope\"") && e.contains(&Kind::names()), "{e}");
    }

    #[test]
    fn a_limit_is_from_1_to_the_maximum() {
        assert_eq!(limit("1"), Ok(1));
        assert_eq!(limit("10000"), Ok(MAX_LIMIT));
        for bad in ["0", "-1", "10001", "ten", "", "1.5"] {
            let e = limit(bad).unwrap_err();
            assert!(e.contains("from 1 to 10000"), "{bad}: {e}");
        }
    }

    #[test]
    fn an_instant_needs_its_offset() {
        let t = instant("2026-11-30T09:00:00Z").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-30T09:00:00+00:00");
        let t = instant("2026-11-30T10:00:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-30T09:00:00+00:00");
        let t = instant("2026-11-30T10:00+01:00").unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-30T09:00:00+00:00");
        for naive in [
            "2026-11-30T09:00:00",
            "2026-11-30 09:00:00",
            "2026-11-30T09:00",
        ] {
            let e = instant(naive).unwrap_err();
            assert!(e.contains("has no offset") && e.contains("add Z"), "{e}");
            // The fixes it suggests are taken.
            for fixed in [format!("{naive}Z"), format!("{naive}+01:00")] {
                assert!(e.contains(&fixed), "{e}");
                assert!(instant(&fixed).is_ok(), "{fixed}");
            }
        }
        let e = instant("yesterday").unwrap_err();
        assert!(e.contains("RFC 3339"), "{e}");
    }

    #[test]
    fn since_is_an_age_or_an_instant() {
        let now = instant("2026-11-30T09:00:00Z").unwrap();
        let day = Since::parse("24h").unwrap();
        assert_eq!(day.resolve(now), instant("2026-11-29T09:00:00Z").unwrap());
        assert_eq!(
            Since::parse("2026-11-01T00:00:00Z").unwrap(),
            Since::At(instant("2026-11-01T00:00:00Z").unwrap())
        );
        let e = Since::parse("2026-11-01T00:00:00").unwrap_err();
        assert!(e.contains("has no offset"), "{e}");
        let e = Since::parse("last week").unwrap_err();
        assert!(e.contains("neither an instant") && e.contains("24h"), "{e}");
        // Further back than dates go: since 1970, before which Herald holds nothing.
        for age in ["300000y", "100y"] {
            assert_eq!(
                Since::parse(age).unwrap().resolve(now),
                DateTime::UNIX_EPOCH
            );
        }
    }
}
