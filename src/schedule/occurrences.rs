//! When a schedule fires in a zone: cron expressions read as local wall-clock times, with the
//! DST rules Herald promises. Pure functions, tested over every zone.
//!
//! cron 0.17 (and so apalis-cron) skips a local time that falls in a spring-forward gap and fires
//! twice in a fall-back overlap. Herald instead walks the cron's *wall-clock* times and maps
//! each one to an instant itself:
//! - a time that happens once fires then;
//! - a time that happens twice (overlap) fires once, at its first occurrence;
//! - a time that does not exist (gap) fires at the first valid instant after it, the moment the
//!   clocks jump.

use chrono::{DateTime, Duration, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The instant a local wall-clock time happens in `tz`, by the rules above.
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> DateTime<Utc> {
    match tz.from_local_datetime(&local) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // In a gap: the first minute that exists is the moment the clocks jumped. Today's gaps
            // are 15, 30 or 60 minutes; historic ones at most a day.
            let mut t = local;
            for _ in 0..(26 * 60) {
                t += Duration::minutes(1);
                if let LocalResult::Single(v) | LocalResult::Ambiguous(v, _) =
                    tz.from_local_datetime(&t)
                {
                    return v.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&local)
        }
    }
}

/// One firing of a schedule in a zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Fire {
    /// When it fires.
    pub at: DateTime<Utc>,
    /// The local date it fires *for*: the date of its wall-clock time. Usually the local date of
    /// `at`, but not when a gap pushes a late-evening time past midnight (America/Nuuk jumps
    /// from 23:00 to 00:00). The dedup key uses this date, so each local day gets one email.
    pub local_date: chrono::NaiveDate,
}

/// The fires in `(after, until]` of `cron` in `tz`, oldest first.
pub fn between(
    cron: &cron::Schedule,
    tz: Tz,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Vec<Fire> {
    let mut out = Vec::new();
    // Walk wall-clock times from a day before `after` (a gap can move a time later than its
    // wall-clock reading, by up to a day in historic zones), reading the cron in "UTC" so that it
    // yields naive local times with no DST logic of its own.
    let start = after.with_timezone(&tz).naive_local() - Duration::days(2);
    let end = until.with_timezone(&tz).naive_local() + Duration::days(2);
    for wall in cron.after(&Utc.from_utc_datetime(&start)) {
        let wall = wall.naive_utc();
        if wall > end {
            break;
        }
        let at = resolve_local(tz, wall);
        if at > after && at <= until {
            out.push(Fire {
                at,
                local_date: wall.date(),
            });
        }
    }
    out.sort();
    // Two wall-clock times inside one gap land on the same instant: fire once.
    out.dedup_by_key(|f| f.at);
    out
}

/// The next `n` fires after `after`.
pub fn next(cron: &cron::Schedule, tz: Tz, after: DateTime<Utc>, n: usize) -> Vec<Fire> {
    let mut horizon = Duration::days(2);
    loop {
        let found = between(cron, tz, after, after + horizon);
        if found.len() >= n || horizon > Duration::days(800) {
            return found.into_iter().take(n).collect();
        }
        horizon = horizon * 4;
    }
}

/// Whether some zone of the tz database may have a fire of `cron` in `(since, now]`: a cheap
/// test the planner runs on every tick before it reads the zones users live in. Exact for a
/// window of up to an hour in which no zone changes its offset: zones are grouped by offset
/// (about 40 groups) and each group's local window is asked of the cron once. A longer window
/// (catching up after downtime), or one in which some zone changes its offset (a DST jump, whose
/// gap rules move fires), answers `true` and leaves the decision to [`between`].
pub fn any_zone_may_fire(cron: &cron::Schedule, since: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    use chrono::Offset;
    if now <= since {
        return false;
    }
    if now - since > Duration::hours(1) {
        return true;
    }
    let mut offsets = std::collections::BTreeSet::new();
    for tz in chrono_tz::TZ_VARIANTS {
        let at = |t: DateTime<Utc>| {
            tz.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc()
        };
        let (before, after) = (at(since), at(now));
        if before != after {
            return true;
        }
        offsets.insert(before);
    }
    offsets.into_iter().any(|offset| {
        let shift = Duration::seconds(i64::from(offset));
        let (from, to) = (since.naive_utc() + shift, now.naive_utc() + shift);
        cron.after(&Utc.from_utc_datetime(&from))
            .next()
            .is_some_and(|wall| wall.naive_utc() <= to)
    })
}

/// A user's deterministic offset inside a schedule's spread window, so a burst is smoothed the
/// same way every day (and on every Herald process).
pub fn spread_offset(user_id: &str, spread: std::time::Duration) -> Duration {
    let window = spread.min(crate::config::MAX_SPREAD).as_secs();
    if window == 0 {
        return Duration::zero();
    }
    // FNV-1a over the id's bytes, then SplitMix64's finalizer: a fixed, well-mixed hash, stable
    // across Rust versions (unlike DefaultHasher) and for any id (numeric, UUID, cuid).
    let fnv = user_id.bytes().fold(0xCBF2_9CE4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    });
    let mut z = fnv.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    Duration::seconds((z % window) as i64)
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use chrono::NaiveDate;
    use proptest::prelude::*;

    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn daily(h: u32, m: u32) -> cron::Schedule {
        cron::Schedule::from_str(&format!("0 {m} {h} * * *")).unwrap()
    }

    fn year(tz: Tz, y: i32, cron: &cron::Schedule) -> Vec<DateTime<Utc>> {
        let from = utc(&format!("{y}-01-01T00:00:00Z")) - Duration::days(1);
        let to = utc(&format!("{}-01-01T00:00:00Z", y + 1)) + Duration::days(1);
        between(cron, tz, from, to)
            .into_iter()
            .map(|f| f.at)
            .collect()
    }

    fn on(tz: Tz, all: &[DateTime<Utc>], date: &str) -> Vec<String> {
        let d = NaiveDate::from_str(date).unwrap();
        all.iter()
            .filter(|t| t.with_timezone(&tz).date_naive() == d)
            .map(|t| t.with_timezone(&tz).to_rfc3339())
            .collect()
    }

    #[test]
    fn paris_gap_and_overlap_2026_and_2027() {
        let tz = chrono_tz::Europe::Paris;
        let at_0230 = daily(2, 30);
        let y26 = year(tz, 2026, &at_0230);
        // 2026-03-29: 02:30 does not exist; fires when the clocks jump, 03:00 +02:00.
        assert_eq!(on(tz, &y26, "2026-03-29"), ["2026-03-29T03:00:00+02:00"]);
        // 2026-10-25: 02:30 happens twice; fires once, the first time (+02:00).
        assert_eq!(on(tz, &y26, "2026-10-25"), ["2026-10-25T02:30:00+02:00"]);
        let y27 = year(tz, 2027, &at_0230);
        assert_eq!(on(tz, &y27, "2027-03-28"), ["2027-03-28T03:00:00+02:00"]);
        assert_eq!(on(tz, &y27, "2027-10-31"), ["2027-10-31T02:30:00+02:00"]);
        // 09:00 is untouched by either change.
        let nine = year(tz, 2027, &daily(9, 0));
        assert_eq!(on(tz, &nine, "2027-03-28"), ["2027-03-28T09:00:00+02:00"]);
        assert_eq!(on(tz, &nine, "2027-10-31"), ["2027-10-31T09:00:00+01:00"]);
    }

    #[test]
    fn new_york_2026_and_2027() {
        let tz = chrono_tz::America::New_York;
        let y26 = year(tz, 2026, &daily(2, 30));
        assert_eq!(on(tz, &y26, "2026-03-08"), ["2026-03-08T03:00:00-04:00"]);
        let y26 = year(tz, 2026, &daily(1, 30));
        assert_eq!(on(tz, &y26, "2026-11-01"), ["2026-11-01T01:30:00-04:00"]);
        let y27 = year(tz, 2027, &daily(2, 30));
        assert_eq!(on(tz, &y27, "2027-03-14"), ["2027-03-14T03:00:00-04:00"]);
        let y27 = year(tz, 2027, &daily(1, 30));
        assert_eq!(on(tz, &y27, "2027-11-07"), ["2027-11-07T01:30:00-04:00"]);
    }

    #[test]
    fn sydney_southern_hemisphere_2026_and_2027() {
        let tz = chrono_tz::Australia::Sydney;
        // Clocks go back on the first Sunday of April, forward on the first Sunday of October.
        let y26 = year(tz, 2026, &daily(2, 30));
        assert_eq!(on(tz, &y26, "2026-04-05"), ["2026-04-05T02:30:00+11:00"]);
        assert_eq!(on(tz, &y26, "2026-10-04"), ["2026-10-04T03:00:00+11:00"]);
        let y27 = year(tz, 2027, &daily(2, 30));
        assert_eq!(on(tz, &y27, "2027-04-04"), ["2027-04-04T02:30:00+11:00"]);
        assert_eq!(on(tz, &y27, "2027-10-03"), ["2027-10-03T03:00:00+11:00"]);
    }

    #[test]
    fn chatham_quarter_hour_offsets_2026_and_2027() {
        let tz = chrono_tz::Pacific::Chatham;
        // Chatham changes at 02:45 local: +12:45 ↔ +13:45.
        let y26 = year(tz, 2026, &daily(3, 0));
        assert_eq!(on(tz, &y26, "2026-04-05"), ["2026-04-05T03:00:00+13:45"]);
        assert_eq!(on(tz, &y26, "2026-09-27"), ["2026-09-27T03:45:00+13:45"]);
        let y27 = year(tz, 2027, &daily(3, 0));
        assert_eq!(on(tz, &y27, "2027-04-04"), ["2027-04-04T03:00:00+13:45"]);
        assert_eq!(on(tz, &y27, "2027-09-26"), ["2027-09-26T03:45:00+13:45"]);
        let nine = year(tz, 2027, &daily(9, 0));
        assert_eq!(on(tz, &nine, "2027-09-26"), ["2027-09-26T09:00:00+13:45"]);
    }

    #[test]
    fn odd_offsets_fire_at_local_nine() {
        for (zone, expected) in [
            ("Asia/Kolkata", "2026-11-24T09:00:00+05:30"),
            ("Asia/Kathmandu", "2026-11-24T09:00:00+05:45"),
            ("Australia/Eucla", "2026-11-24T09:00:00+08:45"),
            ("America/St_Johns", "2026-11-24T09:00:00-03:30"),
            ("Pacific/Kiritimati", "2026-11-24T09:00:00+14:00"),
            ("Etc/GMT+12", "2026-11-24T09:00:00-12:00"),
        ] {
            let tz = Tz::from_str(zone).unwrap();
            let all = year(tz, 2026, &daily(9, 0));
            assert_eq!(on(tz, &all, "2026-11-24"), [expected], "{zone}");
        }
    }

    #[test]
    fn next_five() {
        let sunday = cron::Schedule::from_str("0 0 17 * * Sun").unwrap();
        let got = next(
            &sunday,
            chrono_tz::Europe::Paris,
            utc("2026-11-23T00:00:00Z"),
            5,
        );
        assert_eq!(got.len(), 5);
        assert_eq!(got[0].at, utc("2026-11-29T16:00:00Z"));
        assert!(
            got.windows(2)
                .all(|w| w[1].at - w[0].at == Duration::days(7))
        );
    }

    #[test]
    fn spread_is_deterministic_and_inside_the_window() {
        let w = std::time::Duration::from_secs(600);
        for id in 0..1000 {
            let o = spread_offset(&id.to_string(), w);
            assert_eq!(o, spread_offset(&id.to_string(), w));
            assert!(o >= Duration::zero() && o < Duration::seconds(600));
        }
        assert_eq!(
            spread_offset("7", std::time::Duration::ZERO),
            Duration::zero()
        );
        // It spreads: 1000 users land in many different minutes.
        let minutes: std::collections::HashSet<_> = (0..1000)
            .map(|id| spread_offset(&id.to_string(), w).num_minutes())
            .collect();
        assert_eq!(minutes.len(), 10);
    }

    fn local_dates(fires: &[Fire]) -> Vec<NaiveDate> {
        fires.iter().map(|f| f.local_date).collect()
    }

    /// The local time a fire lands on: the configured one, or (in a gap) the first valid
    /// instant after it, which is the moment the clocks jumped.
    fn lands_correctly(tz: Tz, fire: Fire, h: u32, m: u32) -> bool {
        let t = fire.at;
        let local = t.with_timezone(&tz);
        let wanted = fire.local_date.and_hms_opt(h, m, 0).unwrap();
        if local.naive_local() == wanted {
            // Not the second pass of an overlap.
            return !matches!(tz.from_local_datetime(&wanted), LocalResult::Ambiguous(first, _) if first.with_timezone(&Utc) != t);
        }
        // Otherwise `wanted` must not exist, `t` must be after it, and one second earlier the
        // local clock must read before `wanted` (the jump went over it).
        let before = (t - Duration::seconds(1)).with_timezone(&tz).naive_local();
        matches!(tz.from_local_datetime(&wanted), LocalResult::None)
            && local.naive_local() > wanted
            && before < wanted
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 6, .. ProptestConfig::default() })]

        /// Every zone in chrono-tz, every day of 2026 and 2027, at a random local time (biased
        /// to the small hours, where the DST changes are): one fire per local day, at that local
        /// time or at the first valid instant after it.
        #[test]
        fn daily_fires_once_per_local_day_in_every_zone(h in prop::sample::select(vec![0u32, 1, 2, 3, 9, 17, 23]), m in prop::sample::select(vec![0u32, 15, 30, 45])) {
            let cron = daily(h, m);
            for tz in chrono_tz::TZ_VARIANTS {
                let fires = between(&cron, tz, utc("2026-01-01T00:00:00Z"), utc("2028-01-01T00:00:00Z"));
                let dates = local_dates(&fires);
                for w in dates.windows(2) {
                    prop_assert_eq!((w[1] - w[0]).num_days(), 1, "{} {:02}:{:02}: {} then {}", tz.name(), h, m, w[0], w[1]);
                }
                prop_assert!(fires.len() >= 729, "{} fires in {}", fires.len(), tz.name());
                for f in &fires {
                    prop_assert!(lands_correctly(tz, *f, h, m), "{} fired at {} for {} {:02}:{:02}", tz.name(), f.at.with_timezone(&tz), f.local_date, h, m);
                }
            }
        }
    }

    /// Every zone, two years: the weekly schedule fires once per local week, on Sunday at 17:00.
    #[test]
    fn weekly_fires_once_per_local_week_in_every_zone() {
        let sunday = cron::Schedule::from_str("0 0 17 * * Sun").unwrap();
        for tz in chrono_tz::TZ_VARIANTS {
            let fires = between(
                &sunday,
                tz,
                utc("2026-01-01T00:00:00Z"),
                utc("2028-01-01T00:00:00Z"),
            );
            let dates = local_dates(&fires);
            for w in dates.windows(2) {
                assert_eq!(
                    (w[1] - w[0]).num_days(),
                    7,
                    "{}: {} → {}",
                    tz.name(),
                    w[0],
                    w[1]
                );
            }
            for f in &fires {
                assert_eq!(
                    chrono::Datelike::weekday(&f.local_date),
                    chrono::Weekday::Sun
                );
                assert!(lands_correctly(tz, *f, 17, 0), "{} {:?}", tz.name(), f);
            }
            assert!(fires.len() >= 104, "{}", tz.name());
        }
    }

    /// The cheap test never says "no fire" where some zone has one, and does say it on most
    /// ticks: 5-second windows on both sides of quarter hours (where fires happen) over three
    /// days around the 2027 spring change in Europe and the US (zones change their offset inside
    /// some windows), for three crons, against `between` over every zone of the tz database.
    #[test]
    fn the_cheap_test_never_misses_a_zones_fire() {
        let every = |s: &str| cron::Schedule::from_str(s).unwrap();
        let crons = [
            every("0 0 9 * * *"),
            every("0 30 2 * * *"),
            every("0 */15 * * * *"),
        ];
        let start = Utc.with_ymd_and_hms(2027, 3, 13, 0, 0, 0).unwrap();
        let (mut quiet, mut windows) = (0, 0);
        // Every 19th quarter hour (a sample: the brute force is slow), 5 s before and after it.
        for quarter in (0..3 * 24 * 4).step_by(19) {
            let boundary = start + Duration::minutes(15 * quarter);
            for since in [boundary - Duration::seconds(5), boundary] {
                let now = since + Duration::seconds(5);
                for cron in &crons {
                    windows += 1;
                    if any_zone_may_fire(cron, since, now) {
                        continue;
                    }
                    quiet += 1;
                    for tz in chrono_tz::TZ_VARIANTS {
                        assert!(
                            between(cron, tz, since, now).is_empty(),
                            "{} fires in ({since}, {now}] for {cron}",
                            tz.name()
                        );
                    }
                }
            }
        }
        // After a quarter hour nothing fires; before one, the daily crons mostly do not either.
        assert!(
            quiet * 2 > windows,
            "only {quiet} of {windows} windows were quiet"
        );
        let nine = Utc.with_ymd_and_hms(2027, 3, 13, 9, 0, 0).unwrap();
        assert!(any_zone_may_fire(
            &crons[0],
            nine - Duration::seconds(5),
            nine
        ));
    }
}
