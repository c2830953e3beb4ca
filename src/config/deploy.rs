//! The container files agree with how Herald finds its settings: the file docker-compose.yml
//! mounts is the one the image names in `HERALD_CONFIG`, it is in the repository, and it loads.
//! And the image's build can read the manifest: every bench Cargo.toml declares has a stub in the
//! Dockerfile's dependency layer (cargo refuses a manifest whose target files are missing).

use std::{collections::BTreeMap, path::Path};

use serde::Deserialize;

use super::Settings;

/// The part of docker-compose.yml this test reads.
#[derive(Deserialize)]
struct Compose {
    services: BTreeMap<String, Service>,
}

#[derive(Deserialize)]
struct Service {
    #[serde(default)]
    environment: BTreeMap<String, String>,
    /// `source:target[:mode]`
    #[serde(default)]
    volumes: Vec<String>,
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_config_file_compose_mounts_is_the_one_the_image_reads_and_it_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dockerfile = read(&root.join("Dockerfile"));
    let runtime = dockerfile
        .split(" AS runtime")
        .nth(1)
        .expect("the Dockerfile has a runtime stage");
    let image_reads = runtime
        .lines()
        .find_map(|line| line.strip_prefix("ENV HERALD_CONFIG="))
        .expect("the runtime stage sets HERALD_CONFIG");
    // The only config the image holds is the file it reads (the defaults are compiled in).
    let copies: Vec<&str> = runtime
        .lines()
        .filter(|line| line.starts_with("COPY") && line.contains("config"))
        .collect();
    assert_eq!(
        copies,
        [format!("COPY config/docker.toml {image_reads}")],
        "Dockerfile"
    );

    let compose: Compose = serde_norway::from_str(&read(&root.join("docker-compose.yml")))
        .expect("docker-compose.yml is YAML");
    let herald = &compose.services["herald"];
    let reads = herald
        .environment
        .get("HERALD_CONFIG")
        .map_or(image_reads, String::as_str);
    assert_eq!(
        reads, image_reads,
        "compose names another file than the image"
    );
    let mounted = herald
        .volumes
        .iter()
        .find_map(|volume| {
            let mut parts = volume.split(':');
            let source = parts.next()?;
            (parts.next() == Some(reads)).then_some(source)
        })
        .unwrap_or_else(|| panic!("docker-compose.yml mounts nothing at {reads}"));
    assert_eq!(
        mounted, "./config/docker.toml",
        "compose mounts the image's file"
    );
    let file = root.join(mounted);
    assert!(file.is_file(), "{} is in the repository", file.display());

    // It loads with the service's variables, less those compose fills in from the shell (the
    // API token).
    let vars: Vec<(String, String)> = herald
        .environment
        .iter()
        .filter(|(_, value)| !value.contains("${"))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    assert!(vars.iter().any(|(name, _)| name == "SMTP_URL"), "{vars:?}");
    let settings = Settings::load_from(&crate::kinds::defaults(), file.to_str(), &vars)
        .unwrap_or_else(|e| panic!("{e}"));
    // The published port reaches Herald only if it listens on every interface.
    assert_eq!(settings.http_addr.to_string(), "0.0.0.0:8080");
    assert_eq!(settings.mail.from.address, "herald@example.com");
}

/// The names of Cargo.toml's `[[bench]]` targets.
fn benches(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_bench = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bench = line == "[[bench]]";
        } else if in_bench && let Some(name) = line.strip_prefix("name = ") {
            names.push(name.trim_matches('"').to_owned());
        }
    }
    names
}

#[test]
fn the_image_stubs_every_bench_the_manifest_declares() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let declared = benches(&read(&root.join("Cargo.toml")));
    assert!(declared.len() >= 8, "{declared:?}");
    let dockerfile = read(&root.join("Dockerfile"));
    let stubbed: Vec<&str> = dockerfile
        .lines()
        .find_map(|line| line.trim().strip_prefix("&& for bench in "))
        .and_then(|rest| rest.strip_suffix("; do \\"))
        .expect("the Dockerfile stubs the benches in one `for bench in …; do` loop")
        .split_whitespace()
        .collect();
    let missing: Vec<&String> = declared
        .iter()
        .filter(|name| !stubbed.contains(&name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "the Dockerfile's build would stop at reading Cargo.toml: add {missing:?} to its `for bench in` loop"
    );
    assert!(
        dockerfile.contains("COPY .cargo ./.cargo"),
        "the image must be built with .cargo/config.toml (how mimalloc is compiled)"
    );
}
