//! Values that must never be printed: `Debug` and `Display` hide them, only `expose` reads them.

use std::fmt;

use serde::{Deserialize, Deserializer, de};

/// A secret string (the API token, Resend's key, an SMTP password): `Debug` and `Display` print
/// `***`, or `""` when it is empty. Read it with [`Secret::expose`] where it is used.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"***\"")
        }
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            f.write_str("***")
        }
    }
}

/// A URL that may carry a password (`DATABASE_URL`, `REDIS_URL`, `SMTP_URL`): `Debug` and
/// `Display` print it with the password replaced ([`redact`]). It derefs to the
/// URL itself, so it can be handed to the client that connects.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretUrl(String);

impl SecretUrl {
    pub fn new(value: impl Into<String>) -> SecretUrl {
        SecretUrl(value.into())
    }

    /// The URL with its password, for the client that connects.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for SecretUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&redact(&self.0), f)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

/// A URL with its password replaced, fit for logs and error messages: the password of its
/// authority and a `password` query parameter (sqlx reads one). A text that is not a URL keeps
/// only what follows its last `@`, since what comes before may be credentials.
pub fn redact(url: &str) -> String {
    let hide_userinfo = |text: &str| match text.rsplit_once('@') {
        Some((before, after)) => match before.split_once("://") {
            Some((scheme, _)) => format!("{scheme}://***@{after}"),
            None => format!("***@{after}"),
        },
        None => text.to_owned(),
    };
    let Ok(mut u) = url::Url::parse(url) else {
        return hide_userinfo(url);
    };
    if !u.has_authority() {
        return hide_userinfo(url);
    }
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    let secret_key = |k: &str| {
        let k = k.to_ascii_lowercase();
        k.contains("password") || k == "pass" || k.contains("token") || k.contains("secret")
    };
    if u.query_pairs().any(|(k, _)| secret_key(&k)) {
        let pairs: Vec<(String, String)> = u
            .query_pairs()
            .map(|(k, v)| {
                let v = if secret_key(&k) {
                    "***".into()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u.to_string()
}

/// Reads a string; any other type is refused without echoing the value (serde's own message
/// would quote it).
struct SecretVisitor;

impl de::Visitor<'_> for SecretVisitor {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<String, E> {
        Err(not_a_string())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<String, E> {
        Err(not_a_string())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<String, E> {
        Err(not_a_string())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<String, E> {
        Err(not_a_string())
    }
}

fn not_a_string<E: de::Error>() -> E {
    E::custom(
        "is not a string (its value is not shown: it is a secret); write it in quotes in TOML",
    )
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor).map(Secret)
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretVisitor).map(SecretUrl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_stars() {
        let s = Secret::new("s3cr3t-VALUE-xyz");
        assert_eq!(format!("{s:?} {s}"), "\"***\" ***");
        assert_eq!(s.expose(), "s3cr3t-VALUE-xyz");
        assert_eq!(format!("{:?}", Secret::default()), "\"\"");
    }

    #[test]
    fn urls_print_without_their_password() {
        let u = SecretUrl::new("postgres://herald:s3cr3t-VALUE-xyz@db:5432/herald");
        assert_eq!(u.to_string(), "postgres://herald:***@db:5432/herald");
        assert_eq!(format!("{u:?}"), "\"postgres://herald:***@db:5432/herald\"");
        assert_eq!(&*u, "postgres://herald:s3cr3t-VALUE-xyz@db:5432/herald");
    }

    #[test]
    fn a_secret_that_is_not_a_string_is_refused_without_its_value() {
        let t: toml::Table = "v = 123456789012345".parse().unwrap();
        let e = Secret::deserialize(t["v"].clone()).unwrap_err().to_string();
        assert!(!e.contains("123456789012345"), "{e}");
        assert!(e.contains("not a string"), "{e}");
    }

    const SECRET: &str = "s3cr3t-VALUE-xyz";

    fn env(pairs: &[(&str, String)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn settings_print_without_their_secrets() {
        let vars = env(&[
            (
                "DATABASE_URL",
                format!("postgres://herald:{SECRET}@db:5432/herald"),
            ),
            (
                "REDIS_URL",
                format!("redis://default:{SECRET}@redis:6379/0"),
            ),
            ("SMTP_URL", format!("smtp://user:{SECRET}@mail.example.com")),
            ("RESEND_API_KEY", format!("re_{SECRET}")),
            ("HERALD_API_TOKEN", format!("{SECRET}-0123456789")),
        ]);
        let (raw, problems) = super::super::read(&crate::kinds::defaults(), None, &vars);
        let raw = raw.unwrap();
        let text = format!("{raw:?}");
        assert!(!text.contains(SECRET), "{text}");
        assert!(
            text.contains("postgres://herald:***@db:5432/herald"),
            "{text}"
        );
        let settings = raw.validate(&crate::kinds::defaults(), problems).unwrap();
        let text = format!("{settings:?} {settings:#?}");
        assert!(!text.contains(SECRET), "{text}");
        assert!(text.contains("redis://default:***@redis:6379/0"), "{text}");
        // What connects still has the real values.
        assert!(settings.servers().unwrap().database_url.contains(SECRET));
        assert_eq!(
            settings.api_token.as_ref().map(Secret::expose),
            Some(format!("{SECRET}-0123456789").as_str())
        );
    }

    #[test]
    fn errors_about_urls_and_tokens_do_not_quote_the_secret() {
        let cases = [
            (
                "DATABASE_URL",
                format!("postgres://herald:{SECRET}@db:port/herald"),
            ),
            ("DATABASE_URL", format!("mysql://herald:{SECRET}@db/herald")),
            ("DATABASE_URL", format!("herald:{SECRET}@db/herald")),
            ("REDIS_URL", format!("redis://:{SECRET}@[redis/0")),
            ("REDIS_URL", format!("http://:{SECRET}@redis/0")),
            (
                "SMTP_URL",
                format!("smtp://user:{SECRET}@mail.example.com?tls=maybe"),
            ),
            (
                "SMTP_URL",
                format!("smtp://user:{SECRET}/x@mail.example.com"),
            ),
            (
                "SMTP_URL",
                format!("smtps://user:{SECRET}%FF@mail.example.com"),
            ),
            ("SMTP_URL", format!("smtp://user:{SECRET}@:25")),
            ("HERALD_API_TOKEN", "short".to_owned()),
            ("HERALD__HTTP__API_TOKEN", "123456789012345678".to_owned()),
            ("HERALD__MAIL__RESEND__API_KEY", "[1, 2]".to_owned()),
            ("HERALD__DATABASE__URL", "12345678901234567".to_owned()),
        ];
        for (name, value) in cases {
            let err = super::super::Settings::load_from(
                &crate::kinds::defaults(),
                None,
                &env(&[(name, value.clone())]),
            )
            .expect_err(&value)
            .to_string();
            let secret = if value.contains(SECRET) {
                SECRET
            } else {
                value.as_str()
            };
            assert!(!err.contains(secret), "{name}={value}: {err}");
        }
        // A token of digits given by its well-known name is a string, as written.
        let s = super::super::Settings::load_from(
            &crate::kinds::defaults(),
            None,
            &env(&[("HERALD_API_TOKEN", "12345678901234567890".to_owned())]),
        )
        .unwrap();
        assert_eq!(
            s.api_token.as_ref().map(Secret::expose),
            Some("12345678901234567890")
        );
    }

    #[test]
    fn redact_hides_passwords_in_and_out_of_urls() {
        use super::super::redact;
        let cases = [
            ("postgres://u:pw@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            (
                "postgres://h/db?user=u&password=pw",
                "postgres://h/db?user=u&password=***",
            ),
            ("redis://:pw@h:6379/0", "redis://:***@h:6379/0"),
            ("smtp://u:p%40w@h", "smtp://u:***@h"),
            ("postgres://u:pw@h:port/db", "postgres://***@h:port/db"),
            ("u:pw@h/db", "***@h/db"),
            ("not a url", "not a url"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown, "{url}");
        }
    }
}
