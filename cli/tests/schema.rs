//! The committed JSON Schema is the one the filter's types generate, and every example
//! configuration in the repository is valid against it and accepted by the filter.

use std::path::{Path, PathBuf};

use finalite::policy::CompiledConfig;
use finalite_cli::source;
use serde_json::{json, Value};

const SCHEMA_FILE: &str = "schema/finalite.schema.json";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn committed_schema() -> Value {
    serde_json::from_slice(&std::fs::read(root().join(SCHEMA_FILE)).unwrap()).unwrap()
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let committed = std::fs::read_to_string(root().join(SCHEMA_FILE)).unwrap_or_default();
    let generated = finalite_cli::schema::config_schema_text();
    assert!(
        committed == generated,
        "{SCHEMA_FILE} differs from the schema the configuration types generate.\n\
         Regenerate it with `make schema` (cargo run -q -p finalite-cli -- schema > {SCHEMA_FILE}) \
         and commit it."
    );
}

/// Every configuration the repository ships or documents: the one inside envoy/envoy.yaml,
/// each file of envoy/examples/, and the plugin configurations of envoy/istio/.
fn example_configurations() -> Vec<source::PluginConfig> {
    let mut files = vec![root().join("envoy/envoy.yaml")];
    for dir in ["envoy/examples", "envoy/istio"] {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|e| e.unwrap().path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("json" | "yaml" | "yml")
                )
            })
            .collect();
        entries.sort();
        files.extend(entries);
    }
    let mut found = Vec::new();
    for file in files {
        match source::read(&file) {
            Ok(configs) => found.extend(configs),
            // An Istio file may hold only other resources (RequestAuthentication).
            Err(e) if e.contains("no finalite configuration found") => {}
            Err(e) => panic!("{e}"),
        }
    }
    found
}

#[test]
fn every_example_configuration_is_valid_and_accepted_by_the_filter() {
    let validator = jsonschema::validator_for(&committed_schema()).unwrap();
    let examples = example_configurations();
    let labels: Vec<&str> = examples.iter().map(|e| e.label.as_str()).collect();
    for expected in [
        "envoy.yaml: wasm filter \"finalite\"",
        "scenario-1-billing-partner.json",
        "scenario-2-research.json",
        "scenario-3-open-data.json",
        "scenario-4-closed-sharing-mtls.json",
        "WasmPlugin \"finalite\"",
    ] {
        assert!(
            labels.iter().any(|l| l.ends_with(expected)),
            "no example {expected} among {labels:?}"
        );
    }
    let env = |name: &str| (name == "FINALITE_PSEUDONYM_KEY").then(|| "k".repeat(32));
    for example in &examples {
        let value: Value = serde_json::from_slice(&example.bytes)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", example.label));
        let errors: Vec<String> = validator
            .iter_errors(&value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(
            errors.is_empty(),
            "{} does not match the schema:\n{}",
            example.label,
            errors.join("\n")
        );
        if let Err(error) = CompiledConfig::load(&example.bytes, &env) {
            panic!("{}: the filter refuses it: {error}", example.label);
        }
    }
}

#[test]
fn the_schema_refuses_what_the_filter_refuses() {
    let validator = jsonschema::validator_for(&committed_schema()).unwrap();
    let purpose =
        |fields: Value| json!({"policies": {"p": {"purposes": {"u": {"fields": fields}}}}});
    for bad in [
        json!({}),
        json!({"policies": {}, "polices": {}}),
        json!({"policies": {"p": {"purposes": {"u": {"defualt": "keep"}}}}}),
        json!({"policies": {"p": {"purposes": {"u": {"default": "maybe"}}}}}),
        json!({"policies": {"p": {"auth": "sometimes", "purposes": {}}}}),
        purpose(json!({"birthDate": "yeer"})),
        purpose(json!({"postalCode": {"truncate": 0}})),
        purpose(json!({"phone": {"mask": {"keep": 4}}})),
        purpose(json!({"phone": {"mask": {"keep_last": 4}, "truncate": 2}})),
    ] {
        assert!(!validator.is_valid(&bad), "the schema accepts {bad}");
        assert!(
            CompiledConfig::load(bad.to_string().as_bytes(), &|_| None).is_err(),
            "the filter accepts {bad}"
        );
    }
    assert!(validator.is_valid(&purpose(json!({
        "id": "pseudonymize", "birthDate": "year", "a": "keep", "b": "drop", "c": "null",
        "phone": {"mask": {"keep_last": 4}}, "postalCode": {"truncate": 2}
    }))));
}
