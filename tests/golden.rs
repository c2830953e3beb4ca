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

#[test]
fn every_sample_of_every_kind_renders_byte_for_byte_as_stored() {
    let templates = templates();
    let bare = bare_templates();
    let mut failures = Vec::new();
    let mut expected_kinds = BTreeSet::new();
    for kind in Kind::all() {
        expected_kinds.insert(kind.name().to_owned());
        let mut expected = BTreeSet::new();
        for sample in kind.samples() {
            let mut payload = sample.payload.to_value();
            // Rendered with an unsubscribe link, as with `http.public_url` set, and links into
            // the app; in French the same; the Kolkata one without, as in development.
            let rendered = templates
                .render_with(kind.name(), &payload, sample.payload.at(), Some(LINK))
                .unwrap();
            let dir = golden_dir().join(kind.name());
            check(&dir.join(sample.name), &rendered, &mut failures);
            expected.insert(sample.name.to_owned());

            let mut french = payload.clone();
            french["user"]["timezone"] = "Europe/Paris".into();
            french["user"]["locale"] = "fr-FR".into();
            let fr = templates
                .render_with(kind.name(), &french, sample.payload.at(), Some(LINK))
                .unwrap();
            let name = format!("{}.fr", sample.name);
            check(&dir.join(&name), &fr, &mut failures);
            expected.insert(name);

            payload["user"]["timezone"] = "Asia/Kolkata".into();
            let kolkata = bare
                .render(kind.name(), &payload, sample.payload.at())
                .unwrap();
            let name = format!("{}.kolkata", sample.name);
            check(&dir.join(&name), &kolkata, &mut failures);
            expected.insert(name);
        }
        for stale in folders(&golden_dir().join(kind.name())).difference(&expected) {
            failures.push(format!(
                "tests/golden/{kind}/{stale} is no sample of {kind} any more; delete it"
            ));
        }
    }
    for stale in folders(&golden_dir()).difference(&expected_kinds) {
        failures.push(format!(
            "tests/golden/{stale} is not a registered kind (kinds::KINDS); register it or delete the folder"
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
