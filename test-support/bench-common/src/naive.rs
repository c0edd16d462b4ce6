//! The naive baseline: parse the whole body into a `serde_json::Value`, edit the tree,
//! serialise it again. What a filter written in an afternoon does; shared by the engine
//! benchmark and the `wasm-naive-serde` Envoy filter so both measure the same thing.
//!
//! It understands the benchmark's rules only: literal paths and `**.key`, with `keep`,
//! `drop` and `pseudonymize` (HMAC-SHA-256, base64url), arrays transparent. Naive in its
//! handling of the body only: the HMAC is keyed once with the rules, as finalite keys it once
//! per configuration, so that the baseline does not pay two SHA-256 compressions per
//! pseudonym that finalite does not (keying per value cost about 1% of the baseline's count
//! per 1 MiB Bundle in V8: 166.5M against 164.6M instructions).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NaiveAction {
    Keep,
    Drop,
    Pseudonymize,
}

#[derive(Debug, Clone)]
pub struct NaiveRules {
    default_keep: bool,
    /// Literal paths, split on `.`.
    literal: Vec<(Vec<String>, NaiveAction)>,
    /// `**.key` rules: the key.
    anywhere: Vec<(String, NaiveAction)>,
    /// The pseudonymisation HMAC, keyed; cloned for each value.
    mac: Hmac<Sha256>,
}

impl NaiveRules {
    /// Rules as `(path, drop, pseudonymize)`; neither flag means keep. `key` is the
    /// pseudonymisation key.
    pub fn new<'a>(
        default_keep: bool,
        rules: impl IntoIterator<Item = (&'a str, bool, bool)>,
        key: &[u8],
    ) -> NaiveRules {
        let mut literal = Vec::new();
        let mut anywhere = Vec::new();
        for (path, drop, pseudonymize) in rules {
            let action = match (drop, pseudonymize) {
                (true, _) => NaiveAction::Drop,
                (_, true) => NaiveAction::Pseudonymize,
                _ => NaiveAction::Keep,
            };
            if let Some(key) = path.strip_prefix("**.") {
                anywhere.push((key.to_string(), action));
            } else {
                literal.push((path.split('.').map(str::to_string).collect(), action));
            }
        }
        NaiveRules {
            default_keep,
            literal,
            anywhere,
            mac: Hmac::<Sha256>::new_from_slice(key).expect("any key length"),
        }
    }

    fn own(&self, path: &[String]) -> Option<NaiveAction> {
        self.literal
            .iter()
            .find(|(p, _)| p.as_slice() == path)
            .map(|(_, a)| *a)
            .or_else(|| {
                let last = path.last()?;
                self.anywhere
                    .iter()
                    .find(|(k, _)| k == last)
                    .map(|(_, a)| *a)
            })
    }

    fn may_descend(&self, path: &[String]) -> bool {
        !self.anywhere.is_empty()
            || self
                .literal
                .iter()
                .any(|(p, _)| p.len() > path.len() && p[..path.len()] == *path)
    }
}

/// Parses, filters and serialises `body`.
pub fn filter(body: &[u8], rules: &NaiveRules) -> Result<Vec<u8>, serde_json::Error> {
    let mut value: Value = serde_json::from_slice(body)?;
    let inherited = if rules.default_keep {
        NaiveAction::Keep
    } else {
        NaiveAction::Drop
    };
    let mut path = Vec::new();
    let keep = apply(&mut value, rules, &mut path, inherited);
    if !keep {
        value = Value::Null;
    }
    serde_json::to_vec(&value)
}

/// Edits `value` in place; false when it is withheld altogether.
fn apply(
    value: &mut Value,
    rules: &NaiveRules,
    path: &mut Vec<String>,
    inherited: NaiveAction,
) -> bool {
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for k in keys {
                path.push(k.clone());
                let own = rules.own(path);
                let action = own.unwrap_or(inherited);
                let child = map.get_mut(&k).expect("present");
                let keep = if own != Some(NaiveAction::Drop) && rules.may_descend(path) {
                    apply(child, rules, path, action)
                } else {
                    leaf(child, action, &rules.mac)
                };
                if !keep {
                    map.remove(&k);
                }
                path.pop();
            }
            inherited == NaiveAction::Keep || !map.is_empty()
        }
        Value::Array(items) => {
            items.retain_mut(|item| apply(item, rules, path, inherited));
            inherited == NaiveAction::Keep || !items.is_empty()
        }
        _ => leaf(value, inherited, &rules.mac),
    }
}

fn leaf(value: &mut Value, action: NaiveAction, keyed: &Hmac<Sha256>) -> bool {
    match action {
        NaiveAction::Keep => true,
        NaiveAction::Drop => false,
        NaiveAction::Pseudonymize => {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                _ => return false,
            };
            let mut mac = keyed.clone();
            mac.update(text.as_bytes());
            *value = Value::String(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
            true
        }
    }
}
