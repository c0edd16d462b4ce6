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

#[test]
fn the_patient_context_keeps_its_patients_resources() {
    let mine = observation("o1", "example", "laboratory");
    let theirs = observation("o2", "pat2", "laboratory");
    // An absolute reference, written with an escaped slash: the same patient.
    let absolute = mine.replace("\"o1\"", "\"o3\"").replace(
        "Patient/example",
        "https:\\/\\/fhir.example\\/r4\\/Patient\\/example",
    );
    let doc = searchset(3, &[&mine, &theirs, &absolute]);
    let a = access(&["patient/Observation.rs"], Some("example"));
    assert_eq!(
        filter(&keep(), &a, &doc),
        searchset_out(&[&mine, &absolute])
    );
    assert_eq!(
        withheld(&keep(), &a, Framing::Single, &doc),
        ["Observation=1"]
    );
    // The same read by another patient's app: only theirs.
    let b = access(&["patient/Observation.rs"], Some("pat2"));
    assert_eq!(filter(&keep(), &b, &doc), searchset_out(&[&theirs]));
    // patient/ scopes without a launch patient grant nothing.
    assert_eq!(
        filter(&keep(), &access(&["patient/Observation.rs"], None), &doc),
        searchset_out(&[])
    );
}

#[test]
fn v1_and_v2_scopes_say_the_same() {
    let doc = searchset(
        2,
        &[
            &observation("o1", "example", "laboratory"),
            &observation("o2", "pat2", "vital-signs"),
            &condition("c1", "example"),
        ],
    );
    let expected = searchset_out(&[&observation("o1", "example", "laboratory")]);
    for scopes in [
        &["patient/Observation.read"][..],
        &["patient/Observation.rs"],
        &["patient/Observation.r"],
        &["patient/Observation.s", "patient/Condition.cud"],
        &["patient/Observation.*", "patient/Condition.write"],
    ] {
        assert_eq!(
            filter(&keep(), &access(scopes, Some("example")), &doc),
            expected,
            "{scopes:?}"
        );
    }
    // Both contexts: a user/ grant on the type lets every patient's through.
    let both = access(&["patient/*.rs", "user/Observation.rs"], Some("example"));
    assert_eq!(
        filter(&keep(), &both, &doc),
        searchset_out(&[
            &observation("o1", "example", "laboratory"),
            &observation("o2", "pat2", "vital-signs"),
            &condition("c1", "example"),
        ])
    );
}

#[test]
fn granular_scopes_grant_by_category() {
    let lab = observation("o1", "example", "laboratory");
    let vitals = example("Observation-example");
    let uncategorised = condition("c1", "example").replace("Condition", "Observation");
    let doc = searchset(3, &[&lab, &vitals, &uncategorised]);
    for scope in [
        format!("user/Observation.rs?category={CATEGORY}|laboratory"),
        "user/Observation.rs?category=laboratory".to_string(),
        format!(
            "user/Observation.rs?category={}%7Claboratory",
            CATEGORY.replace(':', "%3A")
        ),
    ] {
        let a = access(&[&scope], None);
        assert_eq!(filter(&keep(), &a, &doc), searchset_out(&[&lab]), "{scope}");
        assert_eq!(
            withheld(&keep(), &a, Framing::Single, &doc),
            ["Observation=2"]
        );
    }
    // Another system, or another parameter: nothing (fail closed).
    for scope in [
        "user/Observation.rs?category=http://other|laboratory",
        "user/Observation.rs?code=http://loinc.org|1234-5",
        "user/Observation.rs?category=laboratory&code=x",
    ] {
        assert_eq!(
            filter(&keep(), &access(&[scope], None), &doc),
            searchset_out(&[]),
            "{scope}"
        );
    }
    // Granular and patient context together: both hold.
    let a = access(
        &["patient/Observation.rs?category=vital-signs"],
        Some("example"),
    );
    assert_eq!(filter(&keep(), &a, &doc), searchset_out(&[&vitals]));
    // Each coding counts; a coding whose code is not a string matches nothing.
    let two = lab.replace(
        r#"[{"coding":["#,
        r#"[{"coding":[{"code":"vital-signs"},{"system":"x","code":7}]},{"coding":["#,
    );
    let a = access(&["user/Observation.rs?category=vital-signs"], None);
    assert_eq!(
        filter(&keep(), &a, &searchset(1, &[&two])),
        searchset_out(&[&two])
    );
    let odd = lab.replace(r#""code":"laboratory""#, r#""code":["laboratory"]"#);
    let a = access(&["user/Observation.rs?category=laboratory"], None);
    assert_eq!(
        filter(&keep(), &a, &searchset(1, &[&odd])),
        searchset_out(&[])
    );
}

#[test]
fn a_contained_resource_is_decided_on_its_own() {
    // Encounter-home holds a contained Location ("#home"), and refers to Patient/example.
    let encounter = example("Encounter-home");
    let location =
        r#"{"resourceType":"Location","id":"home","description":"Client's home","mode":"kind"}"#;
    assert!(encounter.contains(&format!(r#""contained":[{location}]"#)));
    let a = access(&["user/Encounter.rs"], None);
    let without = encounter.replace(location, "");
    assert_eq!(filter(&keep(), &a, &encounter), without);
    assert_eq!(
        withheld(&keep(), &a, Framing::Single, &encounter),
        ["Location=1"]
    );
    let a = access(&["user/Encounter.rs", "user/Location.rs"], None);
    assert_eq!(filter(&keep(), &a, &encounter), encounter);
    // A patient context: the Encounter is the patient's; Location is outside the
    // compartment, so its type grant alone decides it.
    let a = access(
        &["patient/Encounter.rs", "patient/Location.rs"],
        Some("example"),
    );
    assert_eq!(filter(&keep(), &a, &encounter), encounter);
    let a = access(&["patient/*.rs"], Some("pat2"));
    assert_eq!(
        refusal(&keep(), &a, &encounter),
        ErrorKind::Grant(GrantErrorKind::RootNotGranted)
    );
    // A contained object without a type is withheld too.
    let untyped = encounter.replace(r#""resourceType":"Location","#, "");
    let a = access(&["user/Encounter.rs", "user/Location.rs"], None);
    assert_eq!(filter(&keep(), &a, &untyped), without);
    assert_eq!(withheld(&keep(), &a, Framing::Single, &untyped), ["*=1"]);
}

#[test]
fn a_contained_resource_does_not_put_its_container_in_the_compartment() {
    let theirs = observation("o1", "pat2", "laboratory");
    let inner = observation("o2", "example", "laboratory");
    let doc = theirs.replace(
        r#""status":"final","#,
        &format!(r#""status":"final","contained":[{inner}],"#),
    );
    let a = access(&["patient/Observation.rs"], Some("example"));
    assert_eq!(
        refusal(&keep(), &a, &doc),
        ErrorKind::Grant(GrantErrorKind::RootNotGranted)
    );
    // The other way round: the container is the patient's, the contained one is not.
    let doc = inner.replace(
        r#""status":"final","#,
        &format!(r#""status":"final","contained":[{theirs}],"#),
    );
    assert_eq!(
        filter(&keep(), &a, &doc),
        inner.replace(
            r#""status":"final","#,
            r#""status":"final","contained":[],"#
        )
    );
}

#[test]
fn bundles_inside_bundles_are_decided_entry_by_entry() {
    // A batch-response Bundle: a Patient, then three Bundles (one with four Conditions of
    // Patient/example, two empty), each entry with a `response`.
    let doc = example("Bundle-bundle-response-simplesummary");
    let a = access(&["user/Patient.rs"], None);
    let out = filter(&keep(), &a, &doc);
    let parsed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let entries = parsed["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 4);
    assert_eq!(entries[0]["resource"]["resourceType"], "Patient");
    for nested in &entries[1..] {
        assert_eq!(nested["resource"]["resourceType"], "Bundle");
        assert!(nested["resource"].get("total").is_none(), "{nested}");
    }
    // The first held the Conditions; the others were empty.
    assert_eq!(entries[1]["resource"]["entry"], serde_json::json!([]));
    assert!(doc.contains(r#""total":4,"#));
    assert_eq!(
        withheld(&keep(), &a, Framing::Single, &doc),
        ["Condition=4"]
    );
    // The Conditions granted: the whole document but the totals.
    let a = access(&["user/Patient.rs", "user/Condition.rs"], None);
    let totals = [r#""total":4,"#, r#""total":0,"#];
    let expected = totals.iter().fold(doc.clone(), |d, t| d.replace(t, ""));
    assert_eq!(filter(&keep(), &a, &doc), expected);
    assert_eq!(
        withheld(&keep(), &a, Framing::Single, &doc),
        Vec::<String>::new()
    );
}

#[test]
fn a_document_bundle_in_a_patient_context() {
    // Bundle-father: a document about Patient/d1 (Composition, Practitioner, Patient,
    // Encounter, Observation, MedicationRequest, MedicationStatement, AllergyIntolerance).
    let doc = example("Bundle-father");
    let types = |out: &str| -> Vec<String> {
        let parsed: serde_json::Value = serde_json::from_str(out).unwrap();
        parsed["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap().to_string())
            .collect()
    };
    let a = access(&["patient/*.rs"], Some("d1"));
    let out = filter(&keep(), &a, &doc);
    // The Patient's id is "d1"; the AllergyIntolerance names its patient by reference
    // "Patient/d1"; the Practitioner is outside the compartment.
    assert_eq!(
        types(&out),
        [
            "Composition",
            "Practitioner",
            "Patient",
            "Encounter",
            "Observation",
            "MedicationRequest",
            "MedicationStatement",
            "AllergyIntolerance"
        ]
    );
    let a = access(&["patient/*.rs"], Some("d2"));
    assert_eq!(types(&filter(&keep(), &a, &doc)), ["Practitioner"]);
    assert_eq!(
        withheld(&keep(), &a, Framing::Single, &doc),
        [
            "AllergyIntolerance=1",
            "Composition=1",
            "Encounter=1",
            "MedicationRequest=1",
            "MedicationStatement=1",
            "Observation=1",
            "Patient=1"
        ]
    );
}

#[test]
fn an_export_drops_the_lines_not_granted() {
    let lines = [
        example("Patient-example"),
        example("Observation-example"),
        example("Practitioner-example"),
        observation("o2", "pat2", "laboratory"),
    ];
    let doc = format!("{}\n", lines.join("\n"));
    let a = access(&["user/Observation.rs"], None);
    let (out, stats) = run(&keep(), &a, Framing::Lines, &doc);
    assert_eq!(out.unwrap(), format!("{}\n{}\n", lines[1], lines[3]));
    assert_eq!(
        stats.resources.unwrap().counts,
        [("Patient".to_string(), 1), ("Practitioner".to_string(), 1)]
    );
    // The last line without its newline, and blank lines, as they come.
    let doc = format!("{}\n\n{}", lines[1], lines[0]);
    assert_eq!(
        run(&keep(), &a, Framing::Lines, &doc).0.unwrap(),
        format!("{}\n\n", lines[1])
    );
    // A patient context: only the patient's own line.
    let a = access(&["patient/Observation.rs"], Some("example"));
    let doc = format!("{}\n{}\n", lines[1], lines[3]);
    assert_eq!(
        run(&keep(), &a, Framing::Lines, &doc).0.unwrap(),
        format!("{}\n", lines[1])
    );
    // A line without a type is dropped; a line that is not an object refuses the export.
    let doc = format!("{}\n{{\"id\":\"x\"}}\n", lines[1]);
    assert_eq!(
        run(&keep(), &a, Framing::Lines, &doc).0.unwrap(),
        format!("{}\n", lines[1])
    );
    for line in ["[]", "3", "\"x\"", "null"] {
        let doc = format!("{}\n{line}\n", lines[1]);
        assert_eq!(
            run(&keep(), &a, Framing::Lines, &doc).0.unwrap_err().kind,
            ErrorKind::Grant(GrantErrorKind::RootNotAResource)
        );
    }
}

#[test]
fn the_type_member_last_is_found_and_decided() {
    let lab = observation("o1", "example", "laboratory");
    let last = format!(
        "{{{},\"resourceType\":\"Observation\"}}",
        &lab[r#"{"resourceType":"Observation","#.len()..lab.len() - 1]
    );
    assert!(
        last.ends_with(r#"},"resourceType":"Observation"}"#),
        "{last}"
    );
    for (scopes, patient, granted) in [
        (&["user/Observation.rs"][..], None, true),
        (&["user/Condition.rs"], None, false),
        (&["patient/Observation.rs"], Some("example"), true),
        (&["patient/Observation.rs"], Some("pat2"), false),
        (&["user/Observation.rs?category=laboratory"], None, true),
        (&["user/Observation.rs?category=vital-signs"], None, false),
    ] {
        let a = access(scopes, patient);
        let doc = searchset(1, &[&last]);
        let expected = if granted {
            searchset_out(&[&last])
        } else {
            searchset_out(&[])
        };
        assert_eq!(filter(&keep(), &a, &doc), expected, "{scopes:?}");
        if granted {
            assert_eq!(filter(&keep(), &a, &last), last);
        } else {
            assert_eq!(
                refusal(&keep(), &a, &last),
                ErrorKind::Grant(GrantErrorKind::RootNotGranted)
            );
        }
    }
}

#[test]
fn a_resource_held_past_the_lookahead_limit_fails_closed() {
    let big = observation("o1", "example", "laboratory").replace(
        r#""status":"final""#,
        &format!(
            r#""status":"final","note":[{{"text":"{}"}}]"#,
            "x".repeat(300)
        ),
    );
    assert!(big.len() > 500);
    let limited = rules_with(
        r#"{"default": "keep"}"#,
        r#""max_type_lookahead_bytes": 400"#,
    );
    // Decided on its type alone: never held past its type member, whatever its size.
    let a = access(&["user/Observation.rs"], None);
    assert_eq!(filter(&limited, &a, &big), big);
    // Decided by its subject: held to its end, which is past the limit.
    let a = access(&["patient/Observation.rs"], Some("example"));
    let error = run(&limited, &a, Framing::Single, &big).0.unwrap_err();
    assert_eq!(
        error.kind,
        ErrorKind::Type(TypeErrorKind::GrantLookaheadExceeded { limit: 400 })
    );
    assert_eq!(
        error.to_string(),
        "a resource whose SMART grant depends on its content (category, patient compartment) is larger than 400 bytes (limits.max_type_lookahead_bytes), so it cannot be held whole to be decided at byte 401 ($)"
    );
    // The same in a Bundle entry (held to its end as every untyped object is).
    let error = run(&limited, &a, Framing::Single, &searchset(1, &[&big]))
        .0
        .unwrap_err();
    assert!(matches!(
        error.kind,
        ErrorKind::Type(TypeErrorKind::LookaheadExceeded { .. })
    ));
}

#[test]
fn a_patient_is_the_patients_only_if_every_id_is() {
    let a = access(&["patient/Patient.rs"], Some("example"));
    let me = r#"{"resourceType":"Patient","id":"example","gender":"female"}"#;
    assert_eq!(filter(&keep(), &a, me), me);
    let twice = r#"{"resourceType":"Patient","id":"example","id":"example"}"#;
    assert_eq!(filter(&keep(), &a, twice), twice);
    for doc in [
        r#"{"resourceType":"Patient","id":"example","id":"pat2"}"#,
        r#"{"resourceType":"Patient","id":"pat2","id":"example"}"#,
        r#"{"id":"example","resourceType":"Patient","id":7}"#,
        r#"{"resourceType":"Patient","id":"pat2"}"#,
        r#"{"resourceType":"Patient"}"#,
        // An id inside is not the Patient's own.
        r#"{"resourceType":"Patient","link":[{"other":{"reference":"Patient/example","id":"example"}}]}"#,
    ] {
        assert_eq!(
            refusal(&keep(), &a, doc),
            ErrorKind::Grant(GrantErrorKind::RootNotGranted),
            "{doc}"
        );
    }
    // The HL7 example Patient, in and out of its own context.
    let patient = example("Patient-example");
    assert_eq!(filter(&keep(), &a, &patient), patient);
    let b = access(&["patient/Patient.rs"], Some("pat2"));
    assert_eq!(
        refusal(&keep(), &b, &patient),
        ErrorKind::Grant(GrantErrorKind::RootNotGranted)
    );
    // Any reference to the patient puts a resource in its compartment, given twice or not.
    let obs = r#"{"resourceType":"Observation","subject":{"reference":"Patient/pat2"},"subject":{"reference":"Patient/example"}}"#;
    let c = access(&["patient/Observation.rs"], Some("example"));
    assert_eq!(filter(&keep(), &c, obs), obs);
    // A reference that is not a string refers to no one.
    let obs = r#"{"resourceType":"Observation","subject":{"reference":["Patient/example"]}}"#;
    assert_eq!(
        refusal(&keep(), &c, obs),
        ErrorKind::Grant(GrantErrorKind::RootNotGranted)
    );
}

#[test]
fn a_bundles_total_is_always_withheld() {
    let obs = observation("o1", "example", "laboratory");
    let doc = format!(
        r#"{{"resourceType":"Bundle","total":1,"type":"searchset","link":[{{"relation":"self","url":"https://fhir.example/r4/Observation"}}],"entry":[{}],"total":1}}"#,
        entry(&obs)
    );
    let a = access(&["user/Observation.rs"], None);
    assert_eq!(
        filter(&keep(), &a, &doc),
        format!(
            r#"{{"resourceType":"Bundle","type":"searchset","link":[{{"relation":"self","url":"https://fhir.example/r4/Observation"}}],"entry":[{}]}}"#,
            entry(&obs)
        )
    );
    // Type member last: the Bundle held whole, `total` still withheld.
    let last = r#"{"total":0,"type":"searchset","resourceType":"Bundle"}"#;
    assert_eq!(
        filter(&keep(), &a, last),
        r#"{"type":"searchset","resourceType":"Bundle"}"#
    );
    // Counted among the fields withheld, not among the resources.
    let (_, stats) = run(&keep(), &a, Framing::Single, last);
    assert_eq!(stats.withheld.total(), 1);
    assert_eq!(stats.resources.unwrap().total(), 0);
}

#[test]
fn an_entry_goes_whole_unless_its_resource_is_granted() {
    let obs = observation("o1", "example", "laboratory");
    let a = access(&["user/Observation.rs"], None);
    for bad in [
        // No resource (a deleted entry in a history).
        r#"{"fullUrl":"https://fhir.example/r4/Condition/c1","request":{"method":"DELETE","url":"Condition/c1"}}"#.to_string(),
        // A resource without a type, or that is not an object.
        r#"{"fullUrl":"x","resource":{"id":"c1"}}"#.to_string(),
        r#"{"fullUrl":"x","resource":"Observation/o1"}"#.to_string(),
        r#"{"fullUrl":"x","resource":null}"#.to_string(),
        // Given twice: which one a client reads is not known.
        format!(r#"{{"resource":{obs},"resource":{}}}"#, condition("c1", "example")),
        format!(r#"{{"resource":{obs},"resource":{obs}}}"#),
    ] {
        let doc = format!(r#"{{"resourceType":"Bundle","entry":[{bad},{}]}}"#, entry(&obs));
        assert_eq!(
            filter(&keep(), &a, &doc),
            format!(r#"{{"resourceType":"Bundle","entry":[{}]}}"#, entry(&obs)),
            "{bad}"
        );
    }
}

#[test]
fn arrays_are_transparent_where_resources_stand() {
    // `entry` and `contained` given as one object rather than an array of them.
    let a = access(&["user/Observation.rs"], None);
    let doc = format!(
        r#"{{"resourceType":"Bundle","entry":{}}}"#,
        entry(&condition("c1", "example"))
    );
    assert_eq!(filter(&keep(), &a, &doc), r#"{"resourceType":"Bundle"}"#);
    let doc = r#"{"resourceType":"Bundle","entry":{"fullUrl":"x","resource":{"id":"c1"}}}"#;
    assert_eq!(filter(&keep(), &a, doc), r#"{"resourceType":"Bundle"}"#);
    let doc =
        r#"{"resourceType":"Observation","contained":{"id":"p1","name":"x"},"status":"final"}"#;
    assert_eq!(
        filter(&keep(), &a, doc),
        r#"{"resourceType":"Observation","status":"final"}"#
    );
    // The same keys outside a resource are data like any other.
    let doc = r#"{"resourceType":"Observation","note":[{"contained":{"id":"p1"},"entry":[{"resource":{"id":"x"}}]}]}"#;
    assert_eq!(filter(&keep(), &a, doc), doc);
}

#[test]
fn a_root_not_granted_is_refused() {
    let a = access(&["user/Observation.rs"], None);
    let patient = example("Patient-example");
    let error = run(&keep(), &a, Framing::Single, &patient).0.unwrap_err();
    assert_eq!(error.kind, ErrorKind::Grant(GrantErrorKind::RootNotGranted));
    assert_eq!(
        withheld(&keep(), &a, Framing::Single, &patient),
        ["Patient=1"]
    );
    for doc in [
        r#"{"id":"x"}"#,
        "[]",
        r#"[{"resourceType":"Observation"}]"#,
        "null",
        "1",
    ] {
        assert_eq!(
            refusal(&keep(), &a, doc),
            ErrorKind::Grant(GrantErrorKind::RootNotAResource),
            "{doc}"
        );
    }
    // An OperationOutcome is a resource as any other.
    let outcome = r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found","diagnostics":"Observation o9 of Patient/pat2"}]}"#;
    assert_eq!(
        refusal(&keep(), &a, outcome),
        ErrorKind::Grant(GrantErrorKind::RootNotGranted)
    );
}

#[test]
fn the_purposes_rules_apply_to_what_the_scopes_grant() {
    // Rules by type: Observation's fields as listed; Condition is granted by the scopes but
    // not listed, so the purpose withholds it (counted as a field, not as a resource).
    let typed = rules(
        r#"{"default": "keep", "types": {"Bundle": {"default": "keep"},
            "Observation": {"fields": {"id": "keep", "subject": "keep"}}}}"#,
    );
    let obs = observation("o1", "example", "laboratory");
    let doc = searchset(
        3,
        &[
            &obs,
            &condition("c1", "example"),
            &example("Patient-example"),
        ],
    );
    let a = access(&["user/Observation.rs", "user/Condition.rs"], None);
    let kept =
        r#"{"resourceType":"Observation","id":"o1","subject":{"reference":"Patient/example"}}"#;
    assert_eq!(
        filter(&typed, &a, &doc),
        format!(
            r#"{{"resourceType":"Bundle","type":"searchset","entry":[{},{{"fullUrl":"https://fhir.example/r4/x","search":{{"mode":"match"}}}}]}}"#,
            entry(kept)
        )
    );
    let (_, stats) = run(&typed, &a, Framing::Single, &doc);
    assert_eq!(
        stats.resources.unwrap().counts,
        [("Patient".to_string(), 1)]
    );
    assert_eq!(stats.withheld.get("Condition"), Some(1));
    // Field rules without types: every granted resource gets them.
    let plain =
        rules(r#"{"default": "keep", "fields": {"**.valueQuantity": "drop", "**.text": "drop"}}"#);
    assert_eq!(
        filter(&plain, &a, &doc),
        searchset_out(&[
            &obs.replace(r#","valueQuantity":{"value":7.2}"#, ""),
            // A kept object is written as soon as it opens, so `code` stays, empty.
            &condition("c1", "example").replace(r#"{"text":"Asthma"}"#, "{}"),
        ])
    );
}

#[test]
fn a_second_type_member_is_refused_in_every_resource() {
    let a = access(&["user/*.rs"], None);
    for doc in [
        r#"{"resourceType":"Observation","id":"o1","resourceType":"Patient"}"#,
        r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","resourceType":"Patient"}}]}"#,
    ] {
        assert_eq!(
            refusal(&keep(), &a, doc),
            ErrorKind::Type(TypeErrorKind::TwoTypeMembers),
            "{doc}"
        );
    }
}

#[test]
fn a_smart_policy_always_reads_the_body() {
    // `default: keep` and no rule: without SMART scopes the body would not be read.
    let rules = keep();
    assert!(rules
        .typing
        .as_ref()
        .is_some_and(|t| t.unlisted_follow_rules));
    // Untyped rules cannot enforce scopes: the filter refuses every write.
    let untyped = Arc::new(FieldRules::compile(crate::policy::action::Action::Keep, &[]).unwrap());
    let a = access(&["user/*.rs"], None);
    let mut f = JsonFilter::new(untyped, 64, Default::default()).with_smart(a);
    assert_eq!(
        f.write(b"{}", &mut Vec::new()).unwrap_err().kind,
        ErrorKind::Grant(GrantErrorKind::RulesNotTyped)
    );
}
