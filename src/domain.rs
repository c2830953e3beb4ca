//! Plain validated types, local-calendar arithmetic, and the classes of a failed send
//! ([`ErrorClass`]) that the providers, the store and the metrics share. No I/O, no SQL, no SMTP.

use std::{fmt, str::FromStr, time::Duration};

use chrono::{DateTime, Days, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// An email address with an optional display name, checked for the obvious mistakes.
///
/// The SMTP server has the last word; this catches what is certainly wrong before anything is
/// queued (no `@`, spaces, an empty part, a missing `>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub address: String,
}

/// A user's name as a mailbox's display name: one line, control characters dropped (it goes into
/// a header), `None` when empty.
pub fn display_name(name: &str) -> Option<String> {
    let clean: Vec<&str> = name
        .split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect();
    (!clean.is_empty()).then(|| clean.join(" "))
}

impl Mailbox {
    pub fn parse(text: &str) -> Result<Mailbox, String> {
        let text = text.trim();
        let (name, address) = match (text.find('<'), text.ends_with('>')) {
            (Some(open), true) => {
                let name = text[..open].trim().trim_matches('"').trim();
                (
                    Some(name.to_owned()).filter(|n| !n.is_empty()),
                    &text[open + 1..text.len() - 1],
                )
            }
            (Some(_), false) => {
                return Err(format!("{text:?} opens '<' but does not end with '>'"));
            }
            (None, _) => (None, text),
        };
        let address = address.trim();
        let Some((local, domain)) = address.rsplit_once('@') else {
            return Err(format!(
                "{address:?} is not an email address: it has no '@'"
            ));
        };
        if local.is_empty() || domain.is_empty() {
            return Err(format!(
                "{address:?} is not an email address: a part around '@' is empty"
            ));
        }
        if address
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
        {
            return Err(format!(
                "{address:?} is not an email address: it contains spaces or brackets"
            ));
        }
        if domain.starts_with('.') || domain.ends_with('.') || domain.contains("..") {
            return Err(format!(
                "{address:?} is not an email address: its domain {domain:?} is malformed"
            ));
        }
        Ok(Mailbox {
            name,
            address: address.to_owned(),
        })
    }

    /// The part after `@`, used to build Message-IDs.
    pub fn domain(&self) -> &str {
        self.address
            .rsplit_once('@')
            .map(|(_, d)| d)
            .unwrap_or("localhost")
    }
}

impl fmt::Display for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "\"{}\" <{}>", n.replace('"', ""), self.address),
            None => f.write_str(&self.address),
        }
    }
}

/// Parses a cron expression of cron 0.17: 6 or 7 fields, seconds first.
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let fields = expr.split_whitespace().count();
    if fields == 5 {
        return Err(format!(
            "{expr:?} has 5 fields; expected 6 (seconds first), e.g. \"0 {expr}\""
        ));
    }
    if !(6..=7).contains(&fields) {
        return Err(format!(
            "{expr:?} has {fields} fields; expected 6 (sec min hour day month weekday), e.g. \"0 0 9 * * *\""
        ));
    }
    cron::Schedule::from_str(expr).map_err(|e| {
        format!("{expr:?} is not a valid cron expression ({e}); fields are sec min hour day month weekday, e.g. \"0 0 17 * * Sun\"")
    })
}

/// Parses an IANA zone name such as `Europe/Paris`.
pub fn parse_zone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name.trim()).map_err(|_| {
        format!("{name:?} is not an IANA time zone; use a name like \"UTC\", \"Europe/Paris\" or \"America/New_York\"")
    })
}

/// The instant a local calendar day starts. Midnight can fall in a DST gap (e.g. America/Santiago,
/// Asia/Beirut); then the day starts at the first valid instant after it.
pub fn start_of_local_day(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let mut t = date.and_time(NaiveTime::MIN);
    // A gap is at most a few hours; step through it a quarter hour at a time.
    for _ in 0..(4 * 26) {
        match tz.from_local_datetime(&t) {
            LocalResult::Single(d) => return d.with_timezone(&Utc),
            LocalResult::Ambiguous(first, _) => return first.with_timezone(&Utc),
            LocalResult::None => t += chrono::Duration::minutes(15),
        }
    }
    Utc.from_utc_datetime(&date.and_time(NaiveTime::MIN))
}

/// `[start, end)` of a local calendar day, as UTC instants. 23 or 25 hours long on DST days.
pub fn local_day(tz: Tz, date: NaiveDate) -> (DateTime<Utc>, DateTime<Utc>) {
    let next = date.checked_add_days(Days::new(1)).unwrap_or(date);
    (start_of_local_day(tz, date), start_of_local_day(tz, next))
}

/// The local date of an instant in a zone.
pub fn local_date(tz: Tz, at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&tz).date_naive()
}

/// "Tomorrow" for someone in `tz` at the instant `at`.
pub fn tomorrow(tz: Tz, at: DateTime<Utc>) -> (NaiveDate, DateTime<Utc>, DateTime<Utc>) {
    let date = local_date(tz, at)
        .checked_add_days(Days::new(1))
        .expect("date in range");
    let (start, end) = local_day(tz, date);
    (date, start, end)
}

/// The week before `at`: from the same local wall time 7 local days earlier, up to `at`.
/// Measured on the local calendar, so it is 167 or 169 hours long across a DST change.
pub fn week_before(tz: Tz, at: DateTime<Utc>) -> (DateTime<Utc>, DateTime<Utc>) {
    let local = at.with_timezone(&tz).naive_local();
    let earlier = local - chrono::Duration::days(7);
    let start = match tz.from_local_datetime(&earlier) {
        LocalResult::Single(d) | LocalResult::Ambiguous(d, _) => d.with_timezone(&Utc),
        LocalResult::None => {
            start_of_local_day(tz, earlier.date()).max(at - chrono::Duration::days(7))
        }
    };
    (start, at)
}

/// When the email about one task goes, from the task's due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    /// This long before the due time (`[schedules.<kind>] before` changes it).
    Before(Duration),
    /// At this hour (00-23) of the owner's local clock, the first time it comes after the due
    /// time: "the morning after it became overdue".
    HourAfter(u32),
}

impl When {
    /// The instant of the email about a task due at `due`, for an owner in `tz`. An hour that a
    /// DST change skips that day is taken at the first instant after the gap.
    pub fn instant(self, due: DateTime<Utc>, tz: Tz) -> DateTime<Utc> {
        match self {
            When::Before(before) => due - chrono::Duration::from_std(before).unwrap_or_default(),
            When::HourAfter(hour) => {
                let time = NaiveTime::from_hms_opt(hour, 0, 0).unwrap_or(NaiveTime::MIN);
                let on = |date: chrono::NaiveDate| {
                    let local = date.and_time(time);
                    tz.from_local_datetime(&local)
                        .earliest()
                        .or_else(|| {
                            tz.from_local_datetime(&(local + chrono::Duration::hours(1)))
                                .earliest()
                        })
                        .map(|t| t.with_timezone(&Utc))
                        .unwrap_or(due)
                };
                let date = due.with_timezone(&tz).date_naive();
                let same_day = on(date);
                if same_day > due {
                    same_day
                } else {
                    on(date.succ_opt().unwrap_or(date))
                }
            }
        }
    }

    /// The due times to read for the instants in `(from, to]`, in every zone; the planner
    /// keeps the tasks whose own instant is inside.
    pub fn due_window(
        self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> (DateTime<Utc>, DateTime<Utc>) {
        match self {
            When::Before(before) => {
                let before = chrono::Duration::from_std(before).unwrap_or_default();
                (from + before, to + before)
            }
            // A day and the largest DST change before the instant.
            When::HourAfter(_) => (from - chrono::Duration::hours(26), to),
        }
    }

    /// How long an email stays current after its instant, for a trigger by hand: until the
    /// task is due (`Before`), or for a day.
    pub fn current_for(self) -> chrono::Duration {
        match self {
            When::Before(before) => chrono::Duration::from_std(before).unwrap_or_default(),
            When::HourAfter(_) => chrono::Duration::days(1),
        }
    }

    /// In a few words: `2h before each task is due`, `at 08:00 local after each task falls due`.
    pub fn describe(self) -> String {
        match self {
            When::Before(before) => format!(
                "{} before each task is due",
                humantime::format_duration(before)
            ),
            When::HourAfter(hour) => format!("at {hour:02}:00 local after each task falls due"),
        }
    }
}

/// How a failed send should be handled. `<ErrorClass as strum::IntoEnumIterator>::iter()` (strum) lists every class: the
/// metrics show each one, also a class added later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::EnumIter)]
pub enum ErrorClass {
    /// Will not work as it is (SMTP 5xx, Resend 400/422, an invalid address): failed at once,
    /// and never tried on another provider.
    Permanent,
    /// Might work later, and the provider said or showed that it did not take the email: a
    /// connection refused or not opened within `mail.connect_timeout`, SMTP 4xx, Resend 503
    /// (with or without `retry-after`). Retried after 2 s, 4 s, 8 s, or on the next provider.
    Transient,
    /// Herald cannot tell whether the provider took the email (a Resend request without an
    /// answer: timeout, connection lost after sending; Resend 500, 502, 504 and any other 5xx
    /// but 503: a gateway or server error after Resend may have taken the request, for a batch
    /// up to 100 emails; a 2xx answer Herald cannot read; Resend 409
    /// `concurrent_idempotent_requests` or `invalid_idempotent_request`; an SMTP timeout
    /// without a reply code). Never tried on another provider: retried on the same one after
    /// 2 s, 4 s, 8 s with the same idempotency key (Resend replays its first answer) or the same
    /// Message-ID (SMTP), using an attempt each time. When the retries are used up the delivery
    /// fails with a `last_error` saying that a copy may have been delivered.
    Unknown,
    /// The provider asks Herald to slow down (Resend 429 `rate_limit_exceeded`, SMTP
    /// 421/450/451 with a throttling text): the provider is paused for `retry-after`, and the
    /// wait does not use up an attempt.
    RateLimited,
    /// A daily or monthly quota is used up: the provider is paused until the reset, the emails
    /// stay queued or go to the next provider.
    Quota,
    /// Herald's own setup is wrong (Resend 401/403, SMTP authentication, an unverified sender
    /// domain, TLS): the provider is paused and nothing is marked failed.
    Configuration,
}

impl ErrorClass {
    /// The name stored in `delivery_attempts.outcome`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Permanent => "permanent",
            ErrorClass::Transient => "transient",
            ErrorClass::RateLimited => "rate_limited",
            ErrorClass::Quota => "quota",
            ErrorClass::Configuration => "configuration",
            ErrorClass::Unknown => "unknown",
        }
    }

    pub fn parse(text: &str) -> Option<ErrorClass> {
        <ErrorClass as strum::IntoEnumIterator>::iter().find(|c| c.as_str() == text)
    }

    /// Whether the email moves on to the next provider. A permanent failure belongs to the
    /// recipient, a rate limit only asks to wait, and an unknown outcome may already be a sent
    /// email: none of them fails over.
    pub fn fails_over(self) -> bool {
        matches!(
            self,
            ErrorClass::Transient | ErrorClass::Quota | ErrorClass::Configuration
        )
    }
}

impl std::fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn tomorrow_follows_the_users_zone() {
        // 2026-11-23 20:00 UTC is already Tuesday 24th 09:00 in Auckland (+13), and still
        // Monday 23rd 12:00 in Los Angeles (-8).
        let at = utc("2026-11-23T20:00:00Z");
        let (d, s, e) = tomorrow(chrono_tz::Pacific::Auckland, at);
        assert_eq!(d.to_string(), "2026-11-25");
        assert_eq!(
            (s, e),
            (utc("2026-11-24T11:00:00Z"), utc("2026-11-25T11:00:00Z"))
        );
        let (d, s, _) = tomorrow(chrono_tz::America::Los_Angeles, at);
        assert_eq!(d.to_string(), "2026-11-24");
        assert_eq!(s, utc("2026-11-24T08:00:00Z"));
    }

    #[test]
    fn dst_days_have_23_and_25_hours() {
        let paris = chrono_tz::Europe::Paris;
        let (s, e) = local_day(paris, NaiveDate::from_ymd_opt(2027, 3, 28).unwrap());
        assert_eq!((e - s).num_hours(), 23);
        let (s, e) = local_day(paris, NaiveDate::from_ymd_opt(2027, 10, 31).unwrap());
        assert_eq!((e - s).num_hours(), 25);
    }

    #[test]
    fn midnight_in_a_gap_starts_the_day_at_the_first_valid_instant() {
        // Santiago springs forward at 00:00 on 2026-09-06: the day starts at 01:00 local (-03).
        let tz = chrono_tz::America::Santiago;
        let s = start_of_local_day(tz, NaiveDate::from_ymd_opt(2026, 9, 6).unwrap());
        assert_eq!(s, utc("2026-09-06T04:00:00Z"));
    }

    #[test]
    fn week_before_spans_seven_local_days() {
        let paris = chrono_tz::Europe::Paris;
        // Sunday 2027-04-04 17:00 +02:00; a week earlier was 17:00 +01:00, before the change.
        let at = utc("2027-04-04T15:00:00Z");
        let (s, e) = week_before(paris, at);
        assert_eq!(s, utc("2027-03-28T15:00:00Z"));
        assert_eq!(e, at);
        assert_eq!((e - s).num_hours(), 168);
    }

    #[test]
    fn cron_and_zone_errors_say_how_to_fix() {
        let e = parse_cron("0 17 * * Sun").unwrap_err();
        assert!(
            e.contains("has 5 fields; expected 6 (seconds first)"),
            "{e}"
        );
        assert!(parse_cron("0 0 17 * * Sun").is_ok());
        assert!(
            parse_cron("0 0 25 * * *")
                .unwrap_err()
                .contains("not a valid cron")
        );
        assert!(parse_zone("Europe/Pariss").unwrap_err().contains("IANA"));
    }

    #[test]
    fn mailboxes() {
        let m = Mailbox::parse("Herald <herald@example.com>").unwrap();
        assert_eq!(m.name.as_deref(), Some("Herald"));
        assert_eq!(m.domain(), "example.com");
        assert_eq!(Mailbox::parse("a@b.c").unwrap().to_string(), "a@b.c");
        for bad in ["nobody", "a b@c.d", "@x.y", "x@", "Name <a@b.c", "a@b..c"] {
            assert!(Mailbox::parse(bad).is_err(), "{bad}");
        }
    }
}
