//! The JSON Schema of the configuration, derived from the very types the filter parses
//! (`finalite::config`), so that the two cannot drift apart. `finalite schema` prints it;
//! `schema/finalite.schema.json` is a copy that a test keeps equal to it.

use finalite::config::Config;
use serde_json::Value;

/// The schema, as JSON (draft 2020-12).
pub fn config_schema() -> Value {
    let mut schema =
        serde_json::to_value(schemars::schema_for!(Config)).expect("a schema is plain JSON");
    if let Some(object) = schema.as_object_mut() {
        object.insert(
            "title".into(),
            Value::String("finalite configuration".into()),
        );
        object.insert(
            "description".into(),
            Value::String(
                "The plugin configuration of finalite (Envoy's `configuration`, Istio's \
                 `pluginConfig`). Generated from the filter's own types by `finalite schema`."
                    .into(),
            ),
        );
    }
    schema
}

/// The schema as the committed file holds it: pretty-printed, with a final newline.
pub fn config_schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&config_schema()).expect("serialisable");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_unknown_keys_like_the_filter() {
        let schema = config_schema();
        assert_eq!(schema["additionalProperties"], Value::Bool(false));
        assert_eq!(schema["required"], serde_json::json!(["policies"]));
        let purpose = &schema["$defs"]["PurposeConfig"];
        assert_eq!(purpose["additionalProperties"], Value::Bool(false));
    }

    #[test]
    fn describes_actions_precisely() {
        let text = config_schema_text();
        for name in ["pseudonymize", "keep_last", "truncate", "year"] {
            assert!(text.contains(name), "{name} missing from the schema");
        }
    }
}
