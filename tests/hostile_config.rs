//! Hostile configurations: no configuration that loads can make the filter panic at
//! request time.
//!
//! proptest writes configurations from the documented vocabulary and its near misses
//! (odd paths, actions with extreme parameters, wildcard header patterns, limits at their
//! bounds, every `auth`, scopes and mTLS clients, pseudonymisation); each one that
//! `CompiledConfig::load` accepts goes through `finalite_test_support::exercise`: every purpose's rules
//! on bodies built from its own field paths, and the request and response paths for many
//! routes, methods, declared purposes and callers. The fuzz target `config_load` (fuzz/)
//! runs the same exercise on arbitrary bytes. The runs are deterministic (a fixed seed).

use finalite_test_support::exercise;

use std::cell::Cell;
use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};
use serde_json::{json, Map, Value};

const CASES: u32 = 192;

/// One of `good`, or in a near-miss configuration sometimes one of `bad`. A clean
/// configuration loads (and so reaches the request path); a near miss tries the validation.
fn mostly(miss: bool, good: &[&'static str], bad: &[&'static str]) -> BoxedStrategy<String> {
    let good = prop::sample::select(good.to_vec()).prop_map(str::to_string);
    if !miss {
        return good.boxed();
    }
    prop_oneof![6 => good, 1 => prop::sample::select(bad.to_vec()).prop_map(str::to_string)].boxed()
}

/// Weight of the near misses among the choices of a knob (0 in a clean configuration).
fn weight(miss: bool) -> u32 {
    u32::from(miss)
}

fn name(miss: bool) -> BoxedStrategy<String> {
    mostly(
        miss,
        &["care", "billing", "research", "open-data", "p", "é", "漢字"],
        &["", "a b", "a,b"],
    )
}

fn path(miss: bool) -> BoxedStrategy<String> {
    prop_oneof![
        12 => prop::sample::select(vec![
            "id", "name", "ssn", "a", "a.b", "*", "**", "**.ssn", "*.id", "a.*", "a.**", "*.*",
            "**.a.**", "\"a.b\".c", "contacts[*].phone", "entry.resource.id", "é.漢",
            "a.b.c.d.e.f.g.h", "\"say \\\"hi\\\"\"", "\"**\"", "\"*\".x", "**.*.**",
            "a[*][*]", "*.*.*.*.**",
        ])
        .prop_map(str::to_string),
        weight(miss) => "[a-c*.\\[\\]\"\\\\é ]{0,10}",
    ]
    .boxed()
}

fn number(miss: bool) -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => (0u64..8).prop_map(Value::from),
        1 => Just(json!(u64::MAX)),
        1 => Just(json!(u32::MAX as u64 + 1)),
        weight(miss) => Just(json!(-1)),
        weight(miss) => Just(json!(1.5)),
    ]
}

fn action(miss: bool) -> impl Strategy<Value = Value> {
    prop_oneof![
        20 => prop::sample::select(vec!["keep", "drop", "null", "pseudonymize", "year"])
            .prop_map(Value::from),
        4 => number(miss).prop_map(|n| json!({"truncate": n})),
        4 => number(miss).prop_map(|n| json!({"mask": {"keep_last": n}})),
        weight(miss) => prop::sample::select(vec![
            json!("yeer"), json!("mask"), json!(3), json!({"mask": {}}),
            json!({"truncate": 1, "mask": {"keep_last": 1}}),
            json!({"mask": {"keep_last": 1, "x": 1}}),
        ]),
    ]
}

fn header_patterns(miss: bool) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        prop_oneof![
            12 => prop::sample::select(vec![
                "x-patient-*", "*", "**", "set-cookie", "X-Internal", "*-id", "*a*b*c*d*e*f*g*h*",
                "*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-*-z", "*e*e*e*e*e*e*e*e*e*e*e*e*e*e*x",
            ])
            .prop_map(str::to_string),
            weight(miss) => "[a-z*:. -]{0,8}",
        ],
        0..4,
    )
}

fn purpose(miss: bool) -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            8 => Just(None),
            8 => Just(Some(json!("keep"))),
            8 => Just(Some(json!("drop"))),
            weight(miss) => Just(Some(json!("allow"))),
        ],
        prop::collection::btree_map(path(miss), action(miss), 0..6),
        prop_oneof![
            3 => Just(None),
            1 => header_patterns(miss).prop_map(|p| Some(json!({"remove": p}))),
            1 => header_patterns(miss).prop_map(|p| Some(json!({"keep": p}))),
        ],
        prop::collection::vec(
            mostly(
                miss,
                &["text/csv", "application/pdf", "text/plain; charset=utf-8"],
                &["application/json", "*/*", "csv"],
            ),
            0..2,
        ),
        prop::option::of(any::<bool>()),
        prop::option::of(prop::collection::btree_map(
            mostly(miss, &["Patient", "Bundle", "a", "é"], &[""]),
            (
                prop::option::of(prop_oneof![Just("keep"), Just("drop")]),
                prop::collection::btree_map(path(miss), action(miss), 0..4),
            ),
            0..4,
        )),
    )
        .prop_map(
            |(default, fields, headers, passthrough, streaming, types)| {
                let mut purpose = Map::new();
                if let Some(types) = types {
                    let types: BTreeMap<String, Value> = types
                        .into_iter()
                        .map(|(name, (default, fields))| {
                            let mut rules = json!({"fields": fields});
                            if let Some(default) = default {
                                rules["default"] = json!(default);
                            }
                            (name, rules)
                        })
                        .collect();
                    purpose.insert("types".into(), json!(types));
                }
                if let Some(default) = default {
                    purpose.insert("default".into(), default);
                }
                purpose.insert("fields".into(), json!(fields));
                if let Some(headers) = headers {
                    purpose.insert("headers".into(), headers);
                }
                if !passthrough.is_empty() {
                    purpose.insert("passthrough_media_types".into(), json!(passthrough));
                }
                if let Some(streaming) = streaming {
                    purpose.insert("streaming".into(), json!(streaming));
                }
                Value::Object(purpose)
            },
        )
}

fn scopes(miss: bool) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        mostly(
            miss,
            &["patients:read", "patients:write", "purpose:care", "a"],
            &["", "a b", "x\"y"],
        ),
        1..3,
    )
}

fn method(miss: bool) -> BoxedStrategy<String> {
    mostly(miss, &["GET", "post", "DELETE", "Patch"], &["G T", ""])
}

fn policy(miss: bool) -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map(name(miss), purpose(miss), 1..4),
        mostly(miss, &["required", "none", "mtls"], &["maybe"]),
        prop::collection::vec(
            (
                mostly(miss, &["prefix", "path"], &["both", "neither"]),
                mostly(miss, &["/patients", "/", "/p/1", "/é?"], &["patients", ""]),
                prop::collection::vec(method(miss), 0..3),
            ),
            0..3,
        ),
        prop::collection::btree_map(
            prop_oneof![4 => method(miss), 1 => Just("*".to_string())],
            prop_oneof![
                scopes(miss).prop_map(|s| json!(s)),
                (scopes(miss), prop::collection::vec(scopes(miss), 0..2))
                    .prop_map(|(all, any)| json!({"all_of": all, "any_of": any.concat()})),
                scopes(miss).prop_map(|any| json!({"any_of": any})),
            ],
            0..3,
        ),
        prop::option::of(name(miss)),
        prop::sample::select(vec!["enforce", "dry_run"]),
        prop::collection::btree_map(
            mostly(
                miss,
                &["spiffe://example.org/ns/a/sa/b", "urn:x", ""],
                &["spiffe://x"],
            ),
            (prop::collection::vec(name(miss), 0..3), scopes(miss)),
            0..3,
        ),
        prop::option::of(any::<bool>()),
        mostly(miss, &["resourceType", "t", "type", "kind"], &[""]),
    )
        .prop_map(
            move |(
                purposes,
                auth,
                matches,
                mut scopes,
                mut default_purpose,
                mode,
                mut clients,
                streaming,
                type_key,
            )| {
                // Repair what the validation would refuse across fields (scopes need a token,
                // mTLS needs clients, purposes named elsewhere must exist).
                if !miss {
                    if auth == "none" {
                        scopes.clear();
                    }
                    if auth == "mtls" && clients.is_empty() {
                        clients.insert("spiffe://example.org/a".into(), (vec![], vec!["a".into()]));
                    }
                    if auth != "mtls" {
                        clients.clear();
                    }
                    for (client_purposes, _) in clients.values_mut() {
                        client_purposes.retain(|p| purposes.contains_key(p));
                    }
                    if default_purpose
                        .as_ref()
                        .is_some_and(|d| !purposes.contains_key(d))
                    {
                        default_purpose = purposes.keys().next().cloned();
                    }
                }
                let mut policy = Map::new();
                policy.insert("purposes".into(), json!(purposes));
                policy.insert("auth".into(), json!(auth));
                let matches: Vec<Value> = matches
                    .into_iter()
                    .map(|(kind, path, methods)| {
                        let mut entry = Map::new();
                        if kind == "prefix" || kind == "both" {
                            entry.insert("prefix".into(), json!(path));
                        }
                        if kind == "path" || kind == "both" {
                            entry.insert("path".into(), json!(path));
                        }
                        entry.insert("methods".into(), json!(methods));
                        Value::Object(entry)
                    })
                    .collect();
                policy.insert("match".into(), json!(matches));
                policy.insert("scopes".into(), json!(scopes));
                if let Some(default_purpose) = default_purpose {
                    policy.insert("default_purpose".into(), json!(default_purpose));
                }
                policy.insert("mode".into(), json!(mode));
                let clients: BTreeMap<_, _> = clients
                    .into_iter()
                    .map(|(k, (purposes, scopes))| {
                        (k, json!({"purposes": purposes, "scopes": scopes}))
                    })
                    .collect();
                policy.insert("clients".into(), json!(clients));
                if let Some(streaming) = streaming {
                    policy.insert("streaming".into(), json!(streaming));
                }
                // Typed rules need the policy's type key (a miss may leave it out).
                let typed = purposes.values().any(|p| p.get("types").is_some());
                if typed && (!miss || type_key != "kind") {
                    policy.insert("type_key".into(), json!(type_key));
                }
                Value::Object(policy)
            },
        )
}

fn configuration(miss: bool) -> impl Strategy<Value = Value> {
    (
        prop::collection::btree_map(
            mostly(miss, &["patients", "open", "é"], &[""]),
            policy(miss),
            1..3,
        ),
        mostly(
            miss,
            &["x-purpose", "X-Purpose", "purpose"],
            &["", "a*", ":path"],
        ),
        prop::sample::select(vec!["deny", "allow"]),
        prop_oneof![
            8 => Just(None),
            2 => (1u64..4, 1u32..4).prop_map(Some),
            1 => Just(Some((u64::MAX, 10_000))),
            weight(miss) => Just(Some((1, 10_001))),
        ],
        prop_oneof![2 => Just(None), 1 => any::<bool>().prop_map(Some)],
        mostly(miss, &["client_id", "sub", "azp"], &[""]),
    )
        .prop_map(
            move |(policies, header, unmatched, limits, mut pseudonymization, client_claim)| {
                if !miss
                    && pseudonymization.is_none()
                    && json!(policies).to_string().contains("pseudonymize")
                {
                    pseudonymization = Some(false);
                }
                let mut config = Map::new();
                config.insert("policies".into(), json!(policies));
                config.insert("purpose_header".into(), json!(header));
                config.insert("unmatched".into(), json!(unmatched));
                if let Some((bytes, depth)) = limits {
                    config.insert(
                        "limits".into(),
                        json!({"max_body_bytes": bytes, "max_depth": depth}),
                    );
                }
                if let Some(per_client) = pseudonymization {
                    config.insert(
                        "pseudonymization".into(),
                        json!({"key_env": "FINALITE_PSEUDONYM_KEY", "per_client": per_client}),
                    );
                }
                config.insert(
                    "token".into(),
                    json!({"client_claim": client_claim, "purposes_claim": "purposes"}),
                );
                Value::Object(config)
            },
        )
}

/// Generated configurations: those that load run at request time without a panic, and
/// enough of them load for the test to mean something.
#[test]
fn no_loaded_configuration_panics_at_request_time() {
    let config = RunnerConfig {
        cases: CASES,
        failure_persistence: None,
        ..RunnerConfig::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let loaded = Cell::new(0u32);
    runner
        .run(
            &prop_oneof![3 => configuration(false), 1 => configuration(true)],
            |config| {
                let bytes = serde_json::to_vec(&config).unwrap();
                if exercise::exercise(&bytes) {
                    loaded.set(loaded.get() + 1);
                }
                Ok(())
            },
        )
        .unwrap();
    eprintln!(
        "{} of {CASES} generated configurations loaded",
        loaded.get()
    );
    assert!(
        loaded.get() >= CASES / 2,
        "only {} of {CASES} generated configurations loaded",
        loaded.get()
    );
}

/// Configurations at the edges the validation lets through, each exercised in full.
#[test]
fn edge_configurations_do_not_panic_at_request_time() {
    let configurations = [
        json!({"policies": {"p": {"auth": "none", "default_purpose": "a", "purposes": {"a": {}}}}}),
        json!({"limits": {"max_depth": 1, "max_body_bytes": 1}, "policies": {"p": {"auth": "none",
            "default_purpose": "a", "purposes": {"a": {"fields": {"**": "keep", "*": "drop"}}}}}}),
        json!({"limits": {"max_depth": 10000, "max_body_bytes": u64::MAX}, "policies": {"p": {"auth": "none",
            "default_purpose": "a", "purposes": {"a": {"default": "keep", "fields": {"**": {"truncate": u64::MAX},
            "a": {"mask": {"keep_last": u64::MAX}}, "b": {"mask": {"keep_last": 0}}}}}}}}),
        json!({"pseudonymization": {"per_client": true}, "policies": {"p": {"auth": "none", "default_purpose": "a",
            "purposes": {"a": {"fields": {"**": "pseudonymize", "**.*.**": "year", "\"\\\\\"": "keep"}}}}}}),
        json!({"policies": {"p": {"auth": "mtls", "clients": {"": {"purposes": ["a"]}}, "scopes": {"*": {"any_of": ["s"]}},
            "purposes": {"a": {"headers": {"keep": ["*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b"]}}}}}}),
    ];
    for configuration in configurations {
        let bytes = serde_json::to_vec(&configuration).unwrap();
        assert!(exercise::exercise(&bytes), "{configuration} does not load");
    }
}
