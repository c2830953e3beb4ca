//! `[schedules]`: one section per kind of email, named after it, and the switch for all.

use std::{collections::BTreeMap, fmt, time::Duration};

use chrono_tz::Tz;
use serde::Deserialize;

use super::{Problems, duration, retention::RetentionSettings};
use crate::domain::{self, When};

/// `[schedules]` as written.
#[derive(Debug, Clone)]
pub struct RawSchedules {
    /// Whether a schedule runs when its own section does not say: `false` switches every
    /// schedule off but those set `enabled = true` (tests and benchmarks do so).
    pub enabled: bool,
    pub each: BTreeMap<String, RawSchedule>,
}

// By hand rather than `#[serde(flatten)]`, which loses the path of an error inside a section.
impl<'de> Deserialize<'de> for RawSchedules {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawSchedules;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`enabled` and one section per schedule")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawSchedules, A::Error> {
                let mut schedules = RawSchedules {
                    enabled: true,
                    each: BTreeMap::new(),
                };
                while let Some(key) = map.next_key::<String>()? {
                    if key == "enabled" {
                        schedules.enabled = map.next_value()?;
                    } else {
                        schedules.each.insert(key, map.next_value()?);
                    }
                }
                Ok(schedules)
            }
        }
        d.deserialize_map(Visitor)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// The kind's own default unless overridden.
    #[serde(default)]
    pub cron: String,
    /// An IANA zone, or "recipient": each user at the cron's time in their own zone.
    #[serde(default = "recipient")]
    pub timezone: String,
    /// The zone for users whose stored zone is not a zone.
    #[serde(default = "utc")]
    pub fallback_timezone: String,
    /// How late a missed fire may still be sent after a restart; "0s" sends none late.
    #[serde(default = "one_hour")]
    pub catch_up: String,
    /// Staggers each user's send inside this window after the fire time; "0s" sends at once.
    #[serde(default = "zero")]
    pub spread: String,
    /// `None`: as `schedules.enabled` says.
    pub enabled: Option<bool>,
    /// For a kind relative to each task's due time (`due_soon`): how long before it the email
    /// goes ("30m", "2h"); the kind's own default unless set.
    pub before: Option<String>,
    /// The path in the host app the email's button opens (after `app.url`).
    #[serde(default = "root")]
    pub link: String,
}

fn root() -> String {
    "/".to_owned()
}

fn recipient() -> String {
    "recipient".to_owned()
}
fn utc() -> String {
    "UTC".to_owned()
}
fn one_hour() -> String {
    "1h".to_owned()
}
fn zero() -> String {
    "0s".to_owned()
}

/// Whose clock a schedule follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneMode {
    /// The whole schedule fires at the cron's time in this zone.
    Fixed(Tz),
    /// Each user gets the email at the cron's time in their own zone.
    Recipient,
}

impl fmt::Display for ZoneMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZoneMode::Fixed(tz) => f.write_str(tz.name()),
            ZoneMode::Recipient => f.write_str("recipient"),
        }
    }
}

/// What the kinds registry tells the configuration of one kind at start-up
/// (`kinds::defaults()`, handed to [`Settings::load`](crate::config::Settings::load)): the
/// settings know each kind by its name and these defaults only, never the kind itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KindDefaults {
    /// The kind's name, which is its schedule's: `[schedules.<name>]`.
    pub name: &'static str,
    /// The cron it fires at unless the configuration says otherwise (six fields, seconds
    /// first); empty for a kind relative to each task's time.
    pub cron: &'static str,
    /// `"recipient"` or an IANA zone.
    pub timezone: &'static str,
    /// The path in the host app its email's button opens.
    pub link: &'static str,
    /// Whether its schedule runs unless the configuration switches it off.
    pub enabled: bool,
    /// For a kind relative to each task's time, when its email goes.
    pub relative: Option<When>,
}

/// "task_reminders, overdue_summary, …", for error messages.
pub fn kind_names(kinds: &[KindDefaults]) -> String {
    kinds.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
}

#[derive(Debug, Clone)]
pub struct ScheduleSettings {
    /// The schedule's name, which is the name of the kind of email it sends.
    pub name: String,
    /// The cron as written; empty for a kind relative to each task's time.
    pub cron_expr: String,
    /// When it fires; `None` for a kind relative to each task's time, which the planner looks
    /// for on every tick (see `before`).
    pub cron: Option<cron::Schedule>,
    /// For a kind relative to each task's time: when its email about a task goes (with the
    /// configured `before`). `None` for a kind at a wall-clock time.
    pub relative: Option<When>,
    pub zone: ZoneMode,
    pub fallback_timezone: Tz,
    pub catch_up: Duration,
    pub spread: Duration,
    pub enabled: bool,
    /// `link`: the path in the host app the email's button opens, from `/`.
    pub link: String,
}

impl ScheduleSettings {
    /// When it sends, in a few words: `cron "0 0 9 * * *"`, or `2h before each task is due`.
    pub fn when(&self) -> String {
        match self.relative {
            Some(when) => when.describe(),
            None => format!("cron {:?}", self.cron_expr),
        }
    }
}

/// Every schedule, each checked in full: a bad cron does not hide a bad zone.
pub(super) fn check(
    raw: &RawSchedules,
    kinds: &[KindDefaults],
    retention: &RetentionSettings,
    p: &mut Problems,
) -> Vec<ScheduleSettings> {
    raw.each
        .iter()
        .filter_map(|(name, schedule)| {
            let enabled = schedule.enabled.unwrap_or(raw.enabled);
            one(name, schedule, enabled, kinds, retention, p)
        })
        .collect()
}

/// One schedule; `None` when any of its values is wrong (each one reported).
fn one(
    name: &str,
    raw: &RawSchedule,
    enabled: bool,
    kinds: &[KindDefaults],
    retention: &RetentionSettings,
    p: &mut Problems,
) -> Option<ScheduleSettings> {
    let place = format!("schedules.{name}");
    let Some(kind) = kinds.iter().find(|k| k.name == name) else {
        p.key(
            &place,
            format!(
                "is not a known schedule; the schedules are {}",
                kind_names(kinds)
            ),
        );
        return None;
    };
    if let Some(when) = kind.relative {
        return one_relative(&place, kind.name, when, raw, enabled, retention, p);
    }
    if raw.before.is_some() {
        p.key(
            &format!("{place}.before"),
            format!("{name} fires at a wall-clock time (its cron); `before` is only for a kind sent relative to each task's due time, such as due_soon"),
        );
    }
    let cron = domain::parse_cron(&raw.cron).map_err(|m| p.key(&format!("{place}.cron"), m));
    let zone = zone(&raw.timezone).map_err(|m| p.key(&format!("{place}.timezone"), m));
    let (fallback_timezone, catch_up) = fallback_and_catch_up(&place, raw, retention, p);
    let spread = duration(&format!("{place}.spread"), &raw.spread, p);
    if let Some(spread) = spread {
        check_spread(&place, spread, p);
    }
    Some(ScheduleSettings {
        name: name.to_owned(),
        cron_expr: raw.cron.clone(),
        cron: Some(cron.ok()?),
        relative: None,
        zone: zone.ok()?,
        fallback_timezone: fallback_timezone?,
        catch_up: catch_up?,
        spread: spread?,
        enabled,
        link: link(&place, raw, p),
    })
}

/// `link`: a path from the app's root.
fn link(place: &str, raw: &RawSchedule, p: &mut Problems) -> String {
    let link = raw.link.trim();
    if !link.starts_with('/') {
        p.key(
            &format!("{place}.link"),
            format!("is {link:?}; write the path in your app the email's button opens, from its root, such as \"/tasks\" (app.url is put before it)"),
        );
    }
    link.to_owned()
}

/// A kind sent relative to each task's due time: `before`, `catch_up`, `fallback_timezone` and
/// `enabled`; a cron, a fixed zone or a spread would mean nothing and are refused.
fn one_relative(
    place: &str,
    kind: &str,
    when: When,
    raw: &RawSchedule,
    enabled: bool,
    retention: &RetentionSettings,
    p: &mut Problems,
) -> Option<ScheduleSettings> {
    let what = format!(
        "{kind} is sent relative to each task's due time, so it has no {{}}; set `before` (how long before the due time, e.g. \"30m\")"
    );
    if !raw.cron.trim().is_empty() {
        p.key(&format!("{place}.cron"), what.replace("{}", "cron"));
    }
    if raw.timezone.trim() != "recipient" {
        p.key(
            &format!("{place}.timezone"),
            what.replace(
                "{}",
                "zone of its own: times are written in each user's zone",
            ),
        );
    }
    let spread = duration(&format!("{place}.spread"), &raw.spread, p);
    if spread.is_some_and(|s| !s.is_zero()) {
        p.key(
            &format!("{place}.spread"),
            what.replace("{}", "spread: each email goes at its task's own instant"),
        );
    }
    let when = match (when, &raw.before) {
        (_, None) => Some(when),
        (When::Before(_), Some(text)) => {
            let before = duration(&format!("{place}.before"), text, p);
            match before {
                Some(b)
                    if b < Duration::from_secs(60) || b > Duration::from_secs(7 * 24 * 3600) =>
                {
                    p.key(
                        &format!("{place}.before"),
                        format!(
                            "is {}; give a time between 1 minute and 7 days before the due time, e.g. \"30m\"",
                            humantime::format_duration(b)
                        ),
                    );
                    None
                }
                b => b.map(When::Before),
            }
        }
        (other, Some(_)) => {
            p.key(
                &format!("{place}.before"),
                format!("{kind} is sent {}; it takes no `before`", other.describe()),
            );
            None
        }
    };
    let (fallback_timezone, catch_up) = fallback_and_catch_up(place, raw, retention, p);
    Some(ScheduleSettings {
        name: kind.to_owned(),
        cron_expr: String::new(),
        cron: None,
        relative: Some(when?),
        zone: ZoneMode::Recipient,
        fallback_timezone: fallback_timezone?,
        catch_up: catch_up?,
        spread: Duration::ZERO,
        enabled,
        link: link(place, raw, p),
    })
}

/// What every schedule takes: the fallback zone and the catch-up window, each reported under
/// its key when wrong (`None` then).
fn fallback_and_catch_up(
    place: &str,
    raw: &RawSchedule,
    retention: &RetentionSettings,
    p: &mut Problems,
) -> (Option<Tz>, Option<Duration>) {
    let fallback_timezone = domain::parse_zone(&raw.fallback_timezone)
        .map_err(|m| p.key(&format!("{place}.fallback_timezone"), m))
        .ok();
    let catch_up = duration(&format!("{place}.catch_up"), &raw.catch_up, p);
    if let Some(catch_up) = catch_up {
        check_catch_up(place, catch_up, retention, p);
    }
    (fallback_timezone, catch_up)
}

/// "recipient", or an IANA zone.
fn zone(text: &str) -> Result<ZoneMode, String> {
    if text.trim() == "recipient" {
        return Ok(ZoneMode::Recipient);
    }
    domain::parse_zone(text)
        .map(ZoneMode::Fixed)
        .map_err(|m| format!("{m}, or \"recipient\" for each user's own zone"))
}

/// A fire sent late carries its real dedup key: it must still be on record when it is.
fn check_catch_up(
    place: &str,
    catch_up: Duration,
    retention: &RetentionSettings,
    p: &mut Problems,
) {
    let horizon = retention.trigger_horizon();
    if catch_up >= horizon {
        p.key(
            &format!("{place}.catch_up"),
            format!(
                "is {}, not shorter than {} ({} less 2 days), after which a delivery and its dedup key may be deleted; keep catch_up to hours",
                humantime::format_duration(catch_up),
                humantime::format_duration(horizon),
                retention.shortest().0
            ),
        );
    }
}

/// The widest spread window: the configuration refuses more, and the planner's
/// `occurrences::spread_offset` never returns more whatever it is given.
pub const MAX_SPREAD: Duration = Duration::from_secs(24 * 3600);

fn check_spread(place: &str, spread: Duration, p: &mut Problems) {
    if spread > MAX_SPREAD {
        p.key(
            &format!("{place}.spread"),
            format!(
                "is {}; a spread staggers each user's send inside a window after the fire, at most 1 day: use something like \"30m\"",
                humantime::format_duration(spread)
            ),
        );
    }
}
