//! The reference model of the engine: a whole-document projection written plainly on
//! serde_json, which the property tests, the JSONTestSuite conformance test and the
//! differential fuzz target compare the streaming engine with.
//!
//! It parses the document into a tree that keeps what the engine keeps and serde_json's
//! `Value` would lose: members in document order *with their duplicates* (the engine treats
//! every duplicate alike and writes each one it keeps), numbers exactly as written (a
//! transform of a number works on its text, and kept numbers must not be reformatted). Rules
//! are matched by a direct reading of the path syntax (no automaton), on paths given by
//! their meaning (a list of [`Seg`]) rather than parsed by finalite. Only the scalar
//! transforms themselves are finalite's (`policy::transform::apply`): the comparison is
//! about structure, streaming and precedence, the transforms have their own unit tests.
//!
//! The semantics (README, "Field paths and actions"; src/json/filter/):
//! - a field's action: the most specific rule naming it (at equal specificity the most
//!   protective), unless the action inherited from its parent ranks higher; otherwise the
//!   inherited action; the root gets the purpose's default; array elements are the field
//!   that holds the array;
//! - `keep` of a container no rule reaches inside copies it whole; `null` makes it `null`;
//!   `drop` withholds it; a transform withholds an object and disguises each scalar of an
//!   array;
//! - a container some rule reaches inside is rewritten member by member; written when its
//!   action is `keep` (even emptied) or when a member survives; the root is always written;
//! - a scalar: `keep` as is, `drop` withheld (at the root: `null`), `null`, a transform on a
//!   string or number gives a string (a transform that fails refuses the document), on
//!   `null` stays `null`, on a boolean withholds it (at the root: `null`).
//!
//! So a broad `entry.**: keep` cannot send the members of a field that `**.ssn: drop`
//! withholds, and `ssn: null` gives `null` for an object whatever other rules exist.
//!
//! Refused: what serde_json refuses, and nesting deeper than the depth limit.

use std::fmt;

use std::sync::Arc;

use finalite::policy::action::{Action, Transform};
use finalite::policy::path::FieldPath;
use finalite::policy::rules::{FieldRules, Rule, TypeRules as EngineTypeRules};
use finalite::policy::transform::{self, TransformContext};
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{json, Value};

/// A path segment, by its meaning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(String),
    /// `*`: exactly one key.
    Any,
    /// `**`: zero or more keys.
    Deep,
}

/// Reads a plain path (`a.b`, `*`, `**`, `a[*].b`; no quoted segment) independently of
/// finalite's parser.
pub fn plain_path(path: &str) -> Vec<Seg> {
    path.split('.')
        .map(|s| {
            let s = s.trim_end_matches("[*]");
            assert!(
                !s.is_empty() && !s.contains(['"', '[', ']']),
                "the reference reads plain paths only: {path:?}"
            );
            match s {
                "*" => Seg::Any,
                "**" => Seg::Deep,
                key => Seg::Key(key.to_string()),
            }
        })
        .collect()
}

/// What a rule does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    Keep,
    Drop,
    Null,
    Year,
    Truncate(usize),
    Mask(usize),
    Pseudonymize,
}

impl Act {
    /// As written in a configuration's `fields`.
    pub fn to_json(&self) -> Value {
        match self {
            Act::Keep => json!("keep"),
            Act::Drop => json!("drop"),
            Act::Null => json!("null"),
            Act::Year => json!("year"),
            Act::Truncate(n) => json!({ "truncate": n }),
            Act::Mask(n) => json!({"mask": {"keep_last": n}}),
            Act::Pseudonymize => json!("pseudonymize"),
        }
    }

    /// The engine's action.
    pub fn to_engine(&self) -> Action {
        match self {
            Act::Keep => Action::Keep,
            Act::Drop => Action::Drop,
            Act::Null => Action::Null,
            Act::Year => Action::Transform(Transform::Year),
            Act::Truncate(n) => Action::Transform(Transform::Truncate(*n)),
            Act::Mask(n) => Action::Transform(Transform::Mask { keep_last: *n }),
            Act::Pseudonymize => Action::Transform(Transform::Pseudonymize),
        }
    }
}

/// One rule: its path as written in a configuration, the same path by its meaning, and its
/// action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRule {
    pub text: String,
    pub segments: Vec<Seg>,
    pub act: Act,
}

/// A purpose's body rules: its default (`Keep` or `Drop`) and its rules, in the order of
/// the configuration's `fields` (among equal ranks, the last one wins, as in finalite).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub default: Act,
    pub rules: Vec<PolicyRule>,
    /// `limits.max_depth`.
    pub max_depth: u32,
    /// Typed rules: the policy's `type_key` and the purpose's `types`.
    pub typing: Option<Typing>,
}

/// Typed rules, as the reference reads them:
/// - an object the rules go into (the root, a kept one, or one some rule reaches inside)
///   whose first member named `key` is a string has that type; a first type member that is
///   not a string refuses the document;
/// - an object of a listed type at the root's place (the root, an element of a root
///   array) or where the enclosing rules keep it is decided by its type's rules (relative
///   paths, with the purpose's rules that start with `**`), keeps its type member whatever
///   they say, and is refused if it has a second type member; otherwise it is withheld
///   (the root becomes `null`);
/// - a kept container is always gone into (a typed object inside is never sent whole).
///
/// Not modelled: `limits.max_type_lookahead_bytes` (the tests that compare keep documents
/// far below it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typing {
    pub key: String,
    pub types: Vec<TypeRules>,
}

/// One type's rules as [`Policy::typed`] takes them: name, default, plain paths.
pub type TypeSpec<'a> = (&'a str, Act, &'a [(&'a str, Act)]);

/// The rules of one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeRules {
    pub name: String,
    pub default: Act,
    pub rules: Vec<PolicyRule>,
}

/// The depth limit of a policy made by [`Policy::new`] (`limits.max_depth`'s default).
pub const DEFAULT_MAX_DEPTH: u32 = 64;

impl Policy {
    /// A policy of plain paths (see [`plain_path`]).
    pub fn new(default: Act, rules: &[(&str, Act)]) -> Policy {
        let mut policy = Policy {
            default,
            rules: Vec::new(),
            max_depth: DEFAULT_MAX_DEPTH,
            typing: None,
        };
        for (path, act) in rules {
            policy.push(path, act.clone());
        }
        policy
    }

    /// Adds a rule of a plain path.
    pub fn push(&mut self, path: &str, act: Act) {
        self.rules.push(PolicyRule {
            text: path.to_string(),
            segments: plain_path(path),
            act,
        });
    }

    /// Adds typed rules: `key` is the type member, each type has a default and plain paths.
    pub fn typed(mut self, key: &str, types: &[TypeSpec]) -> Policy {
        self.typing = Some(Typing {
            key: key.to_string(),
            types: types
                .iter()
                .map(|(name, default, rules)| TypeRules {
                    name: name.to_string(),
                    default: default.clone(),
                    rules: rules
                        .iter()
                        .map(|(path, act)| PolicyRule {
                            text: path.to_string(),
                            segments: plain_path(path),
                            act: act.clone(),
                        })
                        .collect(),
                })
                .collect(),
        });
        self
    }

    /// The engine's compiled rules for this policy, as the proxy compiles `fields` (and
    /// `types`, with a lookahead limit of 1 MiB).
    pub fn compile(&self) -> Arc<FieldRules> {
        let engine_rules = |rules: &[PolicyRule]| -> Vec<Rule> {
            rules
                .iter()
                .map(|rule| Rule {
                    path: FieldPath::parse(&rule.text).expect("valid path"),
                    action: rule.act.to_engine(),
                })
                .collect()
        };
        let rules = engine_rules(&self.rules);
        let default = self.default.to_engine();
        Arc::new(match &self.typing {
            None => FieldRules::compile(default, &rules).expect("compiles"),
            Some(typing) => {
                let types: Vec<EngineTypeRules> = typing
                    .types
                    .iter()
                    .map(|t| EngineTypeRules {
                        name: t.name.clone(),
                        default: t.default.to_engine(),
                        rules: engine_rules(&t.rules),
                    })
                    .collect();
                FieldRules::compile_typed(default, &rules, &typing.key, &types, 1 << 20)
                    .expect("compiles")
            }
        })
    }

    /// The reference projection of one document: `Err` when the engine must refuse it.
    pub fn project(&self, text: &[u8], context: &TransformContext) -> Result<J, Refused> {
        let value = parse(text).map_err(Refused)?;
        if value.depth() > self.max_depth {
            return Err(Refused(format!("deeper than {}", self.max_depth)));
        }
        fn set(rules: &[PolicyRule]) -> Vec<(&[Seg], &Act)> {
            rules.iter().map(|r| (&r.segments[..], &r.act)).collect()
        }
        let mut sets = vec![set(&self.rules)];
        if let Some(typing) = &self.typing {
            let reaching: Vec<(&[Seg], &Act)> = set(&self.rules)
                .into_iter()
                .filter(|(segments, _)| segments.first() == Some(&Seg::Deep))
                .collect();
            for t in &typing.types {
                let mut rules = set(&t.rules);
                rules.extend(reaching.iter().copied());
                sets.push(rules);
            }
        }
        let rules = Rules {
            sets,
            typing: self.typing.as_ref(),
            context: context.clone(),
        };
        let at = At {
            root: true,
            at_root: true,
            set: 0,
        };
        let projected = rules.project(&value, &mut Vec::new(), &self.default, DEFAULT_RANK, at)?;
        Ok(projected.expect("the root is always written"))
    }

    /// NDJSON: each line a document, blank lines (spaces, tabs, CR) kept blank (`None`).
    pub fn project_lines(
        &self,
        body: &[u8],
        context: &TransformContext,
    ) -> Result<Vec<Option<J>>, Refused> {
        body.split(|&b| b == b'\n')
            .map(|line| {
                if line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r')) {
                    Ok(None)
                } else {
                    self.project(line, context).map(Some)
                }
            })
            .collect()
    }

    /// [`Policy::project`] of a `serde_json::Value` (a valid document), without a
    /// pseudonymisation key, as a `Value`.
    pub fn project_value(&self, doc: &Value) -> Value {
        let text = serde_json::to_vec(doc).expect("a Value serialises");
        let projected = self
            .project(&text, &TransformContext::default())
            .unwrap_or_else(|refused| panic!("the reference refuses {doc}: {}", refused.0));
        serde_json::from_str(&projected.to_text()).expect("the projection is JSON")
    }
}

impl fmt::Display for Policy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "default {:?}", self.default)?;
        for rule in &self.rules {
            write!(f, ", {}: {:?}", rule.text, rule.act)?;
        }
        Ok(())
    }
}

/// A JSON value as the comparison needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum J {
    Null,
    Bool(bool),
    /// As written.
    Num(String),
    Str(String),
    Arr(Vec<J>),
    /// In document order, duplicates included.
    Obj(Vec<(String, J)>),
}

/// Deepest nesting the tree is built for; every `max_depth` tried is lower.
const MAX_TREE_DEPTH: u32 = 128;

/// Parses one JSON text strictly (serde_json), surrounding whitespace allowed.
///
/// Numbers are kept exactly as written, which `arbitrary_precision` alone does not do (it
/// writes `1E400` as `1e+400`): every value is first read as a `RawValue` (its exact text),
/// then taken apart one level at a time. Strings and keys are decoded by serde_json.
pub fn parse(text: &[u8]) -> Result<J, String> {
    let raw: Box<RawValue> = serde_json::from_slice(text).map_err(|e| e.to_string())?;
    from_raw(&raw, 0)
}

fn from_raw(raw: &RawValue, depth: u32) -> Result<J, String> {
    if depth > MAX_TREE_DEPTH {
        return Err("too deep for the reference".into());
    }
    let text = raw.get();
    let error = |e: serde_json::Error| e.to_string();
    Ok(match text.as_bytes()[0] {
        b'{' => {
            let members: Members = serde_json::from_str(text).map_err(error)?;
            let mut out = Vec::new();
            for (key, value) in members.0 {
                out.push((key, from_raw(&value, depth + 1)?));
            }
            J::Obj(out)
        }
        b'[' => {
            let items: Vec<Box<RawValue>> = serde_json::from_str(text).map_err(error)?;
            let mut out = Vec::new();
            for item in items {
                out.push(from_raw(&item, depth + 1)?);
            }
            J::Arr(out)
        }
        b'"' => J::Str(serde_json::from_str(text).map_err(error)?),
        b't' => J::Bool(true),
        b'f' => J::Bool(false),
        b'n' => J::Null,
        _ => J::Num(text.to_string()),
    })
}

/// An object's members in document order, duplicates included.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Members, D::Error> {
        deserializer.deserialize_map(MembersVisitor)
    }
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Members;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
        let mut members = Vec::new();
        while let Some(member) = map.next_entry()? {
            members.push(member);
        }
        Ok(Members(members))
    }
}

impl J {
    /// The value as compact JSON text (strings escaped by serde_json, numbers as written).
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            J::Null => out.push_str("null"),
            J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            J::Num(n) => out.push_str(n),
            J::Str(s) => out.push_str(&serde_json::to_string(s).expect("a string serialises")),
            J::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            J::Obj(members) => {
                out.push('{');
                for (i, (key, value)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::to_string(key).expect("a key serialises"));
                    out.push(':');
                    value.write(out);
                }
                out.push('}');
            }
        }
    }

    /// Nesting of containers (a scalar is 0).
    fn depth(&self) -> u32 {
        match self {
            J::Arr(items) => 1 + items.iter().map(J::depth).max().unwrap_or(0),
            J::Obj(members) => 1 + members.iter().map(|(_, v)| v.depth()).max().unwrap_or(0),
            _ => 0,
        }
    }
}

/// Specificity (named keys, `*`, fewer `**`), then protection.
type Rank = (usize, usize, isize, u8);
const DEFAULT_RANK: Rank = (0, 0, isize::MIN, 0);
/// The type member of a typed object: above every rule.
const TYPE_MEMBER_RANK: Rank = (usize::MAX, 0, 0, 0);

fn protection(action: &Act) -> u8 {
    match action {
        Act::Keep => 0,
        Act::Year => 1,
        Act::Truncate(_) => 2,
        Act::Mask(_) => 3,
        Act::Pseudonymize => 4,
        Act::Null => 5,
        Act::Drop => 6,
    }
}

fn rank(segments: &[Seg], action: &Act) -> Rank {
    let keys = segments.iter().filter(|s| matches!(s, Seg::Key(_))).count();
    let any = segments.iter().filter(|s| **s == Seg::Any).count();
    let deep = segments.iter().filter(|s| **s == Seg::Deep).count();
    (keys, any, -(deep as isize), protection(action))
}

/// Whether `segments` match exactly the keys of `path`.
fn matches(segments: &[Seg], path: &[String]) -> bool {
    match segments.split_first() {
        None => path.is_empty(),
        Some((Seg::Deep, rest)) => {
            matches(rest, path) || (!path.is_empty() && matches(segments, &path[1..]))
        }
        Some((Seg::Any, rest)) => !path.is_empty() && matches(rest, &path[1..]),
        Some((Seg::Key(k), rest)) => {
            path.first().is_some_and(|p| p == k) && matches(rest, &path[1..])
        }
    }
}

/// Whether `segments` match some strict extension of `path` (a rule may apply below).
fn reaches_below(segments: &[Seg], path: &[String]) -> bool {
    match segments.split_first() {
        None => false,
        _ if path.is_empty() => true,
        Some((Seg::Deep, rest)) => reaches_below(rest, path) || reaches_below(segments, &path[1..]),
        Some((Seg::Any, rest)) => reaches_below(rest, &path[1..]),
        Some((Seg::Key(k), rest)) => *k == path[0] && reaches_below(rest, &path[1..]),
    }
}

struct Rules<'c> {
    /// The purpose's rules (0), then each type's (`1 + i` for `typing.types[i]`).
    sets: Vec<Vec<(&'c [Seg], &'c Act)>>,
    typing: Option<&'c Typing>,
    context: TransformContext,
}

/// Where a value stands, for typed rules.
#[derive(Debug, Clone, Copy)]
struct At {
    root: bool,
    /// The root, or an element of a root array.
    at_root: bool,
    /// The rule set in force.
    set: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Refused(pub String);

impl<'c> Rules<'c> {
    /// The rule naming this field: highest rank, the last of equals (finalite's order).
    fn own(&self, set: usize, path: &[String]) -> Option<(&'c Act, Rank)> {
        if let Some(typing) = self.typing.filter(|_| set > 0) {
            if path.len() == 1 && path[0] == typing.key {
                return Some((&Act::Keep, TYPE_MEMBER_RANK));
            }
        }
        let mut best: Option<(&'c Act, Rank)> = None;
        for (segments, action) in &self.sets[set] {
            if matches(segments, path) {
                let r = rank(segments, action);
                if best.is_none_or(|(_, b)| r >= b) {
                    best = Some((action, r));
                }
            }
        }
        best
    }

    fn may_descend(&self, set: usize, path: &[String]) -> bool {
        self.sets[set].iter().any(|(s, _)| reaches_below(s, path))
    }

    /// An object's type, under typed rules: its first type member's value.
    fn type_of<'v>(&self, members: &'v [(String, J)]) -> Result<Option<&'v str>, Refused> {
        let Some(typing) = self.typing else {
            return Ok(None);
        };
        match members.iter().find(|(key, _)| *key == typing.key) {
            None => Ok(None),
            Some((_, J::Str(name))) => Ok(Some(name)),
            Some(_) => Err(Refused("a type member that is not a string".into())),
        }
    }

    fn project(
        &self,
        value: &J,
        path: &mut Vec<String>,
        action: &Act,
        rank: Rank,
        at: At,
    ) -> Result<Option<J>, Refused> {
        let root = at.root;
        match value {
            J::Arr(_) | J::Obj(_) => {
                let array = matches!(value, J::Arr(_));
                let descend = root
                    || match action {
                        Act::Null => false,
                        Act::Keep => self.typing.is_some() || self.may_descend(at.set, path),
                        Act::Drop => self.may_descend(at.set, path),
                        _ => array,
                    };
                if !descend {
                    return Ok(match action {
                        Act::Keep => Some(value.clone()),
                        Act::Null => Some(J::Null),
                        _ => None,
                    });
                }
                if let J::Obj(members) = value {
                    if let Some(name) = self.type_of(members)? {
                        return self.project_typed(members, name, action, at);
                    }
                }
                let projected = match value {
                    J::Arr(items) => {
                        let mut out = Vec::new();
                        let element = At { root: false, ..at };
                        for item in items {
                            out.extend(self.project(item, path, action, rank, element)?);
                        }
                        J::Arr(out)
                    }
                    J::Obj(members) => {
                        let mut out = Vec::new();
                        let member_at = At {
                            root: false,
                            at_root: false,
                            set: at.set,
                        };
                        for (key, member) in members {
                            path.push(key.clone());
                            let (a, r) = match self.own(at.set, path) {
                                Some((a, r)) if r >= rank => (a, r),
                                _ => (action, rank),
                            };
                            let result = self.project(member, path, a, r, member_at);
                            path.pop();
                            if let Some(kept) = result? {
                                out.push((key.clone(), kept));
                            }
                        }
                        J::Obj(out)
                    }
                    _ => unreachable!(),
                };
                let empty = matches!(&projected, J::Arr(v) if v.is_empty())
                    || matches!(&projected, J::Obj(v) if v.is_empty());
                Ok((root || *action == Act::Keep || !empty).then_some(projected))
            }
            scalar => Ok(match action {
                Act::Keep => Some(scalar.clone()),
                Act::Drop => root.then_some(J::Null),
                Act::Null => Some(J::Null),
                _ => match scalar {
                    J::Str(s) => Some(self.transform(action, s.as_bytes(), true)?),
                    J::Num(n) => Some(self.transform(action, n.as_bytes(), false)?),
                    J::Null => Some(J::Null),
                    _ => root.then_some(J::Null),
                },
            }),
        }
    }

    /// An object of type `name`, which the rules go into.
    fn project_typed(
        &self,
        members: &[(String, J)],
        name: &str,
        action: &Act,
        at: At,
    ) -> Result<Option<J>, Refused> {
        let typing = self.typing.expect("typed rules");
        let listed = typing.types.iter().position(|t| t.name == name);
        let Some(index) = listed.filter(|_| at.at_root || *action == Act::Keep) else {
            return Ok(at.root.then_some(J::Null));
        };
        if members.iter().filter(|(key, _)| *key == typing.key).count() > 1 {
            return Err(Refused("two type members".into()));
        }
        let set = 1 + index;
        let default = &typing.types[index].default;
        let mut out = Vec::new();
        let mut path = Vec::new();
        let member_at = At {
            root: false,
            at_root: false,
            set,
        };
        for (key, member) in members {
            path.push(key.clone());
            let (a, r) = match self.own(set, &path) {
                Some((a, r)) => (a, r),
                None => (default, DEFAULT_RANK),
            };
            let result = self.project(member, &mut path, a, r, member_at);
            path.pop();
            if let Some(kept) = result? {
                out.push((key.clone(), kept));
            }
        }
        Ok(Some(J::Obj(out)))
    }

    fn transform(&self, action: &Act, value: &[u8], string: bool) -> Result<J, Refused> {
        let t = match action {
            Act::Year => Transform::Year,
            Act::Truncate(n) => Transform::Truncate(*n),
            Act::Mask(n) => Transform::Mask { keep_last: *n },
            Act::Pseudonymize => Transform::Pseudonymize,
            _ => unreachable!("not a transform"),
        };
        let text = transform::apply(&t, value, string, &self.context).map_err(Refused)?;
        Ok(parse(&text).expect("a transform writes a JSON string"))
    }
}
