//! The benchmark bodies and policies (from `finalite-bench-common`), and the engine run on
//! them as the proxy runs it.

use std::sync::{Arc, OnceLock};

use finalite::json::JsonFilter;
use finalite::policy::action::{Action, Transform};
use finalite::policy::path::FieldPath;
use finalite::policy::rules::{FieldRules, Rule, TypeRules};
use finalite::policy::transform::{PseudonymKey, TransformContext};

pub use finalite_bench_common::*;

/// A benchmark policy as the engine runs it.
pub trait EngineRules {
    /// The compiled rules, as the proxy compiles a purpose's `fields`.
    fn rules(self) -> Arc<FieldRules>;
}

impl EngineRules for Policy {
    fn rules(self) -> Arc<FieldRules> {
        let (default_keep, spec) = self.spec();
        let rules: Vec<Rule> = spec
            .iter()
            .map(|(path, act)| Rule {
                path: FieldPath::parse(path).expect("a valid path"),
                action: match act {
                    Act::Keep => Action::Keep,
                    Act::Drop => Action::Drop,
                    Act::Pseudonymize => Action::Transform(Transform::Pseudonymize),
                },
            })
            .collect();
        let default = if default_keep {
            Action::Keep
        } else {
            Action::Drop
        };
        Arc::new(FieldRules::compile(default, &rules).expect("rules compile"))
    }
}

/// The realistic policy written as rules by resource type (`type_key: resourceType`): the
/// Bundle's rules and the Patient's, relative to each, sending what the realistic policy
/// sends. Measures what typed rules cost on the same document.
pub fn typed_realistic_rules() -> Arc<FieldRules> {
    let rules = |spec: &[(&str, Action)]| -> Vec<Rule> {
        spec.iter()
            .map(|(path, action)| Rule {
                path: FieldPath::parse(path).expect("a valid path"),
                action: *action,
            })
            .collect()
    };
    let types = [
        TypeRules {
            name: "Bundle".into(),
            default: Action::Drop,
            rules: rules(&[
                ("type", Action::Keep),
                ("total", Action::Keep),
                ("entry.resource", Action::Keep),
                ("entry.search.mode", Action::Keep),
            ]),
        },
        TypeRules {
            name: "Patient".into(),
            default: Action::Drop,
            rules: rules(&[
                ("id", Action::Transform(Transform::Pseudonymize)),
                ("meta.lastUpdated", Action::Keep),
                ("gender", Action::Keep),
                ("birthDate", Action::Keep),
                ("address.city", Action::Keep),
                ("address.country", Action::Keep),
                ("condition.code", Action::Keep),
            ]),
        },
    ];
    Arc::new(
        FieldRules::compile_typed(Action::Drop, &[], "resourceType", &types, 1 << 20)
            .expect("rules compile"),
    )
}

/// An action as the configuration spells it (the subset the typed benchmark purpose uses).
fn action(name: &str) -> Action {
    match name {
        "keep" => Action::Keep,
        "drop" => Action::Drop,
        "pseudonymize" => Action::Transform(Transform::Pseudonymize),
        "year" => Action::Transform(Transform::Year),
        other => panic!("the benchmark's typed purpose uses {other:?}"),
    }
}

/// The research purpose by resource type on the HL7 examples ([`FHIR_TYPED`]), compiled as
/// the proxy compiles a typed purpose (`type_key: resourceType`).
pub fn fhir_typed_rules() -> Arc<FieldRules> {
    let rules = |spec: &[(&str, &str)]| -> Vec<Rule> {
        spec.iter()
            .map(|(path, act)| Rule {
                path: FieldPath::parse(path).expect("a valid path"),
                action: action(act),
            })
            .collect()
    };
    let types: Vec<TypeRules> = FHIR_TYPED
        .types
        .iter()
        .map(|(name, default, spec)| TypeRules {
            name: (*name).into(),
            default: action(default),
            rules: rules(spec),
        })
        .collect();
    Arc::new(
        FieldRules::compile_typed(
            Action::Drop,
            &rules(FHIR_TYPED.fields),
            "resourceType",
            &types,
            1 << 20,
        )
        .expect("rules compile"),
    )
}

/// The transform context of the benchmarks: a 32-byte key, pseudonyms per reuser. The key
/// is prepared once, as the proxy prepares it once per configuration; each document takes a
/// copy fed the client, as each request does. (Keying per document added two SHA-256
/// compressions to every one, about a tenth of a 1 KiB document's count.)
pub fn context() -> TransformContext {
    static KEY: OnceLock<PseudonymKey> = OnceLock::new();
    KEY.get_or_init(|| PseudonymKey::new(Some(PSEUDONYM_KEY)))
        .context(Some("bench-client"))
}

/// Filters `doc` with the engine in [`CHUNK`]-byte chunks, as the proxy does; returns the
/// output length.
pub fn run_engine(rules: &Arc<FieldRules>, doc: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    let mut filter = JsonFilter::new(rules.clone(), 64, context());
    for chunk in doc.chunks(CHUNK) {
        filter.write(chunk, out).expect("the bundle is valid JSON");
    }
    filter.finish(out).expect("the bundle is complete");
    out.len()
}
