//! Where each key of a profile is: a tree of the document's keys with the byte span of
//! each value, so every error can name the key (`stream[0].listen_port`) and the line
//! it is on.
//!
//! The typed parse (serde derive) knows neither: a type error says "expected u16" and
//! points at the value; a validation error after it knows the key but not its line. The
//! tree is built from the same text by a second, schema-less parse that asks the `toml`
//! deserializer for the span of every value (the protocol `toml::Spanned` uses), and
//! answers both questions: which key holds this offset, and at which line is this key.
//!
//! A value's span starts on its key's line (TOML puts the value on the line of its
//! `=`), and a table's starts at its `[header]`, so "the line of a key" is the line
//! where its value starts. A key that is absent (a required key left out) is reported
//! at the line of the table that should hold it.

use std::fmt;
use std::ops::Range;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

// The names by which `toml`'s deserializer recognises a request for a value's span
// (serde_spanned 0.6, the version `toml` 0.8 uses; `toml::Spanned` is the same type).
// If they ever change, values simply arrive without spans: the tests below catch it.
const SPANNED_NAME: &str = "$__serde_spanned_private_Spanned";
const SPANNED_START: &str = "$__serde_spanned_private_start";
const SPANNED_END: &str = "$__serde_spanned_private_end";
const SPANNED_VALUE: &str = "$__serde_spanned_private_value";
const SPANNED_FIELDS: &[&str] = &[SPANNED_START, SPANNED_END, SPANNED_VALUE];
// A datetime arrives as a one-entry map under this key.
const DATETIME_KEY: &str = "$__toml_private_datetime";

/// One step of a key path: a table key or an array index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// A dotted key path, displayed as the README writes keys: `stream[0].rule[1].kind`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct KeyPath(pub(super) Vec<Seg>);

impl KeyPath {
    /// Parses `a.b[2].c` (plain keys only: no dots or brackets inside a key).
    pub(super) fn parse(text: &str) -> KeyPath {
        let mut segs = Vec::new();
        for part in text.split('.').filter(|p| !p.is_empty()) {
            let mut pieces = part.split('[');
            if let Some(key) = pieces.next().filter(|k| !k.is_empty()) {
                segs.push(Seg::Key(key.to_owned()));
            }
            for index in pieces {
                if let Ok(i) = index.trim_end_matches(']').parse() {
                    segs.push(Seg::Index(i));
                }
            }
        }
        KeyPath(segs)
    }

    /// This path with `key` appended.
    pub(super) fn key(&self, key: &str) -> KeyPath {
        let mut segs = self.0.clone();
        segs.push(Seg::Key(key.to_owned()));
        KeyPath(segs)
    }
}

impl fmt::Display for KeyPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A value of the document and where it is.
#[derive(Debug, Default)]
struct Node {
    /// Byte span of the value; a table's starts at its header. None for implicit
    /// tables (dotted keys) until [`Node::fill_spans`] widens every span to cover its
    /// children (a `[[stream.rule]]` lies after the lines of its `[[stream]]`).
    span: Option<Range<usize>>,
    kind: Kind,
}

#[derive(Debug, Default)]
enum Kind {
    Table(Vec<(String, Node)>),
    Array(Vec<Node>),
    #[default]
    Leaf,
}

impl Node {
    fn child(&self, seg: &Seg) -> Option<&Node> {
        match (&self.kind, seg) {
            (Kind::Table(entries), Seg::Key(k)) => {
                entries.iter().find(|(name, _)| name == k).map(|(_, n)| n)
            }
            (Kind::Array(items), Seg::Index(i)) => items.get(*i),
            _ => None,
        }
    }

    /// Widens every span to cover its children's; gives span-less tables theirs.
    fn fill_spans(&mut self) {
        let children: Vec<&mut Node> = match &mut self.kind {
            Kind::Table(entries) => entries.iter_mut().map(|(_, n)| n).collect(),
            Kind::Array(items) => items.iter_mut().collect(),
            Kind::Leaf => Vec::new(),
        };
        let mut cover = self.span.clone();
        for child in children {
            child.fill_spans();
            if let Some(s) = &child.span {
                cover = Some(match cover {
                    None => s.clone(),
                    Some(c) => c.start.min(s.start)..c.end.max(s.end),
                });
            }
        }
        self.span = cover;
    }
}

/// The keys of one profile text and their spans.
#[derive(Debug)]
pub(super) struct Spans {
    root: Node,
    /// Byte offset of the start of each line.
    line_starts: Vec<usize>,
}

impl Spans {
    /// Parses `text` for its key spans; None when it is not valid TOML.
    pub(super) fn parse(text: &str) -> Option<Spans> {
        let mut root: Node = toml::from_str::<SpannedNode>(text).ok()?.0;
        root.fill_spans();
        Some(Spans {
            root,
            line_starts: line_starts(text),
        })
    }

    /// The 1-based line of `offset`.
    pub(super) fn line_of(&self, offset: usize) -> usize {
        line_of(&self.line_starts, offset)
    }

    /// The line of `path`'s value; for a key that is absent, the line of the nearest
    /// table that is present (the one that should hold it).
    pub(super) fn line_of_key(&self, path: &KeyPath) -> usize {
        let mut node = &self.root;
        let mut at = node.span.as_ref().map_or(0, |s| s.start);
        for seg in &path.0 {
            match node.child(seg) {
                Some(child) => {
                    node = child;
                    if let Some(s) = &child.span {
                        at = s.start;
                    }
                }
                None => break,
            }
        }
        self.line_of(at)
    }

    /// The deepest key whose value contains `offset` (the document root: empty path).
    pub(super) fn path_at(&self, offset: usize) -> KeyPath {
        let mut path = Vec::new();
        let mut node = &self.root;
        'descend: loop {
            let children: Vec<(Seg, &Node)> = match &node.kind {
                Kind::Table(entries) => entries
                    .iter()
                    .map(|(k, n)| (Seg::Key(k.clone()), n))
                    .collect(),
                Kind::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (Seg::Index(i), n))
                    .collect(),
                Kind::Leaf => break,
            };
            for (seg, child) in children {
                if child.span.as_ref().is_some_and(|s| s.contains(&offset)) {
                    path.push(seg);
                    node = child;
                    continue 'descend;
                }
            }
            break;
        }
        KeyPath(path)
    }
}

/// Byte offsets where lines start.
pub(super) fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// The 1-based line holding `offset`.
pub(super) fn line_of(starts: &[usize], offset: usize) -> usize {
    starts.partition_point(|&s| s <= offset).max(1)
}

/// A node whose span the deserializer is asked for.
struct SpannedNode(Node);

impl<'de> de::Deserialize<'de> for SpannedNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct(SPANNED_NAME, SPANNED_FIELDS, NodeVisitor { spanned: true })
            .map(SpannedNode)
    }
}

/// A node deserialized as is (the value inside a span: asking again would recurse).
struct PlainNode;

impl<'de> DeserializeSeed<'de> for PlainNode {
    type Value = Node;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor { spanned: false })
    }
}

struct NodeVisitor {
    /// Whether a span-carrying map may arrive.
    spanned: bool,
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any TOML value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
        Ok(Node::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
        Ok(Node::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
        Ok(Node::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::default())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(SpannedNode(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node {
            span: None,
            kind: Kind::Array(items),
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if self.spanned && key == SPANNED_START && entries.is_empty() {
                let start: usize = map.next_value()?;
                let _ = map.next_key::<String>()?;
                let end: usize = map.next_value()?;
                let _ = map.next_key::<String>()?;
                let mut node = map.next_value_seed(PlainNode)?;
                node.span = Some(start..end);
                return Ok(node);
            }
            if key == DATETIME_KEY && entries.is_empty() {
                map.next_value::<IgnoredAny>()?;
                return Ok(Node::default());
            }
            let SpannedNode(value) = map.next_value()?;
            entries.push((key, value));
        }
        Ok(Node {
            span: None,
            kind: Kind::Table(entries),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "top = 1\n[tenant]\nname = \"x\"\nwhen.at = 1979-05-27T07:32:00Z\n\
        env = { A = \"1\", B = \"2\" }\n[[stream]]\nname = \"a\"\n[[stream]]\nname = \"b\"\n\
        [[stream.rule]]\nkind = \"k\"\nobjects = [\"x\",\n  \"y\"]\n";

    #[test]
    fn every_key_has_its_line() {
        let s = Spans::parse(TEXT).expect("valid TOML");
        let line = |p: &str| s.line_of_key(&KeyPath::parse(p));
        assert_eq!(line("top"), 1);
        assert_eq!(line("tenant"), 2);
        assert_eq!(line("tenant.name"), 3);
        assert_eq!(line("tenant.when.at"), 4);
        assert_eq!(line("tenant.env.B"), 5);
        assert_eq!(line("stream[1]"), 8);
        assert_eq!(line("stream[1].rule[0].kind"), 11);
        assert_eq!(line("stream[1].rule[0].objects[1]"), 13);
        // Absent keys: the line of the table that should hold them.
        assert_eq!(line("stream[1].rule[0].table"), 10);
        assert_eq!(line("stream[0].framer"), 6);
    }

    #[test]
    fn offsets_map_to_the_deepest_key() {
        let s = Spans::parse(TEXT).expect("valid TOML");
        let at = |needle: &str| s.path_at(TEXT.find(needle).unwrap()).to_string();
        assert_eq!(at("\"2\""), "tenant.env.B");
        assert_eq!(at("\"y\""), "stream[1].rule[0].objects[1]");
        assert_eq!(at("\"b\""), "stream[1].name");
        assert_eq!(at("1979"), "tenant.when.at");
    }

    #[test]
    fn paths_parse_and_display() {
        let p = KeyPath::parse("stream[0].rule[12].when.user");
        assert_eq!(p.to_string(), "stream[0].rule[12].when.user");
        assert_eq!(p.0[3], Seg::Index(12));
        assert_eq!(KeyPath::default().key("tenant").to_string(), "tenant");
        assert!(Spans::parse("a = [").is_none());
    }
}
