//! The input of `engine_differential`: a fixed header that picks a policy from a small
//! vocabulary, the framing, the depth limit and the chunk sizes, then the document.
//!
//! ```text
//! byte 0      bit 0: default keep (else drop); bit 1: NDJSON (else one document);
//!             bits 2-4: max_depth, an index into MAX_DEPTHS; bit 5: typed rules (the
//!             rules are those of type `Patient`, bit 6 its default keep; type `Bundle`
//!             keeps everything; `**.ssn` drops outside and inside typed objects)
//! bytes 1-4   chunk sizes, used in turn (0 writes an empty chunk); all 0: one chunk
//! byte 5      number of rules, modulo 5
//! bytes 6-13  four rules: (index into PATHS, index into ACTIONS), each modulo its length
//! bytes 14-   the document
//! ```
//!
//! `fuzz/seeds.py` writes seed inputs in this format.

use finalite_test_support::reference::{self, Policy, PolicyRule, TypeRules, Typing};
use serde_json::{json, Map};

pub use finalite_test_support::reference::Act;

pub const HEADER: usize = 14;

pub const MAX_DEPTHS: [u32; 8] = [1, 2, 3, 4, 6, 16, 64, 64];

/// A path segment, as the reference reads it (independently of finalite's path parser).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    Key(&'static str),
    Any,
    Deep,
}

impl Seg {
    fn to_reference(&self) -> reference::Seg {
        match self {
            Seg::Key(key) => reference::Seg::Key(key.to_string()),
            Seg::Any => reference::Seg::Any,
            Seg::Deep => reference::Seg::Deep,
        }
    }
}

use Seg::{Any, Deep, Key};

/// Field paths as written in the configuration, with their meaning.
pub const PATHS: [(&str, &[Seg]); 24] = [
    ("a", &[Key("a")]),
    ("b", &[Key("b")]),
    ("a.b", &[Key("a"), Key("b")]),
    ("*", &[Any]),
    ("**", &[Deep]),
    ("**.ssn", &[Deep, Key("ssn")]),
    ("*.id", &[Any, Key("id")]),
    ("a.*", &[Key("a"), Any]),
    ("a.**", &[Key("a"), Deep]),
    ("\"a.b\"", &[Key("a.b")]),
    ("id", &[Key("id")]),
    ("café", &[Key("café")]),
    ("**.a.b", &[Deep, Key("a"), Key("b")]),
    ("*.*", &[Any, Any]),
    (
        "entry.resource.id",
        &[Key("entry"), Key("resource"), Key("id")],
    ),
    ("ssn", &[Key("ssn")]),
    ("b.**.a", &[Key("b"), Deep, Key("a")]),
    ("**.b.**", &[Deep, Key("b"), Deep]),
    ("a[*].b", &[Key("a"), Key("b")]),
    ("\"\\\"\"", &[Key("\"")]),
    ("**.*", &[Deep, Any]),
    ("\"a.b\".c", &[Key("a.b"), Key("c")]),
    ("entry.**", &[Key("entry"), Deep]),
    ("a.b.c", &[Key("a"), Key("b"), Key("c")]),
];

pub const ACTIONS: [Act; 9] = [
    Act::Keep,
    Act::Drop,
    Act::Null,
    Act::Year,
    Act::Truncate(2),
    Act::Truncate(1),
    Act::Mask(1),
    Act::Mask(0),
    Act::Pseudonymize,
];

/// One decoded input.
#[derive(Debug, Clone)]
pub struct Case<'a> {
    pub default_keep: bool,
    /// Typed rules: the rules are type `Patient`'s.
    pub typed: bool,
    /// Type `Patient`'s default keep.
    pub type_default_keep: bool,
    pub lines: bool,
    pub max_depth: u32,
    pub chunks: [usize; 4],
    /// Path index → action, one per path (a later rule on the same path replaces an
    /// earlier one, as a JSON object's duplicate key would).
    pub rules: Vec<(usize, Act)>,
    pub document: &'a [u8],
}

/// The pseudonymisation key every case runs with (the VM's environment).
pub const KEY: &str = "0123456789abcdef0123456789abcdef";
/// The reuser; pseudonyms are per client.
pub const CLIENT: &str = "fuzz-client";

impl<'a> Case<'a> {
    pub fn decode(data: &'a [u8]) -> Option<Case<'a>> {
        if data.len() < HEADER {
            return None;
        }
        let flags = data[0];
        let count = (data[5] % 5) as usize;
        let mut rules: Vec<(usize, Act)> = Vec::new();
        for i in 0..count {
            let path = data[6 + 2 * i] as usize % PATHS.len();
            let action = ACTIONS[data[7 + 2 * i] as usize % ACTIONS.len()].clone();
            rules.retain(|(p, _)| *p != path);
            rules.push((path, action));
        }
        // In the order of the configuration's `fields` (finalite reads it into a sorted map).
        rules.sort_by_key(|(p, _)| PATHS[*p].0);
        Some(Case {
            default_keep: flags & 1 == 1,
            typed: flags & 0x20 != 0,
            type_default_keep: flags & 0x40 != 0,
            lines: flags & 2 == 2,
            max_depth: MAX_DEPTHS[((flags >> 2) & 7) as usize],
            chunks: [
                data[1] as usize,
                data[2] as usize,
                data[3] as usize,
                data[4] as usize,
            ],
            rules,
            document: &data[HEADER..],
        })
    }

    /// The configuration: one open policy `p`, one purpose `f`.
    pub fn configuration(&self) -> Vec<u8> {
        let mut fields = Map::new();
        for (path, action) in &self.rules {
            fields.insert(PATHS[*path].0.to_string(), action.to_json());
        }
        let keep_or_drop = |keep: bool| if keep { "keep" } else { "drop" };
        let purpose = if self.typed {
            json!({"default": keep_or_drop(self.default_keep), "fields": {"**.ssn": "drop"},
                   "types": {
                       "Patient": {"default": keep_or_drop(self.type_default_keep), "fields": fields},
                       "Bundle": {"default": "keep"}}})
        } else {
            json!({"default": keep_or_drop(self.default_keep), "fields": fields})
        };
        let config = json!({
            "pseudonymization": {"key_env": "KEY", "per_client": true},
            "limits": {"max_depth": self.max_depth},
            "policies": {"p": {"auth": "none", "default_purpose": "f",
                               "type_key": "resourceType", "purposes": {"f": purpose}}}
        });
        serde_json::to_vec(&config).unwrap()
    }

    /// The purpose's rules, for the reference model.
    pub fn policy(&self) -> Policy {
        let keep_or_drop = |keep: bool| if keep { Act::Keep } else { Act::Drop };
        let rules: Vec<PolicyRule> = self
            .rules
            .iter()
            .map(|(path, act)| PolicyRule {
                text: PATHS[*path].0.to_string(),
                segments: PATHS[*path].1.iter().map(Seg::to_reference).collect(),
                act: act.clone(),
            })
            .collect();
        if !self.typed {
            return Policy {
                default: keep_or_drop(self.default_keep),
                rules,
                max_depth: self.max_depth,
                typing: None,
            };
        }
        Policy {
            default: keep_or_drop(self.default_keep),
            rules: vec![PolicyRule {
                text: "**.ssn".into(),
                segments: vec![reference::Seg::Deep, reference::Seg::Key("ssn".into())],
                act: Act::Drop,
            }],
            max_depth: self.max_depth,
            typing: Some(Typing {
                key: "resourceType".into(),
                types: vec![
                    TypeRules {
                        name: "Bundle".into(),
                        default: Act::Keep,
                        rules: Vec::new(),
                    },
                    TypeRules {
                        name: "Patient".into(),
                        default: keep_or_drop(self.type_default_keep),
                        rules,
                    },
                ],
            }),
        }
    }

    /// The chunks the document is written in.
    pub fn split(&self) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        if self.chunks == [0; 4] {
            out.push(self.document);
            return out;
        }
        let mut rest = self.document;
        let mut i = 0;
        while !rest.is_empty() {
            let size = self.chunks[i % 4].min(rest.len());
            out.push(&rest[..size]);
            rest = &rest[size..];
            i += 1;
        }
        out
    }
}
