//! A plain reference for what the engine must output, computed on a parsed
//! `serde_json::Value` with nothing shared with the engine but the meaning of a policy.
//!
//! It deliberately knows nothing of automata, streaming or bytes: a field's path is the list
//! of its decoded keys (array elements share the path of the array), rules are matched by a
//! direct recursive glob, and the precedence is re-stated from the README:
//!
//! - a rule's rank is its specificity (more named keys, then more `*`, then fewer `**`), then
//!   how protective its action is (drop > null > pseudonymize > mask > truncate > year >
//!   keep); the purpose's default ranks below every rule;
//! - the action of a field is the best-ranked rule among those that name it, unless the rule
//!   the field inherits from its container ranks higher (the root inherits the default; the
//!   root is not a field, no rule names it, not even `**`);
//! - an object or array is *opened* (rewritten member by member) when it is the root; when
//!   its action is keep or drop and some rule could name a field below it (judged on the
//!   rules, not on the data, as the streaming engine must decide when the container starts);
//!   or, for an array, when its action is a transform (each scalar element is disguised).
//!   Otherwise its action applies to it whole: keep copies it, null replaces it, drop and
//!   transforms withhold it;
//! - an opened container whose own action is not `keep` and in which nothing survives is
//!   omitted; the root is always present, a withheld root scalar becomes `null`;
//! - scalars: keep, drop, null as named; a transform of a string or number gives a string
//!   (of the decoded string, of the number's text), of `null` gives `null`, of a boolean
//!   withholds it.
//!
//! Only the transforms `truncate` and `mask` are modelled (the others need a key or dates).
//!
//! So a broad `entry.**: keep` cannot send the members of a field that `**.ssn: drop`
//! withholds, and `ssn: null` gives `null` for an object whatever other rules exist (the
//! two cases the tests at the end of `tests/properties.rs` pin down).

use std::sync::Arc;

use finalite::policy::action::{Action, Transform};
use finalite::policy::path::FieldPath;
use finalite::policy::rules::{FieldRules, Rule};
use serde_json::{Map, Value};

/// What a rule does, as the reference understands it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Act {
    Keep,
    Drop,
    Null,
    /// The first N characters.
    Truncate(usize),
    /// Every character but the last N becomes `*`.
    Mask(usize),
}

impl Act {
    /// The README's order: drop > null > pseudonymize > mask > truncate > year > keep.
    fn protection(&self) -> u8 {
        match self {
            Act::Keep => 0,
            Act::Truncate(_) => 2,
            Act::Mask(_) => 3,
            Act::Null => 5,
            Act::Drop => 6,
        }
    }

    pub fn to_engine(&self) -> Action {
        match self {
            Act::Keep => Action::Keep,
            Act::Drop => Action::Drop,
            Act::Null => Action::Null,
            Act::Truncate(n) => Action::Transform(Transform::Truncate(*n)),
            Act::Mask(n) => Action::Transform(Transform::Mask { keep_last: *n }),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    /// `*`: exactly one key.
    Any,
    /// `**`: zero or more keys.
    Deep,
}

/// A purpose's field rules: a default and `(path, action)` pairs, written as in a policy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub default: Act,
    pub rules: Vec<(String, Act)>,
}

struct RefRule {
    segments: Vec<Seg>,
    act: Act,
}

impl Policy {
    pub fn new(default: Act, rules: &[(&str, Act)]) -> Policy {
        Policy {
            default,
            rules: rules
                .iter()
                .map(|(p, a)| (p.to_string(), a.clone()))
                .collect(),
        }
    }

    /// The engine's compiled rules for this policy.
    pub fn compile(&self) -> Arc<FieldRules> {
        let rules: Vec<Rule> = self
            .rules
            .iter()
            .map(|(path, act)| Rule {
                path: FieldPath::parse(path).expect("valid path"),
                action: act.to_engine(),
            })
            .collect();
        Arc::new(FieldRules::compile(self.default.to_engine(), &rules).expect("compiles"))
    }

    /// What the filtered document must be, parsed.
    pub fn project(&self, doc: &Value) -> Value {
        let rules: Vec<RefRule> = self
            .rules
            .iter()
            .map(|(path, act)| RefRule {
                segments: parse(path),
                act: act.clone(),
            })
            .collect();
        let reference = Reference { rules: &rules };
        let mut path = Vec::new();
        match reference.value(doc, &mut path, (&self.default, DEFAULT_RANK), true) {
            Some(value) => value,
            None => Value::Null,
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "default {:?}", self.default)?;
        for (path, act) in &self.rules {
            write!(f, ", {path}: {act:?}")?;
        }
        Ok(())
    }
}

/// Unquoted paths only: `a.b`, `*`, `**`, `a[*].b`.
fn parse(path: &str) -> Vec<Seg> {
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

/// Whether `pattern` matches exactly the key sequence `path`.
fn matches(pattern: &[Seg], path: &[String]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Seg::Key(k), rest)) => path.first() == Some(k) && matches(rest, &path[1..]),
        Some((Seg::Any, rest)) => !path.is_empty() && matches(rest, &path[1..]),
        Some((Seg::Deep, rest)) => (0..=path.len()).any(|i| matches(rest, &path[i..])),
    }
}

/// Whether `pattern` matches some `path` followed by at least one more key.
fn reaches_below(pattern: &[Seg], path: &[String]) -> bool {
    if path.is_empty() {
        // Every segment, `**` included, can match one key or more.
        return !pattern.is_empty();
    }
    match pattern.split_first() {
        None => false,
        Some((Seg::Key(k), rest)) => path[0] == *k && reaches_below(rest, &path[1..]),
        Some((Seg::Any, rest)) => reaches_below(rest, &path[1..]),
        Some((Seg::Deep, rest)) => reaches_below(rest, path) || reaches_below(pattern, &path[1..]),
    }
}

/// Specificity, then protection; the default ranks below every rule.
type Rank = (usize, usize, isize, u8);
const DEFAULT_RANK: Rank = (0, 0, isize::MIN, 0);

fn rank(rule: &RefRule) -> Rank {
    let (keys, any, deep) = specificity(&rule.segments);
    (keys, any, deep, rule.act.protection())
}

fn specificity(pattern: &[Seg]) -> (usize, usize, isize) {
    let keys = pattern.iter().filter(|s| matches!(s, Seg::Key(_))).count();
    let any = pattern.iter().filter(|s| **s == Seg::Any).count();
    let deep = pattern.iter().filter(|s| **s == Seg::Deep).count();
    (keys, any, -(deep as isize))
}

struct Reference<'r> {
    rules: &'r [RefRule],
}

impl Reference<'_> {
    /// The best-ranked rule that names the field at `path` (never the root), with its rank.
    fn own(&self, path: &[String]) -> Option<(&Act, Rank)> {
        if path.is_empty() {
            return None;
        }
        self.rules
            .iter()
            .filter(|r| matches(&r.segments, path))
            .map(|r| (&r.act, rank(r)))
            .max_by_key(|(_, rank)| *rank)
    }

    fn opened(&self, path: &[String]) -> bool {
        self.rules.iter().any(|r| reaches_below(&r.segments, path))
    }

    /// The value at `path` once filtered, `None` if withheld. `inherited` is the action of
    /// the containing field; `root` is true for the document's root value only.
    fn value(
        &self,
        value: &Value,
        path: &mut Vec<String>,
        inherited: (&Act, Rank),
        root: bool,
    ) -> Option<Value> {
        let (act, act_rank) = match self.own(path) {
            Some((own, rank)) if rank >= inherited.1 => (own.clone(), rank),
            _ => (inherited.0.clone(), inherited.1),
        };
        let opened = root
            || match (&act, value) {
                (Act::Null, _) => false,
                (Act::Truncate(_) | Act::Mask(_), Value::Array(_)) => true,
                (Act::Truncate(_) | Act::Mask(_), _) => false,
                (Act::Keep | Act::Drop, _) => self.opened(path),
            };
        match value {
            Value::Object(_) | Value::Array(_) if opened => {
                let result = match value {
                    Value::Object(map) => {
                        let mut out = Map::new();
                        for (key, member) in map {
                            path.push(key.clone());
                            let filtered = self.value(member, path, (&act, act_rank), false);
                            path.pop();
                            if let Some(v) = filtered {
                                out.insert(key.clone(), v);
                            }
                        }
                        Value::Object(out)
                    }
                    Value::Array(items) => Value::Array(
                        items
                            .iter()
                            // Arrays are transparent: an element is the field that holds it.
                            .filter_map(|item| self.value(item, path, (&act, act_rank), false))
                            .collect(),
                    ),
                    _ => unreachable!(),
                };
                let empty = match &result {
                    Value::Object(m) => m.is_empty(),
                    Value::Array(a) => a.is_empty(),
                    _ => false,
                };
                if empty && act != Act::Keep && !root {
                    None
                } else {
                    Some(result)
                }
            }
            Value::Object(_) | Value::Array(_) => match act {
                Act::Keep => Some(value.clone()),
                Act::Null => Some(Value::Null),
                Act::Drop | Act::Truncate(_) | Act::Mask(_) => None,
            },
            scalar => {
                let withheld = if root { Some(Value::Null) } else { None };
                match act {
                    Act::Keep => Some(scalar.clone()),
                    Act::Null => Some(Value::Null),
                    Act::Drop => withheld,
                    Act::Truncate(_) | Act::Mask(_) => {
                        let text = match scalar {
                            Value::String(s) => s.clone(),
                            Value::Number(n) => n.to_string(),
                            Value::Null => return Some(Value::Null),
                            _ => return withheld,
                        };
                        Some(Value::String(disguise(&act, &text)))
                    }
                }
            }
        }
    }
}

fn disguise(act: &Act, text: &str) -> String {
    match act {
        Act::Truncate(n) => text.chars().take(*n).collect(),
        Act::Mask(n) => {
            let count = text.chars().count();
            text.chars()
                .enumerate()
                .map(|(i, c)| if i + n < count { '*' } else { c })
                .collect()
        }
        _ => unreachable!(),
    }
}
