//! The benchmark's baselines do finalite's job on the benchmark's bodies, so that the
//! ratios `make bench` prints compare equal work: the naive serde filter
//! (`finalite_test_support::naive`) and the byte scanner (`finalite_test_support::scanner`) must
//! keep, drop and pseudonymise exactly what finalite does, under each benchmark policy and
//! at each body size.
//!
//! finalite's pseudonyms are keyed per client (the benchmark's `bench-client`) and the
//! baselines' are not, so pseudonymised values are compared by their length and alphabet
//! only; the naive filter sorts keys (a `serde_json::Value` map), so documents are compared
//! parsed. The scanner's output is also compared byte for byte with finalite's, pseudonyms
//! aside: both keep the input's order and spelling.

use serde_json::Value;

use finalite_test_support::bench::{
    self as common, bundle, naive, run_engine, scanner, typed_realistic_rules, EngineRules, Policy,
    POLICIES, SIZES,
};

const SEED: u64 = 7;

/// Replaces every pseudonym (`entry[].resource.id`, 43 base64url characters) by `"P"`,
/// after checking its form.
fn mask_pseudonyms(doc: &mut Value) {
    let Some(entries) = doc.get_mut("entry").and_then(Value::as_array_mut) else {
        return;
    };
    for entry in entries {
        if let Some(id) = entry.pointer_mut("/resource/id") {
            let text = id.as_str().expect("a pseudonym is a string");
            assert_eq!(text.len(), 43, "pseudonym {text:?}");
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "pseudonym {text:?}"
            );
            *id = Value::String("P".into());
        }
    }
}

/// The document `bytes` parsed, its pseudonyms masked when the policy writes some.
fn parsed(bytes: &[u8], pseudonymised: bool) -> Value {
    let mut doc: Value = serde_json::from_slice(bytes).expect("the output parses");
    if pseudonymised {
        mask_pseudonyms(&mut doc);
    }
    doc
}

#[test]
fn baselines_write_what_finalite_writes() {
    for (size, label) in SIZES {
        let doc = bundle(size, SEED);
        for (policy, name) in POLICIES {
            let mut ours = Vec::new();
            run_engine(&policy.rules(), &doc, &mut ours);
            let naive_out = naive::filter(&doc, &policy.naive()).expect("the bundle parses");
            let scanned = scanner::filter(&doc, &policy.scanner()).expect("the bundle is whole");

            let pseudonymised = policy
                .spec()
                .1
                .iter()
                .any(|(_, act)| *act == common::Act::Pseudonymize);
            let expected = parsed(&ours, pseudonymised);
            assert_eq!(
                parsed(&naive_out, pseudonymised),
                expected,
                "naive, {name}, {label}"
            );
            assert_eq!(
                parsed(&scanned, pseudonymised),
                expected,
                "scanner, {name}, {label}"
            );
            assert_eq!(
                scanned.len(),
                ours.len(),
                "scanner, {name}, {label}: length"
            );
            // Byte for byte outside the pseudonyms: same order, same spelling.
            let differing = ours.iter().zip(&scanned).filter(|(a, b)| a != b).count();
            let pseudonyms = if pseudonymised {
                expected
                    .get("entry")
                    .and_then(Value::as_array)
                    .map_or(0, |entries| entries.len())
            } else {
                0
            };
            assert!(
                differing <= pseudonyms * 43,
                "scanner, {name}, {label}: {differing} bytes differ"
            );
        }
    }
}

#[test]
fn the_scanner_gives_up_on_a_cut_body() {
    let rules = POLICIES[1].0.scanner();
    let doc = bundle(1 << 10, SEED);
    for cut in [1, doc.len() / 2, doc.len() - 1] {
        assert!(
            scanner::filter(&doc[..cut], &rules).is_err(),
            "cut at {cut} accepted"
        );
    }
    let deep = "[".repeat(200) + &"]".repeat(200);
    assert!(scanner::filter(deep.as_bytes(), &rules).is_err());
}

#[test]
fn typed_rules_send_what_the_realistic_policy_sends() {
    // The typed benchmark case measures the same output, written per resource type.
    for (size, label) in SIZES {
        let doc = bundle(size, SEED);
        let (mut untyped, mut typed) = (Vec::new(), Vec::new());
        run_engine(&Policy::Realistic.rules(), &doc, &mut untyped);
        run_engine(&typed_realistic_rules(), &doc, &mut typed);
        assert_eq!(
            parsed(&typed, false),
            parsed(&untyped, false),
            "{label}: typed and untyped realistic rules differ"
        );
    }
}
