//! `environment` (`HERALD_ENV`): development allows the `.eml` outbox and the `null` provider,
//! production refuses both.

use std::{fmt, path::Path};

use super::{MailSettings, ProviderSettings};

/// Where Herald runs: what it accepts as a mail provider depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Environment {
    /// The default: the `file` provider (a folder of `.eml` files) and the `null` provider are
    /// allowed, with a warning.
    #[default]
    Development,
    /// Starting without a real provider (SMTP or Resend) is a configuration error.
    Production,
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Environment::Development => "development",
            Environment::Production => "production",
        })
    }
}

/// Reads `environment` (`HERALD_ENV`) and, in production, refuses the `file` and `null` providers.
pub(super) fn check(
    text: &str,
    providers: &[ProviderSettings],
    p: &mut dyn FnMut(&str, String),
) -> Environment {
    let environment = match text.trim() {
        "development" => Environment::Development,
        "production" => Environment::Production,
        other => {
            p(
                "environment",
                format!("{other:?} is not an environment; use \"development\" or \"production\""),
            );
            return Environment::Development;
        }
    };
    if environment == Environment::Production
        && let Some(ProviderSettings::File(dir)) = providers
            .iter()
            .find(|s| matches!(s, ProviderSettings::File(_)))
    {
        p(
            "mail.providers",
            format!(
                "has the \"file\" provider, which writes .eml files to {} and sends nothing, but HERALD_ENV is production; set SMTP_URL or RESEND_API_KEY (and leave \"file\" out of mail.providers), or set HERALD_ENV=development",
                shown_folder(dir)
            ),
        );
    }
    if environment == Environment::Production && providers.contains(&ProviderSettings::Null) {
        p(
            "mail.providers",
            "has the \"null\" provider, which marks every email sent and sends nothing (it is for benchmarks), but HERALD_ENV is production; remove \"null\" from mail.providers and set SMTP_URL or RESEND_API_KEY, or set HERALD_ENV=development".into(),
        );
    }
    environment
}

/// A folder as an operator would type it: `./outbox` for a relative one.
pub fn shown_folder(dir: &Path) -> String {
    if dir.is_relative() && !dir.starts_with(".") && !dir.starts_with("..") {
        format!("./{}", dir.display())
    } else {
        dir.display().to_string()
    }
}

impl MailSettings {
    /// The folder of the `file` provider, when it is one of the providers.
    pub fn outbox(&self) -> Option<&Path> {
        self.providers.iter().find_map(|p| match p {
            ProviderSettings::File(dir) => Some(dir.as_path()),
            _ => None,
        })
    }

    /// What to tell an operator when emails are not sent: they go to the `file` provider's folder,
    /// or the `null` provider discards them.
    pub fn not_sending_warning(&self) -> Option<String> {
        let outbox = self.outbox().map(|dir| {
            format!(
                "emails are written as .eml files to {} and not sent: the \"file\" provider is for development; set SMTP_URL or RESEND_API_KEY to send them (HERALD_ENV=production refuses to start without one)",
                shown_folder(dir)
            )
        });
        let null = self.providers.contains(&ProviderSettings::Null).then(|| {
            "emails are discarded and marked sent: the \"null\" provider is for benchmarks; remove it from mail.providers to send them (HERALD_ENV=production refuses to start with it)".to_owned()
        });
        match (outbox, null) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Settings;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, String> {
        let vars: Vec<_> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(&crate::kinds::defaults(), None, &vars).map_err(|e| e.to_string())
    }

    #[test]
    fn development_is_the_default_and_warns_about_the_outbox() {
        let s = load(&[]).unwrap();
        assert_eq!(s.environment, super::Environment::Development);
        let warning = s.mail.not_sending_warning().unwrap();
        assert!(warning.contains("to ./outbox and not sent"), "{warning}");
        assert!(warning.contains("SMTP_URL or RESEND_API_KEY"), "{warning}");
        let s = load(&[("SMTP_URL", "smtp://127.0.0.1:25?tls=none")]).unwrap();
        assert_eq!(s.mail.not_sending_warning(), None);
    }

    #[test]
    fn production_refuses_to_start_without_a_real_provider() {
        let err = load(&[("HERALD_ENV", "production")]).unwrap_err();
        assert!(
            err.contains("mail.providers: has the \"file\" provider"),
            "{err}"
        );
        assert!(err.contains("set SMTP_URL or RESEND_API_KEY"), "{err}");
        assert!(err.contains("./outbox"), "{err}");

        // Listed explicitly, even after a real provider.
        let err = load(&[
            ("HERALD_ENV", "production"),
            ("SMTP_URL", "smtp://127.0.0.1:25?tls=none"),
            ("HERALD__MAIL__PROVIDERS", "[\"smtp\", \"file\"]"),
            ("HERALD__MAIL__OUTBOX_DIR", "/var/herald/outbox"),
        ])
        .unwrap_err();
        assert!(
            err.contains("writes .eml files to /var/herald/outbox"),
            "{err}"
        );

        for real in [
            ("SMTP_URL", "smtp://127.0.0.1:25?tls=none"),
            ("RESEND_API_KEY", "re_0123456789"),
        ] {
            let s = load(&[
                ("HERALD_ENV", "production"),
                real,
                ("HERALD_PUBLIC_URL", "https://herald.example.com"),
                ("HERALD_UNSUBSCRIBE_KEY", "0123456789abcdef0123456789abcdef"),
            ])
            .unwrap();
            assert_eq!(s.environment, super::Environment::Production);
            assert_eq!(s.mail.outbox(), None);
        }
    }

    #[test]
    fn development_accepts_the_null_provider_and_warns_that_emails_are_discarded() {
        let s = load(&[("HERALD__MAIL__PROVIDERS", "[\"null\"]")]).unwrap();
        assert_eq!(s.environment, super::Environment::Development);
        assert_eq!(s.mail.providers, [super::ProviderSettings::Null]);
        assert_eq!(s.mail.providers[0].name(), "null");
        assert_eq!(s.mail.outbox(), None);
        let warning = s.mail.not_sending_warning().unwrap();
        assert!(
            warning.contains("emails are discarded and marked sent"),
            "{warning}"
        );
        assert!(warning.contains("for benchmarks"), "{warning}");

        // Both kinds of not sending are named.
        let s = load(&[("HERALD__MAIL__PROVIDERS", "[\"file\", \"null\"]")]).unwrap();
        let warning = s.mail.not_sending_warning().unwrap();
        assert!(warning.contains("./outbox"), "{warning}");
        assert!(warning.contains("\"null\" provider"), "{warning}");
    }

    #[test]
    fn production_refuses_the_null_provider() {
        for providers in ["[\"null\"]", "[\"smtp\", \"null\"]"] {
            let err = load(&[
                ("HERALD_ENV", "production"),
                ("SMTP_URL", "smtp://127.0.0.1:25?tls=none"),
                ("HERALD__MAIL__PROVIDERS", providers),
            ])
            .unwrap_err();
            assert!(
                err.contains("mail.providers (HERALD__MAIL__PROVIDERS): has the \"null\" provider, which marks every email sent and sends nothing"),
                "{providers}: {err}"
            );
            assert!(
                err.contains("remove \"null\" from mail.providers"),
                "{providers}: {err}"
            );
        }
    }

    #[test]
    fn an_unknown_environment_names_the_key() {
        let err = load(&[("HERALD_ENV", "prod")]).unwrap_err();
        assert!(
            err.contains(
                "environment (HERALD_ENV): \"prod\" is not an environment; use \"development\" or \"production\""
            ),
            "{err}"
        );
        let err = load(&[("HERALD__ENVIRONMENT", "staging")]).unwrap_err();
        assert!(err.contains("\"staging\" is not an environment"), "{err}");
    }
}
