//! Descriptions, for the JSON Schema of the configuration, of the values that
//! [`crate::config`] keeps raw (actions, a purpose's `default`): `config` names these types
//! in its `schemars(with = ...)` attributes. The schema itself is generated from the config
//! types by the command-line tool (`finalite schema`), so that the two cannot drift apart.
//! Native only: it is never part of the `.wasm` module.
//!
//! The schema says what is well-formed; the policy compiler still checks what a schema
//! cannot (a field path's syntax, a `default_purpose` that names a defined purpose, a
//! pseudonymisation key in the environment). Values the configuration keeps raw (actions,
//! a purpose's `default`) are described here by the small types below, used only for the
//! schema.

use schemars::JsonSchema;

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
