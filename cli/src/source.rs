//! Where a configuration comes from: a JSON file as the filter reads it, or the finalite
//! plugin configuration inside an Envoy bootstrap, an Istio `WasmPlugin` or an `EnvoyFilter`
//! (YAML, several documents allowed).

use std::path::Path;

use serde_json::Value;

const WASM_FILTER: &str = "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm";
const STRING_VALUE: &str = "type.googleapis.com/google.protobuf.StringValue";
const STRUCT: &str = "type.googleapis.com/google.protobuf.Struct";

/// One plugin configuration, as the bytes the host would hand to the filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// Where it was found, for messages (`envoy/envoy.yaml: wasm filter "finalite"`).
    pub label: String,
    pub bytes: Vec<u8>,
}

/// Reads `path`: a `.json` file (or any file starting with `{`) is the configuration itself,
/// byte for byte; otherwise the file is YAML holding one or more plugin configurations.
pub fn read(path: &Path) -> Result<Vec<PluginConfig>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let label = path.display().to_string();
    let is_yaml = matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    );
    let starts_like_json = bytes
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|&b| b == b'{');
    if !is_yaml && starts_like_json {
        return Ok(vec![PluginConfig { label, bytes }]);
    }
    let text = String::from_utf8(bytes).map_err(|_| format!("{label}: not UTF-8 text"))?;
    from_yaml(&label, &text)
}

/// The finalite plugin configurations in a YAML text (Envoy, Istio), in document order.
pub fn from_yaml(label: &str, text: &str) -> Result<Vec<PluginConfig>, String> {
    let mut found = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document)
            .map_err(|e| format!("{label}: not YAML that maps to JSON: {e}"))?;
        collect(&value, label, &mut found)?;
    }
    if found.is_empty() {
        return Err(format!(
            "{label}: no finalite configuration found (looked for an envoy.filters.http.wasm \
             filter's `configuration` and an Istio WasmPlugin's `pluginConfig`)"
        ));
    }
    Ok(found)
}

fn collect(value: &Value, label: &str, found: &mut Vec<PluginConfig>) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            if map.get("kind").and_then(Value::as_str) == Some("WasmPlugin") {
                let name = value
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or("?");
                let config = value.pointer("/spec/pluginConfig").ok_or_else(|| {
                    format!("{label}: WasmPlugin {name:?} has no spec.pluginConfig")
                })?;
                found.push(PluginConfig {
                    label: format!("{label}: WasmPlugin {name:?}"),
                    bytes: serde_json::to_vec(config).expect("JSON"),
                });
                return Ok(());
            }
            if map.get("@type").and_then(Value::as_str) == Some(WASM_FILTER) {
                if let Some(config) = map.get("config") {
                    if is_finalite(config) {
                        let name = config.get("name").and_then(Value::as_str).unwrap_or("?");
                        let label = format!("{label}: wasm filter {name:?}");
                        found.push(PluginConfig {
                            bytes: configuration_bytes(config, &label)?,
                            label,
                        });
                    }
                    return Ok(());
                }
            }
            for child in map.values() {
                collect(child, label, found)?;
            }
            Ok(())
        }
        Value::Array(items) => {
            for child in items {
                collect(child, label, found)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// A wasm filter is finalite's when its name or root id says so, or its module is
/// `finalite.wasm` (or an OCI image whose name holds `finalite`).
fn is_finalite(config: &Value) -> bool {
    let named = |pointer: &str| {
        config
            .pointer(pointer)
            .and_then(Value::as_str)
            .is_some_and(|s| s.contains("finalite"))
    };
    named("/name")
        || named("/root_id")
        || named("/vm_config/code/local/filename")
        || named("/vm_config/code/remote/http_uri/uri")
}

/// The `configuration` of a PluginConfig: JSON in a StringValue, or a Struct.
fn configuration_bytes(config: &Value, label: &str) -> Result<Vec<u8>, String> {
    let Some(configuration) = config.get("configuration") else {
        return Err(format!("{label}: no `configuration`"));
    };
    match configuration.get("@type").and_then(Value::as_str) {
        Some(STRING_VALUE) => match configuration.get("value") {
            Some(Value::String(text)) => Ok(text.clone().into_bytes()),
            _ => Err(format!(
                "{label}: the StringValue `configuration` has no string `value`"
            )),
        },
        Some(STRUCT) => {
            let value = configuration
                .get("value")
                .ok_or_else(|| format!("{label}: the Struct `configuration` has no `value`"))?;
            Ok(serde_json::to_vec(value).expect("JSON"))
        }
        other => Err(format!(
            "{label}: `configuration` is a {}, expected a google.protobuf.StringValue \
             holding JSON or a google.protobuf.Struct",
            other.unwrap_or("value without @type")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_plugin_configuration_in_envoy_yaml() {
        let yaml = r#"
static_resources:
  listeners:
  - filter_chains:
    - filters:
      - typed_config:
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config:
                name: finalite
                configuration:
                  "@type": type.googleapis.com/google.protobuf.StringValue
                  value: |
                    {"policies": {}}
          - name: other
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm
              config: {name: other-plugin, configuration: {"@type": x}}
"#;
        let found = from_yaml("e.yaml", yaml).unwrap();
        assert_eq!(
            found,
            vec![PluginConfig {
                label: "e.yaml: wasm filter \"finalite\"".into(),
                bytes: b"{\"policies\": {}}\n".to_vec(),
            }]
        );
    }

    #[test]
    fn finds_wasm_plugins_across_documents() {
        let yaml = "kind: RequestAuthentication\n---\napiVersion: extensions.istio.io/v1alpha1\n\
                    kind: WasmPlugin\nmetadata: {name: finalite}\nspec:\n  pluginConfig:\n    \
                    policies: {}\n";
        let found = from_yaml("i.yaml", yaml).unwrap();
        assert_eq!(found[0].label, "i.yaml: WasmPlugin \"finalite\"");
        assert_eq!(found[0].bytes, b"{\"policies\":{}}");
    }

    #[test]
    fn says_what_it_looked_for() {
        let error = from_yaml("x.yaml", "a: 1\n").unwrap_err();
        assert!(
            error.starts_with("x.yaml: no finalite configuration found"),
            "{error}"
        );
    }
}
