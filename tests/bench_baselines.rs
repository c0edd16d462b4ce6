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
//!
//! The same holds on the real FHIR input (HL7's R4 examples, pretty-printed), where the
//! comparison is of parsed documents only: finalite copies kept values as written, spacing
//! included, and the scanner writes compactly. The validate-and-pass baseline writes every
//! input unchanged, and the typed research purpose sends only what its types allow.

use std::collections::BTreeSet;

use serde_json::Value;
use sha2::{Digest, Sha256};

use finalite_test_support::bench::{
    self as common, bundle, fhir_bundle, fhir_typed_rules, naive, run_engine, scanner,
    typed_realistic_rules, validate_and_pass, EngineRules, Policy, FHIR_SIZES, FHIR_TYPED,
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

/// The policies compared: the benchmark's, and the realistic one with the ids kept.
fn policies() -> impl Iterator<Item = (Policy, &'static str)> {
    POLICIES
        .into_iter()
        .chain([(Policy::RealisticIdKept, "realistic-id-kept")])
}

/// Whether the policy pseudonymises (its output then differs from the baselines' in the
/// pseudonyms, which finalite keys per client).
fn pseudonymises(policy: Policy) -> bool {
    policy
        .spec()
        .1
        .iter()
        .any(|(_, act)| *act == common::Act::Pseudonymize)
}

/// Runs finalite, the naive filter and the scanner on `doc`, checks that the baselines
/// write what finalite writes (as parsed, pseudonyms masked), and gives finalite's output,
/// the scanner's and finalite's parsed.
fn compared(policy: Policy, doc: &[u8], what: &str) -> (Vec<u8>, Vec<u8>, Value) {
    let mut ours = Vec::new();
    run_engine(&policy.rules(), doc, &mut ours);
    let naive_out = naive::filter(doc, &policy.naive()).expect("the bundle parses");
    let scanned = scanner::filter(doc, &policy.scanner()).expect("the bundle is whole");
    let pseudonymised = pseudonymises(policy);
    let expected = parsed(&ours, pseudonymised);
    assert_eq!(parsed(&naive_out, pseudonymised), expected, "naive, {what}");
    assert_eq!(parsed(&scanned, pseudonymised), expected, "scanner, {what}");
    (ours, scanned, expected)
}

#[test]
fn baselines_write_what_finalite_writes() {
    for (size, label) in SIZES {
        let doc = bundle(size, SEED);
        for (policy, name) in policies() {
            let (ours, scanned, expected) = compared(policy, &doc, &format!("{name}, {label}"));
            let pseudonymised = pseudonymises(policy);
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

#[test]
fn baselines_write_what_finalite_writes_on_the_fhir_examples() {
    for (size, label) in FHIR_SIZES {
        let doc = fhir_bundle(size);
        for (policy, name) in policies() {
            compared(policy, &doc, &format!("{name}, FHIR {label}"));
        }
    }
}

#[test]
fn validate_and_pass_writes_its_input_unchanged() {
    let inputs = SIZES
        .iter()
        .map(|(size, _)| bundle(*size, SEED))
        .chain(FHIR_SIZES.iter().map(|(size, _)| fhir_bundle(*size)));
    for doc in inputs {
        assert_eq!(validate_and_pass(&doc).as_deref(), Some(&doc[..]));
    }
    let cut = bundle(1 << 10, SEED);
    assert_eq!(validate_and_pass(&cut[..cut.len() - 1]), None);
    assert_eq!(validate_and_pass(b"{\"a\":1,}"), None);
}

/// The source files of the FHIR input, as listed with their SHA-256 in `SHA256SUMS`.
fn fhir_sources() -> Vec<(String, Vec<u8>)> {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/hl7.fhir.r4.examples/bench"
    );
    let sums = std::fs::read_to_string(format!("{dir}/SHA256SUMS")).expect("SHA256SUMS");
    sums.lines()
        .map(|line| {
            let (sum, name) = line
                .split_once("  ")
                .expect("SHA256SUMS: `sum  name` lines");
            let bytes = std::fs::read(format!("{dir}/{name}")).expect("a listed file");
            let actual: String = Sha256::digest(&bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(actual, sum, "{name}: not the file HL7 published");
            (name.to_string(), bytes)
        })
        .collect()
}

#[test]
fn the_fhir_input_is_hl7s_examples_as_a_server_sends_them() {
    let sources = fhir_sources();
    assert_eq!(sources.len(), 173);
    // Every resource HL7 published, single or in a Bundle, parsed.
    let mut published = Vec::new();
    for (_, bytes) in &sources {
        let value: Value = serde_json::from_slice(bytes).expect("an HL7 example parses");
        match value["resourceType"].as_str() {
            Some("Bundle") => published.extend(
                value["entry"]
                    .as_array()
                    .expect("entries")
                    .iter()
                    .filter_map(|entry| entry.get("resource").cloned()),
            ),
            _ => published.push(value),
        }
    }
    for (size, label) in FHIR_SIZES {
        let doc = fhir_bundle(size);
        assert!(
            doc.len() >= size && doc.len() < size + (64 << 10),
            "FHIR {label}: {} bytes",
            doc.len()
        );
        assert!(
            doc.starts_with(b"{\n  \"resourceType\": \"Bundle\",\n"),
            "pretty-printed"
        );
        let bundle: Value = serde_json::from_slice(&doc).expect("the bundle parses");
        let entries = bundle["entry"].as_array().expect("entries");
        assert_eq!(bundle["total"], entries.len());
        let mut types = BTreeSet::new();
        for entry in entries {
            let resource = &entry["resource"];
            assert!(
                published.contains(resource),
                "FHIR {label}: a resource HL7 did not publish: {}",
                resource["id"]
            );
            types.insert(
                resource["resourceType"]
                    .as_str()
                    .expect("a type")
                    .to_string(),
            );
        }
        // A mix of clinical types even in the small body.
        for kind in [
            "Patient",
            "Observation",
            "Encounter",
            "Condition",
            "Procedure",
            "Practitioner",
            "Organization",
            "Location",
            "AllergyIntolerance",
            "Immunization",
        ] {
            assert!(types.contains(kind), "FHIR {label}: no {kind}");
        }
    }
    // At 1 MiB every published resource is there, members in their published order.
    let doc = fhir_bundle(1 << 20);
    let text = std::str::from_utf8(&doc).expect("UTF-8");
    for resource in &published {
        assert!(
            doc_has(text, resource),
            "{}/{} missing",
            resource["resourceType"],
            resource["id"]
        );
    }
}

/// Whether `text` holds `resource` as published: its type member first and its id next, at
/// an entry's depth (the parsed comparison above checks its content).
fn doc_has(text: &str, resource: &Value) -> bool {
    let Some(id) = resource["id"].as_str() else {
        return true; // found by the parsed comparison above
    };
    let kind = resource["resourceType"].as_str().expect("a type");
    let head = format!("\"resourceType\": \"{kind}\",\n        \"id\": \"{id}\"");
    text.contains(&head)
}

#[test]
fn the_typed_research_purpose_sends_only_what_its_types_allow() {
    let listed: BTreeSet<&str> = FHIR_TYPED.types.iter().map(|(name, _, _)| *name).collect();
    for (size, label) in FHIR_SIZES {
        let doc = fhir_bundle(size);
        let mut out = Vec::new();
        run_engine(&fhir_typed_rules(), &doc, &mut out);
        let text = std::str::from_utf8(&out).expect("UTF-8");
        assert!(
            !text.contains("\"telecom\""),
            "FHIR {label}: a telecom was sent"
        );
        let sent: Value = serde_json::from_slice(&out).expect("the output parses");
        let input: Value = serde_json::from_slice(&doc).expect("the input parses");
        assert_eq!(sent["type"], "searchset");
        assert_eq!(sent["total"], input["total"]);
        assert_eq!(
            sent.get("link"),
            None,
            "FHIR {label}: the Bundle's link was sent"
        );
        let entries = sent["entry"].as_array().expect("entries");
        let input_entries = input["entry"].as_array().expect("entries");
        assert_eq!(entries.len(), input_entries.len());
        let mut patients = 0;
        for (entry, source) in entries.iter().zip(input_entries) {
            let kind = source["resource"]["resourceType"].as_str().expect("a type");
            assert_eq!(entry.get("fullUrl"), None);
            assert_eq!(entry["search"]["mode"], "match");
            if !listed.contains(kind) {
                assert_eq!(entry.get("resource"), None, "FHIR {label}: {kind} was sent");
                continue;
            }
            let resource = &entry["resource"];
            assert_eq!(resource["resourceType"], kind);
            if kind != "Organization" {
                assert_eq!(
                    resource.get("text"),
                    None,
                    "FHIR {label}: a {kind}'s narrative"
                );
            }
            match kind {
                "Patient" => {
                    patients += 1;
                    if let Some(original) = source["resource"]["id"].as_str() {
                        let id = resource["id"].as_str().expect("a pseudonym");
                        assert_eq!(id.len(), 43, "{id}");
                        assert_ne!(id, original);
                    }
                    assert_eq!(resource.get("name"), None);
                    if let Some(year) = resource.get("birthDate") {
                        assert_eq!(year.as_str().map(str::len), Some(4), "{year}");
                    }
                    assert_eq!(resource["gender"], source["resource"]["gender"]);
                }
                "Organization" => {
                    let mut whole = source["resource"].clone();
                    whole.as_object_mut().expect("an object").remove("telecom");
                    if let Some(contacts) = whole.get_mut("contact").and_then(Value::as_array_mut) {
                        for contact in contacts {
                            contact
                                .as_object_mut()
                                .expect("an object")
                                .remove("telecom");
                        }
                    }
                    assert_eq!(resource, &whole, "FHIR {label}: an Organization");
                }
                "Observation" => {
                    if let Some(subject) = resource["subject"].get("reference") {
                        assert_eq!(subject.as_str().map(str::len), Some(43), "{subject}");
                    }
                    assert_eq!(
                        resource["valueQuantity"],
                        source["resource"]["valueQuantity"]
                    );
                }
                _ => {}
            }
        }
        assert!(patients > 0, "FHIR {label}: no Patient");
    }
}
