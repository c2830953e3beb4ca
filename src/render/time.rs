//! The template filters that write times: in the recipient's zone (`user.timezone` of the
//! payload) and, for relative words, against `now`, the instant the email is rendered for
//! sending, so that "in 30 minutes" is still true after a retry or a paused provider.
//!
//! A payload stores instants as RFC 3339 text (`"2026-11-24T14:30:00Z"`) and days as ISO dates
//! (`"2026-11-24"`); the filters take either:
//!
//! | filter | writes |
//! |---|---|
//! | `date` or `date("%A %-d %B %Y")` | `Tue 24 Nov`, or the day in the format given |
//! | `time` | `09:30` |
//! | `datetime` | `Tue 24 Nov, 09:30` |
//! | `days_ago` | whole days from the instant to now, 0 when it is not past |
//! | `relative` | `in 30 minutes`, `in 2 hours`, `today at 15:00`, `tomorrow at 09:00`, `5 minutes ago`, `yesterday at 10:00`, `3 days ago`, `on Mon 30 Nov at 09:00` |

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use minijinja::{Environment, Error, ErrorKind, State};

/// The name under which the render instant is in every template's context.
pub const NOW: &str = "now";

/// Adds the filters to `env`.
pub fn register(env: &mut Environment<'static>) {
    env.add_filter("date", date);
    env.add_filter("time", time);
    env.add_filter("datetime", datetime);
    env.add_filter("days_ago", days_ago);
    env.add_filter("relative", relative);
}

/// An instant, or a day (read as its start in the recipient's zone, for `date`).
enum When {
    Instant(DateTime<Utc>),
    Day(NaiveDate),
}

fn invalid(what: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::InvalidOperation, what.to_string())
}

fn parse(value: &str) -> Result<When, Error> {
    if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        return Ok(When::Instant(t.with_timezone(&Utc)));
    }
    NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .map(When::Day)
        .map_err(|_| {
            invalid(format!(
                "{value:?} is not a time: a payload writes instants as RFC 3339 (2026-11-24T14:30:00Z) and days as 2026-11-24"
            ))
        })
}

fn instant(value: &str, filter: &str) -> Result<DateTime<Utc>, Error> {
    match parse(value)? {
        When::Instant(t) => Ok(t),
        When::Day(_) => Err(invalid(format!(
            "the {filter} filter needs an instant, not the day {value:?}"
        ))),
    }
}

/// The recipient's zone: `user.timezone` of the payload (UTC when it names no zone).
fn zone(state: &State) -> Tz {
    state
        .lookup("user")
        .and_then(|u| u.get_attr("timezone").ok())
        .and_then(|z| z.as_str().and_then(|z| z.parse().ok()))
        .unwrap_or(Tz::UTC)
}

/// The instant the email is rendered at, from the context.
fn now(state: &State) -> Result<DateTime<Utc>, Error> {
    let text = state
        .lookup(NOW)
        .and_then(|v| v.as_str().map(str::to_owned))
        .ok_or_else(|| invalid("the context has no `now`: render through Templates::render"))?;
    instant(&text, "now")
}

fn date(state: &State, value: &str, format: Option<&str>) -> Result<String, Error> {
    let format = format.unwrap_or("%a %-d %b");
    Ok(match parse(value)? {
        When::Instant(t) => t.with_timezone(&zone(state)).format(format).to_string(),
        When::Day(d) => d.format(format).to_string(),
    })
}

fn time(state: &State, value: &str) -> Result<String, Error> {
    let t = instant(value, "time")?;
    Ok(t.with_timezone(&zone(state)).format("%H:%M").to_string())
}

fn datetime(state: &State, value: &str) -> Result<String, Error> {
    let t = instant(value, "datetime")?;
    Ok(t.with_timezone(&zone(state))
        .format("%a %-d %b, %H:%M")
        .to_string())
}

fn days_ago(state: &State, value: &str) -> Result<i64, Error> {
    let t = instant(value, "days_ago")?;
    Ok((now(state)? - t).num_days().max(0))
}

fn relative(state: &State, value: &str) -> Result<String, Error> {
    let t = instant(value, "relative")?;
    Ok(words(t, now(state)?, zone(state)))
}

/// `t` said from `now` in `tz`: minutes and hours when near, the local day's name when not.
pub fn words(t: DateTime<Utc>, now: DateTime<Utc>, tz: Tz) -> String {
    let ahead = t - now;
    let away = ahead.abs();
    let local = t.with_timezone(&tz);
    let days = (local.date_naive() - now.with_timezone(&tz).date_naive()).num_days();
    let clock = local.format("%H:%M");
    if away < Duration::minutes(1) {
        return "now".into();
    }
    if away < Duration::hours(3) {
        let span = span(away);
        return if ahead > Duration::zero() {
            format!("in {span}")
        } else {
            format!("{span} ago")
        };
    }
    match days {
        0 => format!("today at {clock}"),
        1 => format!("tomorrow at {clock}"),
        -1 => format!("yesterday at {clock}"),
        d if d < 0 => format!("{} days ago", -d),
        _ => format!("on {} at {clock}", local.format("%a %-d %b")),
    }
}

/// "25 minutes", "1 hour", "2 hours 5 minutes": under three hours, to the minute.
fn span(d: Duration) -> String {
    let minutes = d.num_minutes();
    let (h, m) = (minutes / 60, minutes % 60);
    let unit = |n: i64, one: &str| format!("{n} {one}{}", if n == 1 { "" } else { "s" });
    match (h, m) {
        (0, m) => unit(m, "minute"),
        (h, 0) => unit(h, "hour"),
        (h, m) => format!("{} {}", unit(h, "hour"), unit(m, "minute")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn near_times_are_minutes_and_hours_far_ones_are_days() {
        let now = at("2026-11-23T22:00:00Z");
        let paris = chrono_tz::Europe::Paris; // 23:00 local
        let cases = [
            ("2026-11-23T22:00:20Z", "now"),
            ("2026-11-23T22:30:00Z", "in 30 minutes"),
            ("2026-11-23T23:00:00Z", "in 1 hour"),
            ("2026-11-24T00:05:00Z", "in 2 hours 5 minutes"),
            ("2026-11-24T08:00:00Z", "tomorrow at 09:00"),
            ("2026-11-26T08:00:00Z", "on Thu 26 Nov at 09:00"),
            ("2026-11-23T21:59:00Z", "1 minute ago"),
            ("2026-11-23T10:00:00Z", "today at 11:00"),
            ("2026-11-22T10:00:00Z", "yesterday at 11:00"),
            ("2026-11-20T10:00:00Z", "3 days ago"),
        ];
        for (t, want) in cases {
            assert_eq!(words(at(t), now, paris), want, "{t}");
        }
    }

    #[test]
    fn the_day_follows_the_recipients_zone() {
        // 23:30 UTC is already the next day in Tokyo and still the same one in New York.
        let now = at("2026-11-23T12:00:00Z");
        let t = at("2026-11-23T23:30:00Z");
        assert_eq!(words(t, now, chrono_tz::Asia::Tokyo), "tomorrow at 08:30");
        assert_eq!(
            words(t, now, chrono_tz::America::New_York),
            "today at 18:30"
        );
    }
}
