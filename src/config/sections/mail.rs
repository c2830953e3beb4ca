//! Checks `[mail]`: the sender and the timeouts here, the providers in `config/mail.rs`, the DKIM
//! key in `dkim.rs`.

use super::{
    super::{MailSettings, RawMail, mail::providers},
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
    MailSettings {
        from,
        reply_to,
        dkim,
        webhook_secret,
        providers,
        timeout: duration("mail.timeout", &m.timeout, p).unwrap_or_default(),
        pool_size: m.pool_size.max(1),
        configuration_pause: duration("mail.configuration_pause", &m.configuration_pause, p)
            .unwrap_or_default(),
        probe_interval: duration("mail.probe_interval", &m.probe_interval, p).unwrap_or_default(),
        throttle_pause: duration("mail.throttle_pause", &m.throttle_pause, p).unwrap_or_default(),
    }
}
