//! Golden files: every sample of every registered kind, rendered as read at its own instant,
//! must stay byte-for-byte what is stored under `tests/golden/<kind>/<sample>/`, in every
//! locale: for the sample's recipient (English, Europe/London, with an unsubscribe link and
//! links into the app), for a French one in Europe/Paris (`<sample>.fr`, with the links), and
//! for an English one in Asia/Kolkata (`<sample>.kolkata`, without any link, as in development),
//! whose times the filters write at +05:30. The kinds come from the registry: a new kind or a new
//! sample without golden files fails here, and so does a folder of golden files for a kind
//! or sample that is gone. `HERALD_BLESS=1 cargo test --test golden` writes the files for a new
//! sample; never bless to make a changed email pass.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
};

use herald::{
    config::AppSettings,
    kinds::{self, Kind},
    render::{Options, Rendered, Templates},
};

/// The unsubscribe link of the golden emails that have one.
const LINK: &str = "https://herald.example.com/unsubscribe/TOKEN";

/// The repository's templates, with `app.url` set (the Kolkata emails drop the links).
fn templates() -> Templates {
    let options = Options {
        app: Some(AppSettings {
            url: "https://app.example.com".to_owned(),
            preferences_path: "/settings/notifications".to_owned(),
        }),
        links: Kind::all()
            .map(|k| (k.name().to_owned(), k.link().to_owned()))
            .collect(),
        ..Options::default()
    };
    Templates::load_with(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("templates"),
        options,
        &kinds::samples(),
    )
    .expect("the repository's templates load")
}

/// The repository's templates without links into an app.
fn bare_templates() -> Templates {
    Templates::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("templates"),
        &kinds::samples(),
    )
    .expect("the repository's templates load")
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn blessing() -> bool {
    std::env::var("HERALD_BLESS").is_ok_and(|v| v == "1")
}

/// Compares one rendered email with its stored files, or writes them when blessing.
fn check(dir: &Path, r: &Rendered, failures: &mut Vec<String>) {
    for (file, got) in [
        ("subject.txt", &r.subject),
        ("body.txt", &r.text),
        ("body.html", &r.html),
    ] {
        let path = dir.join(file);
        if blessing() {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(&path, got).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(want) if &want == got => {}
            Ok(want) => failures.push(format!(
                "{} differs from what the code renders now.\n--- stored\n{want}\n--- rendered\n{got}",
                path.display()
            )),
            Err(e) => failures.push(format!(
                "cannot read {} ({e}); a new kind or sample gets its files with HERALD_BLESS=1 cargo test --test golden",
                path.display()
            )),
        }
    }
}

/// The folders directly under `dir`, by name.
fn folders(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// One golden email: its folder (`<kind>/<sample>[.fr|.kolkata]`), what renders now, and
/// whether it has an unsubscribe link.
struct Golden {
    kind: String,
    folder: String,
    rendered: Rendered,
    linked: bool,
}

/// Every golden email: each sample of each kind, in English (London, links), French (Paris,
/// links) and English again in Kolkata without links.
fn goldens() -> Vec<Golden> {
    let templates = templates();
    let bare = bare_templates();
    let mut out = Vec::new();
    for kind in Kind::all() {
        for sample in kind.samples() {
            let at = sample.payload.at();
            let mut payload = sample.payload.to_value();
            let mut push = |folder: String, rendered: Rendered, linked: bool| {
                out.push(Golden {
                    kind: kind.name().to_owned(),
                    folder,
                    rendered,
                    linked,
                })
            };
            let en = templates
                .render_with(kind.name(), &payload, at, Some(LINK))
                .unwrap();
            push(sample.name.to_owned(), en, true);

            let mut french = payload.clone();
            french["user"]["timezone"] = "Europe/Paris".into();
            french["user"]["locale"] = "fr-FR".into();
            let fr = templates
                .render_with(kind.name(), &french, at, Some(LINK))
                .unwrap();
            push(format!("{}.fr", sample.name), fr, true);

            payload["user"]["timezone"] = "Asia/Kolkata".into();
            let kolkata = bare.render(kind.name(), &payload, at).unwrap();
            push(format!("{}.kolkata", sample.name), kolkata, false);
        }
    }
    out
}

#[test]
fn every_sample_of_every_kind_renders_byte_for_byte_as_stored() {
    let mut failures = Vec::new();
    let mut expected: std::collections::BTreeMap<String, BTreeSet<String>> = Kind::all()
        .map(|k| (k.name().to_owned(), BTreeSet::new()))
        .collect();
    for g in goldens() {
        let dir = golden_dir().join(&g.kind);
        check(&dir.join(&g.folder), &g.rendered, &mut failures);
        expected.get_mut(&g.kind).unwrap().insert(g.folder);
    }
    for (kind, folders_now) in &expected {
        for stale in folders(&golden_dir().join(kind)).difference(folders_now) {
            failures.push(format!(
                "tests/golden/{kind}/{stale} is no sample of {kind} any more; delete it"
            ));
        }
    }
    let kinds: BTreeSet<String> = expected.into_keys().collect();
    for stale in folders(&golden_dir()).difference(&kinds) {
        failures.push(format!(
            "tests/golden/{stale} is not a registered kind (kinds::KINDS); register it or delete the folder"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[path = "support/dkim.rs"]
mod dkim_verify;

/// Every golden email, built as SMTP sends it (DKIM-signed with the test key) and parsed back
/// with mail-parser: well-formed lines (CRLF, at most 998 bytes, 7-bit), the headers inboxes want
/// (one-click unsubscribe when there is a link, Auto-Submitted, Reply-To, a Message-ID and Date),
/// a DKIM signature that verifies and covers the unsubscribe headers, and parts that decode to
/// exactly what was rendered, text first. `HERALD_EML_DIR=dir` also writes each message as
/// `<kind>.<folder>.eml`, for `bench/deliverability.sh`.
#[tokio::test]
async fn every_golden_email_is_a_well_formed_message_with_the_headers_inboxes_want() {
    use herald::{
        dkim::DkimSigner,
        domain::Mailbox,
        mail::{Outgoing, Sender, smtp::build_message},
    };
    let pem = std::fs::read_to_string(dkim_verify::RSA_KEY).unwrap();
    let signer = DkimSigner::from_pem(&pem, "herald", "example.com").unwrap();
    let record = signer.dns_record.clone();
    let sender = Sender {
        from: Mailbox::parse("Herald <herald@example.com>").unwrap(),
        reply_to: Some(Mailbox::parse("Support <support@example.com>").unwrap()),
        dkim: Some(signer),
    };
    let eml_dir = std::env::var_os("HERALD_EML_DIR").map(PathBuf::from);
    let list_unsubscribe =
        format!("<{LINK}>, <mailto:unsubscribe@example.com?subject=unsubscribe>");
    let mut failures = Vec::new();
    for g in goldens() {
        let name = format!("{}/{}", g.kind, g.folder);
        let email = Outgoing {
            to: "Ada Lovelace <ada@example.com>",
            message_id: "<golden.1@example.com>",
            delivery_key: "task_reminders:1:2026-11-23",
            content: &g.rendered,
            list_unsubscribe: g.linked.then_some(list_unsubscribe.as_str()),
        };
        let raw = build_message(&sender, &email).unwrap().formatted();
        if let Some(dir) = &eml_dir {
            std::fs::create_dir_all(dir).unwrap();
            std::fs::write(dir.join(format!("{}.{}.eml", g.kind, g.folder)), &raw).unwrap();
        }
        let mut fail = |what: String| failures.push(format!("{name}: {what}"));
        for (i, line) in raw.split(|b| *b == b'\n').enumerate() {
            if !raw.is_ascii() {
                fail("a byte above 127: the message is not 7-bit".into());
                break;
            }
            if line.len() > 998 {
                fail(format!(
                    "line {} is {} bytes long (RFC 5322: 998)",
                    i + 1,
                    line.len()
                ));
            }
            if i + 1 < raw.split(|b| *b == b'\n').count() && line.last() != Some(&b'\r') {
                fail(format!("line {} ends in a bare LF", i + 1));
            }
        }
        let Some(m) = mail_parser::MessageParser::default().parse(&raw) else {
            fail("mail-parser cannot parse it".into());
            continue;
        };
        // A raw header's value, unfolded.
        let text = |h: &str| {
            m.header_raw(h).map(|v| {
                v.replace("\r\n ", " ")
                    .replace("\r\n\t", " ")
                    .trim()
                    .to_owned()
            })
        };
        let want = [
            ("Auto-Submitted", Some("auto-generated".to_owned())),
            ("MIME-Version", Some("1.0".to_owned())),
            ("Message-ID", Some("<golden.1@example.com>".to_owned())),
            (
                "List-Unsubscribe-Post",
                g.linked.then(|| "List-Unsubscribe=One-Click".to_owned()),
            ),
            (
                "List-Unsubscribe",
                g.linked.then(|| list_unsubscribe.clone()),
            ),
        ];
        for (header, value) in want {
            if text(header) != value {
                fail(format!("{header} is {:?}, want {value:?}", text(header)));
            }
        }
        if m.subject() != Some(g.rendered.subject.as_str()) {
            fail(format!("the subject decodes to {:?}", m.subject()));
        }
        let address = |h: Option<&mail_parser::Address>| {
            h.and_then(|a| a.first())
                .and_then(|a| a.address())
                .map(str::to_owned)
        };
        if address(m.reply_to()).as_deref() != Some("support@example.com") {
            fail(format!("Reply-To is {:?}", m.reply_to()));
        }
        if address(m.from()).as_deref() != Some("herald@example.com") {
            fail(format!("From is {:?}", m.from()));
        }
        if m.date().is_none() {
            fail("no Date a parser can read".into());
        }
        let crlf = |s: &str| s.replace("\r\n", "\n");
        if m.body_text(0).map(|t| crlf(&t)) != Some(crlf(&g.rendered.text)) {
            fail("the text part does not decode to what was rendered".into());
        }
        if m.body_html(0).map(|t| crlf(&t)) != Some(crlf(&g.rendered.html)) {
            fail("the HTML part does not decode to what was rendered".into());
        }
        let body = String::from_utf8_lossy(&raw);
        let plain = body.find("Content-Type: text/plain");
        let html = body.find("Content-Type: text/html");
        if !matches!((plain, html), (Some(p), Some(h)) if p < h) {
            fail("not a text part then an HTML part".into());
        }
        match dkim_verify::verify(&raw, "herald._domainkey.example.com", &record).await {
            Ok(signed) => {
                for h in [
                    "from",
                    "subject",
                    "list-unsubscribe",
                    "list-unsubscribe-post",
                ] {
                    if !signed.iter().any(|s| s == h) {
                        fail(format!("the DKIM signature does not cover {h}: {signed:?}"));
                    }
                }
            }
            Err(e) => fail(format!("DKIM does not verify: {e}")),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
