//! Checks `[mail]`: the sender and the timeouts here, the providers in `config/mail.rs`, the DKIM
//! key in `dkim.rs`.

use std::time::Duration;

use super::{
    super::{MailSettings, ProviderSettings, RawMail, mail::providers},
    Problems, duration,
};
use crate::domain::Mailbox;

pub(super) fn check(m: &RawMail, p: &mut Problems) -> MailSettings {
    let from = Mailbox::parse(&m.from).unwrap_or_else(|e| {
        p.key(
            "mail.from",
            format!("{e}; write it as \"Name <sender@example.com>\" or \"sender@example.com\""),
        );
        Mailbox::parse("herald@localhost").expect("a valid fallback")
    });
    let reply_to = Some(m.reply_to.trim())
        .filter(|r| !r.is_empty())
        .and_then(|r| {
            Mailbox::parse(r)
                .map_err(|e| {
                    p.key(
                        "mail.reply_to",
                        format!("{e}; write it as \"Support <support@example.com>\" or \"support@example.com\", or leave it empty"),
                    )
                })
                .ok()
        });
    let webhook_secret = Some(m.resend.webhook_secret.clone()).filter(|s| !s.is_empty());
    if let Some(secret) = &webhook_secret
        && let Err(e) = crate::webhooks::Verifier::new(secret.expose())
    {
        p.key("mail.resend.webhook_secret", e);
    }
    let providers = providers(m, &mut p.pusher());
    let dkim = super::dkim::check(&m.dkim, &from, p);
    let timeout = duration("mail.timeout", &m.timeout, p);
    let connect_timeout = duration("mail.connect_timeout", &m.connect_timeout, p);
    if let Some(connect) = connect_timeout {
        check_connect_timeout(connect, timeout, &providers, p);
    }
    let max_pause = duration("mail.max_pause", &m.max_pause, p);
    if max_pause == Some(Duration::ZERO) {
        p.key(
            "mail.max_pause",
            "is 0s; a provider's rate limit would pause it for nothing and it would be asked again \
             at once. Use a few minutes, like the default \"5m\"",
        );
    }
    MailSettings {
        from,
        reply_to,
        dkim,
        webhook_secret,
        providers,
        timeout: timeout.unwrap_or_default(),
        connect_timeout: connect_timeout.unwrap_or_default(),
        pool_size: m.pool_size.max(1),
        configuration_pause: duration("mail.configuration_pause", &m.configuration_pause, p)
            .unwrap_or_default(),
        probe_interval: duration("mail.probe_interval", &m.probe_interval, p).unwrap_or_default(),
        throttle_pause: duration("mail.throttle_pause", &m.throttle_pause, p).unwrap_or_default(),
        max_pause: max_pause.unwrap_or_default(),
    }
}

/// `mail.connect_timeout` must be more than nothing and less than every send timeout it lies
/// within: a connect that outlasts its send would end as the send's timeout, an unknown outcome.
fn check_connect_timeout(
    connect: Duration,
    smtp: Option<Duration>,
    providers: &[ProviderSettings],
    p: &mut Problems,
) {
    let shown = |d: Duration| humantime::format_duration(d).to_string();
    if connect.is_zero() {
        p.key(
            "mail.connect_timeout",
            "is 0s; no connection could be opened. Use a few seconds, like the default \"5s\"",
        );
        return;
    }
    let mut within = Vec::new();
    if let Some(t) = smtp.filter(|_| {
        providers
            .iter()
            .any(|s| matches!(s, ProviderSettings::Smtp(_)))
    }) {
        within.push(("mail.timeout", t));
    }
    for r in providers {
        if let ProviderSettings::Resend(r) = r {
            within.push(("mail.resend.timeout", r.timeout));
        }
    }
    for (key, timeout) in within {
        if connect >= timeout {
            p.key(
                "mail.connect_timeout",
                format!(
                    "is {}, not less than {key} ({}): a server that drops packets would use up the \
                     whole send and end as an unknown outcome instead of failing over. Make it \
                     shorter than {key}, or {key} longer",
                    shown(connect),
                    shown(timeout)
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Settings;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let vars: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(&crate::kinds::defaults(), None, &vars).map_err(|e| e.to_string())
    }

    #[test]
    fn the_connect_timeout_and_the_longest_pause_default_and_are_checked() {
        let s = load(&[]).unwrap();
        assert_eq!(s.mail.connect_timeout, Duration::from_secs(5));
        assert_eq!(s.mail.max_pause, Duration::from_secs(300));
        let s = load(&[
            ("SMTP_URL", "smtp://mail.example.com"),
            ("HERALD__MAIL__CONNECT_TIMEOUT", "500ms"),
            ("HERALD__MAIL__TIMEOUT", "1s"),
            ("HERALD__MAIL__MAX_PAUSE", "2s"),
        ])
        .unwrap();
        assert_eq!(s.mail.connect_timeout, Duration::from_millis(500));
        assert_eq!(s.mail.max_pause, Duration::from_secs(2));

        let err = load(&[
            ("HERALD__MAIL__CONNECT_TIMEOUT", "0s"),
            ("HERALD__MAIL__MAX_PAUSE", "0s"),
        ])
        .unwrap_err();
        for want in [
            "mail.connect_timeout (HERALD__MAIL__CONNECT_TIMEOUT): is 0s; no connection could be opened. Use a few seconds, like the default \"5s\"",
            "mail.max_pause (HERALD__MAIL__MAX_PAUSE): is 0s;",
            "Use a few minutes, like the default \"5m\"",
        ] {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
        let err = load(&[("HERALD__MAIL__MAX_PAUSE", "soon")]).unwrap_err();
        assert!(
            err.contains("mail.max_pause (HERALD__MAIL__MAX_PAUSE): "),
            "{err}"
        );

        // Not shorter than a send's timeout: the whole send would time out first, unknown.
        let err = load(&[
            ("SMTP_URL", "smtp://mail.example.com"),
            ("RESEND_API_KEY", "re_123"),
            ("HERALD__MAIL__TIMEOUT", "5s"),
            ("HERALD__MAIL__RESEND__TIMEOUT", "3s"),
        ])
        .unwrap_err();
        for want in [
            "mail.connect_timeout: is 5s, not less than mail.timeout (5s)",
            "mail.connect_timeout: is 5s, not less than mail.resend.timeout (3s)",
            "Make it shorter than mail.resend.timeout, or mail.resend.timeout longer",
        ] {
            assert!(err.contains(want), "missing {want:?} in:\n{err}");
        }
        // mail.timeout only bounds SMTP: without SMTP it does not limit the connect timeout.
        assert!(load(&[("HERALD__MAIL__TIMEOUT", "1s")]).is_ok());
    }
}
