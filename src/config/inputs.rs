//! Property tests: what an operator or a client can type (environment values, cron expressions,
//! zones, addresses, durations, instants to plan) is read or refused, never a panic.

use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::prelude::*;

use super::Settings;
use crate::{
    domain::{self, Mailbox},
    schedule::{check_at, occurrences},
};

/// Keys an operator sets by hand, with values of the shapes they take.
fn env_var() -> impl Strategy<Value = (String, String)> {
    let key = prop_oneof![
        Just("DATABASE_URL"),
        Just("REDIS_URL"),
        Just("SMTP_URL"),
        Just("MAIL_FROM"),
        Just("RESEND_API_KEY"),
        Just("HERALD_API_TOKEN"),
        Just("HERALD_HTTP_ADDR"),
        Just("HERALD_ENV"),
        Just("HERALD__QUEUE__CONCURRENCY"),
        Just("HERALD__QUEUE__RETRY_DELAYS"),
        Just("HERALD__QUEUE__LEASE"),
        Just("HERALD__MAIL__PROVIDERS"),
        Just("HERALD__MAIL__TIMEOUT"),
        Just("HERALD__MAIL__RESEND__BATCH_SIZE"),
        Just("HERALD__PLANNER__TICK"),
        Just("HERALD__SCHEDULES__TASK_REMINDERS__CRON"),
        Just("HERALD__SCHEDULES__TASK_REMINDERS__TIMEZONE"),
        Just("HERALD__SCHEDULES__TASK_REMINDERS__SPREAD"),
        Just("HERALD__SCHEDULES__TASK_REMINDERS__CATCH_UP"),
        Just("HERALD__SCHEDULES__WEEKLY_REPORT__FALLBACK_TIMEZONE"),
    ];
    let value = prop_oneof![
        ".{0,40}",
        "[0-9]{1,25}",
        "-?[0-9]{1,25}(\\.[0-9]{0,5})?(e[0-9]{1,3})?",
        "[0-9]{1,22}(ns|ms|s|m|h|d|w|y)",
        "\\[(\"[a-z]{0,8}\", ?){0,3}\\]",
        "(smtps?|redis|postgres)://[a-z]{0,5}(:[^@/]{0,10})?@[a-z0-9.:\\[\\]]{0,15}[/?=&a-z0-9]{0,10}",
        "[0-9*/,?LW#A-Za-z-]{1,6}( [0-9*/,?LW#A-Za-z-]{1,6}){4,7}",
    ];
    (key, value).prop_map(|(k, v)| (k.to_owned(), v))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(256)))]

    #[test]
    fn any_environment_is_loaded_or_refused(vars in prop::collection::vec(env_var(), 1..5)) {
        match Settings::load_from(&crate::kinds::defaults(), None, &vars) {
            Ok(s) => {
                // What validation lets through is usable without panicking.
                for schedule in &s.schedules {
                    let _ = occurrences::spread_offset(&i64::MAX.to_string(), schedule.spread);
                }
            }
            Err(e) => prop_assert!(!e.0.is_empty()),
        }
    }

    #[test]
    fn any_cron_expression_is_parsed_or_refused(text in ".{0,40}") {
        let _ = domain::parse_cron(&text);
    }

    #[test]
    fn any_cron_shaped_expression_is_parsed_or_refused(
        text in "[0-9*/,?LW#A-Za-z-]{1,8}( [0-9*/,?LW#A-Za-z-]{1,8}){4,7}",
    ) {
        let _ = domain::parse_cron(&text);
    }

    #[test]
    fn any_zone_is_parsed_or_refused(text in ".{0,40}") {
        let _ = domain::parse_zone(&text);
    }

    #[test]
    fn any_zone_shaped_name_is_parsed_or_refused(text in "[A-Za-z_]{0,12}(/[A-Za-z_+-]{0,12}){0,2}") {
        let _ = domain::parse_zone(&text);
    }

    #[test]
    fn any_address_and_duration_is_parsed_or_refused(text in ".{0,60}") {
        let _ = Mailbox::parse(&text);
        let _ = super::parse_duration(&text);
    }

    #[test]
    fn any_spread_gives_an_offset_inside_the_widest_window(
        user_id in any::<i64>(),
        secs in any::<u64>(),
        nanos in 0u32..1_000_000_000,
    ) {
        let offset = occurrences::spread_offset(&user_id.to_string(), Duration::new(secs, nanos));
        prop_assert!(offset >= chrono::Duration::zero());
        prop_assert!(offset.to_std().unwrap() < super::MAX_SPREAD.max(Duration::from_secs(1)));
    }

    #[test]
    fn an_instant_to_plan_is_refused_or_safe_for_the_calendar(
        secs in DateTime::<Utc>::MIN_UTC.timestamp()..=DateTime::<Utc>::MAX_UTC.timestamp(),
        user_id in any::<i64>(),
    ) {
        let at = DateTime::from_timestamp(secs, 0).unwrap();
        match check_at(at) {
            Ok(at) => {
                for tz in [chrono_tz::UTC, chrono_tz::Pacific::Kiritimati, chrono_tz::Etc::GMTPlus12] {
                    let _ = domain::local_date(tz, at);
                    let _ = domain::week_before(tz, at);
                    let _ = domain::tomorrow(tz, at);
                }
                let _ = at - chrono::Duration::days(8);
                let _ = at + occurrences::spread_offset(&user_id.to_string(), super::MAX_SPREAD);
            }
            Err(e) => prop_assert!(e.contains("`at`"), "{}", e),
        }
    }
}

#[test]
fn instants_near_the_ends_of_the_calendar_are_refused() {
    for at in [DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC] {
        let e = check_at(at).unwrap_err();
        assert!(e.contains("plan an instant between 1970-01-01"), "{e}");
    }
    let ok: DateTime<Utc> = "2026-11-23T07:00:00Z".parse().unwrap();
    assert_eq!(check_at(ok), Ok(ok));
}

#[test]
fn a_spread_wider_than_a_day_is_refused() {
    let vars = [(
        "HERALD__SCHEDULES__TASK_REMINDERS__SPREAD".to_owned(),
        "500000000000y".to_owned(),
    )];
    let err = Settings::load_from(&crate::kinds::defaults(), None, &vars)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("schedules.task_reminders.spread (HERALD__SCHEDULES__TASK_REMINDERS__SPREAD): is 500000000000years"),
        "{err}"
    );
    assert!(err.contains("at most 1 day"), "{err}");
}
