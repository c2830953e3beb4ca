//! What DKIM signing costs per email: `smtp::build_message` (the MIME message of an SMTP or `.eml`
//! send) unsigned, signed with the RSA-2048 test key and with the Ed25519 one, on one thread.
//! Prints one `key=value` line per run; it asserts nothing.
//!
//! ```sh
//! cargo bench --bench dkim            # 2,000 messages each
//! N=500 cargo bench --bench dkim
//! ```
//!
//! The keys are the committed test-only ones (`tests/keys/`). The message is a task reminder's
//! size: a subject, a text and an HTML part of about 2 KB each, one-click unsubscribe headers.

use std::time::Instant;

use herald::{
    dkim::DkimSigner,
    domain::Mailbox,
    mail::{Outgoing, Sender, smtp::build_message},
    render::Rendered,
};

fn signer(file: &str, selector: &str) -> DkimSigner {
    let path = format!("{}/tests/keys/{file}", env!("CARGO_MANIFEST_DIR"));
    let pem = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    DkimSigner::from_pem(&pem, selector, "example.com").expect("the test key loads")
}

fn main() {
    let n: u32 = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let line = "- Book the dentist, due tomorrow at 10:30 (https://app.example.com/tasks/42)\n";
    let content = Rendered {
        subject: "3 tasks are due tomorrow".to_owned(),
        text: line.repeat(25),
        html: format!("<ul>{}</ul>", format!("<li>{line}</li>").repeat(25)),
        to_name: None,
    };
    let email = Outgoing {
        to: "ada@example.net",
        message_id: "<d-1@example.com>",
        delivery_key: "manual:task_reminders:1:2026-11-23",
        content: &content,
        list_unsubscribe: Some("<https://herald.example.com/unsubscribe/abc.def>"),
    };
    let from = Mailbox::parse("Herald <herald@example.com>").unwrap();
    let runs = [
        ("none", None),
        (
            "rsa-2048",
            Some(signer("dkim-test-only-rsa2048.pem", "herald")),
        ),
        ("ed25519", Some(signer("dkim-test-only-ed25519.pem", "ed"))),
    ];
    for (name, dkim) in runs {
        let sender = Sender {
            from: from.clone(),
            reply_to: None,
            dkim,
        };
        // One to warm up, then N timed.
        let bytes = build_message(&sender, &email).unwrap().formatted().len();
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(build_message(&sender, &email).unwrap().formatted());
        }
        let elapsed = start.elapsed();
        let per = elapsed.as_secs_f64() * 1e6 / f64::from(n);
        println!(
            "dkim={name} messages={n} bytes={bytes} us_per_message={per:.1} messages_per_s_one_core={:.0}",
            1e6 / per
        );
    }
}
