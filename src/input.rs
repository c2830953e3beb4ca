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

/// The largest whole number written with a fraction (`42.0`) taken as a user id, either side of
/// 0: 2^52 - 1, below which a double's neighbours are at most half apart, so that serde_json's
/// reading of a float (which may be a unit in the last place off) never lands on another whole
/// number. Written as `42`, any 64-bit whole number is read exactly.
pub const MAX_EXACT_WHOLE: i64 = (1 << 52) - 1;

/// A user's id as the app gives it: a string (UUID, cuid, digits) or a whole number (`42`, any
/// `i64` or `u64`; or `42.0`, a JSON Schema `integer` too, up to [`MAX_EXACT_WHOLE`]), which
/// becomes its digits. 1 to 255 characters, no control characters.
pub fn user_id(value: &serde_json::Value) -> Result<String, String> {
    let id = match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => whole(n),
        _ => None,
    };
    let id = id.ok_or_else(|| {
        format!(
            "{value} is not a user id; give the app's id of the user as a string (\"42\", a UUID) or a whole number"
        )
    })?;
    text_id(&id)
}

/// The digits of the whole number `n` is, if it is one and they are sure.
fn whole(n: &serde_json::Number) -> Option<String> {
    if n.is_i64() || n.is_u64() {
        return Some(n.to_string());
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() <= MAX_EXACT_WHOLE as f64).then(|| (f as i64).to_string())
}

/// The most characters (Unicode scalar values, as JSON Schema's `maxLength` counts) in a user id.
pub const USER_ID_MAX_CHARS: usize = 255;

/// What [`char::is_control`] is true of (Unicode's general category Cc), as ranges: no user id
/// holds one.
pub const CONTROL_CHARACTERS: [(char, char); 2] = [('\u{0}', '\u{1f}'), ('\u{7f}', '\u{9f}')];

/// A user's id typed as text (a path segment, a command-line argument): 1 to 255 characters,
/// no control characters.
pub fn text_id(id: &str) -> Result<String, String> {
    let chars = id.chars().count();
    if chars == 0 || chars > USER_ID_MAX_CHARS || id.chars().any(char::is_control) {
        return Err(format!(
            "{id:?} is not a user id; a user id is 1 to 255 characters without control characters, as the app's herald_users view gives it"
        ));
    }
    Ok(id.to_owned())
}

/// The inputs above as the patterns of the API's document (JSON Schema's `pattern`, ECMA-262
/// regular expressions, anchored at both ends): what each pattern matches, its parser accepts
/// (the tests below draw strings from each pattern and parse them). The parsers take a little
/// more than the patterns say (chrono's relaxed RFC 3339: `t` or a space for `T`, `UTC` for `Z`;
/// humantime's fractions, spaces inside numbers and more units), which the document leaves out.
pub mod patterns {
    use super::CONTROL_CHARACTERS;

    /// Month and day of a date, every year (the 29th of February is the leap years' own).
    const MONTH_DAY: &str = "(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))";
    /// Any four-digit year, and the leap years among them (every 4th year, but only every 400th
    /// century: the proleptic Gregorian calendar chrono reads).
    const YEAR: &str = "[0-9]{4}";
    const LEAP_YEAR: &str =
        "(?:[0-9]{2}(?:0[48]|[2468][048]|[13579][26])|(?:[02468][048]|[13579][26])00)";
    /// 1971 to 9998, and the leap years among them: the years of an instant to plan
    /// ([`crate::schedule::check_at`]: 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z), whatever its
    /// offset, with 1970 and 9999 but their first and last day below.
    const PLAN_YEAR: &str =
        "(?:197[1-9]|19[89][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])";
    const PLAN_LEAP_YEAR: &str = "(?:19(?:[79][26]|8[048])|[2-9][0-9](?:0[48]|[2468][048]|[13579][26])|(?:[2468][048]|[3579][26])00)";
    const FIRST_YEAR: &str = "1970-(?:01-(?:0[2-9]|[12][0-9]|3[01])|(?:0[3578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))";
    const LAST_YEAR: &str = "9999-(?:(?:0[13578]|10)-(?:0[1-9]|[12][0-9]|3[01])|12-(?:0[1-9]|[12][0-9]|30)|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))";
    /// `T`, the hour and minute, and the seconds (with up to 9 digits of fraction) if given;
    /// then `Z` or an offset.
    const TIME: &str = "T(?:[01][0-9]|2[0-3]):[0-5][0-9](?::[0-5][0-9](?:\\.[0-9]{1,9})?)?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])";
    /// The units of an age ([`crate::config::parse_duration`], humantime's).
    const UNIT: &str = "(?:nanos|nsec|ns|usec|us|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y)";
    /// An age: up to 10 numbers of up to 9 digits each with a unit (`24h`, `7d`, `1h 30m`),
    /// which no sum makes too long for humantime.
    fn age() -> String {
        format!("[0-9]{{1,9}} *{UNIT}(?: *[0-9]{{1,9}} *{UNIT}){{0,9}}")
    }

    fn anchored(alternatives: &[String]) -> String {
        format!("^(?:{})$", alternatives.join("|"))
    }

    /// A user id's characters: none of [`CONTROL_CHARACTERS`]. Its length is `minLength` 1 and
    /// `maxLength` [`super::USER_ID_MAX_CHARS`].
    pub fn user_id() -> String {
        let ranges: String = CONTROL_CHARACTERS
            .iter()
            .map(|&(a, b)| format!("\\u{:04X}-\\u{:04X}", a as u32, b as u32))
            .collect();
        format!("^[^{ranges}]*$")
    }

    /// An instant to plan or preview ([`super::instant`], then
    /// [`crate::schedule::check_at`]): `2026-11-30T09:00:00Z`, `2026-11-30T10:00+01:00`.
    pub fn plan_instant() -> String {
        anchored(&[format!(
            "(?:{PLAN_YEAR}-{MONTH_DAY}|{PLAN_LEAP_YEAR}-02-29|{FIRST_YEAR}|{LAST_YEAR}){TIME}"
        )])
    }

    /// Where a list starts ([`super::Since::parse`]): an age (`24h`, `7d`) or an instant of any
    /// four-digit year.
    pub fn since() -> String {
        anchored(&[
            age(),
            format!("(?:{YEAR}-{MONTH_DAY}|{LEAP_YEAR}-02-29){TIME}"),
        ])
    }

    /// The pattern's text between its anchors, for the tests' generators.
    #[cfg(test)]
    pub(super) fn unanchored(pattern: &str) -> &str {
        pattern
            .strip_prefix('^')
            .and_then(|p| p.strip_suffix('$'))
            .expect("anchored")
    }
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

    /// A number with a fraction is no user id, also where a fast float parser rounds it to a
    /// whole one (serde_json without `float_roundtrip` read this as -4084908491582525.0, and
    /// the trigger sent to user "-4084908491582525": a proptest case found it).
    #[test]
    fn a_number_with_a_fraction_is_refused_however_close_to_a_whole_one() {
        for text in ["-4084908491582524.5", "4084908491582524.5", "42.5", "1e-7"] {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            let refused = user_id(&value).expect_err(text);
            assert!(refused.contains("is not a user id"), "{text}: {refused}");
        }
        assert_eq!(user_id(&serde_json::json!(42.0)).unwrap(), "42");
    }

    #[test]
    fn a_user_id_is_1_to_255_characters_without_control_characters() {
        assert!(text_id("42").is_ok());
        // Characters, not bytes: 255 two-byte characters are a user id, 256 are not.
        assert!(text_id(&"é".repeat(255)).is_ok());
        assert!(text_id(&"é".repeat(256)).is_err());
        assert!(text_id(&"a".repeat(256)).is_err());
        for bad in ["", "a\nb", "\u{7f}", "a\u{85}"] {
            let e = text_id(bad).unwrap_err();
            assert!(e.contains("1 to 255 characters"), "{bad:?}: {e}");
        }
        assert_eq!(user_id(&serde_json::json!(42)), Ok("42".to_owned()));
        // A whole number in JSON Schema's sense: any 64-bit one as digits, and one written
        // with a fraction while a double holds it exactly.
        for (number, id) in [
            ("42.0", "42"),
            ("-478.0", "-478"),
            ("-0.0", "0"),
            ("4503599627370495.0", "4503599627370495"),
            ("18446744073709551615", "18446744073709551615"),
            ("-9223372036854775808", "-9223372036854775808"),
        ] {
            let v: serde_json::Value = serde_json::from_str(number).unwrap();
            assert_eq!(user_id(&v), Ok(id.to_owned()), "{number}");
        }
        for number in [
            "42.5",
            "4503599627370496.0",
            "18446744073709551616",
            "1e300",
            "true",
        ] {
            let v: serde_json::Value = serde_json::from_str(number).unwrap();
            let e = user_id(&v).unwrap_err();
            assert!(e.contains("is not a user id"), "{number}: {e}");
        }
    }

    #[test]
    fn the_control_characters_are_those_char_is_control_says() {
        let listed = |c: char| {
            CONTROL_CHARACTERS
                .iter()
                .any(|&(a, b)| (a..=b).contains(&c))
        };
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            assert_eq!(c.is_control(), listed(c), "{c:?}");
        }
        assert_eq!(patterns::user_id(), r"^[^\u0000-\u001F\u007F-\u009F]*$");
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

    /// What the document's patterns match, the parsers accept: the strings Schemathesis draws
    /// from them are drawn here too.
    mod matched_is_accepted {
        use proptest::{prelude::*, string::string_regex};

        use super::*;

        fn drawn(pattern: &str) -> impl Strategy<Value = String> {
            string_regex(patterns::unanchored(pattern)).expect("a pattern proptest reads")
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(512)))]

            #[test]
            fn a_user_id(id in drawn(&patterns::user_id().replace("]*", &format!("]{{1,{USER_ID_MAX_CHARS}}}")))) {
                prop_assert_eq!(text_id(&id), Ok(id.clone()));
                prop_assert_eq!(user_id(&serde_json::Value::String(id.clone())), Ok(id));
            }

            /// `n.0` is `n` while its digits fit a double's mantissa (serde_json reads it
            /// exactly), and past that is `n` or refused, never another number.
            #[test]
            fn a_whole_number_with_a_fraction_is_its_digits_or_refused(n in -MAX_EXACT_WHOLE..=MAX_EXACT_WHOLE) {
                let v: serde_json::Value = serde_json::from_str(&format!("{n}.0")).unwrap();
                let read = user_id(&v);
                if n.abs() <= ((1_i64 << 53) - 1) / 10 {
                    prop_assert_eq!(read, Ok(n.to_string()));
                } else if let Ok(id) = read {
                    prop_assert_eq!(id, n.to_string());
                }
            }

            #[test]
            fn an_instant_to_plan(text in drawn(&patterns::plan_instant())) {
                let at = instant(&text);
                prop_assert!(at.is_ok(), "{}: {:?}", text, at);
                let planned = crate::schedule::check_at(at.unwrap());
                prop_assert!(planned.is_ok(), "{}: {:?}", text, planned);
            }

            #[test]
            fn a_since(text in drawn(&patterns::since())) {
                let since = Since::parse(&text);
                prop_assert!(since.is_ok(), "{}: {:?}", text, since);
                let _ = since.unwrap().resolve(Utc::now());
            }
        }
    }
}
