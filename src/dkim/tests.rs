//! Herald's signatures checked by an independent verifier (mail-auth, `tests/support/dkim.rs`):
//! RSA from PKCS#8 and PKCS#1, Ed25519, the headers RFC 8058 needs signed, and a message changed
//! after signing failing.

use super::*;
use crate::{
    domain::Mailbox,
    mail::{Outgoing, Sender, smtp::build_message},
    render::Rendered,
};

#[path = "../../tests/support/dkim.rs"]
mod verifier;

fn signer(path: &str, selector: &str) -> DkimSigner {
    let pem = std::fs::read_to_string(path).unwrap();
    DkimSigner::from_pem(&pem, selector, "example.com").unwrap()
}

/// Non-ASCII text, trailing spaces and empty lines, and a line longer than quoted-printable's 76
/// characters (as the templates' HTML has).
fn content(subject: &str) -> Rendered {
    let long =
        "<a href=\"https://herald.example.com/unsubscribe/0123456789abcdef\">unsubscribe</a> "
            .repeat(4);
    Rendered {
        subject: subject.to_owned(),
        html: format!(
            "<p>Two tasks are due tomorrow.</p>\n<p>Tr\u{e8}s bien \u{2014} \u{1f389}</p>\n{long}\n"
        ),
        text: "Two tasks are due tomorrow.  \n\nTr\u{e8}s bien \u{2014} \u{1f389}\n\n\n".to_owned(),
        to_name: None,
    }
}

/// A message as the SMTP provider sends it: Reply-To, one-click unsubscribe, a non-ASCII
/// subject and body.
fn signed_with(dkim: Option<DkimSigner>, subject: &str) -> Vec<u8> {
    let sender = Sender {
        from: Mailbox::parse("Herald <herald@example.com>").unwrap(),
        reply_to: Some(Mailbox::parse("Support <support@example.com>").unwrap()),
        dkim,
    };
    let content = content(subject);
    let email = Outgoing {
        to: "Ada Lovelace <ada@example.net>",
        message_id: "<d-1@example.com>",
        delivery_key: "manual:task_reminders:1:2026-11-23",
        content: &content,
        list_unsubscribe: Some(
            "<https://herald.example.com/unsubscribe/abc.def>, <mailto:unsubscribe@example.com?subject=unsubscribe>",
        ),
    };
    build_message(&sender, &email).unwrap().formatted()
}

async fn verify(raw: &[u8], signer: &DkimSigner) -> Result<Vec<String>, String> {
    verifier::verify(raw, &signer.record_name(), &signer.dns_record).await
}

#[tokio::test]
async fn an_rsa_signature_verifies_and_covers_the_unsubscribe_headers() {
    let s = signer(verifier::RSA_KEY, "herald");
    let raw = signed_with(
        Some(s.clone()),
        "2 tasks are due tomorrow \u{2014} Fran\u{e7}ais",
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.contains("DKIM-Signature: v=1; a=rsa-sha256; d=example.com; s=herald;"),
        "{text}"
    );
    assert!(text.contains(" c=relaxed/relaxed; "), "{text}");
    let signed = verify(&raw, &s)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    for header in SIGNED_HEADERS {
        assert!(
            signed.contains(&header.to_ascii_lowercase()),
            "{header} not in {signed:?}"
        );
    }
    // RFC 8058: both one-click headers are present and signed.
    assert!(
        text.contains("\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"),
        "{text}"
    );
    assert!(signed.contains(&"list-unsubscribe".to_owned()));
    assert!(signed.contains(&"list-unsubscribe-post".to_owned()));
}

#[tokio::test]
async fn a_pkcs1_rsa_key_and_an_ed25519_key_sign_too() {
    let pem = std::fs::read_to_string(verifier::RSA_KEY).unwrap();
    let pkcs1 = RsaPrivateKey::from_pkcs8_pem(&pem)
        .unwrap()
        .to_pkcs1_pem(LineEnding::LF)
        .unwrap();
    assert!(pkcs1.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    let s = DkimSigner::from_pem(&pkcs1, "old", "example.com").unwrap();
    assert_eq!(s.algorithm, "rsa-2048");
    // The same key, whichever the file's format: the same public key.
    assert_eq!(s.dns_record, signer(verifier::RSA_KEY, "x").dns_record);
    let raw = signed_with(Some(s.clone()), "PKCS#1");
    verify(&raw, &s).await.unwrap();

    let s = signer(verifier::ED25519_KEY, "ed");
    let raw = signed_with(Some(s.clone()), "Ed25519");
    assert!(String::from_utf8_lossy(&raw).contains("a=ed25519-sha256"));
    verify(&raw, &s).await.unwrap();
}

#[tokio::test]
async fn a_message_changed_after_signing_or_the_wrong_key_fails() {
    let s = signer(verifier::RSA_KEY, "herald");
    let raw = String::from_utf8(signed_with(Some(s.clone()), "Your tasks")).unwrap();
    verify(raw.as_bytes(), &s).await.unwrap();
    for (from, to) in [
        ("Subject: Your tasks", "Subject: Your tasks!"),
        // The unsubscribe link pointed elsewhere: RFC 8058's reason to sign it.
        (
            "<https://herald.example.com/unsubscribe/",
            "<https://evil.example/unsubscribe/",
        ),
        ("Two tasks are due tomorrow.", "Ten tasks are due tomorrow."),
        (
            "From: Herald <herald@example.com>\r\n",
            "From: Herald <ceo@example.com>\r\n",
        ),
    ] {
        assert!(raw.contains(from), "{from}");
        let changed = raw.replacen(from, to, 1);
        let e = verify(changed.as_bytes(), &s).await.unwrap_err();
        assert!(
            e.contains("Fail") || e.contains("BodyHashMismatch"),
            "{from}: {e}"
        );
    }
    // A header added on the way that the signature lists as absent breaks it too.
    let s_nr = signer(verifier::RSA_KEY, "herald");
    let sender = Sender {
        from: Mailbox::parse("herald@example.com").unwrap(),
        reply_to: None,
        dkim: Some(s_nr.clone()),
    };
    let content = content("No Reply-To");
    let email = Outgoing {
        to: "ada@example.net",
        message_id: "<d-2@example.com>",
        delivery_key: "k",
        content: &content,
        list_unsubscribe: None,
    };
    let raw = String::from_utf8(build_message(&sender, &email).unwrap().formatted()).unwrap();
    verify(raw.as_bytes(), &s_nr).await.unwrap();
    let added = format!("Reply-To: attacker@evil.example\r\n{raw}");
    assert!(verify(added.as_bytes(), &s_nr).await.is_err());

    // Another key's record.
    let ed = signer(verifier::ED25519_KEY, "herald");
    let e = verifier::verify(raw.as_bytes(), &s.record_name(), &ed.dns_record)
        .await
        .unwrap_err();
    assert!(!e.is_empty());
    // No signature at all.
    let unsigned = signed_with(None, "Unsigned");
    assert_eq!(
        verify(&unsigned, &s).await.unwrap_err(),
        "no DKIM-Signature"
    );
}

#[test]
fn a_long_subject_signs_on_a_stack_the_size_of_a_worker_thread() {
    // lettre's relaxed header canonicalization recurses once per character; Tokio's worker
    // threads have 2 MiB of stack.
    let s = signer(verifier::RSA_KEY, "herald");
    let subject = "Due tomorrow: ".to_owned() + &"caf\u{e9} ".repeat(500);
    std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || signed_with(Some(s), &subject))
        .unwrap()
        .join()
        .expect("signed without overflowing the stack");
}

#[test]
fn debug_shows_the_record_not_the_key() {
    let s = signer(verifier::RSA_KEY, "herald");
    assert_eq!(
        format!("{s:?}"),
        "Dkim(herald._domainkey.example.com, rsa-2048)"
    );
}
