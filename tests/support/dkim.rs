//! Checks Herald's DKIM signatures with a verifier that is not lettre's signer: Stalwart's
//! `mail-auth`, as a receiving server runs it. The public key record is put in its DNS cache,
//! so nothing is looked up. Also the paths of the committed test-only keys (`tests/keys/`).

#![allow(dead_code)]

use std::{
    borrow::Borrow,
    collections::HashMap,
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

use mail_auth::{
    AuthenticatedMessage, DkimResult, MessageAuthenticator, Parameters, ResolverCache, Txt,
    common::{parse::TxtRecordParser, verify::DomainKey},
};

/// A 2048-bit RSA key in PKCS#8 PEM (`openssl genrsa`), for tests only.
pub const RSA_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/keys/dkim-test-only-rsa2048.pem"
);
/// An Ed25519 key in PKCS#8 PEM (`openssl genpkey -algorithm ed25519`), for tests only.
pub const ED25519_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/keys/dkim-test-only-ed25519.pem"
);

/// The DNS as the verifier sees it: the TXT records given, nothing else.
struct Dns(Mutex<HashMap<Box<str>, Txt>>);

impl ResolverCache<Box<str>, Txt> for Dns {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(name).cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().remove(name)
    }

    fn insert(&self, key: Box<str>, value: Txt, _: Instant) {
        self.0.lock().unwrap().insert(key, value);
    }
}

/// Verifies the message's one `DKIM-Signature` against `record` (the TXT value, `v=DKIM1; k=rsa;
/// p=…`) published at `name` (`<selector>._domainkey.<domain>`). `Ok`: the signed header names,
/// lowercased, as `h=` lists them. `Err`: what the verifier said, or that there is no signature.
pub async fn verify(raw: &[u8], name: &str, record: &str) -> Result<Vec<String>, String> {
    let key = DomainKey::parse(record.as_bytes()).map_err(|e| format!("the record: {e}"))?;
    let dns = Dns(Mutex::new(HashMap::new()));
    // mail-auth looks names up fully qualified and lowercased.
    dns.insert(
        format!("{}.", name.to_ascii_lowercase()).into_boxed_str(),
        Txt::from(key),
        Instant::now() + Duration::from_secs(3600),
    );
    let message = AuthenticatedMessage::parse(raw).ok_or("mail-auth cannot parse the message")?;
    // A resolver is required, but the cache answers first: nothing is sent to it.
    let authenticator = MessageAuthenticator::new_cloudflare().map_err(|e| e.to_string())?;
    let results = authenticator
        .verify_dkim(Parameters::new(&message).with_txt_cache(&dns))
        .await;
    match results.as_slice() {
        [] => Err("no DKIM-Signature".into()),
        [one] => match one.result() {
            DkimResult::Pass => Ok(one
                .signature()
                .map(|s| s.h.iter().map(|h| h.to_ascii_lowercase()).collect())
                .unwrap_or_default()),
            other => Err(format!("{other:?}")),
        },
        more => Err(format!("{} signatures, expected one", more.len())),
    }
}
