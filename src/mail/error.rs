//! One error taxonomy for every provider, and the pure functions that sort each provider's
//! answers into it (unit-tested below).

use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, Utc};

pub use crate::domain::ErrorClass;

/// A send that did not go through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SendError {
    pub class: ErrorClass,
    /// The provider's status code (SMTP reply code or HTTP status), when it answered with one.
    pub code: Option<u16>,
    /// What the provider said, with Herald's hint on what to do when there is one.
    pub message: String,
    /// How long the provider asked to be left alone (`retry-after`, a quota's reset).
    pub wait: Option<Duration>,
    /// The provider could not be reached at all: opens its circuit.
    pub unreachable: bool,
}

/// When a permanent SMTP failure says the mailbox itself does not exist or takes no mail
/// (550/551/553 with an enhanced status 5.1.x, or 5.2.1 "mailbox disabled"), the answer to record
/// as the suppression's event (`smtp 550 5.1.1`). A refusal for another reason (policy, content,
/// a full mailbox) is no reason to stop emailing the address.
pub fn refuses_mailbox(e: &SendError) -> Option<String> {
    let code = e.code?;
    if e.class != ErrorClass::Permanent || !matches!(code, 550 | 551 | 553) {
        return None;
    }
    let enhanced = e
        .message
        .split(|c: char| c.is_whitespace() || c == ':' || c == ',')
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })?;
    (enhanced.starts_with("5.1.") || enhanced == "5.2.1").then(|| format!("smtp {code} {enhanced}"))
}

impl SendError {
    pub fn new(class: ErrorClass, code: Option<u16>, message: impl Into<String>) -> SendError {
        SendError {
            class,
            code,
            message: message.into(),
            wait: None,
            unreachable: false,
        }
    }

    pub fn permanent(message: impl Into<String>) -> SendError {
        SendError::new(ErrorClass::Permanent, None, message)
    }

    pub fn with_wait(mut self, wait: Option<Duration>) -> SendError {
        self.wait = wait;
        self
    }

    pub fn unreachable(mut self) -> SendError {
        self.unreachable = true;
        self
    }
}

/// Sorts a Resend error answer: its HTTP status, the `name` and `message` of its JSON body, and
/// the `retry-after` and `ratelimit-reset` headers (both in seconds).
pub fn classify_resend(
    status: u16,
    name: &str,
    message: &str,
    retry_after: Option<Duration>,
    ratelimit_reset: Option<Duration>,
    now: DateTime<Utc>,
) -> SendError {
    let said = if name.is_empty() {
        format!("Resend answered {status}: {message}")
    } else {
        format!("Resend answered {status} {name}: {message}")
    };
    let lower = message.to_ascii_lowercase();
    let header_wait = retry_after.or(ratelimit_reset);
    let (class, hint, wait) = match (status, name) {
        (429, "daily_quota_exceeded" | "monthly_quota_exceeded") => (
            ErrorClass::Quota,
            "; Resend is paused until the quota resets (or raise the plan's quota)",
            header_wait.or_else(|| Some(quota_reset(name, now))),
        ),
        (429, _) => (
            ErrorClass::RateLimited,
            "; waiting as asked (lower mail.resend.requests_per_second if this repeats)",
            header_wait.or(Some(Duration::from_secs(1))),
        ),
        (401 | 403, _) => (
            ErrorClass::Configuration,
            if lower.contains("domain") {
                "; verify the sender's domain in Resend, or change MAIL_FROM (mail.from)"
            } else {
                "; check RESEND_API_KEY (mail.resend.api_key): it must be a valid key with sending access"
            },
            None,
        ),
        (422, _) if lower.contains("domain") && lower.contains("verif") => (
            ErrorClass::Configuration,
            "; verify the sender's domain in Resend, or change MAIL_FROM (mail.from)",
            None,
        ),
        // Another request with this key is still being processed: its outcome is not known yet.
        (409, "concurrent_idempotent_requests") => (
            ErrorClass::Unknown,
            "; another request with this idempotency key is in flight: retried with the same key",
            None,
        ),
        // The key was used within 24 hours with another body: Resend took a first request under
        // this key, so the email was probably sent. Not the recipient's fault (not permanent);
        // retried with the same key, it fails with a clear message once the retries are used up.
        (409, "invalid_idempotent_request") => (
            ErrorClass::Unknown,
            "; Resend already took a request with this idempotency key and another body (the \
             templates or mail.from changed, or a batch lost a member): it was probably sent, \
             so Herald does not send it under another key",
            None,
        ),
        // Unavailable: Resend says it did not take the request, so another provider may.
        (503, _) => (ErrorClass::Transient, "", None),
        // A server or gateway error (500, 502, 504…) may come after Resend took the request, as
        // a timeout may: retried at Resend under the same idempotency key, never elsewhere.
        (500..=599, _) => (
            ErrorClass::Unknown,
            "; Resend may have taken the request before this error, so it is retried on Resend \
             with the same idempotency key (Resend then replays its first answer), never on \
             another provider",
            None,
        ),
        _ => (ErrorClass::Permanent, "", None),
    };
    SendError::new(class, Some(status), format!("{said}{hint}")).with_wait(wait)
}

/// When an exhausted quota comes back, if Resend did not say: the next UTC midnight for the
/// daily quota, the first of next month for the monthly one.
pub fn quota_reset(name: &str, now: DateTime<Utc>) -> Duration {
    let today = now.date_naive();
    let next = if name == "monthly_quota_exceeded" {
        let (y, m) = if today.month() == 12 {
            (today.year() + 1, 1)
        } else {
            (today.year(), today.month() + 1)
        };
        NaiveDate::from_ymd_opt(y, m, 1)
    } else {
        today.succ_opt()
    };
    next.and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc() - now)
        .and_then(|d| d.to_std().ok())
        .unwrap_or(Duration::from_secs(3600))
}

/// The longest wait a provider can ask for: a monthly quota resets within 31 days. A longer
/// `retry-after` is read as this, so an absurd header cannot stop a provider for good or overflow
/// the arithmetic of due dates.
pub const MAX_WAIT: Duration = Duration::from_secs(31 * 24 * 3600);

/// Reads a header holding seconds (`retry-after: 3`, `ratelimit-reset: 0.5`), at most
/// [`MAX_WAIT`].
pub fn parse_seconds(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    if !(secs.is_finite() && secs >= 0.0) {
        return None;
    }
    Some(Duration::try_from_secs_f64(secs).map_or(MAX_WAIT, |d| d.min(MAX_WAIT)))
}

/// Sorts an SMTP reply code and its text.
pub fn classify_smtp_reply(code: u16, text: &str) -> ErrorClass {
    let lower = text.to_ascii_lowercase();
    match code {
        // Authentication required, too weak, failed, or needs encryption.
        530 | 534 | 535 | 538 => ErrorClass::Configuration,
        421 | 450 | 451 if is_throttling(&lower) => ErrorClass::RateLimited,
        500..=599 if is_sender_rejected(&lower) => ErrorClass::Configuration,
        500..=599 => ErrorClass::Permanent,
        _ => ErrorClass::Transient,
    }
}

/// Whether an SMTP text says "too much, slow down" rather than "something went wrong".
fn is_throttling(lower: &str) -> bool {
    [
        "too many",
        "rate limit",
        "ratelimit",
        "rate-limit",
        "throttl",
        "slow down",
        "sending limit",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

/// Whether a 5xx says the server will not take mail from Herald's sender at all: the same for
/// every email, so a setup problem rather than a recipient's.
fn is_sender_rejected(lower: &str) -> bool {
    [
        "sender address rejected",
        "domain is not verified",
        "domain not verified",
        "not authorized to send",
        "relay access denied",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

#[cfg(test)]
mod refusal_tests {
    use super::*;

    #[test]
    fn only_a_refused_mailbox_suppresses() {
        let e = |code, text: &str| SendError::new(ErrorClass::Permanent, Some(code), text);
        assert_eq!(
            refuses_mailbox(&e(
                550,
                "550 5.1.1 <x@example.com>: Recipient address rejected: User unknown"
            ))
            .as_deref(),
            Some("smtp 550 5.1.1")
        );
        assert_eq!(
            refuses_mailbox(&e(
                550,
                "5.2.1 The email account that you tried to reach is disabled"
            ))
            .as_deref(),
            Some("smtp 550 5.2.1")
        );
        assert_eq!(
            refuses_mailbox(&e(550, "5.7.1 Message rejected as spam")),
            None
        );
        assert_eq!(refuses_mailbox(&e(552, "5.2.2 Mailbox full")), None);
        assert_eq!(refuses_mailbox(&e(550, "Recipient rejected")), None);
        let transient = SendError::new(ErrorClass::Transient, Some(450), "4.1.1 try later");
        assert_eq!(refuses_mailbox(&transient), None);
        // Both must hold: a permanent answer, and one of the mailbox's codes.
        assert_eq!(refuses_mailbox(&e(554, "5.1.1 User unknown")), None);
        let not_permanent = SendError::new(ErrorClass::Configuration, Some(550), "5.1.1 x");
        assert_eq!(refuses_mailbox(&not_permanent), None);
        // The enhanced code is three numbers: a host name of three parts before it is not one.
        assert_eq!(
            refuses_mailbox(&e(550, "550 mx1.example.net 5.1.1 User unknown")).as_deref(),
            Some("smtp 550 5.1.1")
        );
        // The enhanced code may stand before a colon or a comma.
        assert_eq!(
            refuses_mailbox(&e(551, "551 5.1.6:moved,try elsewhere")).as_deref(),
            Some("smtp 551 5.1.6")
        );
        assert_eq!(
            refuses_mailbox(&e(553, "553 5.1.3,bad address")).as_deref(),
            Some("smtp 553 5.1.3")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-23T21:30:00Z".parse().unwrap()
    }

    fn resend(status: u16, name: &str, message: &str) -> SendError {
        classify_resend(status, name, message, None, None, now())
    }

    #[test]
    fn resend_answers_map_to_classes() {
        use ErrorClass::*;
        let cases = [
            (400, "invalid_idempotency_key", "bad key", Permanent),
            (422, "validation_error", "Invalid `to` field", Permanent),
            (404, "not_found", "nope", Permanent),
            (401, "invalid_api_key", "API key is invalid", Configuration),
            (
                403,
                "restricted_api_key",
                "This key can only send",
                Configuration,
            ),
            (
                403,
                "validation_error",
                "The example.com domain is not verified",
                Configuration,
            ),
            (429, "rate_limit_exceeded", "Too many requests", RateLimited),
            (429, "daily_quota_exceeded", "Daily quota", Quota),
            (429, "monthly_quota_exceeded", "Monthly quota", Quota),
            (409, "concurrent_idempotent_requests", "in flight", Unknown),
            (409, "invalid_idempotent_request", "other payload", Unknown),
            (500, "internal_server_error", "oops", Unknown),
            (502, "bad_gateway", "upstream", Unknown),
            (504, "gateway_timeout", "upstream slow", Unknown),
            (599, "", "odd", Unknown),
            (503, "service_unavailable", "down", Transient),
            // A 422 is the sender's setup only when it says the domain is not verified.
            (
                422,
                "validation_error",
                "The example.com domain is not verified",
                Configuration,
            ),
            (
                422,
                "validation_error",
                "The domain field is missing",
                Permanent,
            ),
            (422, "validation_error", "Verify the `to` field", Permanent),
        ];
        for (status, name, message, class) in cases {
            let e = resend(status, name, message);
            assert_eq!(e.class, class, "{status} {name}");
            assert_eq!(e.code, Some(status));
            assert!(e.message.contains(message), "{}", e.message);
        }
        // Only "unavailable" says the request was not taken: it may fail over, with or
        // without a retry-after.
        let unavailable =
            classify_resend(503, "", "down", Some(Duration::from_secs(30)), None, now());
        assert_eq!(unavailable.class, Transient);
        assert!(unavailable.class.fails_over());
        for status in [500, 502, 504] {
            let e = resend(status, "", "gateway");
            assert!(!e.class.fails_over(), "{status}");
            assert!(e.message.contains("same idempotency key"), "{}", e.message);
        }
        assert!(
            resend(401, "invalid_api_key", "x")
                .message
                .contains("RESEND_API_KEY")
        );
        assert!(
            resend(403, "validation_error", "domain not verified")
                .message
                .contains("MAIL_FROM")
        );
    }

    #[test]
    fn resend_waits_come_from_the_headers_then_the_calendar() {
        let secs = Duration::from_secs;
        let limited = classify_resend(
            429,
            "rate_limit_exceeded",
            "",
            Some(secs(3)),
            Some(secs(1)),
            now(),
        );
        assert_eq!(limited.wait, Some(secs(3)));
        let reset_only =
            classify_resend(429, "rate_limit_exceeded", "", None, Some(secs(2)), now());
        assert_eq!(reset_only.wait, Some(secs(2)));
        assert_eq!(resend(429, "rate_limit_exceeded", "").wait, Some(secs(1)));
        // 21:30 UTC: the daily quota resets in 2 h 30 min, the monthly one on December 1st.
        assert_eq!(
            resend(429, "daily_quota_exceeded", "").wait,
            Some(secs(9000))
        );
        assert_eq!(
            resend(429, "monthly_quota_exceeded", "").wait,
            Some(secs(7 * 86400 + 9000))
        );
        let december: DateTime<Utc> = "2026-12-31T12:00:00Z".parse().unwrap();
        assert_eq!(
            quota_reset("monthly_quota_exceeded", december),
            secs(12 * 3600)
        );
        assert_eq!(resend(500, "", "").wait, None);
    }

    #[test]
    fn smtp_replies_map_to_classes() {
        use ErrorClass::*;
        let cases = [
            (550, "5.1.1 No such user here", Permanent),
            (552, "Message too big", Permanent),
            (451, "4.7.1 Try again later", Transient),
            (421, "4.3.2 Busy", Transient),
            (450, "Mailbox unavailable", Transient),
            (421, "4.7.0 Too many messages, slow down", RateLimited),
            (451, "4.7.1 Rate limit exceeded for sender", RateLimited),
            (450, "4.2.1 Throttled: try later", RateLimited),
            (452, "Too many recipients", Transient),
            (
                535,
                "5.7.8 Authentication credentials invalid",
                Configuration,
            ),
            (
                530,
                "5.7.0 Must issue a STARTTLS command first",
                Configuration,
            ),
            (
                553,
                "5.7.1 Sender address rejected: not owned by user",
                Configuration,
            ),
            (554, "5.7.1 Relay access denied", Configuration),
        ];
        for (code, text, class) in cases {
            assert_eq!(classify_smtp_reply(code, text), class, "{code} {text}");
        }
    }

    #[test]
    fn only_transient_quota_and_configuration_fail_over() {
        use ErrorClass::*;
        let over: Vec<_> = [
            Permanent,
            Transient,
            RateLimited,
            Quota,
            Configuration,
            Unknown,
        ]
        .into_iter()
        .filter(|c| c.fails_over())
        .collect();
        assert_eq!(over, [Transient, Quota, Configuration]);
        assert_eq!(ErrorClass::parse("rate_limited"), Some(RateLimited));
        assert_eq!(ErrorClass::parse("unknown"), Some(Unknown));
    }

    #[test]
    fn seconds_headers() {
        assert_eq!(parse_seconds("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_seconds(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_seconds("soon"), None);
        assert_eq!(parse_seconds("-1"), None);
        assert_eq!(parse_seconds("NaN"), None);
        assert_eq!(parse_seconds("inf"), None);
        // Above what a Duration holds (about 1.8e19 s), and merely absurd: the longest wait.
        assert_eq!(parse_seconds("1e20"), Some(MAX_WAIT));
        assert_eq!(parse_seconds("18446744073709551616"), Some(MAX_WAIT));
        assert_eq!(parse_seconds("99999999"), Some(MAX_WAIT));
        // 31 days, a monthly quota's longest reset, is still read as it is.
        assert_eq!(MAX_WAIT, Duration::from_secs(31 * 86_400));
        assert_eq!(
            parse_seconds("2678400"),
            Some(Duration::from_secs(2_678_400))
        );
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(256)))]

            #[test]
            fn any_seconds_header_is_read_without_panicking(text in ".{0,40}") {
                if let Some(d) = parse_seconds(&text) {
                    prop_assert!(d <= MAX_WAIT);
                }
            }

            #[test]
            fn any_number_of_seconds_is_at_most_the_longest_wait(secs in any::<f64>()) {
                for text in [secs.to_string(), format!("{secs:e}"), format!("{}", secs as u64)] {
                    if let Some(d) = parse_seconds(&text) {
                        prop_assert!(d <= MAX_WAIT);
                    }
                }
            }

            #[test]
            fn any_resend_answer_is_classified(
                status in any::<u16>(),
                name in ".{0,30}",
                message in ".{0,60}",
                retry in proptest::option::of(0u64..u64::MAX),
                reset in proptest::option::of(0u64..u64::MAX),
            ) {
                let e = classify_resend(
                    status,
                    &name,
                    &message,
                    retry.map(|s| Duration::from_secs(s).min(MAX_WAIT)),
                    reset.map(|s| Duration::from_secs(s).min(MAX_WAIT)),
                    now(),
                );
                prop_assert_eq!(e.code, Some(status));
            }

            #[test]
            fn any_smtp_reply_is_classified(code in any::<u16>(), text in ".{0,80}") {
                let _ = classify_smtp_reply(code, &text);
            }
        }
    }
}
