//! Where the state lives: the embedded mode with neither URL, the servers with both, and one
//! alone refused with both ways named.

use super::*;

/// A configuration file with `text`, removed when dropped.
struct ConfigFile(std::path::PathBuf);

impl ConfigFile {
    fn new(text: &str) -> ConfigFile {
        let path = std::env::temp_dir().join(format!("herald-home-{}.toml", uuid::Uuid::new_v4()));
        std::fs::write(&path, text).unwrap();
        ConfigFile(path)
    }
    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for ConfigFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn neither_url_is_the_embedded_mode_both_are_the_servers_and_one_alone_names_both_ways() {
    let neither = ConfigFile::new(
        "[database]\nurl = \"\"\n[redis]\nurl = \"\"\n[state]\nfile = \"data/state.db\"\n",
    );
    match load_from(Some(neither.path()), &[]).unwrap().home {
        Home::Embedded { file } => assert_eq!(file, std::path::Path::new("data/state.db")),
        other => panic!("{other:?}"),
    }
    let both = load_from(
        Some(neither.path()),
        &env(&[
            ("DATABASE_URL", "postgres://db/herald"),
            ("REDIS_URL", "redis://cache:6379/2"),
        ]),
    )
    .unwrap();
    let servers = both.servers().expect("on the servers");
    assert_eq!(servers.database_url.expose(), "postgres://db/herald");
    assert_eq!(servers.redis_url.expose(), "redis://cache:6379/2");
    let one = load_from(
        Some(neither.path()),
        &env(&[("DATABASE_URL", "postgres://db/herald")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        one.contains("redis.url")
            && one.contains("is not set, but database.url is")
            && one.contains("embedded")
            && one.contains("set REDIS_URL too, or unset DATABASE_URL"),
        "{one}"
    );
    let other = load_from(
        Some(neither.path()),
        &env(&[("REDIS_URL", "redis://cache:6379/2")]),
    )
    .unwrap_err()
    .to_string();
    assert!(
        other.contains("database.url") && other.contains("set DATABASE_URL too"),
        "{other}"
    );
    let nameless =
        ConfigFile::new("[database]\nurl = \"\"\n[redis]\nurl = \"\"\n[state]\nfile = \" \"\n");
    let nameless = load_from(Some(nameless.path()), &[])
        .unwrap_err()
        .to_string();
    assert!(
        nameless.contains("state.file") && nameless.contains("herald.db"),
        "{nameless}"
    );
}

fn load_from(file: Option<&str>, env: &[(String, String)]) -> Result<Settings, ConfigError> {
    Settings::load_from(&crate::kinds::defaults(), file, env)
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
