//! Checks `[mail.dkim]`: all three keys or none, a selector and domain DNS can hold, a domain
//! that aligns with `mail.from`'s (DMARC), and a key file that reads as a signing key, so that
//! start-up and `herald check` stop on a key that would not sign.

use super::{super::RawDkim, Problems};
use crate::{
    dkim::{DkimSigner, how_to_make_a_key},
    domain::Mailbox,
};

const KEYS: [(&str, &str); 3] = [
    ("mail.dkim.key_file", "the path of the PEM private key"),
    (
        "mail.dkim.selector",
        "the DNS label of the key, such as \"herald\"",
    ),
    ("mail.dkim.domain", "mail.from's domain"),
];

/// The signer, or `None` when DKIM is off (all three empty) or a problem was pushed.
pub(super) fn check(d: &RawDkim, from: &Mailbox, p: &mut Problems) -> Option<DkimSigner> {
    let key_file = d.key_file.trim();
    let selector = d.selector.trim();
    let domain = d.domain.trim().trim_end_matches('.').to_ascii_lowercase();
    let values = [key_file, selector, domain.as_str()];
    let given: Vec<&str> = KEYS
        .iter()
        .zip(values)
        .filter(|(_, v)| !v.is_empty())
        .map(|((k, _), _)| *k)
        .collect();
    if given.is_empty() {
        return None;
    }
    if given.len() < KEYS.len() {
        let verb = if given.len() == 1 { "is" } else { "are" };
        for ((key, what), _) in KEYS.iter().zip(values).filter(|(_, v)| v.is_empty()) {
            p.key(
                key,
                format!(
                    "is empty but {} {verb} set; DKIM needs all three: set it to {what}, or empty \
                     all three to send unsigned",
                    given.join(" and ")
                ),
            );
        }
        return None;
    }
    let mut ok = true;
    if !is_dns_name(selector) {
        p.key(
            "mail.dkim.selector",
            format!(
                "{selector:?} is not a DNS label; use letters, digits and hyphens, such as \"herald\" or \"s2026\""
            ),
        );
        ok = false;
    }
    let from_domain = from
        .address
        .rsplit_once('@')
        .map_or("", |(_, d)| d)
        .to_ascii_lowercase();
    if !is_dns_name(&domain) {
        p.key(
            "mail.dkim.domain",
            format!(
                "{domain:?} is not a domain name; set it to mail.from's domain ({from_domain:?})"
            ),
        );
        ok = false;
    } else if from_domain != domain && !from_domain.ends_with(&format!(".{domain}")) {
        // DMARC passes on DKIM only when d= is the From domain or, in relaxed mode (the default),
        // a parent of it; a signature for another domain does not help deliverability.
        p.key(
            "mail.dkim.domain",
            format!(
                "is {domain:?}, but mail.from is at {from_domain:?}: receivers (DMARC) count a \
                 signature only from the From domain or a parent of it; set DKIM_DOMAIN to \
                 {from_domain:?} and publish the key there, or send from an address at {domain:?}"
            ),
        );
        ok = false;
    }
    let how = how_to_make_a_key(selector, &domain);
    let pem = match std::fs::read(key_file) {
        Ok(bytes) => String::from_utf8(bytes).unwrap_or_default(),
        Err(e) => {
            p.key(
                "mail.dkim.key_file",
                format!("cannot read {key_file} ({e}); {how}"),
            );
            return None;
        }
    };
    match DkimSigner::from_pem(&pem, selector, &domain) {
        Ok(signer) => Some(signer).filter(|_| ok),
        Err(e) => {
            p.key("mail.dkim.key_file", format!("{key_file} {e}; {how}"));
            None
        }
    }
}

/// Dot-separated labels of letters, digits and hyphens (a selector may have dots, RFC 6376).
fn is_dns_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
#[path = "dkim_tests.rs"]
mod tests;
