//! The `[mail]` settings: providers, SMTP URLs and Resend, as written and as validated.

use std::{fmt, path::PathBuf, time::Duration};

use serde::Deserialize;

use super::{Secret, SecretUrl, parse_duration};
use crate::domain::Mailbox;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMail {
    pub from: String,
    pub reply_to: String,
    pub providers: Vec<String>,
    pub smtp_url: SecretUrl,
    pub outbox_dir: String,
    pub timeout: String,
    pub connect_timeout: String,
    pub pool_size: u32,
    pub configuration_pause: String,
    pub probe_interval: String,
    pub throttle_pause: String,
    pub max_pause: String,
    pub smtp: RawSmtp,
    pub resend: RawResend,
    pub dkim: RawDkim,
}

/// `[mail.dkim]`: all three set, or all three empty (no signing).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDkim {
    /// The PEM private key's path (`DKIM_KEY_FILE`); the key is read at start.
    pub key_file: String,
    pub selector: String,
    pub domain: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSmtp {
    pub messages_per_second: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResend {
    pub api_key: Secret,
    /// Signs Resend's webhooks to `/webhooks/resend` (`whsec_…`); empty: no webhooks.
    pub webhook_secret: Secret,
    pub base_url: String,
    pub timeout: String,
    pub batch_size: usize,
    pub requests_per_second: u32,
}

#[derive(Debug, Clone)]
pub struct MailSettings {
    pub from: Mailbox,
    /// `Reply-To` of every email (`mail.reply_to`); `None`: replies go to `from`.
    pub reply_to: Option<Mailbox>,
    /// `[mail.dkim]`, its key read and checked: signs every SMTP and `.eml` message; `None`:
    /// unsigned. `Debug` shows the record's name, never the key.
    pub dkim: Option<crate::dkim::DkimSigner>,
    /// `mail.resend.webhook_secret`, checked to be `whsec_` and base64; `None`: Herald takes
    /// no webhooks.
    pub webhook_secret: Option<Secret>,
    /// The providers to try, in order: a transient, quota or configuration failure of one moves
    /// the email to the next.
    pub providers: Vec<ProviderSettings>,
    pub timeout: Duration,
    /// How long opening a TCP connection to a provider may take, less than its send timeout. A
    /// connection not open by then is "not taken" (transient, the provider unreachable: its
    /// circuit opens and the email fails over), never "unknown": nothing was sent.
    pub connect_timeout: Duration,
    pub pool_size: u32,
    /// How long a provider that refused Herald's credentials or sender is left alone.
    pub configuration_pause: Duration,
    /// How often one worker probes a provider that could not be reached.
    pub probe_interval: Duration,
    /// How long an SMTP server that says it is throttling is left alone (SMTP has no retry-after).
    pub throttle_pause: Duration,
    /// The longest a rate limit pauses a provider: a longer `retry-after` (Resend allows it to
    /// say up to 31 days) is cut to this, with a warning. Quota pauses are not cut.
    pub max_pause: Duration,
}

/// Where emails go.
#[derive(Clone, PartialEq, Eq)]
pub enum ProviderSettings {
    /// Resend's HTTP API.
    Resend(ResendSettings),
    Smtp(SmtpSettings),
    /// Write `.eml` files into a folder: the default when no provider is configured.
    File(PathBuf),
    /// Mark every email sent and send nothing (`"null"`): for benchmarks, refused in production.
    Null,
}

impl ProviderSettings {
    /// The name used in `mail.providers`, on deliveries, attempts and Redis keys.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Resend(_) => "resend",
            Self::Smtp(_) => "smtp",
            Self::File(_) => "file",
            Self::Null => "null",
        }
    }
}

/// Where a provider sends, as `herald check` says it: `smtp.example.com:587, STARTTLS`.
impl fmt::Display for ProviderSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resend(r) => write!(f, "{}", r.base_url),
            Self::Smtp(s) => {
                let tls = match s.tls {
                    SmtpTls::StartTls => "STARTTLS",
                    SmtpTls::Opportunistic => "STARTTLS when offered",
                    SmtpTls::Implicit => "TLS",
                    SmtpTls::None => "no TLS",
                };
                write!(f, "{}:{}, {tls}", s.host, s.port)
            }
            Self::File(dir) => write!(
                f,
                "writing to {}, not sending",
                super::environment::shown_folder(dir)
            ),
            Self::Null => f.write_str("discarding every email, not sending"),
        }
    }
}

impl fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resend(r) => r.fmt(f),
            Self::Smtp(s) => s.fmt(f),
            Self::File(p) => write!(f, "File({})", p.display()),
            Self::Null => f.write_str("Null"),
        }
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct ResendSettings {
    pub api_key: Secret,
    pub base_url: url::Url,
    pub timeout: Duration,
    /// Emails per `/emails/batch` request; 1 sends each email on its own.
    pub batch_size: usize,
    /// Requests per second across every Herald process (Resend's limit is per team).
    pub requests_per_second: u32,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Smtp({}:{}, {:?})", self.host, self.port, self.tls)
    }
}

impl fmt::Debug for ResendSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resend({})", self.base_url)
    }
}

#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSettings {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// The user and password, percent-decoded.
    pub credentials: Option<(String, Secret)>,
    /// Messages per second across every Herald process; 0 means no limit.
    pub messages_per_second: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtp://` (default): upgrade with STARTTLS, refuse to send in the clear.
    StartTls,
    /// `smtp://…?tls=opportunistic`: STARTTLS when offered.
    Opportunistic,
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://…?tls=none`: plain text, for a local mail catcher.
    None,
}

/// The providers in the order to try them. `mail.providers` empty means: Resend when
/// `RESEND_API_KEY` is set, then SMTP when `SMTP_URL` is set, else the `.eml` outbox.
pub(super) fn providers(m: &RawMail, p: &mut dyn FnMut(&str, String)) -> Vec<ProviderSettings> {
    let names: Vec<String> = if m.providers.is_empty() {
        let mut names = Vec::new();
        if !m.resend.api_key.expose().trim().is_empty() {
            names.push("resend".to_owned());
        }
        if !m.smtp_url.trim().is_empty() {
            names.push("smtp".to_owned());
        }
        if names.is_empty() {
            names.push("file".to_owned());
        }
        names
    } else {
        m.providers.clone()
    };
    let mut out = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let place = format!("mail.providers[{i}]");
        if names[..i].contains(name) {
            p(
                &place,
                format!("{name:?} is listed twice; list each provider once"),
            );
            continue;
        }
        match name.as_str() {
            "resend" => {
                if let Some(r) = resend_settings(&m.resend, p) {
                    out.push(ProviderSettings::Resend(r));
                }
            }
            "smtp" if m.smtp_url.trim().is_empty() => p(
                &place,
                "is \"smtp\" but SMTP_URL (mail.smtp_url) is empty; set it or remove \"smtp\""
                    .into(),
            ),
            "smtp" => match parse_smtp_url(&m.smtp_url) {
                Ok(s) => out.push(ProviderSettings::Smtp(SmtpSettings {
                    messages_per_second: m.smtp.messages_per_second,
                    ..s
                })),
                Err(e) => p("mail.smtp_url (SMTP_URL)", e),
            },
            "file" => out.push(ProviderSettings::File(PathBuf::from(&m.outbox_dir))),
            "null" => out.push(ProviderSettings::Null),
            other => p(
                &place,
                format!(
                    "{other:?} is not a provider; use \"resend\", \"smtp\", \"file\" or \"null\""
                ),
            ),
        }
    }
    out
}

pub(super) fn resend_settings(
    r: &RawResend,
    p: &mut dyn FnMut(&str, String),
) -> Option<ResendSettings> {
    let mut ok = true;
    if r.api_key.expose().trim().is_empty() {
        p(
            "mail.resend.api_key (RESEND_API_KEY)",
            "is empty but \"resend\" is in mail.providers; set RESEND_API_KEY to a key from Resend's dashboard (re_…)".into(),
        );
        ok = false;
    }
    let base_url = match url::Url::parse(r.base_url.trim_end_matches('/')) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
        _ => {
            p(
                "mail.resend.base_url",
                format!(
                    "{:?} is not an http(s) URL; the default is \"https://api.resend.com\"",
                    r.base_url
                ),
            );
            None
        }
    };
    let timeout = parse_duration(&r.timeout)
        .map_err(|e| p("mail.resend.timeout", e))
        .ok();
    if !(1..=100).contains(&r.batch_size) {
        p(
            "mail.resend.batch_size",
            format!(
                "is {}; Resend takes 1 to 100 emails per batch (1 turns batching off)",
                r.batch_size
            ),
        );
        ok = false;
    }
    if r.requests_per_second == 0 {
        p(
            "mail.resend.requests_per_second",
            "is 0; use your team's limit (2 by default)".into(),
        );
        ok = false;
    }
    Some(ResendSettings {
        api_key: Secret::new(r.api_key.expose().trim()),
        base_url: base_url?,
        timeout: timeout?,
        batch_size: r.batch_size,
        requests_per_second: r.requests_per_second,
    })
    .filter(|_| ok)
}

/// Reads `SMTP_URL`. `smtp://` means STARTTLS unless `?tls=none` or `?tls=opportunistic`.
pub fn parse_smtp_url(text: &str) -> Result<SmtpSettings, String> {
    let hint = "write it as smtp://user:pass@host:587 (STARTTLS), smtps://user:pass@host:465 (TLS) or smtp://host:1025?tls=none (a local catcher)";
    let url = url::Url::parse(text).map_err(|e| format!("is not a URL ({e}); {hint}"))?;
    let tls_param = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let tls = match (url.scheme(), tls_param.as_deref()) {
        ("smtps", None) => SmtpTls::Implicit,
        ("smtp", None | Some("required") | Some("starttls")) => SmtpTls::StartTls,
        ("smtp", Some("opportunistic")) => SmtpTls::Opportunistic,
        ("smtp", Some("none")) => SmtpTls::None,
        ("smtp" | "smtps", Some(other)) => {
            return Err(format!(
                "has tls={other:?}; use tls=none, tls=opportunistic or leave it out for STARTTLS"
            ));
        }
        (scheme, _) => return Err(format!("has scheme {scheme:?}; {hint}")),
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("has no host; {hint}"))?
        .to_owned();
    let port = url.port().unwrap_or(match tls {
        SmtpTls::Implicit => 465,
        SmtpTls::None => 25,
        _ => 587,
    });
    // RFC 3986 percent-decoding, not form decoding: a `+` in a password stays a `+`.
    let decode = |s: &str, what: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| {
                format!(
                    "has a {what} that is not UTF-8 once percent-decoded; percent-encode the special characters of the user and password (`+` stays `+`, `@` is %40, `/` is %2F, `:` is %3A, `%` is %25)"
                )
            })
    };
    let credentials = match (url.username(), url.password()) {
        ("", None) => None,
        (user, Some(pass)) => Some((
            decode(user, "user")?,
            Secret::new(decode(pass, "password")?),
        )),
        (_, None) => return Err(format!("has a user but no password; {hint}")),
    };
    Ok(SmtpSettings {
        host,
        port,
        tls,
        credentials,
        messages_per_second: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credentials(url: &str) -> (String, String) {
        let (user, pass) = parse_smtp_url(url)
            .unwrap_or_else(|e| panic!("{url}: {e}"))
            .credentials
            .expect("credentials");
        (user, pass.expose().to_owned())
    }

    #[test]
    fn smtp_credentials_are_percent_decoded_not_form_decoded() {
        // SES-style passwords: `+`, `=` and `&` are themselves, never a space or a split.
        let (user, pass) = credentials("smtp://AKIAEXAMPLE:BFz+kq3=a&b@email-smtp.example.com");
        assert_eq!(
            (user.as_str(), pass.as_str()),
            ("AKIAEXAMPLE", "BFz+kq3=a&b")
        );
        assert_eq!(credentials("smtp://u:a+b@h").1, "a+b");
        assert_eq!(credentials("smtp://u:==@h").1, "==");
        assert_eq!(credentials("smtp://u:a&tls=none@h").1, "a&tls=none");
        // Percent-encoded characters are decoded once.
        assert_eq!(credentials("smtp://u:a%2Bb@h").1, "a+b");
        assert_eq!(credentials("smtp://u:a%40b@h").1, "a@b");
        assert_eq!(credentials("smtp://u:a%2Fb@h").1, "a/b");
        assert_eq!(credentials("smtp://u:100%25@h").1, "100%");
        assert_eq!(
            credentials("smtp://me%40example.com:p@h").0,
            "me@example.com"
        );
        // An unencoded `@` in the password: the last one ends the credentials.
        assert_eq!(credentials("smtp://u:a@b@h").1, "a@b");
        // A `&` or `=` in the password does not reach the query.
        let s = parse_smtp_url("smtp://u:x&tls=none@h:25").unwrap();
        assert_eq!(s.tls, SmtpTls::StartTls);
    }

    mod props {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(crate::proptest_cases(256)))]

            #[test]
            fn any_smtp_url_is_read_or_refused(text in ".{0,60}") {
                let _ = parse_smtp_url(&text);
            }

            #[test]
            fn any_smtp_shaped_url_is_read_or_refused(
                scheme in "smtps?",
                user in ".{0,12}",
                pass in ".{0,12}",
                host in "[a-z0-9.:\\[\\]-]{0,16}",
                rest in "[/?=&%a-z0-9]{0,16}",
            ) {
                let _ = parse_smtp_url(&format!("{scheme}://{user}:{pass}@{host}{rest}"));
            }

            #[test]
            fn any_percent_encoded_password_comes_back_as_written(
                user in "\\PC{1,12}",
                pass in "\\PC{1,24}",
            ) {
                use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
                let url = format!(
                    "smtp://{}:{}@mail.example.com:587",
                    utf8_percent_encode(&user, NON_ALPHANUMERIC),
                    utf8_percent_encode(&pass, NON_ALPHANUMERIC),
                );
                let (u, p) = parse_smtp_url(&url).unwrap().credentials.unwrap();
                prop_assert_eq!(u, user);
                prop_assert_eq!(p.expose(), pass.as_str());
            }
        }
    }

    #[test]
    fn an_unencoded_slash_or_undecodable_password_is_a_config_error_without_the_password() {
        let e = parse_smtp_url("smtp://u:s3cr3t%FF@h").unwrap_err();
        assert!(e.contains("not UTF-8"), "{e}");
        assert!(e.contains("`+` stays `+`, `@` is %40"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
        // A `/` ends the host part: the password must say %2F.
        let e = parse_smtp_url("smtp://u:s3cr3t/x@h").unwrap_err();
        assert!(!e.contains("s3cr3t"), "{e}");

        let err = super::super::Settings::load_from(
            &crate::kinds::defaults(),
            None,
            &[("SMTP_URL".to_owned(), "smtp://u:s3cr3t%C3@h".to_owned())],
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("mail.smtp_url (SMTP_URL): has a password that is not UTF-8"),
            "{err}"
        );
        assert!(!err.contains("s3cr3t"), "{err}");
    }
}
