//! Verifying Resend's webhooks as Standard Webhooks (Svix) sign them: `svix-id`,
//! `svix-timestamp` and `svix-signature` headers, the signature being HMAC-SHA256 of
//! `<id>.<timestamp>.<body>` under the secret (`whsec_` then base64), written `v1,<base64>`.
//! During a rotation the header carries several signatures, space-separated; one that matches is
//! enough. A timestamp more than [`TOLERANCE`] away from now is refused: a captured request
//! cannot be replayed later (and a replay within it is a no-op, by its id).

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a webhook's timestamp may be from now.
pub const TOLERANCE: chrono::Duration = chrono::Duration::minutes(5);

/// Why a webhook was refused: each names the header and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(
        "the {0} header is missing; Resend's webhooks carry svix-id, svix-timestamp and svix-signature"
    )]
    Missing(&'static str),
    #[error("svix-timestamp {0:?} is not a number of seconds since 1970")]
    BadTimestamp(String),
    #[error(
        "svix-timestamp is {0}, more than 5 minutes from now: a stale or replayed request (check the clock of this machine if every webhook is refused)"
    )]
    Stale(DateTime<Utc>),
    #[error(
        "no signature in svix-signature matches: the request was not signed with mail.resend.webhook_secret (check that the secret is the signing secret of this endpoint, whsec_…)"
    )]
    Forged,
}

/// A webhook signing secret, decoded.
#[derive(Clone)]
pub struct Verifier {
    key: Vec<u8>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(***)")
    }
}

impl Verifier {
    /// From `whsec_<base64>`, as Resend shows it; the message says what is wrong otherwise.
    pub fn new(secret: &str) -> Result<Verifier, String> {
        let encoded = secret.trim().strip_prefix("whsec_").ok_or(
            "does not start with whsec_; copy the signing secret of the webhook from Resend's dashboard",
        )?;
        let key = B64
            .decode(encoded)
            .map_err(|_| "is not whsec_ followed by base64; copy the signing secret again")?;
        Ok(Verifier { key })
    }

    /// The `v1,<base64>` signature of a message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let bytes = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", B64.encode(bytes))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// Checks a request's headers (`id`, `timestamp`, `signature`, each `None` when absent)
    /// and body at `now`.
    pub fn verify(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
        now: DateTime<Utc>,
    ) -> Result<(), Refused> {
        let id = id.ok_or(Refused::Missing("svix-id"))?;
        let timestamp = timestamp.ok_or(Refused::Missing("svix-timestamp"))?;
        let signature = signature.ok_or(Refused::Missing("svix-signature"))?;
        let seconds: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| Refused::BadTimestamp(timestamp.to_owned()))?;
        let at = DateTime::from_timestamp(seconds, 0)
            .ok_or_else(|| Refused::BadTimestamp(timestamp.to_owned()))?;
        if (now - at).abs() > TOLERANCE {
            return Err(Refused::Stale(at));
        }
        let matches = signature.split_whitespace().any(|sig| {
            let Some(encoded) = sig.strip_prefix("v1,") else {
                return false;
            };
            let Ok(given) = B64.decode(encoded) else {
                return false;
            };
            // `verify_slice` compares in constant time.
            self.mac(id, seconds, body).verify_slice(&given).is_ok()
        });
        matches.then_some(()).ok_or(Refused::Forged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn a_signed_request_verifies_and_a_changed_one_does_not() {
        let v = Verifier::new(SECRET).unwrap();
        let now = Utc::now();
        let body = br#"{"type":"email.bounced"}"#;
        let sig = v.sign("msg_1", now.timestamp(), body);
        let ts = now.timestamp().to_string();
        assert_eq!(
            v.verify(Some("msg_1"), Some(&ts), Some(&sig), body, now),
            Ok(())
        );
        // Rotation: several signatures, one of them good.
        let both = format!("v1,AAAA {sig}");
        assert_eq!(
            v.verify(Some("msg_1"), Some(&ts), Some(&both), body, now),
            Ok(())
        );
        // Another body, another id, another secret: forged.
        let other = br#"{"type":"email.delivered"}"#;
        assert_eq!(
            v.verify(Some("msg_1"), Some(&ts), Some(&sig), other, now),
            Err(Refused::Forged)
        );
        assert_eq!(
            v.verify(Some("msg_2"), Some(&ts), Some(&sig), body, now),
            Err(Refused::Forged)
        );
        let elsewhere = Verifier::new("whsec_AAAAAAAAAAAAAAAAAAAAAAAA").unwrap();
        assert_eq!(
            elsewhere.verify(Some("msg_1"), Some(&ts), Some(&sig), body, now),
            Err(Refused::Forged)
        );
        // Stale, missing, malformed.
        let later = now + chrono::Duration::minutes(6);
        assert!(matches!(
            v.verify(Some("msg_1"), Some(&ts), Some(&sig), body, later),
            Err(Refused::Stale(_))
        ));
        assert_eq!(
            v.verify(None, Some(&ts), Some(&sig), body, now),
            Err(Refused::Missing("svix-id"))
        );
        assert!(matches!(
            v.verify(Some("msg_1"), Some("soon"), Some(&sig), body, now),
            Err(Refused::BadTimestamp(_))
        ));
    }

    #[test]
    fn a_secret_must_be_whsec_and_base64() {
        assert!(Verifier::new("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").is_err());
        assert!(Verifier::new("whsec_not base64!").is_err());
    }
}
