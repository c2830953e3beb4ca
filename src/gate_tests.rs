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
