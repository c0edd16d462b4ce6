//! Compiled policies: the configuration checked once and turned into what the request path
//! only looks up.

pub mod action;
pub mod compartment;
pub mod fhir;
pub mod headers;
pub mod path;
pub(crate) mod purpose;
pub mod route;
pub mod rules;
pub(crate) mod token;
pub mod transform;

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::auth::claims::ClaimNames;
use crate::auth::scopes::{ScopeRequirement, ScopeTable};
use crate::auth::verifier::Verification;
use crate::config::{
    AuthRequirement, ClientConfig, Config, FhirConfig, HeaderRulesConfig, PolicyConfig, PolicyMode,
    PurposeConfig, ScopeRequirementConfig, TokenSource, Unmatched,
};
use crate::error::{ConfigError, KeyPath};
use crate::media_type::MediaType;
use action::{Action, Transform};
use fhir::FhirSettings;
use headers::{HeaderPattern, HeaderRules};
use path::FieldPath;
use route::{Matcher, PathMatch, RouteTable};
use rules::{FieldRules, Rule, TypeRules};
use transform::{PseudonymKey, TransformContext};

/// Smallest pseudonymisation key accepted (HMAC-SHA-256 wants at least its output size).
pub const MIN_PSEUDONYM_KEY_BYTES: usize = 32;

/// The whole configuration, compiled.
#[derive(Debug, Clone)]
pub struct CompiledConfig {
    pub purpose_header: String,
    pub unmatched: Unmatched,
    pub max_body_bytes: u64,
    pub max_depth: u32,
    pub token: TokenSettings,
    pub policies: Vec<Policy>,
    pub routes: RouteTable,
    /// The pseudonymisation key read from the VM's environment at load, already keying the
    /// MAC (the raw key is not kept): a request copies the prepared state instead of keying
    /// an HMAC anew.
    pub pseudonym_key: PseudonymKey,
    pub pseudonyms_per_client: bool,
}

/// Which claims mean what, and where they come from.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub source: TokenSource,
    pub metadata_key: String,
    pub claims: ClaimNames,
    /// With `from: "jwks"`: the checks and keys that verify bearer tokens.
    pub verification: Option<Arc<Verification>>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// Short digest of the policy as configured, so an audit record says which version of
    /// the rules applied.
    pub hash: String,
    pub mode: PolicyMode,
    pub auth: AuthRequirement,
    /// mTLS clients and what each may do.
    pub clients: BTreeMap<String, ClientConfig>,
    pub scopes: ScopeTable,
    pub default_purpose: Option<String>,
    pub purposes: BTreeMap<String, Purpose>,
    /// Set when the policy fronts a FHIR server.
    pub fhir: Option<FhirSettings>,
}

/// What one purpose sees of a response.
#[derive(Debug, Clone)]
pub struct Purpose {
    pub name: String,
    /// `None` when the purpose sees every field as is: the body is not even read.
    pub body: Option<Arc<FieldRules>>,
    pub headers: HeaderRules,
    pub passthrough_media_types: Vec<MediaType>,
    /// Filter chunk by chunk and send at once; a late failure resets the stream.
    pub streaming: bool,
}

impl CompiledConfig {
    /// Parses (JSON or a `google.protobuf.Struct`) and compiles; `env` reads the VM's
    /// environment (for the pseudonymisation key).
    pub fn load(
        bytes: &[u8],
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<CompiledConfig, ConfigError> {
        let config = Config::from_host_bytes(bytes)?;
        compile(&config, env)
    }

    /// Whether some policy authenticates by client certificate (`auth: "mtls"`): only then
    /// does the adapter read the peer certificate's URI SAN.
    pub fn uses_mtls(&self) -> bool {
        self.policies
            .iter()
            .any(|p| p.auth == AuthRequirement::Mtls)
    }

    /// The context transforms need for a given reuser.
    pub fn transform_context(&self, client: Option<&str>) -> TransformContext {
        self.pseudonym_key
            .context(self.pseudonyms_per_client.then(|| client.unwrap_or("")))
    }
}

/// Checks every rule of the configuration and compiles it.
pub fn compile(
    config: &Config,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<CompiledConfig, ConfigError> {
    let root = KeyPath::default();
    let purpose_header = config.purpose_header.to_ascii_lowercase();
    if purpose_header.is_empty()
        || HeaderPattern::parse(&purpose_header).is_err()
        || purpose_header.contains('*')
    {
        return Err(root.field("purpose_header").error(format!(
            "{:?} is not a valid header name",
            config.purpose_header
        )));
    }
    if config.limits.max_body_bytes == 0 {
        return Err(root
            .field("limits")
            .field("max_body_bytes")
            .error("must be at least 1"));
    }
    if config.limits.max_type_lookahead_bytes == 0 {
        return Err(root
            .field("limits")
            .field("max_type_lookahead_bytes")
            .error("must be at least 1"));
    }
    if !(1..=10_000).contains(&config.limits.max_depth) {
        return Err(root
            .field("limits")
            .field("max_depth")
            .error("must be between 1 and 10000"));
    }
    let token_key = root.field("token");
    let verification = token::compile_verification(&config.token, &token_key, env)?;
    if config.token.jwt_authn.metadata_key.is_empty() {
        return Err(token_key
            .field("jwt_authn")
            .field("metadata_key")
            .error("must not be empty"));
    }
    for (name, value) in [
        ("client_claim", &config.token.client_claim),
        ("purposes_claim", &config.token.purposes_claim),
    ] {
        if value.is_empty() {
            return Err(token_key.field(name).error("must not be empty"));
        }
    }
    if config.policies.is_empty() {
        return Err(root
            .field("policies")
            .error("no policy is defined: every request would be refused"));
    }

    let mut policies = Vec::new();
    let mut routes = RouteTable::default();
    let mut uses_pseudonyms = false;
    for (index, (name, policy)) in config.policies.iter().enumerate() {
        let key = root.field("policies").name(name);
        if name.is_empty() {
            return Err(root
                .field("policies")
                .error("a policy name must not be empty"));
        }
        routes.names.push(name.clone());
        for (i, entry) in policy.matches.iter().enumerate() {
            routes
                .matchers
                .push(compile_match(index, entry, &key.field("match").index(i))?);
        }
        let compiled = compile_policy(name, policy, &key, config.limits.max_type_lookahead_bytes)?;
        uses_pseudonyms |= compiled.purposes.values().any(|p| {
            p.body.is_some() && uses_pseudonymize(&config.policies[name].purposes[&p.name])
        });
        policies.push(compiled);
    }

    let (pseudonym_key, per_client) = match &config.pseudonymization {
        Some(settings) => {
            let key = root.field("pseudonymization").field("key_env");
            let value = env(&settings.key_env).ok_or_else(|| {
                key.error(format!(
                    "the environment variable {} is not set in the VM (Envoy: vm_config.environment_variables)",
                    settings.key_env
                ))
            })?;
            if value.len() < MIN_PSEUDONYM_KEY_BYTES {
                return Err(key.error(format!(
                    "the key in {} is {} bytes; at least {MIN_PSEUDONYM_KEY_BYTES} are required",
                    settings.key_env,
                    value.len()
                )));
            }
            (PseudonymKey::new(Some(value.as_bytes())), settings.per_client)
        }
        None if uses_pseudonyms => {
            return Err(root.field("pseudonymization").error(
                "a purpose uses \"pseudonymize\": set {\"pseudonymization\": {\"key_env\": \"FINALITE_PSEUDONYM_KEY\"}} and give the VM that variable",
            ))
        }
        None => (PseudonymKey::new(None), false),
    };

    Ok(CompiledConfig {
        purpose_header,
        unmatched: config.unmatched,
        max_body_bytes: config.limits.max_body_bytes,
        max_depth: config.limits.max_depth,
        token: TokenSettings {
            source: config.token.from,
            metadata_key: config.token.jwt_authn.metadata_key.clone(),
            claims: ClaimNames {
                client_claim: config.token.client_claim.clone(),
                purposes_claim: config.token.purposes_claim.clone(),
            },
            verification,
        },
        policies,
        routes,
        pseudonym_key,
        pseudonyms_per_client: per_client,
    })
}

fn uses_pseudonymize(purpose: &PurposeConfig) -> bool {
    let type_fields = purpose
        .types
        .iter()
        .flatten()
        .flat_map(|(_, t)| t.fields.values());
    purpose
        .fields
        .values()
        .chain(type_fields)
        .any(|v| Action::parse(v) == Ok(Action::Transform(Transform::Pseudonymize)))
}

fn compile_match(
    policy: usize,
    entry: &crate::config::MatchConfig,
    key: &KeyPath,
) -> Result<Matcher, ConfigError> {
    let path = match (&entry.prefix, &entry.path) {
        (Some(prefix), None) => PathMatch::Prefix(prefix.clone()),
        (None, Some(path)) => PathMatch::Exact(path.clone()),
        _ => return Err(key.error("give exactly one of \"prefix\" or \"path\"")),
    };
    let (PathMatch::Prefix(p) | PathMatch::Exact(p)) = &path;
    if !p.starts_with('/') {
        return Err(key.error(format!("{p:?} must start with '/'")));
    }
    let mut methods = Vec::new();
    for (i, method) in entry.methods.iter().enumerate() {
        if !is_method(method) {
            return Err(key
                .field("methods")
                .index(i)
                .error(format!("{method:?} is not an HTTP method")));
        }
        methods.push(method.to_ascii_uppercase());
    }
    Ok(Matcher {
        policy,
        path,
        methods,
    })
}

fn is_method(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphabetic())
}

fn compile_policy(
    name: &str,
    policy: &PolicyConfig,
    key: &KeyPath,
    max_type_lookahead: u64,
) -> Result<Policy, ConfigError> {
    if let Some(type_key) = &policy.type_key {
        if type_key.is_empty() {
            return Err(key
                .field("type_key")
                .error("must not be empty: name the member that gives an object its type"));
        }
    }
    if policy.purposes.is_empty() {
        return Err(key
            .field("purposes")
            .error("a policy needs at least one purpose"));
    }
    let mut scopes = ScopeTable::default();
    for (method, requirement) in &policy.scopes {
        let method_key = key.field("scopes").name(method);
        if policy.auth == AuthRequirement::None {
            return Err(
                method_key.error("scopes need a token: remove them or set \"auth\": \"required\"")
            );
        }
        if method != "*" && !is_method(method) {
            return Err(method_key.error(format!("{method:?} is not an HTTP method or \"*\"")));
        }
        let (all_of, any_of) = match requirement {
            ScopeRequirementConfig::AllOfList(list) => (list.clone(), Vec::new()),
            ScopeRequirementConfig::Explicit(explicit) => {
                (explicit.all_of.clone(), explicit.any_of.clone())
            }
        };
        if all_of.is_empty() && any_of.is_empty() {
            return Err(method_key.error("lists no scope; remove the entry to require none"));
        }
        for scope in all_of.iter().chain(&any_of) {
            if scope.is_empty()
                || scope
                    .bytes()
                    .any(|b| b <= b' ' || b == b'"' || b == b'\\' || b >= 0x7f)
            {
                return Err(method_key.error(format!(
                    "{scope:?} is not a valid scope (RFC 6749 section 3.3)"
                )));
            }
        }
        scopes.insert(method, ScopeRequirement { all_of, any_of });
    }
    if let Some(default) = &policy.default_purpose {
        if !policy.purposes.contains_key(default) {
            return Err(key.field("default_purpose").error(format!(
                "purpose {default:?} is not defined in this policy's purposes"
            )));
        }
    }
    let smart_scopes = policy.fhir.as_ref().is_some_and(|f| f.smart_scopes);
    if let (true, Some(type_key)) = (smart_scopes, &policy.type_key) {
        if type_key != "resourceType" {
            return Err(key.field("type_key").error(format!(
                "SMART scopes decide FHIR resources, typed by \"resourceType\", not {type_key:?}: remove type_key"
            )));
        }
    }
    let mut purposes = BTreeMap::new();
    for (purpose_name, purpose) in &policy.purposes {
        let purpose_key = key.field("purposes").name(purpose_name);
        if purpose_name.is_empty() || purpose_name.contains([',', ' ']) {
            return Err(key.field("purposes").error(format!(
                "{purpose_name:?} is not a usable purpose name (no spaces or commas)"
            )));
        }
        // A policy in front of a FHIR server types objects by `resourceType` unless it says
        // otherwise.
        let type_key = policy
            .type_key
            .as_deref()
            .or(policy.fhir.as_ref().map(|_| "resourceType"));
        let typing = Typing {
            type_key,
            max_lookahead: max_type_lookahead,
            smart_scopes,
        };
        let mut compiled = compile_purpose(purpose_name, purpose, &purpose_key, typing)?;
        compiled.streaming = purpose.streaming.or(policy.streaming).unwrap_or(false);
        purposes.insert(purpose_name.clone(), compiled);
    }
    if policy.auth == AuthRequirement::Mtls && policy.clients.is_empty() {
        return Err(key.field("clients").error(
            "\"auth\": \"mtls\" needs the clients it accepts (URI SAN → purposes, scopes)",
        ));
    }
    if policy.auth != AuthRequirement::Mtls && !policy.clients.is_empty() {
        return Err(key
            .field("clients")
            .error("clients are for \"auth\": \"mtls\" only"));
    }
    for (client, settings) in &policy.clients {
        for (i, purpose) in settings.purposes.iter().enumerate() {
            if !policy.purposes.contains_key(purpose) {
                return Err(key
                    .field("clients")
                    .name(client)
                    .field("purposes")
                    .index(i)
                    .error(format!(
                        "purpose {purpose:?} is not defined in this policy's purposes"
                    )));
            }
        }
    }
    let fhir = match &policy.fhir {
        Some(fhir) => Some(compile_fhir(fhir, policy.auth, &key.field("fhir"))?),
        None => None,
    };
    Ok(Policy {
        name: name.to_string(),
        hash: policy_hash(policy),
        mode: policy.mode,
        clients: policy.clients.clone(),
        auth: policy.auth,
        scopes,
        default_purpose: policy.default_purpose.clone(),
        purposes,
        fhir,
    })
}

fn compile_fhir(
    fhir: &FhirConfig,
    auth: AuthRequirement,
    key: &KeyPath,
) -> Result<FhirSettings, ConfigError> {
    let base = &fhir.base;
    if !base.starts_with('/') || base.contains(['?', '#', ' ']) || base.contains("//") {
        return Err(key.field("base").error(format!(
            "{base:?} is not a base path (it starts with \"/\", without query or fragment)"
        )));
    }
    if fhir.smart_scopes && auth != AuthRequirement::Required {
        return Err(key
            .field("smart_scopes")
            .error("SMART scopes come from a token: set \"auth\": \"required\" on this policy"));
    }
    if fhir.patient_claim.is_empty() {
        return Err(key
            .field("patient_claim")
            .error("names no claim; leave it out for \"patient\""));
    }
    Ok(FhirSettings {
        base: base.trim_end_matches('/').to_string(),
        smart_scopes: fhir.smart_scopes,
        patient_claim: fhir.patient_claim.clone(),
    })
}

/// SHA-256 of the policy as configured (its debug form is deterministic: maps are
/// ordered), as 12 hex digits.
fn policy_hash(policy: &PolicyConfig) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{policy:?}").as_bytes());
    digest.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// A purpose's (or a type's) `default`.
fn compile_default(
    value: Option<&serde_json::Value>,
    key: &KeyPath,
) -> Result<Action, ConfigError> {
    match value {
        None => Ok(Action::Drop),
        Some(value) => match value.as_str() {
            Some("drop") => Ok(Action::Drop),
            Some("keep") => Ok(Action::Keep),
            _ => Err(key
                .field("default")
                .error(format!("expected \"keep\" or \"drop\", found {value}"))),
        },
    }
}

/// A purpose's (or a type's) `fields`.
fn compile_fields(
    fields: &BTreeMap<String, serde_json::Value>,
    key: &KeyPath,
) -> Result<Vec<Rule>, ConfigError> {
    let mut rules = Vec::new();
    for (path_text, action_value) in fields {
        let field_key = key.field("fields").quoted(path_text);
        let path =
            FieldPath::parse(path_text).map_err(|e| field_key.error(format!("bad path: {e}")))?;
        let action = Action::parse(action_value).map_err(|e| field_key.error(e))?;
        rules.push(Rule { path, action });
    }
    Ok(rules)
}

/// How a purpose's objects are typed: the policy's type member, the lookahead limit, and
/// whether SMART scopes are enforced (then every purpose types objects and reads the body).
struct Typing<'a> {
    type_key: Option<&'a str>,
    max_lookahead: u64,
    smart_scopes: bool,
}

fn compile_purpose(
    name: &str,
    purpose: &PurposeConfig,
    key: &KeyPath,
    typing: Typing<'_>,
) -> Result<Purpose, ConfigError> {
    let Typing {
        type_key,
        max_lookahead: max_type_lookahead,
        smart_scopes,
    } = typing;
    let default = compile_default(purpose.default.as_ref(), key)?;
    let rules = compile_fields(&purpose.fields, key)?;
    let too_complex = |_| {
        key.field("fields").error(format!(
            "these wildcard rules combine into more than {} states; use fewer '**'",
            rules::MAX_STATES
        ))
    };
    let compiled = match (&purpose.types, type_key) {
        // Under SMART scopes every resource is found and decided, whatever the purpose's
        // rules: they apply to its fields.
        (None, Some(type_key)) if smart_scopes => {
            FieldRules::compile_resources(default, &rules, type_key, max_type_lookahead)
                .map_err(too_complex)?
        }
        (None, _) => FieldRules::compile(default, &rules).map_err(too_complex)?,
        (Some(_), None) => {
            return Err(key.field("types").error(
                "rules by type need the policy's \"type_key\", the member that gives an object its type (e.g. \"resourceType\")",
            ))
        }
        (Some(types), Some(type_key)) => {
            let mut compiled_types = Vec::new();
            for (type_name, type_rules) in types {
                let type_path = key.field("types").name(type_name);
                if type_name.is_empty() {
                    return Err(key.field("types").error("a type name must not be empty"));
                }
                compiled_types.push(TypeRules {
                    name: type_name.clone(),
                    default: compile_default(type_rules.default.as_ref(), &type_path)?,
                    rules: compile_fields(&type_rules.fields, &type_path)?,
                });
            }
            FieldRules::compile_typed(
                default,
                &rules,
                type_key,
                &compiled_types,
                max_type_lookahead,
            )
            .map_err(too_complex)?
        }
    };
    let body = if compiled.keeps_everything() && !smart_scopes {
        None
    } else {
        Some(Arc::new(compiled))
    };
    let headers = compile_headers(purpose.headers.as_ref(), &key.field("headers"))?;
    // Under SMART scopes each resource is checked against the caller's grants; a body of a
    // media type passed through (FHIR XML, a binary) would reach the caller unchecked.
    if smart_scopes && !purpose.passthrough_media_types.is_empty() {
        return Err(key.field("passthrough_media_types").error(
            "the policy enforces SMART scopes (fhir.smart_scopes): every response is checked \
             resource by resource, and a body passed through would not be; remove this list",
        ));
    }
    let mut passthrough = Vec::new();
    for (i, text) in purpose.passthrough_media_types.iter().enumerate() {
        let media = MediaType::parse(text)
            .filter(|m| !m.essence().contains('*'))
            .ok_or_else(|| {
                key.field("passthrough_media_types")
                    .index(i)
                    .error(format!("{text:?} is not a media type (type/subtype)"))
            })?;
        if media.is_json() {
            return Err(key
                .field("passthrough_media_types")
                .index(i)
                .error(format!("{text:?} is JSON, which this purpose filters; use \"default\": \"keep\" to see it whole")));
        }
        passthrough.push(media);
    }
    Ok(Purpose {
        name: name.to_string(),
        body,
        headers,
        passthrough_media_types: passthrough,
        streaming: false,
    })
}

fn compile_headers(
    config: Option<&HeaderRulesConfig>,
    key: &KeyPath,
) -> Result<HeaderRules, ConfigError> {
    let Some(config) = config else {
        return Ok(HeaderRules::KeepAll);
    };
    let parse = |list: &Vec<String>, field: &str| -> Result<Vec<HeaderPattern>, ConfigError> {
        list.iter()
            .enumerate()
            .map(|(i, p)| HeaderPattern::parse(p).map_err(|e| key.field(field).index(i).error(e)))
            .collect()
    };
    match (&config.remove, &config.keep) {
        (Some(remove), None) => Ok(HeaderRules::Remove(parse(remove, "remove")?)),
        (None, Some(keep)) => Ok(HeaderRules::KeepOnly(parse(keep, "keep")?)),
        (None, None) => Ok(HeaderRules::KeepAll),
        (Some(_), Some(_)) => Err(key.error("give \"remove\" or \"keep\", not both")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(json: &str) -> Result<CompiledConfig, ConfigError> {
        CompiledConfig::load(json.as_bytes(), &|_| None)
    }

    fn error(json: &str) -> String {
        load(json).unwrap_err().to_string()
    }

    const DOCUMENTED_EXAMPLE: &str = r#"{
      "purpose_header": "x-purpose", "unmatched": "deny",
      "limits": {"max_body_bytes": 8388608, "max_depth": 64},
      "token": {"from": "jwt_authn", "jwt_authn": {"metadata_key": "idp"},
                "client_claim": "client_id", "purposes_claim": "purposes"},
      "pseudonymization": {"key_env": "FINALITE_PSEUDONYM_KEY", "per_client": true},
      "policies": {"patients": {
        "match": [{"prefix": "/patients", "methods": ["GET"]}],
        "auth": "required",
        "scopes": {"GET": ["patients:read"], "*": ["patients:write"]},
        "default_purpose": null,
        "purposes": {
          "care": {"default": "keep"},
          "billing": {"fields": {"id": "keep", "name": "keep", "insurance": "keep"}},
          "research": {"fields": {"id": "pseudonymize", "birthDate": "year",
                                  "address.postalCode": {"truncate": 2},
                                  "conditions.code": "keep", "**.ssn": "drop"},
                       "headers": {"remove": ["x-patient-*"]}}}}}}"#;

    #[test]
    fn the_design_example_compiles() {
        let env = |name: &str| (name == "FINALITE_PSEUDONYM_KEY").then(|| "k".repeat(32));
        let config = CompiledConfig::load(DOCUMENTED_EXAMPLE.as_bytes(), &env).unwrap();
        let policy = &config.policies[0];
        assert_eq!(policy.name, "patients");
        assert!(
            policy.purposes["care"].body.is_none(),
            "care sees everything unread"
        );
        assert!(policy.purposes["billing"].body.is_some());
        assert!(config.pseudonyms_per_client);
        assert_eq!(config.token.metadata_key, "idp");
    }

    #[test]
    fn a_missing_or_short_pseudonym_key_is_refused() {
        assert_eq!(
            error(DOCUMENTED_EXAMPLE),
            "pseudonymization.key_env: the environment variable FINALITE_PSEUDONYM_KEY is not set in the VM (Envoy: vm_config.environment_variables)"
        );
        let short = CompiledConfig::load(DOCUMENTED_EXAMPLE.as_bytes(), &|_| Some("short".into()))
            .unwrap_err();
        assert_eq!(
            short.to_string(),
            "pseudonymization.key_env: the key in FINALITE_PSEUDONYM_KEY is 5 bytes; at least 32 are required"
        );
        let no_section = DOCUMENTED_EXAMPLE.replace(
            r#""pseudonymization": {"key_env": "FINALITE_PSEUDONYM_KEY", "per_client": true},"#,
            "",
        );
        assert!(error(&no_section).starts_with("pseudonymization: a purpose uses \"pseudonymize\""));
    }

    #[test]
    fn errors_name_the_offending_key() {
        let cases = [
            (
                r#"{"policies": {"patients": {"purposes": {"research": {"fields": {"birthDate": "yeer"}}}}}}"#,
                r#"policies.patients.purposes.research.fields."birthDate": unknown action "yeer"; expected"#,
            ),
            (
                r#"{"policies": {"p": {"purposes": {"r": {"fields": {"a..b": "keep"}}}}}}"#,
                r#"policies.p.purposes.r.fields."a..b": bad path: empty segment at character 3"#,
            ),
            (
                r#"{"policies": {"p": {"purposes": {}}}}"#,
                "policies.p.purposes: a policy needs at least one purpose",
            ),
            (r#"{"policies": {}}"#, "policies: no policy is defined"),
            (
                r#"{"policies": {"p": {"purposes": {"r": {"headers": {"remove": ["x y"]}}}}}}"#,
                r#"policies.p.purposes.r.headers.remove[0]: "x y": ' ' cannot appear in a header name"#,
            ),
            (
                r#"{"policies": {"p": {"purposes": {"r": {"headers": {"remove": [], "keep": []}}}}}}"#,
                r#"policies.p.purposes.r.headers: give "remove" or "keep", not both"#,
            ),
            (
                r#"{"policies": {"p": {"default_purpose": "x", "purposes": {"r": {}}}}}"#,
                r#"policies.p.default_purpose: purpose "x" is not defined"#,
            ),
            (
                r#"{"policies": {"p": {"auth": "none", "scopes": {"GET": ["a"]}, "purposes": {"r": {}}}}}"#,
                r#"policies.p.scopes.GET: scopes need a token"#,
            ),
            (
                r#"{"policies": {"p": {"scopes": {"GET": []}, "purposes": {"r": {}}}}}"#,
                r#"policies.p.scopes.GET: lists no scope"#,
            ),
            (
                r#"{"policies": {"p": {"scopes": {"G E": ["a"]}, "purposes": {"r": {}}}}}"#,
                r#"policies.p.scopes."G E": "G E" is not an HTTP method or "*""#,
            ),
            (
                r#"{"policies": {"p": {"match": [{"prefix": "/a", "path": "/b"}], "purposes": {"r": {}}}}}"#,
                r#"policies.p.match[0]: give exactly one of "prefix" or "path""#,
            ),
            (
                r#"{"policies": {"p": {"match": [{"prefix": "a"}], "purposes": {"r": {}}}}}"#,
                r#"policies.p.match[0]: "a" must start with '/'"#,
            ),
            (
                r#"{"policies": {"p": {"purposes": {"r": {"default": "maybe"}}}}}"#,
                r#"policies.p.purposes.r.default: expected "keep" or "drop", found "maybe""#,
            ),
            (
                r#"{"policies": {"p": {"purposes": {"r": {"passthrough_media_types": ["text"]}}}}}"#,
                r#"policies.p.purposes.r.passthrough_media_types[0]: "text" is not a media type"#,
            ),
            (
                r#"{"purpose_header": "x purpose", "policies": {}}"#,
                r#"purpose_header: "x purpose" is not a valid header name"#,
            ),
            (
                r#"{"limits": {"max_depth": 0}, "policies": {}}"#,
                "limits.max_depth: must be between 1 and 10000",
            ),
            (
                r#"{"token": {"from": "jwks"}, "policies": {}}"#,
                "token.from: \"jwks\" needs keys: set token.jwks",
            ),
            (
                r#"{"policies": {"p": {"purposes": {"r": {"fields": {"a": {"mask": {}}}}}}}}"#,
                r#"policies.p.purposes.r.fields."a": "mask" needs `keep_last`"#,
            ),
            (
                r#"{"policies": {"fhir": {"purposes": {"research": {"types": {"Patient": {}}}}}}}"#,
                r#"policies.fhir.purposes.research.types: rules by type need the policy's "type_key""#,
            ),
            (
                r#"{"policies": {"p": {"type_key": "", "purposes": {"r": {}}}}}"#,
                "policies.p.type_key: must not be empty",
            ),
            (
                r#"{"policies": {"p": {"type_key": "resourceType", "purposes": {"r": {"types": {"Patient": {"fields": {"birthDate": "yeer"}}}}}}}}"#,
                r#"policies.p.purposes.r.types.Patient.fields."birthDate": unknown action "yeer""#,
            ),
            (
                r#"{"policies": {"p": {"type_key": "resourceType", "purposes": {"r": {"types": {"Patient": {"default": "maybe"}}}}}}}"#,
                r#"policies.p.purposes.r.types.Patient.default: expected "keep" or "drop""#,
            ),
            (
                r#"{"limits": {"max_type_lookahead_bytes": 0}, "policies": {}}"#,
                "limits.max_type_lookahead_bytes: must be at least 1",
            ),
        ];
        for (json, expected) in cases {
            let message = error(json);
            assert!(
                message.starts_with(expected),
                "{json}\n got: {message}\nwant: {expected}"
            );
        }
    }

    #[test]
    fn unknown_keys_anywhere_are_refused() {
        assert!(error(r#"{"policies": {"p": {"purpose": {}}}}"#)
            .starts_with("policies.p.purpose: unknown field `purpose`"));
        assert!(
            error(r#"{"policies": {"p": {"purposes": {"r": {"headers": {"drop": []}}}}}}"#)
                .starts_with("policies.p.purposes.r.headers.drop: unknown field `drop`")
        );
        assert!(error(r#"{"limits": {"max_body": 1}, "policies": {}}"#)
            .starts_with("limits.max_body: unknown field `max_body`"));
    }

    #[test]
    fn typed_rules_compile_per_purpose() {
        let config = load(
            r#"{"limits": {"max_type_lookahead_bytes": 4096}, "policies": {"fhir": {"type_key": "resourceType", "purposes": {
                "research": {"fields": {"**.telecom": "drop"}, "types": {"Patient": {"fields": {"gender": "keep"}}}},
                "care": {"default": "keep"}}}}}"#,
        )
        .unwrap();
        let purposes = &config.policies[0].purposes;
        let research = purposes["research"]
            .body
            .as_ref()
            .expect("typed rules read the body");
        let typing = research.typing.as_ref().expect("typed");
        assert_eq!(
            (&*typing.key, typing.max_lookahead),
            (&b"resourceType"[..], 4096)
        );
        assert!(typing.root(b"Patient").is_some());
        assert!(typing.root(b"Practitioner").is_none());
        // A purpose without `types` is not typed, even under a policy with a type key.
        assert!(purposes["care"].body.is_none());
        assert!(error(r#"{"policies": {"p": {"type_key": "t", "purposes": {"r": {"types": {"T": {"feilds": {}}}}}}}}"#)
            .starts_with("policies.p.purposes.r.types.T.feilds: unknown field `feilds`"));
    }

    #[test]
    fn purpose_header_is_case_insensitive() {
        let config =
            load(r#"{"purpose_header": "X-Purpose", "policies": {"p": {"purposes": {"r": {}}}}}"#)
                .unwrap();
        assert_eq!(config.purpose_header, "x-purpose");
    }
}
