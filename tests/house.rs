//! The shape of the house: the top-level modules of `src/` depend on each other one way, no
//! file of `src/` passes 600 lines, every test that needs a server skips loudly without it, and no
//! process group is signalled in a way Debian's `kill` misreads.
//!
//! A module depends on another when one of its files names `crate::<other>` (in a `use`, a path
//! or a doc link; `use crate::{a, b::c}` names `a` and `b`), test modules aside: a file that its
//! parent declares under `#[cfg(test)]` (at its `#[path]` if it has one), and everything from a `#[cfg(test)] mod tests` on. No
//! build is needed: the test reads the sources.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::{Path, PathBuf},
};

const MAX_LINES: usize = 600;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
    files
}

/// The top-level modules of `src/`: each `x.rs` and each directory, `main` and `lib` aside.
fn top_modules(src: &Path) -> BTreeSet<String> {
    fs::read_dir(src)
        .expect("src/ is readable")
        .map(|e| e.expect("a directory entry").path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.to_owned();
            if p.is_dir() {
                Some(name)
            } else {
                name.strip_suffix(".rs")
                    .filter(|m| *m != "main" && *m != "lib")
                    .map(str::to_owned)
            }
        })
        .collect()
}

/// The files that their parent module declares under `#[cfg(test)]` (`#[cfg(test)] mod x;`).
fn test_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut tests = BTreeSet::new();
    for file in files {
        let text = fs::read_to_string(file).expect("a source file is readable");
        let dir = match file.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs" | "lib.rs" | "main.rs") => file.parent().expect("a parent").to_owned(),
            _ => file.with_extension(""),
        };
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (i, line) in lines.iter().enumerate() {
            let Some(name) = line
                .strip_prefix("mod ")
                .or_else(|| line.strip_prefix("pub(crate) mod "))
                .and_then(|rest| rest.strip_suffix(';'))
            else {
                continue;
            };
            let attributes: Vec<&str> = lines[..i]
                .iter()
                .rev()
                .take_while(|l| l.starts_with("#["))
                .copied()
                .collect();
            if attributes.iter().any(|a| a.starts_with("#[cfg(test)]")) {
                tests.insert(dir.join(format!("{name}.rs")));
                tests.insert(dir.join(name).join("mod.rs"));
                // `#[path = "x.rs"]`: relative to the declaring file's directory.
                for a in &attributes {
                    if let Some(path) = a
                        .strip_prefix("#[path = \"")
                        .and_then(|rest| rest.strip_suffix("\"]"))
                    {
                        tests.insert(file.parent().expect("a parent").join(path));
                    }
                }
            }
        }
    }
    tests
}

/// The text of a file up to its `#[cfg(test)] mod tests`, if it has one.
fn without_tests(text: &str) -> &str {
    let mut from = 0;
    while let Some(at) = text[from..].find("#[cfg(test)]") {
        let at = from + at;
        let rest = text[at + "#[cfg(test)]".len()..].trim_start();
        if rest.starts_with("mod tests") {
            return &text[..at];
        }
        from = at + 1;
    }
    text
}

/// The identifiers that follow `crate::` in `text`, and those that open a path in a
/// `use crate::{...};` group.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut named = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find("};").unwrap_or(group.len())];
            // Only the first segment of each path at depth 0 of the group.
            let mut depth = 0;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if start && depth == 0 && (c.is_alphanumeric() || c == '_') => {
                        named.insert(ident(&group[i..]));
                        start = false;
                    }
                    _ => {}
                }
            }
        } else {
            named.insert(ident(rest));
        }
    }
    named
}

/// For each top-level module, the others it names, with the files that name each one.
fn graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = src();
    let modules = top_modules(&src);
    let files = rust_files(&src);
    let tests = test_files(&files);
    let mut edges: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files.iter().filter(|f| !tests.contains(*f)) {
        let rel = file.strip_prefix(&src).expect("under src/");
        let first = rel
            .components()
            .next()
            .expect("a first component")
            .as_os_str()
            .to_string_lossy();
        let from = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
        if !modules.contains(&from) {
            continue;
        }
        let text = fs::read_to_string(file).expect("a source file is readable");
        for to in crate_paths(without_tests(&text)) {
            if to != from && modules.contains(&to) {
                edges
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(rel.display().to_string());
            }
        }
    }
    edges
}

/// A circle of `edges`, if there is one: the modules in order, the first repeated at the end.
fn circle(edges: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_owned(), Mark::Open);
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flat_map(|e| e.keys()) {
            match marks.get(next.as_str()) {
                Some(Mark::Open) => {
                    let start = path.iter().position(|n| n == next).expect("on the path");
                    let mut circle = path[start..].to_vec();
                    circle.push(next.clone());
                    return Some(circle);
                }
                Some(Mark::Done) => {}
                None => {
                    if let Some(c) = visit(next, edges, marks, path) {
                        return Some(c);
                    }
                }
            }
        }
        path.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in edges.keys() {
        if !marks.contains_key(node)
            && let Some(c) = visit(node, edges, &mut marks, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

#[test]
fn the_top_level_modules_depend_on_each_other_one_way() {
    let edges = graph();
    if let Some(circle) = circle(&edges) {
        let steps: Vec<String> = circle
            .windows(2)
            .map(|w| {
                let files = &edges[&w[0]][&w[1]];
                format!(
                    "  {} -> {}  ({})",
                    w[0],
                    w[1],
                    files.iter().cloned().collect::<Vec<_>>().join(", ")
                )
            })
            .collect();
        panic!(
            "the modules of src/ depend on each other in a circle: {}\n{}\nMove what both need \
             into the lower module, or pass it in from the upper one.",
            circle.join(" -> "),
            steps.join("\n")
        );
    }
}

#[test]
fn no_file_of_src_passes_600_lines() {
    let src = src();
    let long: Vec<String> = rust_files(&src)
        .into_iter()
        .filter_map(|f| {
            let lines = fs::read_to_string(&f).ok()?.lines().count();
            (lines > MAX_LINES).then(|| {
                format!(
                    "  {} ({lines} lines)",
                    f.strip_prefix(&src).unwrap_or(&f).display()
                )
            })
        })
        .collect();
    assert!(
        long.is_empty(),
        "files of src/ over {MAX_LINES} lines; split them along their steps:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_reading_finds_each_kind_of_path() {
    let text = "use crate::{a, b::{c, d}, e::f};\nfn x() { crate::g::h(); }\n/// [`crate::i`]\n\
                #[cfg(test)]\nmod tests { use crate::j; }";
    let named = crate_paths(without_tests(text));
    assert_eq!(
        named.into_iter().collect::<Vec<_>>(),
        ["a", "b", "e", "g", "i"]
    );
}

/// The line a test that needs the shared PostgreSQL and Redis opens with
/// (tests/support/shared_servers.rs): without it, `cargo test` on a machine without them fails or
/// hangs instead of skipping.
const SERVERS: &str = "skip_without_servers!(";
/// The line the embedded half of a test in both homes opens with (tests/api/homes.rs): it needs
/// no server, and the harness refuses to reach PostgreSQL or Redis from it.
const EMBEDDED: &str = "embedded_home!(";

/// The tests that need the shared PostgreSQL and Redis, or programs to start private ones, and
/// the lines each may open with. In tests/api a test runs on the servers or, declared once
/// through `in_both_homes!` (whose two halves tests/api/homes.rs writes out, each opening with
/// its line), also in the embedded home.
fn guarded_tests() -> Vec<(PathBuf, &'static [&'static str])> {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut files: Vec<(PathBuf, &'static [&'static str])> = rust_files(&tests.join("api"))
        .into_iter()
        // The harness: its own tests (of URLs) need no server.
        .filter(|f| !f.ends_with("helpers.rs"))
        .map(|f| (f, &[SERVERS, EMBEDDED][..]))
        .collect();
    // The store's scenarios run in both homes from tests/store.rs's macro (which skips the
    // PostgreSQL half); a test of its own in tests/store/ needs the line itself.
    for file in rust_files(&tests.join("store")) {
        files.push((file, &[SERVERS]));
    }
    files.push((tests.join("focus_streak.rs"), &[SERVERS]));
    files.push((tests.join("migrate_state.rs"), &[SERVERS]));
    files.push((tests.join("browser.rs"), &[SERVERS]));
    for file in rust_files(&tests.join("browser")) {
        files.push((file, &[SERVERS]));
    }
    files.push((tests.join("lifecycle.rs"), &["skip_without_programs!("]));
    files
}

/// Tests in the files of [`guarded_tests`] that need no server, each with why: they must not
/// open with a skip (they always run).
const NEED_NO_SERVER: [(&str, &str, &str); 1] = [(
    "lifecycle.rs",
    "the_life_of_a_deployment_on_one_file",
    "the embedded home: the state and the queue in one SQLite file",
)];

/// The tests of `text` (`#[test]`, `#[tokio::test]`) whose body opens with none of `openings`.
fn unguarded(text: &str, openings: &[&str]) -> Vec<String> {
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    let mut found = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if *line != "#[test]" && !line.starts_with("#[tokio::test") {
            continue;
        }
        let Some(sig) = (i + 1..lines.len()).find(|&j| lines[j].contains("fn ")) else {
            continue;
        };
        let name = lines[sig]
            .split("fn ")
            .nth(1)
            .and_then(|rest| rest.split('(').next())
            .unwrap_or("?");
        let Some(open) = (sig..lines.len()).find(|&j| lines[j].ends_with('{')) else {
            continue;
        };
        let first = lines[open + 1..].iter().find(|l| !l.is_empty());
        if !first.is_some_and(|l| openings.iter().any(|o| l.starts_with(o))) {
            found.push(name.to_owned());
        }
    }
    found
}

/// How many tests `text` declares: its test attributes, and two for each name it lists in an
/// `in_both_homes!(…)` (one per home).
fn tests_declared(text: &str) -> usize {
    let mut n = text.matches("#[tokio::test").count() + text.matches("#[test]").count();
    for (at, _) in text.match_indices("\nin_both_homes!(") {
        let list = &text[at + "\nin_both_homes!(".len()..];
        let list = &list[..list.find(')').unwrap_or(list.len())];
        n += 2 * list.split(',').filter(|t| !t.trim().is_empty()).count();
    }
    n
}

#[test]
fn every_test_that_needs_a_server_opens_by_skipping_without_it() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    let mut seen = 0;
    let mut exempt_found = 0;
    for (file, openings) in guarded_tests() {
        let text = fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        seen += tests_declared(&text);
        for test in unguarded(&text, openings) {
            if NEED_NO_SERVER
                .iter()
                .any(|(f, t, _)| file.ends_with(f) && test == *t)
            {
                exempt_found += 1;
                continue;
            }
            let shown = file
                .strip_prefix(root)
                .unwrap_or(&file)
                .display()
                .to_string();
            let lines: Vec<String> = openings.iter().map(|o| format!("{o});")).collect();
            missing.push(format!(
                "  {shown}: {test} (open it with {})",
                lines.join(" or ")
            ));
        }
    }
    assert!(seen > 100, "only {seen} tests found: has tests/api moved?");
    assert!(
        missing.is_empty(),
        "tests that need PostgreSQL and Redis (or the programs of private servers) without \
         opening with the line that skips them loudly when those are missing:\n{}",
        missing.join("\n")
    );
    assert_eq!(
        exempt_found,
        NEED_NO_SERVER.len(),
        "a test of NEED_NO_SERVER was renamed, moved or given a skip: update the list"
    );
}

#[test]
fn an_unguarded_test_is_found() {
    let text = "#[tokio::test(flavor = \"multi_thread\")]\nasync fn guarded() {\n    \
                skip_without_servers!();\n}\n\n#[test]\nfn bare() {\n    let x = 1;\n}\n";
    assert_eq!(unguarded(text, &[SERVERS]), ["bare"]);
    // The embedded half's line is no guard where only the servers' is allowed.
    let embedded = "#[tokio::test]\nasync fn inside() {\n    embedded_home!();\n}\n";
    assert_eq!(unguarded(embedded, &[SERVERS]), ["inside"]);
    assert!(unguarded(embedded, &[SERVERS, EMBEDDED]).is_empty());
    // A macro's half without its line is found as any other test.
    let half = "$(\n    #[tokio::test(flavor = \"multi_thread\")]\n    async fn $test() {\n        \
                super::$test(Home::Servers).await;\n    }\n)*\n";
    assert_eq!(unguarded(half, &[SERVERS, EMBEDDED]), ["$test"]);
}

#[test]
fn a_test_in_both_homes_counts_twice() {
    let text =
        "async fn a(home: Home) {}\n\nin_both_homes!(\n    a,\n    b,\n);\n#[test]\nfn c() {}\n";
    assert_eq!(tests_declared(text), 5);
}

/// Lines that signal a process group by `kill -SIG -PID`: Debian's kill (procps) keeps only the
/// first digit of "-PID", so `-KILL -1999` is kill(-1, SIGKILL), every process on the machine.
/// `kill -s SIG -- -PID` says the same thing unambiguously.
fn group_kills_without_dashes(text: &str) -> Vec<String> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| line.contains("format!(\"-{") && !line.contains("\"--\""))
        .filter(|(n, _)| {
            let from = n.saturating_sub(4);
            text.lines()
                .skip(from)
                .take(n - from + 1)
                .any(|l| l.contains("\"kill\""))
        })
        .map(|(n, line)| format!("line {}: {}", n + 1, line.trim()))
        .collect()
}

#[test]
fn a_process_group_is_signalled_with_dashes_before_its_negative_id() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for dir in ["src", "tests", "benches"] {
        for file in rust_files(&root.join(dir)) {
            let text = fs::read_to_string(&file).unwrap();
            for hit in group_kills_without_dashes(&text) {
                found.push(format!(
                    "  {} {hit}",
                    file.strip_prefix(root).unwrap().display()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "`kill -SIG -PID` signals the wrong group on Debian; write `kill -s SIG -- -PID`:\n{}",
        found.join("\n")
    );
}

#[test]
fn a_group_kill_without_dashes_is_found() {
    let bad = "Command::new(\"kill\")\n    .args([\"-KILL\", &format!(\"-{pid}\")])";
    let good =
        "Command::new(\"kill\")\n    .args([\"-s\", \"KILL\", \"--\", &format!(\"-{pid}\")])";
    assert_eq!(group_kills_without_dashes(bad).len(), 1);
    assert!(group_kills_without_dashes(good).is_empty());
}
