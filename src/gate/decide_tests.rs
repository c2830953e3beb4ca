//! The pure decisions of [`super`]: which pauses fail over, how long a rate limit pauses, what the
//! admission script's answers and the pauses in Redis mean.

use super::*;

#[test]
fn only_pauses_that_belong_to_the_provider_fail_over() {
    let paused = |class| Why::Paused {
        class,
        message: String::new(),
    };
    assert!(!Why::Rate.fails_over());
    assert!(Why::Circuit.fails_over());
    assert!(!paused(ErrorClass::RateLimited).fails_over());
    assert!(paused(ErrorClass::Quota).fails_over());
    assert!(paused(ErrorClass::Configuration).fails_over());
}

#[test]
fn a_rate_limit_pauses_at_most_max_pause() {
    let secs = Duration::from_secs;
    let pauses = Pauses {
        configuration: secs(60),
        probe_interval: secs(2),
        throttle: secs(10),
        probe_lease: secs(30),
        max: secs(300),
    };
    assert_eq!(pauses.rate_limit(Some(secs(3))), (secs(3), None));
    assert_eq!(pauses.rate_limit(Some(secs(300))), (secs(300), None));
    assert_eq!(
        pauses.rate_limit(Some(secs(2_592_000))),
        (secs(300), Some(secs(2_592_000)))
    );
    assert_eq!(
        pauses.rate_limit(Some(crate::mail::error::MAX_WAIT)),
        (secs(300), Some(crate::mail::error::MAX_WAIT))
    );
    // SMTP throttling says no wait: mail.throttle_pause.
    assert_eq!(pauses.rate_limit(None), (secs(10), None));
    assert_eq!(
        cut_note(secs(2_592_000), secs(300)),
        " (it asked for a pause of 30days; cut to mail.max_pause, 5m)"
    );
}

#[test]
fn a_pause_of_a_class_this_herald_does_not_know_says_so() {
    assert_eq!(
        paused_class("q:provider:smtp:pause", "quota").unwrap(),
        ErrorClass::Quota
    );
    let e = paused_class("q:provider:smtp:pause", "melted").unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("q:provider:smtp:pause")
            && e.contains("\"melted\"")
            && e.contains("delete the key"),
        "{e}"
    );
}

const KEY: &str = "q:provider:resend:pause";

#[test]
fn only_a_configuration_pause_needs_an_operator() {
    let paused = |class| State::Paused {
        class,
        message: "m".into(),
        remaining: Duration::from_secs(3),
    };
    assert!(paused(ErrorClass::Configuration).needs_operator());
    assert!(!paused(ErrorClass::Quota).needs_operator());
    assert!(!paused(ErrorClass::RateLimited).needs_operator());
    assert!(!State::Ok.needs_operator());
    assert!(!State::Circuit.needs_operator());
}

#[test]
fn a_state_says_what_it_is_and_for_how_long() {
    assert_eq!(State::Ok.describe(), "ok");
    let paused = |remaining| State::Paused {
        class: ErrorClass::Quota,
        message: "Resend answered 429".into(),
        remaining,
    };
    assert_eq!(
        paused(Duration::from_secs(42)).describe(),
        "paused (quota) for 42s more: Resend answered 429"
    );
    // Less than a second left still says 1 s, never 0 s.
    assert_eq!(
        paused(Duration::from_millis(300)).describe(),
        "paused (quota) for 1s more: Resend answered 429"
    );
    assert!(
        State::Circuit
            .describe()
            .starts_with("unreachable: sending stopped")
    );
}

#[test]
fn the_admission_scripts_answers_read_as_permits() {
    let interval = Duration::from_secs(2);
    let permit = |go, amount, why: &str| permit(go, amount, why, interval, KEY).unwrap();
    assert_eq!(
        permit(0, 7, "0"),
        Permit::Go {
            probe: false,
            count: 7
        }
    );
    assert_eq!(
        permit(0, 1, "1"),
        Permit::Go {
            probe: true,
            count: 1
        }
    );
    // A count the script cannot have meant is at least one request.
    assert_eq!(
        permit(0, -3, "0"),
        Permit::Go {
            probe: false,
            count: 1
        }
    );
    let ms = Duration::from_millis;
    assert_eq!(
        permit(1, 250, "|rate|"),
        Permit::Wait {
            wait: ms(250),
            why: Why::Rate
        }
    );
    assert_eq!(
        permit(1, 0, "|rate|"),
        Permit::Wait {
            wait: ms(1),
            why: Why::Rate
        }
    );
    // A probe lock held by another worker: waited for at most one probe interval.
    assert_eq!(
        permit(1, 30_000, "|circuit|another worker is probing"),
        Permit::Wait {
            wait: interval,
            why: Why::Circuit
        }
    );
    assert_eq!(
        permit(1, 500, "|circuit|x"),
        Permit::Wait {
            wait: ms(500),
            why: Why::Circuit
        }
    );
    // A pause keeps its message whole, `|` and all.
    assert_eq!(
        permit(1, 60_000, "fp|configuration|bad key | really"),
        Permit::Wait {
            wait: ms(60_000),
            why: Why::Paused {
                class: ErrorClass::Configuration,
                message: "bad key | really".into()
            }
        }
    );
    let e = super::permit(1, 5, "|melted|x", interval, KEY).unwrap_err();
    assert!(format!("{e:#}").contains(KEY), "{e:#}");
}

#[test]
fn a_pause_carries_the_fingerprint_only_for_configuration_and_an_unreachable_one_is_the_circuit() {
    let e = |class| SendError::new(class, Some(429), "slow down");
    assert_eq!(
        pause_value(&e(ErrorClass::RateLimited), "fp1", " (cut)"),
        "|rate_limited|slow down (cut)"
    );
    assert_eq!(
        pause_value(&e(ErrorClass::Configuration), "fp1", ""),
        "fp1|configuration|slow down"
    );
    assert_eq!(
        pause_value(&e(ErrorClass::Transient).unreachable(), "fp1", ""),
        "|circuit|slow down"
    );
}

#[test]
fn a_pause_in_redis_reads_back_as_the_state_of_this_process() {
    let state = |paused, circuit| state_of(paused, 2_500, circuit, "fp1", KEY).unwrap();
    let paused = |class, message: &str| State::Paused {
        class,
        message: message.into(),
        remaining: Duration::from_millis(2_500),
    };
    assert_eq!(state(None, false), State::Ok);
    assert_eq!(state(None, true), State::Circuit);
    assert_eq!(state(Some("|circuit|refused"), false), State::Circuit);
    assert_eq!(
        state(Some("|quota|used up | all"), false),
        paused(ErrorClass::Quota, "used up | all")
    );
    // A configuration pause holds only the process with the same credentials...
    assert_eq!(
        state(Some("fp1|configuration|bad key"), false),
        paused(ErrorClass::Configuration, "bad key")
    );
    // ...another's is not this one's: then only the circuit counts.
    assert_eq!(state(Some("fp2|configuration|bad key"), false), State::Ok);
    assert_eq!(
        state(Some("fp2|configuration|bad key"), true),
        State::Circuit
    );
    // Any other class holds every process, whatever fingerprint it carries.
    assert_eq!(
        state(Some("fp2|rate_limited|slow"), false),
        paused(ErrorClass::RateLimited, "slow")
    );
    // A key past its expiry (PTTL -2) has nothing left.
    assert_eq!(
        state_of(Some("|quota|q"), -2, false, "fp1", KEY).unwrap(),
        State::Paused {
            class: ErrorClass::Quota,
            message: "q".into(),
            remaining: Duration::ZERO
        }
    );
    assert!(state_of(Some("|melted|x"), 1, false, "fp1", KEY).is_err());
}

#[test]
fn a_configuration_pause_holds_only_the_same_credentials_any_other_everyone() {
    assert!(holds("fp1|configuration|bad key", "fp1"));
    assert!(!holds("fp1|configuration|bad key", "fp2"));
    assert!(holds("|rate_limited|slow", "fp2"));
    assert!(holds("fp1|quota|used up", "fp2"));
    assert!(holds("|circuit|refused", "fp2"));
}

#[test]
fn a_wait_is_given_in_whole_milliseconds_rounded_up_and_at_least_one() {
    let us = Duration::from_micros;
    assert_eq!(millis(Duration::ZERO), 1);
    assert_eq!(millis(us(1)), 1);
    assert_eq!(millis(us(1_000)), 1);
    assert_eq!(millis(us(1_001)), 2);
    assert_eq!(millis(Duration::from_secs(3)), 3_000);
    assert_eq!(millis(Duration::MAX), i64::MAX);
}
