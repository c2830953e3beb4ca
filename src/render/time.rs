//! The template filters that write times, and `t`, which writes a message: in the email's
//! locale (`locale` of the context, see [`super::i18n`]), in the recipient's zone
//! (`user.timezone` of the payload) and, for relative words, against `now`, the instant the
//! email is rendered for sending, so that "in 30 minutes" is still true after a retry or a
//! paused provider.
//!
//! A payload stores instants as RFC 3339 text (`"2026-11-24T14:30:00Z"`) and days as ISO dates
//! (`"2026-11-24"`); the filters take either:
//!
//! | filter | writes |
//! |---|---|
//! | `date`, `date("long")` or `date("%A %-d")` | `Tue 24 Nov`, `Tuesday 24 November 2026` (the locale's `date-short` and `date-long` patterns), or the day in the strftime pattern given |
//! | `time` | `09:30` |
//! | `datetime` | `Tue 24 Nov, 09:30` |
//! | `days_ago` | whole days from the instant to now, 0 when it is not past |
//! | `relative` | `in 30 minutes`, `in 2 hours`, `today at 15:00`, `tomorrow at 09:00`, `5 minutes ago`, `yesterday at 10:00`, `3 days ago`, `on Mon 30 Nov at 09:00` |
//!
//! In French the same filters write `mar. 24 nov.`, `mardi 24 novembre 2026`, `mar. 24 nov. à
//! 09:30`, `dans 30 minutes`, `demain à 09:00`: the words are the `relative-*`, `span-*` and
//! `date*` messages of each locale.

use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use fluent_bundle::FluentArgs;
use minijinja::{Environment, Error, ErrorKind, State, value::Kwargs};

use super::i18n::{Catalog, LocaleId};

/// The name under which the render instant is in every template's context.
pub const NOW: &str = "now";
/// The name under which the resolved locale's tag is in every template's context.
pub const LOCALE: &str = "locale";

/// Adds the filters, and the `t` function that writes a message, to `env`.
pub fn register(env: &mut Environment<'static>, catalog: &Arc<Catalog>) {
    let c = catalog.clone();
    env.add_filter("date", move |s: &State, v: &str, f: Option<&str>| {
        date(&c, s, v, f)
    });
    env.add_filter("time", time);
    let c = catalog.clone();
    env.add_filter("datetime", move |s: &State, v: &str| datetime(&c, s, v));
    env.add_filter("days_ago", days_ago);
    let c = catalog.clone();
    env.add_filter("relative", move |s: &State, v: &str| relative(&c, s, v));
    let c = catalog.clone();
    env.add_function("t", move |s: &State, id: &str, args: Kwargs| {
        t(&c, s, id, args)
    });
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

/// The email's locale, from the context (the default one outside an email).
fn locale(catalog: &Catalog, state: &State) -> LocaleId {
    state
        .lookup(LOCALE)
        .and_then(|v| v.as_str().map(|tag| catalog.by_tag(tag)))
        .unwrap_or_else(|| catalog.default_locale())
}

/// A template's `t("message-id", name=value, …)`: the message in the email's locale.
fn t(catalog: &Catalog, state: &State, id: &str, kwargs: Kwargs) -> Result<String, Error> {
    let mut args = FluentArgs::new();
    for name in kwargs.args() {
        let value: minijinja::Value = kwargs.get(name)?;
        if let Some(n) = value.as_i64() {
            args.set(name.to_owned(), n);
        } else if let Ok(x) = f64::try_from(value.clone()) {
            args.set(name.to_owned(), x);
        } else {
            args.set(name.to_owned(), value.to_string());
        }
    }
    catalog
        .message(locale(catalog, state), id, Some(&args))
        .map_err(invalid)
}

/// Words for the email's locale: message `id` with `args`.
struct Words<'a> {
    catalog: &'a Catalog,
    locale: LocaleId,
}

impl Words<'_> {
    fn say(&self, id: &str, args: &[(&'static str, WordArg)]) -> Result<String, Error> {
        let mut fa = FluentArgs::with_capacity(args.len());
        for (name, value) in args {
            match value {
                WordArg::N(n) => fa.set(*name, *n),
                WordArg::S(s) => fa.set(*name, s.clone()),
            }
        }
        self.catalog
            .message(self.locale, id, Some(&fa))
            .map_err(invalid)
    }

    /// A strftime pattern from the messages (`date-short`), in the locale's names.
    fn pattern(&self, id: &str) -> Result<String, Error> {
        self.say(id, &[])
    }

    fn write(&self, t: &chrono::DateTime<Tz>, pattern: &str) -> String {
        t.format_localized(pattern, self.catalog.dates(self.locale))
            .to_string()
    }
}

enum WordArg {
    N(i64),
    S(String),
}

fn words_of<'a>(catalog: &'a Catalog, state: &State) -> Words<'a> {
    Words {
        catalog,
        locale: locale(catalog, state),
    }
}

fn date(
    catalog: &Catalog,
    state: &State,
    value: &str,
    format: Option<&str>,
) -> Result<String, Error> {
    let w = words_of(catalog, state);
    let pattern = match format {
        None | Some("short") => w.pattern("date-short")?,
        Some("long") => w.pattern("date-long")?,
        Some(other) => other.to_owned(),
    };
    Ok(match parse(value)? {
        When::Instant(t) => w.write(&t.with_timezone(&zone(state)), &pattern),
        When::Day(d) => d
            .format_localized(&pattern, catalog.dates(w.locale))
            .to_string(),
    })
}

fn time(state: &State, value: &str) -> Result<String, Error> {
    let t = instant(value, "time")?;
    Ok(t.with_timezone(&zone(state)).format("%H:%M").to_string())
}

fn datetime(catalog: &Catalog, state: &State, value: &str) -> Result<String, Error> {
    let t = instant(value, "datetime")?.with_timezone(&zone(state));
    let w = words_of(catalog, state);
    let date = w.write(&t, &w.pattern("date-short")?);
    w.say(
        "datetime",
        &[
            ("date", WordArg::S(date)),
            ("time", WordArg::S(t.format("%H:%M").to_string())),
        ],
    )
}

fn days_ago(state: &State, value: &str) -> Result<i64, Error> {
    let t = instant(value, "days_ago")?;
    Ok((now(state)? - t).num_days().max(0))
}

fn relative(catalog: &Catalog, state: &State, value: &str) -> Result<String, Error> {
    let t = instant(value, "relative")?;
    words(&words_of(catalog, state), t, now(state)?, zone(state))
}

/// `t` said from `now` in `tz`: minutes and hours when near, the local day's name when not.
fn words(w: &Words, t: DateTime<Utc>, now: DateTime<Utc>, tz: Tz) -> Result<String, Error> {
    let ahead = t - now;
    let away = ahead.abs();
    let local = t.with_timezone(&tz);
    let days = (local.date_naive() - now.with_timezone(&tz).date_naive()).num_days();
    let clock = || ("time", WordArg::S(local.format("%H:%M").to_string()));
    if away < Duration::minutes(1) {
        return w.say("relative-now", &[]);
    }
    if away < Duration::hours(3) {
        let span = ("span", WordArg::S(span(w, away)?));
        return if ahead > Duration::zero() {
            w.say("relative-in", &[span])
        } else {
            w.say("relative-ago", &[span])
        };
    }
    match days {
        0 => w.say("relative-today", &[clock()]),
        1 => w.say("relative-tomorrow", &[clock()]),
        -1 => w.say("relative-yesterday", &[clock()]),
        d if d < 0 => w.say("relative-days-ago", &[("days", WordArg::N(-d))]),
        _ => {
            let date = w.write(&local, &w.pattern("date-short")?);
            w.say("relative-on", &[("date", WordArg::S(date)), clock()])
        }
    }
}

/// "25 minutes", "1 hour", "2 hours 5 minutes": under three hours, to the minute.
fn span(w: &Words, d: Duration) -> Result<String, Error> {
    let minutes = d.num_minutes();
    let (h, m) = (minutes / 60, minutes % 60);
    let hours = || w.say("span-hours", &[("n", WordArg::N(h))]);
    let mins = || w.say("span-minutes", &[("n", WordArg::N(m))]);
    match (h, m) {
        (0, _) => mins(),
        (_, 0) => hours(),
        _ => w.say(
            "span-hours-minutes",
            &[
                ("hours", WordArg::S(hours()?)),
                ("minutes", WordArg::S(mins()?)),
            ],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("templates/messages");
        Catalog::load(&dir, "en").unwrap()
    }

    fn say(c: &Catalog, tag: &str, t: DateTime<Utc>, now: DateTime<Utc>, tz: Tz) -> String {
        let w = Words {
            catalog: c,
            locale: c.resolve(Some(tag)),
        };
        words(&w, t, now, tz).unwrap()
    }

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
        let c = catalog();
        for (t, want) in cases {
            assert_eq!(say(&c, "en", at(t), now, paris), want, "{t}");
        }
        let french = [
            ("2026-11-23T22:00:20Z", "maintenant"),
            ("2026-11-23T22:30:00Z", "dans 30 minutes"),
            ("2026-11-24T00:05:00Z", "dans 2 heures 5 minutes"),
            ("2026-11-24T08:00:00Z", "demain à 09:00"),
            ("2026-11-26T08:00:00Z", "le jeu. 26 nov. à 09:00"),
            ("2026-11-23T21:59:00Z", "il y a 1 minute"),
            ("2026-11-20T10:00:00Z", "il y a 3 jours"),
        ];
        for (t, want) in french {
            assert_eq!(say(&c, "fr-FR", at(t), now, paris), want, "{t}");
        }
    }

    #[test]
    fn the_day_follows_the_recipients_zone() {
        // 23:30 UTC is already the next day in Tokyo and still the same one in New York.
        let now = at("2026-11-23T12:00:00Z");
        let t = at("2026-11-23T23:30:00Z");
        let c = catalog();
        assert_eq!(
            say(&c, "en", t, now, chrono_tz::Asia::Tokyo),
            "tomorrow at 08:30"
        );
        assert_eq!(
            say(&c, "en", t, now, chrono_tz::America::New_York),
            "today at 18:30"
        );
    }
}
