//! The engine under SMART scopes: exact outputs, on HL7's R4 examples where they fit, each
//! checked at every split of the body into two chunks (or at several chunk sizes for the
//! large ones): where the chunks are cut never changes what is sent.

use std::sync::Arc;

use crate::auth::smart;
use crate::json::lexer::Framing;
use crate::json::{EngineError, ErrorKind, GrantErrorKind, JsonFilter, TypeErrorKind};
use crate::policy::fhir::SmartAccess;
use crate::policy::rules::FieldRules;
use crate::policy::CompiledConfig;

use super::super::FilterStats;

/// The rules of `purpose` (JSON) on a FHIR policy that enforces SMART scopes.
fn rules_with(purpose: &str, limits: &str) -> Arc<FieldRules> {
    let config = format!(
        r#"{{"limits": {{{limits}}}, "policies": {{"f": {{"fhir": {{"base": "/fhir", "smart_scopes": true}},
            "purposes": {{"p": {purpose}}}}}}}}}"#
    );
    let loaded = CompiledConfig::load(config.as_bytes(), &|_| None).unwrap();
    loaded.policies[0].purposes["p"]
        .body
        .clone()
        .expect("filtered")
}

fn rules(purpose: &str) -> Arc<FieldRules> {
    rules_with(purpose, "")
}

/// Everything kept: what SMART scopes withhold is all that goes.
fn keep() -> Arc<FieldRules> {
    rules(r#"{"default": "keep"}"#)
}

fn access(scopes: &[&str], patient: Option<&str>) -> Arc<SmartAccess> {
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    Arc::new(SmartAccess::new(
        smart::grants(&scopes),
        patient.map(str::to_string),
    ))
}

/// One run over `doc` cut at `splits`.
fn run_at(
    rules: &Arc<FieldRules>,
    access: &Arc<SmartAccess>,
    framing: Framing,
    doc: &[u8],
    splits: &[usize],
) -> (Result<String, EngineError>, FilterStats) {
    let mut f = JsonFilter::with_framing(rules.clone(), 64, Default::default(), framing)
        .with_smart(access.clone());
    let mut out = Vec::new();
    let mut last = 0;
    let mut result = Ok(());
    for &at in splits.iter().chain(std::iter::once(&doc.len())) {
        result = result.and_then(|()| f.write(&doc[last..at], &mut out));
        last = at;
    }
    let result = result.and_then(|()| f.finish(&mut out));
    (
        result.map(|()| String::from_utf8(out).unwrap()),
        f.take_stats(),
    )
}

/// Filters `doc` whole, then cut in two at every byte (or, past 4 KiB, in chunks of several
/// sizes): every run must give the same output, or the same error, and the same counts.
fn run(
    rules: &Arc<FieldRules>,
    access: &Arc<SmartAccess>,
    framing: Framing,
    doc: &str,
) -> (Result<String, EngineError>, FilterStats) {
    let doc = doc.as_bytes();
    let whole = run_at(rules, access, framing, doc, &[]);
    let check = |splits: &[usize]| {
        let (result, stats) = run_at(rules, access, framing, doc, splits);
        assert_eq!(result, whole.0, "cut at {splits:?}");
        assert_eq!(stats.resources, whole.1.resources, "cut at {splits:?}");
    };
    if doc.len() <= 4096 {
        for at in 0..=doc.len() {
            check(&[at]);
        }
    } else {
        for size in [1, 7, 100, 1024] {
            let splits: Vec<usize> = (size..doc.len()).step_by(size).collect();
            check(&splits);
        }
    }
    whole
}

fn filter(rules: &Arc<FieldRules>, access: &Arc<SmartAccess>, doc: &str) -> String {
    run(rules, access, Framing::Single, doc).0.unwrap()
}

/// The resources withheld, by type, as `Type=count`.
fn withheld(
    rules: &Arc<FieldRules>,
    access: &Arc<SmartAccess>,
    framing: Framing,
    doc: &str,
) -> Vec<String> {
    let (_, stats) = run(rules, access, framing, doc);
    stats
        .resources
        .expect("under SMART scopes")
        .counts
        .iter()
        .map(|(t, c)| format!("{t}={c}"))
        .collect()
}

fn refusal(rules: &Arc<FieldRules>, access: &Arc<SmartAccess>, doc: &str) -> ErrorKind {
    run(rules, access, Framing::Single, doc).0.unwrap_err().kind
}

/// A document without the whitespace between tokens: what the engine writes of what it
/// keeps under typed rules, so expected outputs are put together from compacted inputs.
fn compact(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut string, mut escape) = (false, false);
    for c in json.chars() {
        if string {
            out.push(c);
            match (escape, c) {
                (true, _) => escape = false,
                (false, '\\') => escape = true,
                (false, '"') => string = false,
                _ => {}
            }
        } else if !c.is_whitespace() {
            string = c == '"';
            out.push(c);
        }
    }
    out
}

/// An HL7 R4 example (tests/envoy/fhir/, checksums in its README), compacted.
fn example(name: &str) -> String {
    let path = format!(
        "{}/tests/envoy/fhir/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    compact(&std::fs::read_to_string(path).unwrap())
}

const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

/// An Observation of `patient`, in `category` (laboratory or vital-signs).
fn observation(id: &str, patient: &str, category: &str) -> String {
    format!(
        r#"{{"resourceType":"Observation","id":"{id}","status":"final","category":[{{"coding":[{{"system":"{CATEGORY}","code":"{category}"}}]}}],"subject":{{"reference":"Patient/{patient}"}},"valueQuantity":{{"value":7.2}}}}"#
    )
}

fn condition(id: &str, patient: &str) -> String {
    format!(
        r#"{{"resourceType":"Condition","id":"{id}","code":{{"text":"Asthma"}},"subject":{{"reference":"Patient/{patient}"}}}}"#
    )
}

fn entry(resource: &str) -> String {
    format!(
        r#"{{"fullUrl":"https://fhir.example/r4/x","resource":{resource},"search":{{"mode":"match"}}}}"#
    )
}

fn searchset(total: usize, resources: &[&str]) -> String {
    let entries: Vec<String> = resources.iter().map(|r| entry(r)).collect();
    format!(
        r#"{{"resourceType":"Bundle","type":"searchset","total":{total},"entry":[{}]}}"#,
        entries.join(",")
    )
}

fn searchset_out(resources: &[&str]) -> String {
    let entries: Vec<String> = resources.iter().map(|r| entry(r)).collect();
    format!(
        r#"{{"resourceType":"Bundle","type":"searchset","entry":[{}]}}"#,
        entries.join(",")
    )
}

#[test]
fn a_search_keeps_only_the_granted_types() {
    let obs = example("Observation-example");
    let patient = example("Patient-example");
    let cond = condition("c1", "example");
    let doc = searchset(3, &[&obs, &cond, &patient]);
    let a = access(&["user/Observation.rs"], None);
    assert_eq!(filter(&keep(), &a, &doc), searchset_out(&[&obs]));
    assert_eq!(
        withheld(&keep(), &a, Framing::Single, &doc),
        ["Condition=1", "Patient=1"]
    );
}
