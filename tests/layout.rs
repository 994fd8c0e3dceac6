//! The shape of `src/`, pinned (issue #21): one folder per stage of the data's path, each
//! importing only from the stages below it, no import circle between files, a thin top, no
//! file over 700 lines, and clap's `Args` seen only by the flags stage and the entry.
//!
//! It reads the source as text: every `crate::` and `super::` path outside test code is an
//! import of the module it names. A change that breaks the shape fails here, with the import
//! to move.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The stages, lowest first: a module may import from its own stage and those before it.
const STAGES: &[&str] = &[
    "error",
    "event",
    "emit",
    "decode",
    "transport",
    "control",
    "tools",
    "session",
    "cli",
    "run",
];

/// Files at the top of `src/`: the entry (`main`, `lib`), the top (`run`) and the bottom.
const MAX_TOP_FILES: usize = 6;

const MAX_LINES: usize = 700;

/// Where clap's parsed flags may be named.
const ARGS_ALLOWED: &[&str] = &["src/cli/", "src/run.rs", "src/main.rs", "src/lib.rs"];

type Module = Vec<String>;

struct Source {
    module: Module,
    path: PathBuf,
    text: String,
}

fn sources() -> Vec<Source> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).expect("src/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    walk(&root, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&root).expect("under src/");
            let mut module: Module = relative
                .with_extension("")
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if module.last().is_some_and(|last| last == "mod") {
                module.pop();
            }
            if module == ["lib"] || module == ["main"] {
                module.clear();
            }
            let text = fs::read_to_string(&path).expect("a source file is readable");
            Source { module, path, text }
        })
        .collect()
}

fn shown(path: &Path) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The code that ships: comments dropped, and every test-only module (`#[cfg(test)]` or
/// `#[cfg(all(test, ...))]` before a `mod`) left out; a `tests.rs` file is all test code.
fn shipped_code(source: &Source) -> String {
    if source.module.last().is_some_and(|last| last == "tests") {
        return String::new();
    }
    let text = without_block_comments(&source.text);
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start();
        let test_only =
            trimmed.starts_with("#[cfg(test)]") || trimmed.starts_with("#[cfg(all(test");
        if test_only && lines.peek().is_some_and(|next| is_mod_line(next)) {
            let next = lines.next().unwrap_or_default();
            if !next.trim_end().ends_with(';') {
                // Skipped to the brace that closes it, at the `mod` line's indentation.
                let indent = next.len() - next.trim_start().len();
                let close = format!("{}}}", " ".repeat(indent));
                for inner in lines.by_ref() {
                    if inner.trim_end() == close {
                        break;
                    }
                }
            }
            continue;
        }
        // A comment starts at `//` after a space or at the line's start; `https://` is no comment.
        let cut = line
            .match_indices("//")
            .find(|(at, _)| *at == 0 || line[..*at].ends_with(char::is_whitespace))
            .map_or(line.len(), |(at, _)| at);
        code.push_str(&line[..cut]);
        code.push('\n');
    }
    code
}

fn is_mod_line(line: &str) -> bool {
    without_visibility(line.trim_start()).starts_with("mod ")
}

fn without_visibility(item: &str) -> &str {
    ["pub(crate) ", "pub(super) ", "pub "]
        .iter()
        .find_map(|prefix| item.strip_prefix(prefix))
        .unwrap_or(item)
}

/// `/* ... */` comments removed (not nested: the code has none that are).
fn without_block_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        match rest[start + 2..].find("*/") {
            Some(end) => rest = &rest[start + 2 + end + 2..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// Every path a `use` tree names, braces expanded: `crate::a::{b, c::{d}}` → `crate::a::b`,
/// `crate::a::c::d`.
fn expand(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(open) = tree.find('{') else {
        return vec![tree.split(" as ").next().unwrap_or(tree).trim().to_owned()];
    };
    let prefix = tree[..open].trim_end_matches("::");
    let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, ch) in inner.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|part| !part.trim().is_empty())
        .flat_map(expand)
        .map(|path| {
            if prefix.is_empty() {
                path
            } else if path == "self" {
                prefix.to_owned()
            } else {
                format!("{prefix}::{path}")
            }
        })
        .collect()
}

/// The `crate::`, `super::` and `self::` paths the code names: in `use` items (which begin a
/// line, as rustfmt writes them, and may span lines and hold braces) and in expressions.
fn paths_in(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = String::with_capacity(code.len());
    let mut lines = code.lines();
    while let Some(line) = lines.next() {
        let Some(tree) = without_visibility(line.trim_start()).strip_prefix("use ") else {
            rest.push_str(line);
            rest.push('\n');
            continue;
        };
        let mut tree = tree.to_owned();
        while !tree.contains(';') {
            match lines.next() {
                Some(more) => tree.push_str(more),
                None => break,
            }
        }
        let tree: String = tree[..tree.find(';').unwrap_or(tree.len())]
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        if ["crate::", "super::", "self::"]
            .iter()
            .any(|root| tree.starts_with(root))
        {
            paths.extend(expand(&tree));
        }
    }
    for root in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(found) = rest[from..].find(root) {
            let start = from + found;
            from = start + root.len();
            if rest[..start].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let end = rest[start..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(rest.len(), |len| start + len);
            paths.push(rest[start..end].trim_end_matches(':').to_owned());
        }
    }
    paths
}

/// The file module a path leads into: the longest prefix that is one.
fn resolve(from: &Module, path: &str, modules: &BTreeSet<Module>) -> Option<Module> {
    let mut segments = path.split("::").filter(|s| !s.is_empty());
    let mut base: Module = match segments.next()? {
        "crate" => Vec::new(),
        "self" => from.clone(),
        "super" => from[..from.len().saturating_sub(1)].to_vec(),
        _ => return None,
    };
    let mut rest: Vec<&str> = segments.collect();
    while rest.first() == Some(&"super") {
        base.pop();
        rest.remove(0);
    }
    base.extend(rest.iter().map(|s| s.to_string()));
    // Nothing longer: the crate's root (`lib.rs` and what it re-exports), above every stage.
    (0..=base.len())
        .rev()
        .map(|n| base[..n].to_vec())
        .find(|candidate| modules.contains(candidate))
}

/// The rank of a module's stage; the root (`lib.rs`, `main.rs`) ranks above them all.
fn stage_of(module: &Module) -> Option<usize> {
    let Some(first) = module.first() else {
        return Some(STAGES.len());
    };
    STAGES.iter().position(|stage| stage == first)
}

/// The unit an import is of, for circles: a file of a stage, or a folder inside a stage taken
/// whole (`cli/config/file.rs` is part of `cli/config`, whose `mod.rs` it extends).
fn unit(module: &Module) -> Module {
    module[..module.len().min(2)].to_vec()
}

fn imports() -> BTreeMap<Module, BTreeSet<Module>> {
    let sources = sources();
    let modules: BTreeSet<Module> = sources.iter().map(|s| s.module.clone()).collect();
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for source in &sources {
        let code = shipped_code(source);
        let targets = graph.entry(source.module.clone()).or_default();
        for path in paths_in(&code) {
            if let Some(target) = resolve(&source.module, &path, &modules)
                && target != source.module
                // A stage's own mod.rs declaring its files imports nothing.
                && !(source.module.len() == 1 && target.starts_with(&source.module))
            {
                targets.insert(target);
            }
        }
    }
    graph
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "lib".into()
    } else {
        module.join("/")
    }
}

#[test]
fn every_import_runs_to_the_same_stage_or_a_lower_one() {
    let graph = imports();
    let mut upward = Vec::new();
    for (from, targets) in &graph {
        if from.is_empty() {
            continue;
        }
        let Some(own) = stage_of(from) else {
            panic!("src/{} is in no stage: add it to STAGES", name(from));
        };
        for target in targets {
            let theirs = stage_of(target).expect("every import is of a staged module");
            if theirs > own {
                upward.push(format!("{} -> {}", name(from), name(target)));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports that run up, against the order {STAGES:?}: {upward:#?}"
    );
}

#[test]
fn no_import_circle_between_files() {
    let mut graph: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (from, targets) in imports() {
        let targets: BTreeSet<Module> = targets
            .iter()
            .map(unit)
            .filter(|target| *target != unit(&from))
            .collect();
        graph.entry(unit(&from)).or_default().extend(targets);
    }
    // Depth-first search for a back edge; the path to it is the circle.
    fn visit(
        node: &Module,
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        state: &mut BTreeMap<Module, bool>,
        path: &mut Vec<Module>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(true) => return None,
            Some(false) => {
                let start = path.iter().position(|m| m == node).unwrap_or(0);
                let mut circle: Vec<String> = path[start..].iter().map(name).collect();
                circle.push(name(node));
                return Some(circle);
            }
            None => {}
        }
        state.insert(node.clone(), false);
        path.push(node.clone());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, state, path) {
                return Some(circle);
            }
        }
        path.pop();
        state.insert(node.clone(), true);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        let circle = visit(node, &graph, &mut state, &mut Vec::new());
        assert!(
            circle.is_none(),
            "an import circle: {}",
            circle.unwrap_or_default().join(" -> ")
        );
    }
}

#[test]
fn a_thin_top_and_a_folder_per_stage() {
    let sources = sources();
    let top: Vec<String> = sources
        .iter()
        .filter(|s| s.path.parent().is_some_and(|p| p.ends_with("src")))
        .map(|s| shown(&s.path))
        .collect();
    assert!(
        top.len() <= MAX_TOP_FILES,
        "{} files at the top of src/ (at most {MAX_TOP_FILES}): {top:?}",
        top.len()
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for stage in STAGES {
        let folder = root.join(stage);
        let file = root.join(format!("{stage}.rs"));
        assert!(
            folder.join("mod.rs").is_file() || file.is_file(),
            "stage {stage} has neither src/{stage}/ nor src/{stage}.rs"
        );
    }
    let folders = STAGES
        .iter()
        .filter(|stage| root.join(stage).is_dir())
        .count();
    assert!(folders >= 4, "{folders} stage folders");
}

#[test]
fn no_source_file_over_700_lines() {
    let long: Vec<String> = sources()
        .iter()
        .filter(|s| s.text.lines().count() > MAX_LINES)
        .map(|s| format!("{} ({} lines)", shown(&s.path), s.text.lines().count()))
        .collect();
    assert!(long.is_empty(), "split these along what they own: {long:?}");
}

#[test]
fn args_are_seen_only_by_the_flags_stage_and_the_entry() {
    let outside: Vec<String> = sources()
        .iter()
        .filter(|s| {
            let shown = shown(&s.path);
            !ARGS_ALLOWED
                .iter()
                .any(|allowed| shown.starts_with(allowed))
        })
        .filter(|s| {
            shipped_code(s)
                .split(|c: char| !(c.is_alphanumeric() || c == '_'))
                .any(|word| word == "Args")
        })
        .map(|s| shown(&s.path))
        .collect();
    assert!(
        outside.is_empty(),
        "clap's Args named below the flags stage: {outside:?}; resolve what they need into the Plan"
    );
}

#[test]
fn the_reader_sees_imports_in_every_shape() {
    // The checks above are only as good as this reader.
    let code = "use crate::a::{b, c::{d, e as f}, self};\nuse std::io;\nfn x() { crate::g::h(); let u = \"https://x\"; super::i::j }\n";
    let mut paths = paths_in(code);
    paths.sort();
    assert_eq!(
        paths,
        [
            "crate::a",
            "crate::a::b",
            "crate::a::c::d",
            "crate::a::c::e",
            "crate::g::h",
            "super::i::j"
        ]
    );
    // A test module in the middle is left out, a `use ` in a string hides nothing, a block
    // comment names nothing.
    let source = Source {
        module: vec!["m".into()],
        path: PathBuf::from("m.rs"),
        text: "fn a() { crate::x::y(); }\n#[cfg(test)]\nmod tests {\n    use crate::t::u;\n}\n\
               fn b() { say(\"use --json\"); crate::z::w(); }\n/* crate::q::r */\n"
            .into(),
    };
    assert_eq!(
        paths_in(&shipped_code(&source)),
        ["crate::x::y", "crate::z::w"]
    );
    let modules: BTreeSet<Module> = [vec!["a".to_owned()], vec!["a".to_owned(), "c".to_owned()]]
        .into_iter()
        .collect();
    assert_eq!(
        resolve(&vec!["z".into()], "crate::a::c::d", &modules),
        Some(vec!["a".to_owned(), "c".to_owned()])
    );
    assert_eq!(
        resolve(&vec!["a".into(), "k".into()], "super::c::x", &modules),
        Some(vec!["a".to_owned(), "c".to_owned()])
    );
    // What only the root holds (a re-export in lib.rs) is an import of the root.
    let with_root: BTreeSet<Module> = modules.iter().cloned().chain([Vec::new()]).collect();
    assert_eq!(
        resolve(&vec!["a".into()], "crate::is_reported", &with_root),
        Some(Vec::new())
    );
}
