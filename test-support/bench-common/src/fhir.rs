//! A real mixed-resource FHIR input: HL7's R4 examples (`hl7.fhir.r4.examples` 4.0.1, CC0),
//! copied unchanged into `tests/data/hl7.fhir.r4.examples/bench/` (its README says how they
//! were obtained and `SHA256SUMS` lists them), put together as a FHIR server's searchset
//! answer: pretty-printed with two spaces, members in the order HL7 published them.
//!
//! The synthetic Bundle ([`crate::bundle`]) is one resource type, compact, every entry alike;
//! this one is what a clinical server sends: Patients, Observations, Encounters, Conditions,
//! Procedures, Practitioners, Organizations and more, of very different shapes and sizes,
//! with narratives, extensions, `contained` resources and references. It is what the typed
//! policy ([`FHIR_TYPED`]) is measured on.

use serde_json::value::RawValue;
use serde_json::Value;

/// The source files: single resources, then clinical example Bundles whose entries' resources
/// are taken (a document, a collection of Patients, two lab reports with their Observations,
/// Patients with Observations).
const FILES: &[&str] = &[
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-animal.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-ch-example.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-dicom.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-example.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-f001.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-f201.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-genetics-example1.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-glossy.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-ihe-pcd.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-infant-fetal.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-infant-mom.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-infant-twin-1.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-infant-twin-2.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-mom.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-newborn.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-pat1.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-pat2.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-pat3.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-pat4.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-proband.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-xcda.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Patient-xds.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-10minute-apgar-score.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-1minute-apgar-score.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-20minute-apgar-score.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-2minute-apgar-score.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-5minute-apgar-score.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-656.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-abdo-tender.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-alcohol-type.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-bgpanel.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-blood-pressure-cancel.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-blood-pressure-dar.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-blood-pressure.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-bloodgroup.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-bmd.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-bmi-using-related.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-bmi.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-body-height.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-body-length.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-body-temperature.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-clinical-gender.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-date-lastmp.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-decimal.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-ekg.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-example-TPMT-diplotype.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-example-TPMT-haplotype-one.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-example-TPMT-haplotype-two.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-example-diplotype1.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-example-genetics-1.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-example-genetics-2.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-example-genetics-3.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-example-genetics-4.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-example-genetics-5.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-example-genetics-brcapat.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-example-haplotype1.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-example-haplotype2.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-example-phenotype.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-example.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-eye-color.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-f001.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-f002.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-f003.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-f004.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-f005.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-f202.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-f203.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-f204.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-f205.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-f206.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-gcs-qa.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-glasgow.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-head-circumference.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-heart-rate.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-herd1.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-map-sitting.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-mbp.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-respiratory-rate.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-rhstatus.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-satO2.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-secondsmoke.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-trachcare.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-unsat.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-vitals-panel.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-vomiting.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Observation-vp-oyster.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Encounter-emerg.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Encounter-example.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Encounter-f001.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Encounter-f002.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Encounter-f003.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Encounter-f201.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Encounter-f202.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Encounter-f203.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Encounter-home.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Encounter-xcda.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Condition-example.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Condition-example2.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Condition-f001.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Condition-f002.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Condition-f003.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Condition-f201.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Condition-f202.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Condition-f203.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Condition-f204.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Condition-f205.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Condition-family-history.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Condition-stroke.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Procedure-HCBS.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Procedure-ambulation.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Procedure-appendectomy-narrative.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Procedure-biopsy.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Procedure-colon-biopsy.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Procedure-colonoscopy.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Procedure-education.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Procedure-example-implant.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Procedure-example.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Procedure-f001.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Procedure-f002.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Procedure-f003.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Procedure-f004.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Procedure-f201.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Procedure-ob.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Procedure-physical-therapy.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/AllergyIntolerance-example.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/AllergyIntolerance-fishallergy.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/AllergyIntolerance-medication.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/AllergyIntolerance-nka.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/AllergyIntolerance-nkda.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/AllergyIntolerance-nkla.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Immunization-example.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Immunization-historical.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Immunization-notGiven.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Immunization-protocol.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Immunization-subpotent.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Practitioner-example.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Practitioner-f001.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Practitioner-f002.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Practitioner-f003.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Practitioner-f004.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Practitioner-f005.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Practitioner-f006.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Practitioner-f007.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Practitioner-f201.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Practitioner-f202.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Practitioner-f203.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Practitioner-f204.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Practitioner-xcda-author.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Practitioner-xcda1.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Organization-1.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Organization-1832473e-2fe0-452d-abe9-3cdb9879522f.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Organization-2.16.840.1.113883.19.5.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Organization-2.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Organization-3.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Organization-f001.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Organization-f002.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Organization-f003.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Organization-f201.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Organization-f203.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Organization-hl7.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Organization-hl7pay.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Organization-mmanu.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Location-1.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Location-2.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Location-amb.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Location-hl7.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Location-ph.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Location-ukp.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Bundle-father.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Bundle-b248b1b2-1686-4b94-9936-37d7a5f94b51.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Bundle-lipids.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Bundle-report.json"),
    include_str!("../../../tests/data/hl7.fhir.r4.examples/bench/Bundle-bundle-references.json"),
];

/// One resource of the input: its type, its id and its text as published.
struct Resource {
    kind: String,
    id: String,
    text: String,
}

/// Every resource of [`FILES`], the entries of the Bundles among them taken out of their
/// Bundle, in the files' order.
fn resources() -> Vec<Resource> {
    let mut out = Vec::new();
    for file in FILES {
        let value: Value = serde_json::from_str(file).expect("an HL7 example parses");
        if value["resourceType"] == "Bundle" {
            let entries: Vec<serde_json::Map<String, Value>> =
                serde_json::from_value(value["entry"].clone()).expect("a Bundle's entries");
            // The raw text of each entry's resource, for its member order and spelling.
            let raw: std::collections::BTreeMap<String, Box<RawValue>> =
                serde_json::from_str(file).expect("an HL7 example parses");
            let raw_entries: Vec<std::collections::BTreeMap<String, Box<RawValue>>> =
                serde_json::from_str(raw["entry"].get()).expect("a Bundle's entries");
            for (entry, raw_entry) in entries.iter().zip(&raw_entries) {
                let (Some(resource), Some(raw)) =
                    (entry.get("resource"), raw_entry.get("resource"))
                else {
                    continue;
                };
                out.push(resource_of(resource, raw.get()));
            }
        } else {
            out.push(resource_of(&value, file));
        }
    }
    out
}

fn resource_of(value: &Value, text: &str) -> Resource {
    Resource {
        kind: value["resourceType"]
            .as_str()
            .expect("a resource type")
            .to_string(),
        id: value["id"].as_str().unwrap_or("none").to_string(),
        text: text.to_string(),
    }
}

/// `text` (a pretty-printed JSON value that may have been cut out of a deeper document)
/// re-indented to start at `indent` spaces: JSON strings hold no raw newline, so every line
/// break is whitespace between tokens, and the value's closing line gives its own depth.
fn reindent(text: &str, indent: usize, out: &mut String) {
    let base = text
        .lines()
        .last()
        .map_or(0, |line| line.len() - line.trim_start_matches(' ').len());
    for (i, line) in text.lines().enumerate() {
        if i > 0 {
            out.push('\n');
            let spaces = line.len() - line.trim_start_matches(' ').len();
            out.extend(std::iter::repeat_n(' ', indent));
            out.push_str(&line[spaces.min(base)..]);
        } else {
            out.push_str(line);
        }
    }
}

/// The resources in a searchset's order: one of each type in turn (Patient, Observation,
/// Encounter, ...), so that even the first 64 KiB hold every type; a type whose resources
/// are used up drops out of the turn.
fn interleaved() -> Vec<Resource> {
    let mut by_type: Vec<(String, std::collections::VecDeque<Resource>)> = Vec::new();
    for resource in resources() {
        match by_type.iter_mut().find(|(kind, _)| *kind == resource.kind) {
            Some((_, list)) => list.push_back(resource),
            None => by_type.push((resource.kind.clone(), [resource].into())),
        }
    }
    let mut out = Vec::new();
    while by_type.iter().any(|(_, list)| !list.is_empty()) {
        for (_, list) in &mut by_type {
            out.extend(list.pop_front());
        }
    }
    out
}

/// A searchset Bundle of the HL7 examples, about `target` bytes (the entries stop as soon as
/// the target is reached; past the last resource they start again from the first, so a
/// 1 MiB body holds each about twice), pretty-printed as a FHIR server writes it.
pub fn fhir_bundle(target: usize) -> Vec<u8> {
    let all = interleaved();
    let mut entries = String::new();
    let mut n = 0;
    let head_room = 400;
    while entries.len() + head_room < target || n == 0 {
        let resource = &all[n % all.len()];
        if n > 0 {
            entries.push_str(",\n");
        }
        entries.push_str("    {\n      \"fullUrl\": \"https://fhir.example.org/fhir/");
        entries.push_str(&resource.kind);
        entries.push('/');
        entries.push_str(&resource.id);
        entries.push_str("\",\n      \"resource\": ");
        reindent(&resource.text, 6, &mut entries);
        entries.push_str(",\n      \"search\": {\n        \"mode\": \"match\"\n      }\n    }");
        n += 1;
    }
    let mut out = String::with_capacity(entries.len() + head_room);
    out.push_str("{\n  \"resourceType\": \"Bundle\",\n  \"id\": \"hl7-r4-examples\",\n");
    out.push_str("  \"meta\": {\n    \"lastUpdated\": \"2024-06-01T12:00:00Z\"\n  },\n");
    out.push_str("  \"type\": \"searchset\",\n  \"total\": ");
    out.push_str(&n.to_string());
    out.push_str(",\n  \"link\": [\n    {\n      \"relation\": \"self\",\n");
    out.push_str("      \"url\": \"https://fhir.example.org/fhir?_count=");
    out.push_str(&n.to_string());
    out.push_str("\"\n    }\n  ],\n  \"entry\": [\n");
    out.push_str(&entries);
    out.push_str("\n  ]\n}");
    out.into_bytes()
}

/// A purpose with rules by resource type, as finalite's configuration writes it: the
/// purpose's own `fields` and each type's `default` and `fields`, actions in the
/// configuration's spelling.
pub struct TypedPurpose {
    pub fields: &'static [(&'static str, &'static str)],
    /// `(type, default, fields)`.
    pub types: &'static [TypeSpec],
}

/// One type's rules: `(type, default, fields)`.
pub type TypeSpec = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// The research purpose on the HL7 examples, by resource type (`type_key: resourceType`), in
/// the manner of the README's research example: the Bundle's envelope and its entries'
/// resources, each clinical type reduced to its codes, values and status with the patient's
/// id and the references to the patient pseudonymised and dates cut to the year;
/// Organizations kept whole, telecoms dropped everywhere; Practitioners, Compositions and
/// medications, unlisted, withheld whole.
pub const FHIR_TYPED: TypedPurpose = TypedPurpose {
    fields: &[("**.telecom", "drop")],
    types: &[
        (
            "Bundle",
            "drop",
            &[
                ("type", "keep"),
                ("total", "keep"),
                ("entry.resource", "keep"),
                ("entry.search.mode", "keep"),
            ],
        ),
        (
            "Patient",
            "drop",
            &[
                ("id", "pseudonymize"),
                ("birthDate", "year"),
                ("gender", "keep"),
                ("address.country", "keep"),
            ],
        ),
        (
            "Observation",
            "drop",
            &[
                ("status", "keep"),
                ("category.coding.code", "keep"),
                ("code.coding.code", "keep"),
                ("valueQuantity", "keep"),
                ("effectiveDateTime", "year"),
                ("subject.reference", "pseudonymize"),
            ],
        ),
        (
            "Encounter",
            "drop",
            &[
                ("status", "keep"),
                ("class.code", "keep"),
                ("contained", "keep"),
                ("subject.reference", "pseudonymize"),
            ],
        ),
        (
            "Condition",
            "drop",
            &[
                ("clinicalStatus.coding.code", "keep"),
                ("code.coding.code", "keep"),
                ("onsetDateTime", "year"),
                ("subject.reference", "pseudonymize"),
            ],
        ),
        (
            "Procedure",
            "drop",
            &[
                ("status", "keep"),
                ("code.coding.code", "keep"),
                ("subject.reference", "pseudonymize"),
            ],
        ),
        (
            "DiagnosticReport",
            "drop",
            &[
                ("status", "keep"),
                ("code.coding.code", "keep"),
                ("result", "keep"),
                ("subject.reference", "pseudonymize"),
            ],
        ),
        (
            "Immunization",
            "drop",
            &[
                ("status", "keep"),
                ("vaccineCode.coding.code", "keep"),
                ("patient.reference", "pseudonymize"),
            ],
        ),
        (
            "AllergyIntolerance",
            "drop",
            &[
                ("criticality", "keep"),
                ("code.coding.code", "keep"),
                ("patient.reference", "pseudonymize"),
            ],
        ),
        ("Organization", "keep", &[]),
        (
            "Location",
            "drop",
            &[("name", "keep"), ("address.city", "keep")],
        ),
    ],
};

impl TypedPurpose {
    /// The purpose as a finalite configuration's JSON (`{"fields": ..., "types": ...}`).
    pub fn to_json(&self) -> Value {
        let fields = |spec: &[(&str, &str)]| -> Value {
            spec.iter()
                .map(|(path, action)| (path.to_string(), Value::from(*action)))
                .collect::<serde_json::Map<_, _>>()
                .into()
        };
        let types: serde_json::Map<String, Value> = self
            .types
            .iter()
            .map(|(name, default, spec)| {
                let mut rules = serde_json::Map::new();
                rules.insert("default".into(), Value::from(*default));
                rules.insert("fields".into(), fields(spec));
                (name.to_string(), Value::Object(rules))
            })
            .collect();
        let mut purpose = serde_json::Map::new();
        purpose.insert("fields".into(), fields(self.fields));
        purpose.insert("types".into(), Value::Object(types));
        Value::Object(purpose)
    }
}
