//! Field paths (`listeners[0].routes[1].upstream`) and where they are in the YAML source.
//!
//! serde gives a line and column only for errors it finds while deserializing. Errors that
//! validation finds later (an unknown upstream, a duplicate name) are located here instead, by
//! walking the parser's events once and remembering where each node starts.

use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser};

/// A path from the document root to one value: map keys and sequence indices.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct FieldPath(Vec<Segment>);

/// One step of a [`FieldPath`].
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    /// The value under this key of a mapping.
    Key(String),
    /// This item of a sequence.
    Index(usize),
}

impl FieldPath {
    /// The document itself.
    pub fn root() -> Self {
        Self::default()
    }

    /// The value under `key` in the mapping at this path.
    pub fn key(&self, key: &str) -> Self {
        self.child(Segment::Key(key.to_owned()))
    }

    /// Item `index` of the sequence at this path.
    pub fn index(&self, index: usize) -> Self {
        self.child(Segment::Index(index))
    }

    fn child(&self, segment: Segment) -> Self {
        let mut segments = self.0.clone();
        segments.push(segment);
        Self(segments)
    }

    /// The steps from the root.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// The first `len` segments of this path.
    pub fn prefix(&self, len: usize) -> Self {
        Self(self.0[..len.min(self.0.len())].to_vec())
    }
}

impl From<&serde_path_to_error::Path> for FieldPath {
    fn from(path: &serde_path_to_error::Path) -> Self {
        use serde_path_to_error::Segment as S;
        Self(
            path.iter()
                .map(|segment| match segment {
                    S::Seq { index } => Segment::Index(*index),
                    S::Map { key } => Segment::Key(key.clone()),
                    S::Enum { variant } => Segment::Key(variant.clone()),
                    S::Unknown => Segment::Key("?".to_owned()),
                })
                .collect(),
        )
    }
}

/// The same syntax serde_norway uses in its messages, so that its prefixes can be recognised.
impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

/// A position in the source, both 1-based, the column counted in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Mark {
    pub line: usize,
    pub column: usize,
}

/// Where each node of the first YAML document starts.
#[derive(Debug, Default)]
pub struct Locator {
    nodes: HashMap<Vec<Segment>, Node>,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    /// The key, for a node that is a value in a mapping.
    key: Option<Mark>,
    value: Mark,
}

/// A collection being walked, and the segment of the child being read.
enum Frame {
    Seq {
        index: usize,
    },
    /// `key` is `None` while the next node is a key.
    Map {
        key: Option<(Segment, Mark)>,
    },
}

impl Locator {
    /// Walks `src` once. Never fails: on a syntax error it keeps what it found before it
    /// (serde will have reported the syntax error already).
    pub fn new(src: &str) -> Self {
        let mut nodes = HashMap::new();
        let mut frames: Vec<Frame> = Vec::new();
        let mut events = Parser::new_from_str(src);
        while let Some(Ok((event, span))) = events.next() {
            let start = Mark {
                line: span.start.line(),
                column: span.start.col() + 1,
            };
            match event {
                Event::Scalar(..)
                | Event::Alias(..)
                | Event::SequenceStart(..)
                | Event::MappingStart(..) => {
                    if let Some(Frame::Map { key: key @ None }) = frames.last_mut() {
                        let segment = match event {
                            Event::Scalar(text, ..) => Segment::Key(text.into_owned()),
                            // Keys that are aliases or collections never name one of our
                            // fields; skip them, but keep the walk in step.
                            Event::Alias(..) => Segment::Key("?".to_owned()),
                            _ if skip_collection(&mut events) => Segment::Key("?".to_owned()),
                            _ => break,
                        };
                        *key = Some((segment, start));
                        continue;
                    }
                    let mut key = None;
                    let path = frames
                        .iter()
                        .map(|frame| match frame {
                            Frame::Seq { index } => {
                                key = None;
                                Segment::Index(*index)
                            }
                            Frame::Map { key: entry } => {
                                let (segment, mark) = entry
                                    .clone()
                                    .unwrap_or((Segment::Key("?".to_owned()), start));
                                key = Some(mark);
                                segment
                            }
                        })
                        .collect();
                    // A duplicate key overwrites: serde keeps the last value too.
                    nodes.insert(path, Node { key, value: start });
                    match event {
                        Event::SequenceStart(..) => frames.push(Frame::Seq { index: 0 }),
                        Event::MappingStart(..) => frames.push(Frame::Map { key: None }),
                        _ => value_done(&mut frames),
                    }
                }
                Event::SequenceEnd | Event::MappingEnd => {
                    frames.pop();
                    value_done(&mut frames);
                }
                Event::DocumentEnd => break,
                _ => {}
            }
        }
        Self { nodes }
    }

    /// Where the key of the value at `path` is; for a sequence item, where the item starts.
    pub fn key(&self, path: &FieldPath) -> Option<Mark> {
        self.nodes
            .get(path.segments())
            .map(|node| node.key.unwrap_or(node.value))
    }

    /// Where the value at `path` starts or, if it is not in the source (a field left out, or a
    /// value that came through an alias), where its nearest ancestor that is starts.
    pub fn nearest(&self, path: &FieldPath) -> Option<Mark> {
        (0..=path.segments().len())
            .rev()
            .find_map(|len| self.nodes.get(&path.segments()[..len]))
            .map(|node| node.value)
    }
}

fn value_done(frames: &mut [Frame]) {
    match frames.last_mut() {
        Some(Frame::Seq { index }) => *index += 1,
        Some(Frame::Map { key }) => *key = None,
        None => {}
    }
}

/// Consumes events up to the end of a collection whose start was just read.
/// Returns false if the source ended first.
fn skip_collection<'a>(events: &mut Parser<'a, saphyr_parser::StrInput<'a>>) -> bool {
    let mut depth = 1usize;
    while let Some(Ok((event, _))) = events.next() {
        match event {
            Event::SequenceStart(..) | Event::MappingStart(..) => depth += 1,
            Event::SequenceEnd | Event::MappingEnd => {
                depth -= 1;
                if depth == 0 {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Option<Mark> {
        Some(Mark { line, column })
    }

    #[test]
    fn finds_block_and_flow_nodes() {
        let src = "\
a:
  - name: x
    list: [1, {k: v}]
  - 'quoted'
b: {c: d}
";
        let loc = Locator::new(src);
        let root = FieldPath::root();
        assert_eq!(loc.nearest(&root.key("a")), at(2, 3));
        assert_eq!(loc.nearest(&root.key("a").index(0).key("name")), at(2, 11));
        assert_eq!(
            loc.nearest(&root.key("a").index(0).key("list").index(1).key("k")),
            at(3, 19)
        );
        assert_eq!(loc.nearest(&root.key("a").index(1)), at(4, 5));
        assert_eq!(loc.nearest(&root.key("b").key("c")), at(5, 8));
        assert_eq!(loc.key(&root.key("a").index(0).key("name")), at(2, 5));
        assert_eq!(loc.key(&root.key("a").index(1)), at(4, 5));
        assert_eq!(loc.key(&root.key("b").key("c")), at(5, 5));
        assert_eq!(
            loc.nearest(&root.key("a").index(0).key("missing")),
            at(2, 5)
        );
    }

    #[test]
    fn skips_complex_keys_and_keeps_the_last_duplicate() {
        let src = "? [x, y]\n: 1\nk: first\nk: second\nz: 2\n";
        let loc = Locator::new(src);
        assert_eq!(loc.nearest(&FieldPath::root().key("k")), at(4, 4));
        assert_eq!(loc.nearest(&FieldPath::root().key("z")), at(5, 4));
    }

    #[test]
    fn keeps_what_it_found_before_a_syntax_error() {
        let loc = Locator::new("a: 1\nb: [\n");
        assert_eq!(loc.nearest(&FieldPath::root().key("a")), at(1, 4));
    }

    #[test]
    fn displays_like_serde_norway() {
        let path = FieldPath::root()
            .key("listeners")
            .index(0)
            .key("routes")
            .index(1)
            .key("upstream");
        assert_eq!(path.to_string(), "listeners[0].routes[1].upstream");
        assert_eq!(FieldPath::root().to_string(), "");
    }
}
