//! Structural rules, checked on the source text with plain std (nothing is compiled).
//!
//! Layers point one way: the notify engine services syscalls and never parses a protocol
//! (that is the transforms crate's job); transforms never makes a syscall; the stream
//! spool between them moves bytes and makes no syscalls either. And no two module files
//! import each other in a circle. These tests keep that true as the tree changes.
//!
//! How: a small lexer blanks comments (`//`, `///`, `//!`, `/* */`) and the contents of
//! string and char literals, so `"crate::x"` or a doc link never counts; paths are read
//! off the tokens (in `use` lines, code and macro arguments alike), use trees such as
//! `use crate::{a, b::{c, d}}` are expanded, and `self::`/`super::` are resolved against
//! the file's module. Test code is left out of rules 1 and 2 (it may reach anywhere): files
//! named `tests.rs`, files declared by `#[cfg(test)] mod name;`, and the item following
//! any `#[cfg(test)]` (an inline `mod tests { .. }`, a test-only `fn` or `use`).
//!
//! `cargo test -p supervise --test structure -- --nocapture` also prints the unsafe table.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");
const TRANSFORMS_SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../transforms/src");
const KEYRING_SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../keyring/src");

/// A token: its line and its text (an identifier, `::`, or one punctuation character).
type Tok = (usize, String);
/// Paths read from the tokens: each its line and its segments.
type Paths = Vec<(usize, Vec<String>)>;

struct Source {
    rel: String,         // path under the src root, for messages
    module: Vec<String>, // foo/mod.rs -> [foo], foo/bar.rs -> [foo, bar], main.rs -> []
    test_only: bool,
    all: Vec<Tok>,  // every token
    live: Vec<Tok>, // the tokens outside `#[cfg(test)]` items
}

fn is_ident(t: &str) -> bool {
    t.starts_with(|c: char| c.is_alphanumeric() || c == '_')
}

/// The texts of `toks[range]` run together, e.g. `#[cfg(test)]`.
fn joined(toks: &[Tok], range: std::ops::Range<usize>) -> String {
    toks.get(range)
        .unwrap_or_default()
        .iter()
        .map(|t| t.1.as_str())
        .collect()
}

/// Blanks comments and the contents of string, raw string and char literals, keeping
/// newlines (so line numbers survive) and lifetimes. Block comments are taken as flat.
fn clean(src: &str) -> String {
    let c: Vec<char> = src.chars().collect();
    let at = |i: usize, s: &str| s.chars().zip(i..).all(|(ch, k)| c.get(k) == Some(&ch));
    let word = |k: usize| c[k].is_alphanumeric() || c[k] == '_';
    let (mut out, mut i) = (String::with_capacity(src.len()), 0);
    while i < c.len() {
        let hashes = c[i + 1..].iter().take_while(|&&ch| ch == '#').count();
        let raw = c[i] == 'r' && (i == 0 || !word(i - 1) || c[i - 1] == 'b');
        // (characters kept at the start, the end marker, whether `\` escapes)
        let start = if at(i, "//") {
            Some((0, "\n".to_string(), false))
        } else if at(i, "/*") {
            Some((2, "*/".to_string(), false))
        } else if raw && at(i + 1 + hashes, "\"") {
            Some((2 + hashes, format!("\"{}", "#".repeat(hashes)), false))
        } else if c[i] == '"' {
            Some((1, "\"".to_string(), true))
        } else if c[i] == '\'' && (at(i + 1, "\\") || at(i + 2, "'")) {
            Some((1, "'".to_string(), true)) // a char literal, not a lifetime
        } else {
            None
        };
        let Some((open, close, escapes)) = start else {
            out.push(c[i]);
            i += 1;
            continue;
        };
        out.extend(&c[i..i + open]);
        i += open;
        while i < c.len() && !at(i, &close) {
            let n = if escapes && c[i] == '\\' { 2 } else { 1 };
            for &ch in c.iter().skip(i).take(n) {
                out.push(if ch == '\n' { '\n' } else { ' ' });
            }
            i += n;
        }
        out.extend(c.iter().skip(i).take(close.len()));
        i += close.len();
    }
    out
}

fn tokens(code: &str) -> Vec<Tok> {
    let (mut out, mut line, mut chars) = (Vec::new(), 1, code.chars().peekable());
    while let Some(ch) = chars.next() {
        if ch == '\n' {
            line += 1;
        } else if is_ident(&ch.to_string()) {
            let mut word = ch.to_string();
            while let Some(n) = chars.next_if(|n| n.is_alphanumeric() || *n == '_') {
                word.push(n);
            }
            out.push((line, word));
        } else if ch == ':' && chars.next_if_eq(&':').is_some() {
            out.push((line, "::".into()));
        } else if !ch.is_whitespace() {
            out.push((line, ch.to_string()));
        }
    }
    out
}

/// Drops each item that follows `#[cfg(test)]` (up to its `;` or its closing `}`) and
/// returns the names of the test-only module files it declares (`mod name;`).
fn strip_test_items(toks: &[Tok]) -> (Vec<Tok>, Vec<String>) {
    let (mut live, mut test_mods, mut i) = (Vec::new(), Vec::new(), 0);
    while i < toks.len() {
        if joined(toks, i..i + 7) != "#[cfg(test)]" {
            live.push(toks[i].clone());
            i += 1;
            continue;
        }
        let mut depth = 0;
        while let Some((_, t)) = toks.get(i) {
            if depth == 0 && t == "mod" && joined(toks, i + 2..i + 3) == ";" {
                test_mods.push(toks[i + 1].1.clone());
            }
            i += 1;
            depth += matches!(t.as_str(), "(" | "[" | "{") as i32;
            depth -= matches!(t.as_str(), ")" | "]" | "}") as i32;
            if depth == 0 && (t == ";" || t == "}") {
                break;
            }
        }
    }
    (live, test_mods)
}

/// Every path in the tokens, use trees expanded, as `(line, segments)`.
fn paths(toks: &[Tok]) -> Paths {
    let (mut out, mut i) = (Vec::new(), 0);
    while i < toks.len() {
        // A path starts at an identifier that does not continue `a::` or `<T>::`, and is
        // not the `crate` of a `pub(in crate::x)` visibility (an ancestor, not a use).
        let before = |n: usize| joined(toks, i.saturating_sub(n)..i);
        let continues = before(1) == "::" && (is_ident(&before(2)) || before(2) == ">::");
        if is_ident(&toks[i].1) && !continues && before(3) != "pub(in" {
            i = tree(toks, i, Vec::new(), &mut out);
        } else {
            i += 1;
        }
    }
    out
}

/// Reads one use tree (or plain path) from `toks[i]` under `prefix`; returns where it ends.
fn tree(toks: &[Tok], mut i: usize, mut path: Vec<String>, out: &mut Paths) -> usize {
    let mut line = toks[i].0;
    loop {
        match toks.get(i).map(|t| t.1.as_str()) {
            Some("{") => {
                i += 1;
                while let Some((_, t)) = toks.get(i) {
                    match t.as_str() {
                        "}" => return i + 1,
                        "," => i += 1,
                        _ => i = tree(toks, i, path.clone(), out).max(i + 1),
                    }
                }
                return i;
            }
            Some("*") => {
                out.push((toks[i].0, path));
                return i + 1;
            }
            Some(t) if is_ident(t) => {
                (line, i) = (toks[i].0, i + 1);
                path.push(t.to_string());
            }
            _ => {}
        }
        match toks.get(i).map(|t| t.1.as_str()) {
            Some("::") => i += 1,
            next => {
                // `use a::b as c;` ends after `c`; `<T as crate::Tr>` goes on at `crate`.
                let rename = next == Some("as") && joined(toks, i + 2..i + 3) != "::";
                out.push((line, path));
                return i + if rename { 2 } else { 0 };
            }
        }
    }
}

/// A `crate::`, `self::` or `super::` path as an absolute one; `None` for other paths.
fn resolve(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut abs = match path[0].as_str() {
        "crate" => Vec::new(),
        "self" => module.to_vec(),
        "super" => module.split_last()?.1.to_vec(),
        _ => return None,
    };
    for seg in &path[1..] {
        match seg.as_str() {
            "super" => drop(abs.pop()),
            "self" => {}
            _ => abs.push(seg.clone()),
        }
    }
    Some(abs)
}

fn load(root: &str) -> Vec<Source> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{dir:?}: {e}")) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(Path::new(root), &mut files);
    files.sort();
    let mut test_modules = BTreeSet::new();
    let mut sources = Vec::new();
    for path in files {
        let rel = path.to_string_lossy()[root.len() + 1..].to_string();
        let mut module: Vec<String> = rel[..rel.len() - 3].split('/').map(String::from).collect();
        if ["mod", "main", "lib"].contains(&module.last().unwrap().as_str()) {
            module.pop();
        }
        let all = tokens(&clean(&std::fs::read_to_string(&path).unwrap()));
        let (live, test_mods) = strip_test_items(&all);
        for name in test_mods {
            test_modules.insert([module.clone(), vec![name]].concat());
        }
        let test_only = rel == "tests.rs" || rel.ends_with("/tests.rs");
        sources.push(Source {
            rel,
            module,
            test_only,
            all,
            live,
        });
    }
    for s in &mut sources {
        s.test_only |= (1..=s.module.len()).any(|k| test_modules.contains(&s.module[..k]));
    }
    sources
}

/// Groups of modules that all reach one another, of more than one module. DFS
/// reachability from every node: plenty for a few dozen modules, and easy to check.
fn cycles(adj: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let reach: Vec<Vec<bool>> = (0..adj.len())
        .map(|start| {
            let (mut seen, mut stack) = (vec![false; adj.len()], vec![start]);
            while let Some(v) = stack.pop() {
                for &w in &adj[v] {
                    if !std::mem::replace(&mut seen[w], true) {
                        stack.push(w);
                    }
                }
            }
            seen
        })
        .collect();
    let mut out: Vec<Vec<usize>> = Vec::new();
    for (v, from_v) in reach.iter().enumerate() {
        let scc: Vec<usize> = (0..adj.len())
            .filter(|&w| from_v[w] && reach[w][v])
            .collect();
        if scc.len() > 1 && !out.contains(&scc) {
            out.push(scc);
        }
    }
    out
}

/// Rule 1: no two module files import each other, directly or round a longer circle. In a
/// circle neither side can be read, tested or moved without the other. A parent using its
/// child (`mod.rs` calling `child::f`) and a child using its parent (`super::Type`) is how
/// Rust modules are built, so references between a module and its ancestors don't count.
#[test]
fn no_import_circles_between_modules() {
    let sources: Vec<Source> = load(SRC).into_iter().filter(|s| !s.test_only).collect();
    let modules: Vec<&[String]> = sources.iter().map(|s| &s.module[..]).collect();
    let mut edges: BTreeMap<(usize, usize), BTreeSet<(&str, usize)>> = BTreeMap::new();
    for (from, s) in sources.iter().enumerate() {
        for (line, path) in paths(&s.live) {
            let Some(abs) = resolve(&s.module, &path) else {
                continue;
            };
            // The longest prefix that is a module file: crate::notify::io::f -> notify::io.
            let mut abs = &abs[..];
            while !modules.contains(&abs) {
                abs = &abs[..abs.len() - 1]; // ends at the crate root, []
            }
            let to = modules.iter().position(|m| *m == abs).unwrap();
            if !modules[to].starts_with(&s.module) && !s.module.starts_with(modules[to]) {
                let at = edges.entry((from, to)).or_default();
                at.insert((&s.rel[..], line));
            }
        }
    }
    let mut adj = vec![Vec::new(); modules.len()];
    edges.keys().for_each(|&(a, b)| adj[a].push(b));
    let (n, e) = (modules.len(), edges.len());
    println!("rule 1: {n} module files, {e} edges between them");
    let name = |v: usize| modules[v].join("::"); // never the root: it is everyone's ancestor
    let mut report = String::new();
    for scc in cycles(&adj) {
        let names: Vec<String> = scc.iter().map(|&v| name(v)).collect();
        report += &format!("\ncircle among {}:\n", names.join(", "));
        let inside = |(a, b): &(usize, usize)| scc.contains(a) && scc.contains(b);
        for ((a, b), at) in edges.iter().filter(|(e, _)| inside(e)) {
            let at: Vec<String> = at.iter().map(|(f, l)| format!("{f}:{l}")).collect();
            report += &format!("  {} -> {}: {}\n", name(*a), name(*b), at.join(", "));
        }
    }
    assert!(report.is_empty(), "circles between module files:{report}");
}

/// Rule 2: layers point one way. The stream spool buffers bytes between descriptors it is
/// handed: it makes no syscalls (no libc, nor rustix, its safe-wrapper replacement) and
/// knows nothing of the notification loop (`crate::notify`) or the raw syscall layer
/// (`crate::sys`). The transforms crate parses and rewrites bytes: it never makes a
/// syscall, and never touches files, sockets or processes (`std::os`/`fs`/`net`/`process`).
/// The keyring crate decides on signed requests the same way, and has no clock either:
/// the caller passes the time (no `Instant`, `SystemTime`, threads).
#[test]
fn layers_point_one_way() {
    let mut violations = Vec::new();
    let roots = [
        ("supervisor/src", SRC),
        ("transforms/src", TRANSFORMS_SRC),
        ("keyring/src", KEYRING_SRC),
    ];
    for (dir, root) in roots {
        for s in load(root).iter().filter(|s| !s.test_only) {
            let spool = root == SRC && s.module.first().is_some_and(|m| m == "stream");
            if root == SRC && !spool {
                continue;
            }
            for (line, path) in paths(&s.live) {
                let seg = |n: usize| path.get(n).map_or("", String::as_str);
                let syscalls = seg(0) == "libc" || seg(0) == "rustix";
                let bad = if spool {
                    let abs = resolve(&s.module, &path).unwrap_or_default();
                    syscalls || abs.first().is_some_and(|m| m == "notify" || m == "sys")
                } else {
                    let clock = root == KEYRING_SRC
                        && seg(0) == "std"
                        && (seg(1) == "thread"
                            || seg(1) == "time" && matches!(seg(2), "Instant" | "SystemTime"));
                    clock
                        || syscalls
                        || seg(0) == "std" && matches!(seg(1), "os" | "fs" | "net" | "process")
                };
                if bad {
                    violations.push(format!("{dir}/{}:{line}: {}", s.rel, path.join("::")));
                }
            }
        }
    }
    violations.dedup(); // one line per place, not per use on that line
    let violations = violations.join("\n");
    assert!(violations.is_empty(), "layering violations:\n{violations}");
}

/// Rule 2b: mirroring observes. No mirror module reaches the notification loop
/// (`crate::notify`) or the syscall layer: it sees what the engine emits and cannot
/// change what the tenant gets. Its decisions (policy, triggers, overrides) are
/// sans-IO: no syscalls, no clock (the caller passes the time), no files, sockets,
/// threads or processes.
#[test]
fn mirroring_observes_and_decides_without_io() {
    let mut violations = Vec::new();
    let decisions = ["policy", "triggers", "overrides"];
    for s in load(SRC).iter().filter(|s| !s.test_only) {
        if s.module.first().is_none_or(|m| m != "mirror") {
            continue;
        }
        let pure = s
            .module
            .get(1)
            .is_some_and(|m| decisions.contains(&m.as_str()));
        for (line, path) in paths(&s.live) {
            let seg = |n: usize| path.get(n).map_or("", String::as_str);
            let abs = resolve(&s.module, &path).unwrap_or_default();
            let engine = abs.first().is_some_and(|m| m == "notify");
            let io = abs.first().is_some_and(|m| m == "sys")
                || seg(0) == "libc"
                || seg(0) == "rustix"
                || seg(0) == "std" && matches!(seg(1), "os" | "fs" | "process" | "thread")
                || seg(0) == "std"
                    && seg(1) == "time"
                    && matches!(seg(2), "Instant" | "SystemTime")
                || seg(0) == "std"
                    && seg(1) == "net"
                    && matches!(seg(2), "TcpStream" | "TcpListener" | "UdpSocket")
                || abs.get(1).is_some_and(|m| m == "sink" || m == "start");
            if engine || pure && io {
                violations.push(format!(
                    "supervisor/src/{}:{line}: {}",
                    s.rel,
                    path.join("::")
                ));
            }
        }
    }
    violations.dedup();
    let violations = violations.join("\n");
    assert!(
        violations.is_empty(),
        "mirroring layering violations:\n{violations}"
    );
}

/// Rule 3: `unsafe` stays where it is needed (the notify ioctls, tenant memory, the raw
/// syscall layer). The notify handlers work through safe wrappers on requests already
/// read, so each carries `#![forbid(unsafe_code)]` to keep it that way.
#[test]
fn notify_handlers_forbid_unsafe() {
    // notify/addresses.rs, notify/io.rs, ...
    const HANDLERS: &str = "addresses io sockets fds waiters route table/mod table/reserve";
    let sources = load(SRC);
    println!("{:<32} {:>6} {:>10}", "file", "unsafe {", "unsafe fn");
    let mut totals = (0, 0);
    for s in &sources {
        let (mut blocks, mut fns) = (0, 0);
        for pair in s.all.windows(2).filter(|pair| pair[0].1 == "unsafe") {
            blocks += (pair[1].1 == "{") as usize;
            fns += (pair[1].1 == "fn") as usize;
        }
        if blocks + fns > 0 {
            let test = if s.test_only { "  (test code)" } else { "" };
            println!("{:<32} {blocks:>6} {fns:>10}{test}", s.rel);
        }
        totals = (totals.0 + blocks, totals.1 + fns);
    }
    println!("{:<32} {:>6} {:>10}", "total", totals.0, totals.1);
    let mut missing = Vec::new();
    for handler in HANDLERS.split(' ').map(|h| format!("notify/{h}.rs")) {
        let Some(s) = sources.iter().find(|s| s.rel == handler) else {
            println!("rule 3: {handler} does not exist; skipped");
            continue;
        };
        // `#![forbid(` followed, before its `)`, by `unsafe_code`.
        let forbids = (0..s.all.len()).any(|i| {
            joined(&s.all, i..i + 5) == "#![forbid("
                && s.all[i + 5..]
                    .iter()
                    .take_while(|t| t.1 != ")")
                    .any(|t| t.1 == "unsafe_code")
        });
        if !forbids {
            missing.push(format!("supervisor/src/{handler}"));
        }
    }
    let missing = missing.join("\n");
    assert!(
        missing.is_empty(),
        "no #![forbid(unsafe_code)] in:\n{missing}"
    );
}
