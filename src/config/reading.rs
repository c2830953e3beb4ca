//! Reads the merged layers into [`RawSettings`], reporting every unknown key and every value of
//! the wrong type, not only the first.

use std::collections::BTreeSet;

use serde_path_to_error::Segment;

use super::{RawSettings, problems::Problems};

/// Serde stops at the first key it cannot read. So each one it stops at is reported, put back
/// to its default (or removed, when it has none: an unknown key), and the reading starts over,
/// until everything reads. `None` only if a value cannot be put right, which the defaults rule
/// out (a test loads them).
pub(super) fn read(
    mut merged: toml::Table,
    base: &toml::Table,
    problems: &mut Problems,
) -> Option<RawSettings> {
    let mut repaired = BTreeSet::new();
    loop {
        let error = match serde_path_to_error::deserialize(toml::Value::Table(merged.clone())) {
            Ok(raw) => return Some(raw),
            Err(error) => error,
        };
        let keys = keys_of(error.path());
        // `message` alone: the error's `Display` adds the path again, over several lines.
        let message = error.inner().message().to_owned();
        problems.key(&keys.join("."), with_fix(message));
        // Each key is put back once: a second stop at it means the default itself does not read.
        if keys.is_empty() || !repaired.insert(keys.clone()) {
            return None;
        }
        put_back(&mut merged, base, &keys);
    }
}

/// The section and key names down to where serde stopped; an item of a list stands for the
/// whole list (`queue.retry_delays[1]` is `queue.retry_delays`).
fn keys_of(path: &serde_path_to_error::Path) -> Vec<String> {
    path.iter()
        .map_while(|segment| match segment {
            Segment::Map { key } => Some(key.clone()),
            _ => None,
        })
        .collect()
}

/// Serde says what is wrong; this adds how to fix it.
fn with_fix(message: String) -> String {
    if message.starts_with("unknown field") {
        format!("{message}; remove it or correct its name (config/default.toml lists every key)")
    } else {
        format!("{message}; config/default.toml shows every key with a value of its type")
    }
}

/// Sets `keys` in `merged` back to its value in `base`, or removes it when `base` has none.
fn put_back(merged: &mut toml::Table, base: &toml::Table, keys: &[String]) {
    let (last, sections) = keys.split_last().expect("at least one key");
    let default = sections
        .iter()
        .try_fold(base, |table, key| table.get(key)?.as_table())
        .and_then(|table| table.get(last))
        .cloned();
    let mut table = merged;
    for key in sections {
        match table.get_mut(key).and_then(toml::Value::as_table_mut) {
            Some(inner) => table = inner,
            None => return,
        }
    }
    match default {
        Some(value) => table.insert(last.clone(), value),
        None => table.remove(last),
    };
}
