//! DKIM signing of the SMTP and `.eml` messages (`[mail.dkim]`): reading the private key (PKCS#1
//! or PKCS#8 PEM, RSA or Ed25519), the DNS record its public key goes in, and the signature
//! itself, which lettre's `dkim` feature computes. Resend signs on its side: its emails never
//! pass here.

use std::{fmt, sync::Arc};

use base64::Engine as _;
use lettre::{
    Message,
    message::{
        dkim::{
            DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
            DkimSigningKey,
        },
        header::HeaderName,
    },
};
use rsa::{
    RsaPrivateKey,
    pkcs1::{DecodeRsaPrivateKey, EncodeRsaPrivateKey},
    pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding, ObjectIdentifier, PrivateKeyInfo},
    traits::PublicKeyParts,
};

/// The headers every signature covers, when the email has them. RFC 8058 requires
/// `List-Unsubscribe` and `List-Unsubscribe-Post` to be signed for one-click unsubscribe. A
/// header listed but absent is signed as absent (RFC 6376 §5.4): one added on the way breaks
/// the signature.
pub const SIGNED_HEADERS: [&str; 11] = [
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Auto-Submitted",
    "MIME-Version",
    "Content-Type",
];

/// How to make a key and publish it, the end of every message about a key that cannot be used.
pub fn how_to_make_a_key(selector: &str, domain: &str) -> String {
    let selector = if selector.is_empty() {
        "<selector>"
    } else {
        selector
    };
    let domain = if domain.is_empty() {
        "<domain>"
    } else {
        domain
    };
    format!(
        "make one with `openssl genrsa -out dkim.pem 2048`, publish its public key as the DNS TXT \
         record {selector}._domainkey.{domain} (`herald check` prints the record; README: DKIM) \
         and point DKIM_KEY_FILE at the file"
    )
}

/// A private key ready to sign, with its selector and domain. `Debug` names the record and the
/// algorithm, never the key.
#[derive(Clone)]
pub struct DkimSigner {
    /// The DNS label: the record is `<selector>._domainkey.<domain>`.
    pub selector: String,
    /// `d=`: the domain that vouches for the email; aligned with `mail.from`'s (DMARC).
    pub domain: String,
    /// `rsa-2048`, `ed25519`.
    pub algorithm: String,
    /// The TXT record's value: `v=DKIM1; k=rsa; p=<the public key>`.
    pub dns_record: String,
    config: Arc<DkimConfig>,
}

impl fmt::Debug for DkimSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dkim({}, {})", self.record_name(), self.algorithm)
    }
}

impl DkimSigner {
    /// Reads a PEM private key: `BEGIN RSA PRIVATE KEY` (PKCS#1), or `BEGIN PRIVATE KEY` (PKCS#8,
    /// what OpenSSL 3 writes) holding an RSA or an Ed25519 key. The error says what the text is
    /// instead, without quoting it.
    pub fn from_pem(pem: &str, selector: &str, domain: &str) -> Result<DkimSigner, String> {
        let (algorithm, key, dns_record) = match pem_label(pem) {
            Some("RSA PRIVATE KEY") => rsa_key(
                RsaPrivateKey::from_pkcs1_pem(pem)
                    .map_err(|e| format!("is not a readable PKCS#1 RSA key ({e})"))?,
            )?,
            Some("PRIVATE KEY") => pkcs8_key(pem)?,
            Some("ENCRYPTED PRIVATE KEY") => {
                return Err(
                    "is encrypted with a passphrase, which Herald cannot type; write it \
                            decrypted with `openssl pkey -in <file> -out dkim.pem` and keep that \
                            file readable by Herald only"
                        .into(),
                );
            }
            Some("PUBLIC KEY" | "RSA PUBLIC KEY") => {
                return Err(
                    "is a public key; point it at the private key (the public key goes \
                            in the DNS record)"
                        .into(),
                );
            }
            Some("EC PRIVATE KEY") => return Err(not_rsa_or_ed25519("an EC key")),
            Some("OPENSSH PRIVATE KEY") => {
                return Err(
                    "is an OpenSSH key; convert it to PEM with `ssh-keygen -p -m PEM -f \
                            <file>`, or make a new one"
                        .into(),
                );
            }
            Some(other) => return Err(format!("holds a {other:?}, not a private key")),
            None => {
                return Err(
                    "is not a PEM private key (no \"-----BEGIN ... PRIVATE KEY-----\" line)".into(),
                );
            }
        };
        let headers = SIGNED_HEADERS
            .iter()
            .map(|h| HeaderName::new_from_ascii_str(h))
            .collect();
        // relaxed/relaxed: a relay that refolds a header or rewrites trailing spaces does not
        // break the signature (lettre's default, simple headers, does).
        let canonicalization = DkimCanonicalization {
            header: DkimCanonicalizationType::Relaxed,
            body: DkimCanonicalizationType::Relaxed,
        };
        Ok(DkimSigner {
            selector: selector.to_owned(),
            domain: domain.to_owned(),
            algorithm,
            dns_record,
            config: Arc::new(DkimConfig::new(
                selector.to_owned(),
                domain.to_owned(),
                key,
                headers,
                canonicalization,
            )),
        })
    }

    /// Where the public key is published: `<selector>._domainkey.<domain>`.
    pub fn record_name(&self) -> String {
        format!("{}._domainkey.{}", self.selector, self.domain)
    }

    /// Adds the `DKIM-Signature` header. The message must not change afterwards.
    pub fn sign(&self, message: &mut Message) {
        message.sign(&self.config);
    }
}

/// The label of the first PEM block (`RSA PRIVATE KEY`), if the text has one.
fn pem_label(pem: &str) -> Option<&str> {
    let start = pem.find("-----BEGIN ")? + "-----BEGIN ".len();
    let end = pem[start..].find("-----")?;
    Some(pem[start..start + end].trim())
}

/// An RSA key for lettre (which reads PKCS#1 only) and its TXT record.
fn rsa_key(key: RsaPrivateKey) -> Result<(String, DkimSigningKey, String), String> {
    let bits = key.n().bits();
    if bits < 1024 {
        // RFC 8301: verifiers must not accept signatures from keys under 1024 bits.
        return Err(format!(
            "is a {bits}-bit RSA key, which receivers refuse (RFC 8301: 1024 bits at least); make a 2048-bit one"
        ));
    }
    let public = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| format!("has an RSA key whose public key cannot be encoded ({e})"))?;
    let pkcs1 = key
        .to_pkcs1_pem(LineEnding::LF)
        .map_err(|e| format!("has an RSA key that cannot be re-encoded ({e})"))?;
    let signing = DkimSigningKey::new(&pkcs1, DkimSigningAlgorithm::Rsa)
        .map_err(|e| format!("has an RSA key lettre cannot read ({e})"))?;
    let record = format!(
        "v=DKIM1; k=rsa; p={}",
        base64::engine::general_purpose::STANDARD.encode(public.as_bytes())
    );
    Ok((format!("rsa-{bits}"), signing, record))
}

/// rsaEncryption and id-Ed25519, the two PKCS#8 algorithms DKIM signs with.
const RSA_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const ED25519_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const EC_OID: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");

fn pkcs8_key(pem: &str) -> Result<(String, DkimSigningKey, String), String> {
    let (_, document) = rsa::pkcs8::SecretDocument::from_pem(pem)
        .map_err(|e| format!("is not a readable PKCS#8 PEM key ({e})"))?;
    let info = PrivateKeyInfo::try_from(document.as_bytes())
        .map_err(|e| format!("is not a readable PKCS#8 key ({e})"))?;
    match info.algorithm.oid {
        RSA_OID => rsa_key(
            RsaPrivateKey::from_pkcs8_der(document.as_bytes())
                .map_err(|e| format!("is not a readable PKCS#8 RSA key ({e})"))?,
        ),
        ED25519_OID => {
            // CurvePrivateKey ::= OCTET STRING: 0x04, 32, then the 32-byte seed (RFC 8410).
            let seed: [u8; 32] = match info.private_key {
                [0x04, 0x20, seed @ ..] => seed.try_into().ok(),
                _ => None,
            }
            .ok_or("is not a readable Ed25519 key (its key is not 32 bytes)")?;
            let public = ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key();
            let b64 = base64::engine::general_purpose::STANDARD;
            let signing = DkimSigningKey::new(&b64.encode(seed), DkimSigningAlgorithm::Ed25519)
                .map_err(|e| format!("has an Ed25519 key lettre cannot read ({e})"))?;
            let record = format!("v=DKIM1; k=ed25519; p={}", b64.encode(public.as_bytes()));
            Ok(("ed25519".to_owned(), signing, record))
        }
        EC_OID => Err(not_rsa_or_ed25519("an EC key")),
        other => Err(not_rsa_or_ed25519(&format!("a key of algorithm {other}"))),
    }
}

fn not_rsa_or_ed25519(what: &str) -> String {
    format!("is {what}; DKIM signs with RSA (2048 bits; every receiver checks it) or Ed25519")
}

#[cfg(test)]
mod tests;
