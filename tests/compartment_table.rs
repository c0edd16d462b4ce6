//! The patient compartment table (`policy::compartment`) is HL7's: derived again here from
//! the published R4 CompartmentDefinition and the search parameters it names, as shipped
//! in the `hl7.fhir.r4.examples` 4.0.1 package (tests/data/hl7.fhir.r4.examples).

use std::collections::BTreeMap;
use std::path::Path;

use finalite::policy::compartment::PATIENT_COMPARTMENT;
use serde_json::Value;

fn read(dir: &Path, name: &str) -> Value {
    let bytes = std::fs::read(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn the_compartment_table_is_the_published_definition() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/hl7.fhir.r4.examples");
    let definition = read(&dir, "CompartmentDefinition-patient.json");
    assert_eq!(definition["code"], "Patient");
    // Search parameters by (base type, code).
    let mut parameters: BTreeMap<(String, String), String> = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.starts_with("SearchParameter-") {
            continue;
        }
        let parameter = read(&dir, &name);
        for base in parameter["base"].as_array().unwrap() {
            parameters.insert(
                (
                    base.as_str().unwrap().to_string(),
                    parameter["code"].as_str().unwrap().to_string(),
                ),
                parameter["expression"].as_str().unwrap().to_string(),
            );
        }
    }
    let mut derived: Vec<(String, Vec<String>)> = Vec::new();
    for resource in definition["resource"].as_array().unwrap() {
        let resource_type = resource["code"].as_str().unwrap();
        let mut paths: Vec<String> = Vec::new();
        for param in resource["param"].as_array().into_iter().flatten() {
            let key = (
                resource_type.to_string(),
                param.as_str().unwrap().to_string(),
            );
            let expression = parameters
                .get(&key)
                .unwrap_or_else(|| panic!("no search parameter {key:?}"));
            let prefix = format!("{resource_type}.");
            for part in expression.split('|').map(str::trim) {
                let Some(path) = part.strip_prefix(&prefix) else {
                    continue;
                };
                let path = path
                    .strip_suffix(".where(resolve() is Patient)")
                    .unwrap_or(path);
                assert!(
                    path.split('.')
                        .all(|s| s.bytes().all(|b| b.is_ascii_alphabetic())),
                    "{resource_type}: an expression this table cannot hold: {part}"
                );
                if !paths.iter().any(|p| p == path) {
                    paths.push(path.to_string());
                }
            }
        }
        if !paths.is_empty() {
            derived.push((resource_type.to_string(), paths));
        }
    }
    derived.sort();
    let table: Vec<(String, Vec<String>)> = PATIENT_COMPARTMENT
        .iter()
        .map(|(t, paths)| (t.to_string(), paths.iter().map(|p| p.to_string()).collect()))
        .collect();
    assert_eq!(table.len(), 66);
    assert_eq!(table, derived);
}
