//! The configuration as the operator writes it.
//!
//! These types mirror the configuration's public JSON names one to one and refuse any key they do
//! not know, so a typo is an error at load rather than a silently ignored rule. Values whose
//! meaning depends on their content (field paths, actions, header patterns) are kept raw here
//! and checked in [`crate::policy::compile`], which reports the exact key of every mistake.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::error::ConfigError;

/// The whole plugin configuration (Envoy's `configuration`, Istio's `pluginConfig`).
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Request header in which the client declares its purpose.
    #[serde(default = "default_purpose_header")]
    pub purpose_header: String,
    /// What to do with a request that no policy covers.
    #[serde(default)]
    pub unmatched: Unmatched,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub token: TokenConfig,
    /// Reserved for transforms that need a key; accepted so configurations stay stable.
    #[serde(default)]
    pub pseudonymization: Option<PseudonymizationConfig>,
    /// Policies by name; the name is what a route's metadata refers to.
    pub policies: BTreeMap<String, PolicyConfig>,
}

fn default_purpose_header() -> String {
    "x-purpose".to_string()
}

/// Deny is the default: a route nobody wrote a policy for must not leak.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unmatched {
    #[default]
    Deny,
    Allow,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest response body the filter reads; a larger one fails closed.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: u64,
    /// Deepest JSON nesting the filter reads; deeper fails closed.
    #[serde(default = "default_max_depth")]
    pub max_depth: u32,
    /// With typed rules: the most bytes of one object held while its type member is not
    /// yet read; past it the response fails closed.
    #[serde(default = "default_max_type_lookahead_bytes")]
    pub max_type_lookahead_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: default_max_body_bytes(),
            max_depth: default_max_depth(),
            max_type_lookahead_bytes: default_max_type_lookahead_bytes(),
        }
    }
}

fn default_max_body_bytes() -> u64 {
    8 * 1024 * 1024
}

fn default_max_depth() -> u32 {
    64
}

fn default_max_type_lookahead_bytes() -> u64 {
    1024 * 1024
}

/// Where verified claims come from and which claims mean what.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    #[serde(default)]
    pub from: TokenSource,
    #[serde(default)]
    pub jwt_authn: JwtAuthnConfig,
    /// Inline JWK Set (RFC 7517), for `from: "jwks"`.
    #[serde(default)]
    pub jwks: Option<JwkSetConfig>,
    /// A JWK Set fetched from a cluster of the host, for `from: "jwks"`.
    #[serde(default)]
    pub jwks_uri: Option<JwksUriConfig>,
    /// Name of the VM environment variable holding the HS256/384/512 secret, for
    /// `from: "jwks"`; the secret itself is never in the configuration.
    #[serde(default)]
    pub hmac_secret_env: Option<String>,
    /// `iss` a token must carry (`from: "jwks"`).
    #[serde(default)]
    pub issuer: Option<String>,
    /// `aud` must contain one of these (`from: "jwks"`).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Leeway for `exp`, `nbf` and `iat` (`from: "jwks"`; 60 when not set).
    #[serde(default)]
    pub clock_skew_seconds: Option<u64>,
    /// Claim naming the client; falls back to `azp`, then `sub`.
    #[serde(default = "default_client_claim")]
    pub client_claim: String,
    /// Claim listing the purposes the client is authorised for.
    #[serde(default = "default_purposes_claim")]
    pub purposes_claim: String,
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            from: TokenSource::default(),
            jwt_authn: JwtAuthnConfig::default(),
            jwks: None,
            jwks_uri: None,
            hmac_secret_env: None,
            issuer: None,
            audiences: Vec::new(),
            clock_skew_seconds: None,
            client_claim: default_client_claim(),
            purposes_claim: default_purposes_claim(),
        }
    }
}

fn default_client_claim() -> String {
    "client_id".to_string()
}

fn default_purposes_claim() -> String {
    "purposes".to_string()
}

/// An inline JWK Set: its keys are checked by the policy compiler, which names the culprit
/// (`token.jwks.keys[2].n`). Other members of the set are ignored, as RFC 7517 asks.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
pub struct JwkSetConfig {
    /// Public JWKs (RFC 7517): RSA, EC P-256/P-384, OKP Ed25519; no private members.
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Vec<serde_json::Map<String, Value>>")
    )]
    pub keys: Vec<Value>,
}

/// Where to fetch the JWK Set: a cluster of the host and a path on it.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksUriConfig {
    /// The host's cluster that serves the set (Envoy: a cluster of the bootstrap).
    pub cluster: String,
    /// The set's path on that cluster, starting with `/`.
    pub path: String,
    /// The `:authority` (Host) of the fetch; defaults to the cluster's name. Hosted
    /// identity providers route by host name, so set it to theirs.
    #[serde(default)]
    pub authority: Option<String>,
    /// Seconds between two fetches of the set.
    #[serde(default = "default_refresh_seconds")]
    #[cfg_attr(not(target_arch = "wasm32"), schemars(range(min = 1, max = 86400)))]
    pub refresh_seconds: u64,
}

fn default_refresh_seconds() -> u64 {
    300
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// Claims verified by Envoy's `jwt_authn` filter, read from its dynamic metadata.
    #[default]
    JwtAuthn,
    /// Tokens verified by finalite itself.
    Jwks,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtAuthnConfig {
    /// The `payload_in_metadata` name of the jwt_authn provider.
    #[serde(default = "default_metadata_key")]
    pub metadata_key: String,
}

impl Default for JwtAuthnConfig {
    fn default() -> Self {
        JwtAuthnConfig {
            metadata_key: default_metadata_key(),
        }
    }
}

fn default_metadata_key() -> String {
    "jwt_payload".to_string()
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PseudonymizationConfig {
    #[serde(default = "default_key_env")]
    pub key_env: String,
    #[serde(default)]
    pub per_client: bool,
}

fn default_key_env() -> String {
    "FINALITE_PSEUDONYM_KEY".to_string()
}

/// One policy: which requests it covers, who may call, and what each purpose sees.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Path/method matchers, the fallback for hosts without route metadata.
    #[serde(default, rename = "match")]
    pub matches: Vec<MatchConfig>,
    #[serde(default)]
    pub auth: AuthRequirement,
    /// Scopes per HTTP method (`*` for any other method).
    #[serde(default)]
    pub scopes: BTreeMap<String, ScopeRequirementConfig>,
    /// Purpose assumed when the client declares none.
    #[serde(default)]
    pub default_purpose: Option<String>,
    /// Filter and send each body chunk as it arrives (large exports) instead of holding the
    /// response until the whole body is filtered; the default of this policy's purposes.
    #[serde(default)]
    pub streaming: Option<bool>,
    /// `enforce` (default) or `dry_run`: compute and record everything, withhold nothing.
    #[serde(default)]
    pub mode: PolicyMode,
    /// For `auth: "mtls"`: each client (the peer certificate's URI SAN, such as a SPIFFE id)
    /// and what it is authorised for.
    #[serde(default)]
    pub clients: BTreeMap<String, ClientConfig>,
    /// The member whose string value gives an object its type (FHIR's `resourceType`), so
    /// that a purpose's `types` can give each type rules of its own.
    #[serde(default)]
    pub type_key: Option<String>,
    /// The policy fronts a FHIR server: its base path, and whether SMART scopes are
    /// enforced.
    #[serde(default)]
    pub fhir: Option<FhirConfig>,
    pub purposes: BTreeMap<String, PurposeConfig>,
}

/// A policy in front of a FHIR server.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhirConfig {
    /// The FHIR base path (`/fhir`); `/` for a server at the root.
    #[serde(default = "default_fhir_base")]
    pub base: String,
    /// Enforce SMART App Launch scopes (v1 and v2) on the request's interaction and on the
    /// resources the response holds.
    #[serde(default)]
    pub smart_scopes: bool,
    /// The token claim holding the launch patient's id (for `patient/` scopes).
    #[serde(default = "default_patient_claim")]
    pub patient_claim: String,
}

fn default_fhir_base() -> String {
    "/".to_string()
}

fn default_patient_claim() -> String {
    "patient".to_string()
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MatchConfig {
    /// Path prefix, compared before the query string.
    #[serde(default)]
    pub prefix: Option<String>,
    /// Exact path, compared before the query string.
    #[serde(default)]
    pub path: Option<String>,
    /// Methods this entry covers; empty means any.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// Required by default: an open route is a choice the operator must write down.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthRequirement {
    /// A verified bearer token.
    #[default]
    Required,
    /// The client is the peer certificate's URI SAN (mutual TLS, e.g. inside a mesh).
    Mtls,
    /// No authentication: open data.
    None,
}

/// Enforcing is the default; a dry run lets an operator see what a policy would do.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    #[default]
    Enforce,
    DryRun,
}

/// What one mTLS client may do.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    #[serde(default)]
    pub purposes: Vec<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// A list means all of these scopes; the object forms say it explicitly.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum ScopeRequirementConfig {
    AllOfList(Vec<String>),
    Explicit(ExplicitScopes),
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExplicitScopes {
    #[serde(default)]
    pub all_of: Vec<String>,
    #[serde(default)]
    pub any_of: Vec<String>,
}

/// What one purpose sees.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurposeConfig {
    /// `drop` (allowlist, the default) or `keep` (denylist).
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<crate::schema::DefaultAction>")
    )]
    pub default: Option<Value>,
    /// Field path → action; validated by the policy compiler.
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "BTreeMap<String, crate::schema::FieldAction>")
    )]
    pub fields: BTreeMap<String, Value>,
    #[serde(default)]
    pub headers: Option<HeaderRulesConfig>,
    /// Media types sent untouched for this purpose (opt-in).
    #[serde(default)]
    pub passthrough_media_types: Vec<String>,
    /// Overrides the policy's `streaming`.
    #[serde(default)]
    pub streaming: Option<bool>,
    /// Rules per object type (the policy's `type_key`), relative to the typed object; an
    /// object of a type not listed here is withheld whole.
    #[serde(default)]
    pub types: Option<BTreeMap<String, TypeRulesConfig>>,
}

/// The rules of one object type: a purpose's body rules, relative to the typed object.
#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeRulesConfig {
    /// `drop` (allowlist, the default) or `keep` (denylist).
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "Option<crate::schema::DefaultAction>")
    )]
    pub default: Option<Value>,
    /// Field path (relative to the typed object) → action.
    #[serde(default)]
    #[cfg_attr(
        not(target_arch = "wasm32"),
        schemars(with = "BTreeMap<String, crate::schema::FieldAction>")
    )]
    pub fields: BTreeMap<String, Value>,
}

#[cfg_attr(not(target_arch = "wasm32"), derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderRulesConfig {
    #[serde(default)]
    pub remove: Option<Vec<String>>,
    #[serde(default)]
    pub keep: Option<Vec<String>>,
}

impl Config {
    /// Parses what the host hands over: JSON (a `StringValue`) or a serialised
    /// `google.protobuf.Struct`. The error names the offending key.
    pub fn from_host_bytes(bytes: &[u8]) -> Result<Config, ConfigError> {
        // A serialised Struct starts with field 1, length-delimited: 0x0a, which is also a
        // newline, so a JSON text may start with it too; the decoder tells them apart.
        if bytes.first() == Some(&0x0a) {
            if let Ok(value) = crate::protobuf_struct::decode_struct(bytes) {
                let json =
                    serde_json::to_vec(&value).map_err(|e| ConfigError::new("", e.to_string()))?;
                return Config::from_json(&json);
            }
        }
        Config::from_json(bytes)
    }

    /// Parses JSON; the error names the offending key.
    pub fn from_json(bytes: &[u8]) -> Result<Config, ConfigError> {
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let config: Config =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
                let path = err.path().to_string();
                let inner = err.into_inner();
                let message = if inner.is_syntax() || inner.is_eof() {
                    format!("the configuration is not valid JSON: {inner}")
                } else {
                    strip_position(&inner.to_string())
                };
                ConfigError::new(if path == "." { String::new() } else { path }, message)
            })?;
        deserializer.end().map_err(|err| {
            ConfigError::new("", format!("trailing data after the configuration: {err}"))
        })?;
        Ok(config)
    }
}

/// serde_json appends "at line L column C" to data errors; the key path says more.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_string(),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_configuration_takes_the_documented_defaults() {
        let config = Config::from_json(br#"{"policies": {}}"#).unwrap();
        assert_eq!(config.purpose_header, "x-purpose");
        assert_eq!(config.unmatched, Unmatched::Deny);
        assert_eq!(config.limits.max_body_bytes, 8_388_608);
        assert_eq!(config.limits.max_depth, 64);
        assert_eq!(config.token.from, TokenSource::JwtAuthn);
        assert_eq!(config.token.client_claim, "client_id");
        assert_eq!(config.token.purposes_claim, "purposes");
    }

    #[test]
    fn unknown_key_is_named_with_its_path() {
        let err = Config::from_json(
            br#"{"policies": {"p": {"purposes": {"care": {"defualt": "keep"}}}}}"#,
        )
        .unwrap_err();
        assert_eq!(err.key, "policies.p.purposes.care.defualt");
        assert!(
            err.message.starts_with("unknown field `defualt`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn unknown_top_level_key_is_refused() {
        let err = Config::from_json(br#"{"policies": {}, "polices": {}}"#).unwrap_err();
        assert_eq!(err.to_string(), "polices: unknown field `polices`, expected one of `purpose_header`, `unmatched`, `limits`, `token`, `pseudonymization`, `policies`");
    }

    #[test]
    fn wrong_enum_value_names_the_key() {
        let err = Config::from_json(br#"{"unmatched": "maybe", "policies": {}}"#).unwrap_err();
        assert_eq!(err.key, "unmatched");
        assert!(
            err.message.contains("unknown variant `maybe`"),
            "{}",
            err.message
        );
    }

    #[test]
    fn json_with_a_leading_newline_is_json() {
        let config =
            Config::from_host_bytes(b"\n {\"unmatched\": \"allow\", \"policies\": {}}\n").unwrap();
        assert_eq!(config.unmatched, Unmatched::Allow);
    }

    #[test]
    fn syntax_error_says_so() {
        let err = Config::from_json(br#"{"policies": "#).unwrap_err();
        assert!(
            err.message
                .starts_with("the configuration is not valid JSON"),
            "{}",
            err.message
        );
    }

    #[test]
    fn missing_policies_is_refused() {
        let err = Config::from_json(br#"{}"#).unwrap_err();
        assert!(
            err.message.contains("missing field `policies`"),
            "{}",
            err.message
        );
    }
}
