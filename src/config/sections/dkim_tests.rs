//! `[mail.dkim]` as loaded: off by default, all three or none, the key read and checked at
//! validation, the domain aligned with `mail.from`, and every problem naming its key and fix.

use std::path::PathBuf;

use crate::config::Settings;

const RSA_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/keys/dkim-test-only-rsa2048.pem"
);
const ED25519_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/keys/dkim-test-only-ed25519.pem"
);

/// A P-256 key, made for this test: PKCS#8 like the others, but not a key DKIM signs with.
const EC_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgRHLdqbI13R8kLpps
KOFB06KdxNYoWJTXzsAhbZQ/CxuhRANCAAR+8SIXsCwSqXiQoJ7DhirXVjv26AiU
ksm7w2XpUJBYDLzKYUJnyz+poMWdVKWdFECEzWcSIQkxrkzxO1UCzPH9
-----END PRIVATE KEY-----
";

fn load(pairs: &[(&str, &str)]) -> Result<Settings, String> {
    let mut vars = vec![(
        "MAIL_FROM".to_owned(),
        "Herald <herald@example.com>".to_owned(),
    )];
    for (k, v) in pairs {
        vars.retain(|(name, _)| name != k);
        vars.push((k.to_string(), v.to_string()));
    }
    Settings::load_from(&crate::kinds::defaults(), None, &vars).map_err(|e| e.to_string())
}

fn dkim(key_file: &str) -> [(&str, &str); 3] {
    [
        ("DKIM_KEY_FILE", key_file),
        ("DKIM_SELECTOR", "herald"),
        ("DKIM_DOMAIN", "example.com"),
    ]
}

/// A key file in a folder of its own, removed with the folder when dropped.
struct KeyFile {
    dir: PathBuf,
    path: PathBuf,
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir); // best effort: the test's verdict is made
    }
}

/// A file holding `content`, in a folder of its own.
fn file(content: &[u8]) -> KeyFile {
    let dir = std::env::temp_dir().join(format!("herald-dkim-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("dkim.pem");
    std::fs::write(&path, content).unwrap();
    KeyFile { dir, path }
}

#[test]
fn dkim_is_off_by_default_and_on_with_all_three() {
    assert!(load(&[]).unwrap().mail.dkim.is_none());

    let s = load(&dkim(RSA_KEY)).unwrap();
    let d = s.mail.dkim.expect("DKIM is on");
    assert_eq!(d.record_name(), "herald._domainkey.example.com");
    assert_eq!(d.algorithm, "rsa-2048");
    assert!(
        d.dns_record.starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"),
        "{}",
        d.dns_record
    );

    // The same through HERALD__ names, an Ed25519 key, a domain written in capitals.
    let s = load(&[
        ("HERALD__MAIL__DKIM__KEY_FILE", ED25519_KEY),
        ("HERALD__MAIL__DKIM__SELECTOR", "ed"),
        ("HERALD__MAIL__DKIM__DOMAIN", "Example.COM."),
    ])
    .unwrap();
    let d = s.mail.dkim.unwrap();
    assert_eq!(d.record_name(), "ed._domainkey.example.com");
    assert_eq!(d.algorithm, "ed25519");
    assert!(
        d.dns_record.starts_with("v=DKIM1; k=ed25519; p="),
        "{}",
        d.dns_record
    );
}

#[test]
fn a_partial_set_names_each_missing_key_and_the_fix() {
    let err = load(&[("DKIM_KEY_FILE", RSA_KEY)]).unwrap_err();
    assert!(
        err.contains(
            "mail.dkim.selector (DKIM_SELECTOR): is empty but mail.dkim.key_file is set; DKIM needs all three: set it to the DNS label of the key"
        ),
        "{err}"
    );
    assert!(
        err.contains("mail.dkim.domain (DKIM_DOMAIN): is empty but mail.dkim.key_file is set"),
        "{err}"
    );
    assert!(err.contains("or empty all three to send unsigned"), "{err}");

    let err = load(&[("DKIM_SELECTOR", "herald"), ("DKIM_DOMAIN", "example.com")]).unwrap_err();
    assert!(
        err.contains(
            "mail.dkim.key_file (DKIM_KEY_FILE): is empty but mail.dkim.selector and mail.dkim.domain are set; DKIM needs all three: set it to the path of the PEM private key"
        ),
        "{err}"
    );
    assert!(
        err.starts_with("the configuration has 1 problem(s)"),
        "{err}"
    );
}

#[test]
fn a_missing_file_names_the_key_the_path_and_how_to_make_one() {
    let err = load(&dkim("/nonexistent/herald/dkim.pem")).unwrap_err();
    assert!(
        err.contains(
            "mail.dkim.key_file (DKIM_KEY_FILE): cannot read /nonexistent/herald/dkim.pem (No such file or directory"
        ),
        "{err}"
    );
    assert!(err.contains("`openssl genrsa -out dkim.pem 2048`"), "{err}");
    assert!(
        err.contains("the DNS TXT record herald._domainkey.example.com"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_no_signing_key_is_refused_without_quoting_it() {
    let garbage = "password=hunter2-SECRET\n".as_bytes();
    let cases: [(&[u8], &str); 7] = [
        (
            garbage,
            "is not a PEM private key (no \"-----BEGIN ... PRIVATE KEY-----\" line)",
        ),
        (&[0xff, 0xfe, 0x00, 0x42], "is not a PEM private key"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAAhunter2SECRET\n-----END PRIVATE KEY-----\n",
            "is not a readable PKCS#8 PEM key",
        ),
        (
            b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
            "is a public key; point it at the private key",
        ),
        (
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "is encrypted with a passphrase",
        ),
        (
            EC_KEY.as_bytes(),
            "is an EC key; DKIM signs with RSA (2048 bits; every receiver checks it) or Ed25519",
        ),
        (
            b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n",
            "is an OpenSSH key",
        ),
    ];
    for (content, expected) in cases {
        let key = file(content);
        let shown = key.path.display().to_string();
        let err = load(&dkim(&shown)).unwrap_err();
        assert!(
            err.contains(&format!(
                "mail.dkim.key_file (DKIM_KEY_FILE): {shown} {expected}"
            )),
            "{expected}: {err}"
        );
        assert!(err.contains("`openssl genrsa -out dkim.pem 2048`"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!(!err.contains("MIGHAgEAMBMG"), "{err}");
    }
}

#[test]
fn a_small_rsa_key_is_refused() {
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    // 512 bits: quick to make, and far under what receivers accept.
    let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 512).unwrap();
    let file = file(key.to_pkcs8_pem(LineEnding::LF).unwrap().as_bytes());
    let err = load(&dkim(&file.path.display().to_string())).unwrap_err();
    assert!(
        err.contains("is a 512-bit RSA key, which receivers refuse (RFC 8301: 1024 bits at least)"),
        "{err}"
    );
}

#[test]
fn the_domain_must_be_mail_froms_or_a_parent_of_it() {
    let err = load(&[
        ("DKIM_KEY_FILE", RSA_KEY),
        ("DKIM_SELECTOR", "herald"),
        ("DKIM_DOMAIN", "example.org"),
    ])
    .unwrap_err();
    assert!(
        err.contains(
            "mail.dkim.domain (DKIM_DOMAIN): is \"example.org\", but mail.from is at \"example.com\": receivers (DMARC) count a signature only from the From domain or a parent of it; set DKIM_DOMAIN to \"example.com\""
        ),
        "{err}"
    );
    // A subdomain of From's domain does not align; a parent does (DMARC's relaxed alignment).
    let err = load(&[
        ("DKIM_KEY_FILE", RSA_KEY),
        ("DKIM_SELECTOR", "herald"),
        ("DKIM_DOMAIN", "mail.example.com"),
    ])
    .unwrap_err();
    assert!(
        err.contains("mail.dkim.domain (DKIM_DOMAIN): is \"mail.example.com\""),
        "{err}"
    );
    let s = load(&[
        ("MAIL_FROM", "news@mail.example.com"),
        ("DKIM_KEY_FILE", RSA_KEY),
        ("DKIM_SELECTOR", "herald"),
        ("DKIM_DOMAIN", "example.com"),
    ])
    .unwrap();
    assert_eq!(s.mail.dkim.unwrap().domain, "example.com");
    // Nor is a look-alike suffix a parent.
    let err = load(&[
        ("MAIL_FROM", "news@badexample.com"),
        ("DKIM_KEY_FILE", RSA_KEY),
        ("DKIM_SELECTOR", "herald"),
        ("DKIM_DOMAIN", "example.com"),
    ])
    .unwrap_err();
    assert!(
        err.contains("but mail.from is at \"badexample.com\""),
        "{err}"
    );
}

#[test]
fn a_selector_dns_cannot_hold_is_refused() {
    let err = load(&[
        ("DKIM_KEY_FILE", RSA_KEY),
        ("DKIM_SELECTOR", "my key"),
        ("DKIM_DOMAIN", "example.com"),
    ])
    .unwrap_err();
    assert!(
        err.contains("mail.dkim.selector (DKIM_SELECTOR): \"my key\" is not a DNS label"),
        "{err}"
    );
}

#[test]
fn the_key_never_prints() {
    let pem = std::fs::read_to_string(RSA_KEY).unwrap();
    let s = load(&dkim(RSA_KEY)).unwrap();
    let text = format!("{s:?} {s:#?}");
    assert!(
        text.contains("Dkim(herald._domainkey.example.com, rsa-2048)"),
        "{text}"
    );
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!text.contains(line), "{line} in {text}");
    }
}
