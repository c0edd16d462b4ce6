//! The JSON Schema of the configuration, derived from the types the filter parses
//! ([`crate::config`]), so that the two cannot drift apart. Native only: it is never part of
//! the `.wasm` module. `finalite schema` prints it; `schema/finalite.schema.json` is a copy
//! that a test keeps equal to it.
//!
//! The schema says what is well-formed; the policy compiler still checks what a schema
//! cannot (a field path's syntax, a `default_purpose` that names a defined purpose, a
//! pseudonymisation key in the environment). Values the configuration keeps raw (actions,
//! a purpose's `default`) are described here by the small types below, used only for the
//! schema.

use schemars::JsonSchema;
use serde_json::Value;

use crate::config::Config;

/// A purpose's default for the fields no rule names.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum DefaultAction {
    /// Allowlist (the default): a field no rule keeps is withheld.
    Drop,
    /// Denylist: every field no rule withholds is kept.
    Keep,
}

/// What a rule does to the field its path reaches. `mask`, `truncate`, `year` and
/// `pseudonymize` disguise a scalar; an object or array they meet is withheld.
#[derive(JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum FieldAction {
    Named(NamedAction),
    Mask(MaskAction),
    Truncate(TruncateAction),
}

/// The actions that take no parameter.
#[derive(JsonSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum NamedAction {
    /// The field is sent as the upstream wrote it.
    Keep,
    /// The field is withheld.
    Drop,
    /// The value becomes `null`: the reuser learns the field exists, not what it holds.
    Null,
    /// Keyed HMAC-SHA-256 of the value, base64url (the key comes from the VM's environment).
    Pseudonymize,
    /// An ISO 8601 date or date-time becomes its year.
    Year,
}

/// `{"mask": {"keep_last": N}}`: only the last N characters stay readable.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct MaskAction {
    mask: MaskParameters,
}

#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct MaskParameters {
    /// How many characters, at the end, stay readable.
    keep_last: u32,
}

/// `{"truncate": N}`: only the first N characters stay (a postcode to its department).
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct TruncateAction {
    #[schemars(range(min = 1))]
    truncate: u32,
}

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
