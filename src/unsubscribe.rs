//! One-click unsubscribe (RFC 8058): the link in every email and its `List-Unsubscribe`
//! headers, and the token that lets `POST /unsubscribe/{token}` opt a user out without a login
//! and without reading the database.
//!
//! A token is `<user id>.<kind>.<issued at>.<mac>`, each part base64url without padding but the
//! time (seconds since 1970): the MAC is HMAC-SHA256 over the three, with the configured key
//! (`unsubscribe.key`), cut to 16 bytes. Whoever holds the token may opt that user out of that
//! kind (or of everything): that is what the link is for, and it needs nothing else. Keys in
//! `unsubscribe.previous_keys` still verify, so rotating the key keeps the links of emails
//! already sent working until the old key is dropped from the list.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::Secret;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of the MAC kept in a token: 128 bits.
const MAC_BYTES: usize = 16;

/// What an unsubscribe token says: this user may opt out of this kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub user_id: String,
    pub kind: String,
    pub issued_at: DateTime<Utc>,
}

/// Why a token was refused, in words for the page that says so.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("this unsubscribe link is not complete; open the whole link from the email")]
    Malformed,
    #[error(
        "this unsubscribe link was not made by this Herald (or its key was changed since); use the link of a recent email, or change your notification settings in the app"
    )]
    Forged,
}

/// Signs and checks tokens, and writes the links and headers of an email.
#[derive(Debug, Clone)]
pub struct Links {
    /// `http.public_url` without a trailing slash.
    public_url: String,
    /// The key that signs, then the older keys that still verify.
    keys: Vec<Secret>,
    /// `unsubscribe.mailto`: an address that also unsubscribes, for the `mailto:` form.
    mailto: Option<String>,
}

impl Links {
    pub fn new(public_url: &str, keys: Vec<Secret>, mailto: Option<String>) -> Links {
        Links {
            public_url: public_url.trim_end_matches('/').to_owned(),
            keys,
            mailto,
        }
    }

    /// The links of these settings; `None` without `http.public_url`.
    pub fn from_settings(settings: &crate::config::Settings) -> Option<Links> {
        let u = settings.unsubscribe.as_ref()?;
        Some(Links::new(&u.public_url, u.keys.clone(), u.mailto.clone()))
    }

    fn mac(key: &Secret, signed: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(key.expose().as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(signed.as_bytes());
        mac
    }

    /// The token for `user_id` and `kind`, issued at `now`.
    pub fn token(&self, user_id: &str, kind: &str, now: DateTime<Utc>) -> String {
        let signed = format!(
            "{}.{}.{}",
            B64.encode(user_id),
            B64.encode(kind),
            now.timestamp()
        );
        let mac = Self::mac(&self.keys[0], &signed).finalize().into_bytes();
        format!("{signed}.{}", B64.encode(&mac[..MAC_BYTES]))
    }

    /// Checks a token against every key; the user and kind it names when one signed it.
    pub fn verify(&self, token: &str) -> Result<Token, TokenError> {
        let (signed, mac) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let mac = B64.decode(mac).map_err(|_| TokenError::Malformed)?;
        let parts: Vec<&str> = signed.split('.').collect();
        let [user, kind, issued] = parts[..] else {
            return Err(TokenError::Malformed);
        };
        let text = |part: &str| {
            B64.decode(part)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or(TokenError::Malformed)
        };
        let (user_id, kind) = (text(user)?, text(kind)?);
        let issued_at = issued
            .parse::<i64>()
            .ok()
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or(TokenError::Malformed)?;
        if mac.len() != MAC_BYTES {
            return Err(TokenError::Malformed);
        }
        // `verify_truncated_left` compares in constant time.
        self.keys
            .iter()
            .any(|key| Self::mac(key, signed).verify_truncated_left(&mac).is_ok())
            .then_some(Token {
                user_id,
                kind,
                issued_at,
            })
            .ok_or(TokenError::Forged)
    }

    /// The page a user opens to unsubscribe from `kind`: the footer's link and the
    /// `List-Unsubscribe` URL.
    pub fn url(&self, user_id: &str, kind: &str, now: DateTime<Utc>) -> String {
        format!(
            "{}/unsubscribe/{}",
            self.public_url,
            self.token(user_id, kind, now)
        )
    }

    /// The value of `List-Unsubscribe` for an email whose link is `url`: the URL, then the
    /// `mailto:` form when one is configured.
    pub fn header(&self, url: &str) -> String {
        match &self.mailto {
            Some(to) => format!("<{url}>, <mailto:{to}?subject=unsubscribe>"),
            None => format!("<{url}>"),
        }
    }
}

/// What Herald says at start-up (and `herald check`) without `http.public_url`.
pub const NO_LINKS: &str = "emails carry no unsubscribe link and no List-Unsubscribe header: set http.public_url (HERALD_PUBLIC_URL) to the address users reach Herald at, and unsubscribe.key (HERALD_UNSUBSCRIBE_KEY); production refuses to start without them";

/// `List-Unsubscribe-Post`'s only value (RFC 8058): the body of the POST a mail client sends.
pub const ONE_CLICK: &str = "List-Unsubscribe=One-Click";

#[cfg(test)]
mod tests {
    use super::*;

    fn links(keys: &[&str]) -> Links {
        Links::new(
            "https://herald.example.com/",
            keys.iter().map(|k| Secret::new(k.to_string())).collect(),
            None,
        )
    }

    const KEY: &str = "k1-0123456789abcdef0123456789abcdef";
    const OLD: &str = "k0-0123456789abcdef0123456789abcdef";

    #[test]
    fn a_token_names_its_user_and_kind_and_nothing_else_verifies() {
        let now = DateTime::from_timestamp(1_790_000_000, 0).unwrap();
        let l = links(&[KEY]);
        let token = l.token("cm1x.9 ü", "due_soon", now);
        let t = l.verify(&token).unwrap();
        assert_eq!(
            (t.user_id.as_str(), t.kind.as_str()),
            ("cm1x.9 ü", "due_soon")
        );
        assert_eq!(t.issued_at, now);
        assert!(
            l.url("42", "weekly_report", now)
                .starts_with("https://herald.example.com/unsubscribe/")
        );

        // Another user's id with this token's MAC, a cut token, another key: refused.
        let (_, rest) = token.split_once('.').unwrap();
        let other = format!("{}.{rest}", B64.encode("43"));
        assert_eq!(l.verify(&other), Err(TokenError::Forged));
        assert_eq!(
            l.verify(&token[..token.len() - 3]),
            Err(TokenError::Malformed)
        );
        assert_eq!(l.verify("garbage"), Err(TokenError::Malformed));
        assert_eq!(links(&[OLD]).verify(&token), Err(TokenError::Forged));
    }

    #[test]
    fn after_a_rotation_old_links_still_work_until_the_old_key_goes() {
        let now = Utc::now();
        let before = links(&[OLD]).token("7", "task_reminders", now);
        assert!(links(&[KEY, OLD]).verify(&before).is_ok());
        assert_eq!(links(&[KEY]).verify(&before), Err(TokenError::Forged));
    }

    #[test]
    fn the_header_lists_the_url_then_the_mailto() {
        let l = Links::new(
            "https://h.example",
            vec![Secret::new(KEY)],
            Some("unsubscribe@h.example".into()),
        );
        assert_eq!(
            l.header("https://h.example/unsubscribe/x"),
            "<https://h.example/unsubscribe/x>, <mailto:unsubscribe@h.example?subject=unsubscribe>"
        );
    }
}
