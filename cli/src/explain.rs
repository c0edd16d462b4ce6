//! What each purpose of a policy sees, in words: for `finalite explain` and for registers of
//! processing activities.
//!
//! [`describe`] lists the rules as written, each with its effect (kept, transformed and how,
//! withheld). [`sample_fields`] runs the real engine on a sample document and reports, field
//! by field, what the purpose receives: the engine's output decides whether a field is seen;
//! the compiled rules only name the transform that applied. Values are never reported.

use std::collections::HashSet;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use finalite::config::{Config, PurposeConfig, ScopeRequirementConfig};
use finalite::json::{EngineError, JsonFilter};
use finalite::policy::action::{Action, Transform};
use finalite::policy::headers::HeaderRules;
use finalite::policy::rules::{FieldRules, StateId, ROOT};
use finalite::policy::{CompiledConfig, Purpose};

/// What a rule, or the default, does to a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    Kept,
    Transformed(Transform),
    /// The field is sent with the value `null`.
    Nulled,
    Withheld,
}

impl Effect {
    pub fn of(action: &Action) -> Effect {
        match action {
            Action::Keep => Effect::Kept,
            Action::Drop => Effect::Withheld,
            Action::Null => Effect::Nulled,
            Action::Transform(transform) => Effect::Transformed(*transform),
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::Kept => f.write_str("kept"),
            Effect::Withheld => f.write_str("withheld"),
            Effect::Nulled => f.write_str("transformed: set to null"),
            Effect::Transformed(transform) => {
                write!(f, "transformed: {}", describe_transform(transform))
            }
        }
    }
}

/// A transform in words.
pub fn describe_transform(transform: &Transform) -> String {
    match transform {
        Transform::Pseudonymize => "pseudonymised (keyed HMAC-SHA-256)".to_string(),
        Transform::Year => "reduced to its year".to_string(),
        Transform::Mask { keep_last } => format!("masked but the last {keep_last} characters"),
        Transform::Truncate(n) => format!("truncated to {n} characters"),
    }
}

/// One policy, as its purposes' readers need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyView {
    pub name: String,
    /// `required` (a verified bearer token), `none` (open data), or another mode, as written.
    pub auth: String,
    /// `match` entries as `METHOD,METHOD path` (`*` for any method; a prefix ends with `*`).
    pub matches: Vec<String>,
    /// Per method (`*`: any other): the scopes needed, in words.
    pub scopes: Vec<(String, String)>,
    pub default_purpose: Option<String>,
    /// For `auth: "mtls"`: each client (certificate URI SAN) with its purposes and scopes.
    pub clients: Vec<ClientView>,
    /// When the policy enforces SMART on FHIR scopes: on each request and on each resource
    /// of its response, before any purpose's rules.
    pub smart: Option<SmartView>,
    pub purposes: Vec<PurposeView>,
}

/// A policy's SMART on FHIR enforcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartView {
    /// The FHIR base path (`""` for a server at the root).
    pub base: String,
    /// The token claim that names the launch patient.
    pub patient_claim: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientView {
    pub id: String,
    pub purposes: Vec<String>,
    pub scopes: Vec<String>,
}

/// One purpose of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeView {
    pub name: String,
    /// `Kept` (a denylist) or `Withheld` (an allowlist): what happens to a field no rule names.
    pub default: Effect,
    /// The body goes out untouched (no rule withholds or transforms anything).
    pub body_untouched: bool,
    pub streaming: bool,
    /// Rules as written, sorted by path, each with its effect.
    pub rules: Vec<RuleView>,
    /// With typed rules (the policy's `type_key`): each type's rules, by type name; an
    /// object of a type not listed is withheld whole.
    pub types: Vec<TypeView>,
    pub headers: HeadersView,
    pub passthrough_media_types: Vec<String>,
}

/// The rules of one object type, relative to the typed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeView {
    pub name: String,
    /// What happens to a member of the typed object no rule names.
    pub default: Effect,
    pub rules: Vec<RuleView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleView {
    pub path: String,
    pub effect: Effect,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadersView {
    KeepAll,
    Remove(Vec<String>),
    KeepOnly(Vec<String>),
}

/// Describes every policy of a configuration that `compiled` was compiled from (so every
/// path and action in it is known to be valid).
pub fn describe(config: &Config, compiled: &CompiledConfig) -> Vec<PolicyView> {
    compiled
        .policies
        .iter()
        .filter_map(|policy| {
            let written = config.policies.get(&policy.name)?;
            let matches = written
                .matches
                .iter()
                .map(|m| {
                    let methods = if m.methods.is_empty() {
                        "*".to_string()
                    } else {
                        m.methods.join(",").to_ascii_uppercase()
                    };
                    match (&m.prefix, &m.path) {
                        (Some(prefix), _) => format!("{methods} {prefix}*"),
                        (None, Some(path)) => format!("{methods} {path}"),
                        (None, None) => methods,
                    }
                })
                .collect();
            // Named methods first, then `*` (any other method).
            let mut scopes: Vec<(String, String)> = written
                .scopes
                .iter()
                .map(|(method, requirement)| (method.clone(), describe_scopes(requirement)))
                .collect();
            scopes.sort_by_key(|(method, _)| method == "*");
            let purposes = policy
                .purposes
                .values()
                .filter_map(|purpose| {
                    let written = written.purposes.get(&purpose.name)?;
                    Some(describe_purpose(purpose, written))
                })
                .collect();
            Some(PolicyView {
                name: policy.name.clone(),
                auth: snake_case(&format!("{:?}", policy.auth)),
                matches,
                scopes,
                default_purpose: policy.default_purpose.clone(),
                clients: policy
                    .clients
                    .iter()
                    .map(|(id, client)| ClientView {
                        id: id.clone(),
                        purposes: client.purposes.clone(),
                        scopes: client.scopes.clone(),
                    })
                    .collect(),
                smart: policy
                    .fhir
                    .as_ref()
                    .filter(|f| f.smart_scopes)
                    .map(|f| SmartView {
                        base: f.base.clone(),
                        patient_claim: f.patient_claim.clone(),
                    }),
                purposes,
            })
        })
        .collect()
}

fn rule_views(fields: &std::collections::BTreeMap<String, serde_json::Value>) -> Vec<RuleView> {
    fields
        .iter()
        .filter_map(|(path, action)| {
            let action = Action::parse(action).ok()?;
            Some(RuleView {
                path: path.clone(),
                effect: Effect::of(&action),
            })
        })
        .collect()
}

fn describe_purpose(purpose: &Purpose, written: &PurposeConfig) -> PurposeView {
    let headers = &written.headers;
    let rules = rule_views(&written.fields);
    let types = written
        .types
        .iter()
        .flatten()
        .map(|(name, rules)| TypeView {
            name: name.clone(),
            default: match rules.default.as_ref().and_then(|d| d.as_str()) {
                Some("keep") => Effect::Kept,
                _ => Effect::Withheld,
            },
            rules: rule_views(&rules.fields),
        })
        .collect();
    let default = match &purpose.body {
        None => Effect::Kept,
        Some(rules) => Effect::of(&rules.default),
    };
    let headers = match (&purpose.headers, headers) {
        (HeaderRules::KeepAll, _) | (_, None) => HeadersView::KeepAll,
        (HeaderRules::Remove(_), Some(written)) => {
            HeadersView::Remove(written.remove.clone().unwrap_or_default())
        }
        (HeaderRules::KeepOnly(_), Some(written)) => {
            HeadersView::KeepOnly(written.keep.clone().unwrap_or_default())
        }
    };
    PurposeView {
        name: purpose.name.clone(),
        default,
        body_untouched: purpose.body.is_none(),
        streaming: purpose.streaming,
        rules,
        types,
        headers,
        passthrough_media_types: purpose
            .passthrough_media_types
            .iter()
            .map(|m| m.essence().to_string())
            .collect(),
    }
}

fn describe_scopes(requirement: &ScopeRequirementConfig) -> String {
    let (all_of, any_of) = match requirement {
        ScopeRequirementConfig::AllOfList(list) => (list.as_slice(), &[][..]),
        ScopeRequirementConfig::Explicit(explicit) => {
            (explicit.all_of.as_slice(), explicit.any_of.as_slice())
        }
    };
    let mut parts = Vec::new();
    if !all_of.is_empty() {
        parts.push(all_of.join(" and "));
    }
    if !any_of.is_empty() {
        parts.push(format!("one of {}", any_of.join(", ")));
    }
    parts.join(", and ")
}

/// `DryRun` → `dry_run`, as the configuration spells enum values.
fn snake_case(debug: &str) -> String {
    let mut out = String::new();
    for (i, c) in debug.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// One field of a sample document and what the purpose receives of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleField {
    /// In policy path syntax, arrays marked `[*]` (`conditions[*].code`).
    pub path: String,
    pub effect: Effect,
}

/// Filters `sample` with the engine as the filter would for `purpose` (no client: pseudonyms
/// as for an anonymous reuser), then lists every field of the sample, in document order and
/// once per path, with what the purpose receives of it. An engine refusal is returned as is.
pub fn sample_fields(
    config: &CompiledConfig,
    purpose: &Purpose,
    sample: &[u8],
) -> Result<Vec<SampleField>, EngineError> {
    let output = match &purpose.body {
        None => sample.to_vec(),
        Some(rules) => {
            let mut filter = JsonFilter::new(
                rules.clone(),
                config.max_depth,
                config.transform_context(None),
            );
            let mut out = Vec::new();
            filter.write(sample, &mut out)?;
            filter.finish(&mut out)?;
            out
        }
    };
    // Both parse: the engine accepted the sample and always writes valid JSON.
    let input: Node = serde_json::from_slice(sample).unwrap_or(Node::Scalar);
    let output: Node = serde_json::from_slice(&output).unwrap_or(Node::Scalar);
    let mut seen = HashSet::new();
    output.walk(None, ROOT, None, &mut Vec::new(), &mut |path, _| {
        seen.insert(path.to_string());
    });

    let mut fields: Vec<SampleField> = Vec::new();
    let mut listed = HashSet::new();
    let rules = purpose.body.as_deref();
    input.walk(rules, ROOT, None, &mut Vec::new(), &mut |path, action| {
        if !listed.insert(path.to_string()) {
            return;
        }
        let effect = if seen.contains(path) {
            action.map(Effect::of).unwrap_or(Effect::Kept)
        } else if ancestors(path).any(|a| seen.contains(a)) {
            // A container sent as `null` in place of its content.
            Effect::Nulled
        } else {
            Effect::Withheld
        };
        fields.push(SampleField {
            path: path.to_string(),
            effect,
        });
    });
    Ok(fields)
}

/// `a.b[*].c` → `a.b[*]`, `a`.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let bytes = path.as_bytes();
    let mut in_quotes = false;
    let mut cuts = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_quotes => i += 1,
            b'"' => in_quotes = !in_quotes,
            b'.' | b'[' if !in_quotes && i > 0 => cuts.push(i),
            _ => {}
        }
        i += 1;
    }
    cuts.into_iter().rev().map(move |cut| &path[..cut])
}

/// A JSON document with its object members in document order (the leaves' values are not
/// kept: nothing here reports them).
enum Node {
    Object(Vec<(String, Node)>),
    Array(Vec<Node>),
    Scalar,
}

impl Node {
    /// Calls `visit` with the path of every leaf (scalars, empty objects and arrays) and the
    /// action the rules give it (its own rule's, else the one it inherits).
    fn walk(
        &self,
        rules: Option<&FieldRules>,
        state: StateId,
        inherited: Option<&Action>,
        path: &mut Vec<String>,
        visit: &mut dyn FnMut(&str, Option<&Action>),
    ) {
        let inherited = inherited.or(rules.map(|r| &r.default));
        self.walk_inner(rules, state, inherited, path, visit);
    }

    fn walk_inner(
        &self,
        rules: Option<&FieldRules>,
        state: StateId,
        action: Option<&Action>,
        path: &mut Vec<String>,
        visit: &mut dyn FnMut(&str, Option<&Action>),
    ) {
        match self {
            Node::Object(members) if !members.is_empty() => {
                for (key, value) in members {
                    let (next, own) = match rules {
                        Some(rules) => {
                            let next = rules.step(state, key.as_bytes());
                            (next, rules.own_action(next).or(action))
                        }
                        None => (state, action),
                    };
                    path.push(segment(key));
                    value.walk_inner(rules, next, own, path, visit);
                    path.pop();
                }
            }
            Node::Array(items) if !items.is_empty() => {
                // Arrays are transparent: an element is the field that holds the array.
                let marked = !path.is_empty();
                if marked {
                    path.push("[*]".to_string());
                }
                for item in items {
                    item.walk_inner(rules, state, action, path, visit);
                }
                if marked {
                    path.pop();
                }
            }
            _ => visit(&join(path), action),
        }
    }
}

/// A key as a path segment: quoted when it holds anything the path syntax gives a meaning.
fn segment(key: &str) -> String {
    let plain = !key.is_empty()
        && key != "*"
        && key != "**"
        && !key.chars().any(|c| {
            matches!(c, '.' | '[' | ']' | '"' | '*') || c.is_whitespace() || c.is_control()
        });
    if plain {
        key.to_string()
    } else {
        format!("\"{}\"", key.replace('\\', "\\\\").replace('"', "\\\""))
    }
}

fn join(path: &[String]) -> String {
    let mut out = String::new();
    for part in path {
        if !out.is_empty() && part != "[*]" {
            out.push('.');
        }
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('$');
    }
    out
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Node, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Array(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut members = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, Node>()? {
                    members.push((key, value));
                }
                Ok(Node::Object(members))
            }
        }
        deserializer.deserialize_any(NodeVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{
        "pseudonymization": {"key_env": "K"},
        "policies": {
          "patients": {
            "match": [{"prefix": "/patients", "methods": ["GET"]}],
            "scopes": {"GET": ["patients:read"], "*": {"any_of": ["patients:write", "admin"]}},
            "purposes": {
              "care": {"default": "keep"},
              "research": {
                "fields": {"id": "pseudonymize", "birthDate": "year", "conditions.code": "keep",
                           "address.postalCode": {"truncate": 2}, "**.ssn": "drop",
                           "phone": {"mask": {"keep_last": 2}}, "insurance": "null"},
                "headers": {"remove": ["x-patient-*"]}
              }
            }
          },
          "open": {"auth": "none", "default_purpose": "stats", "streaming": true,
                   "purposes": {"stats": {"fields": {"count": "keep"},
                                          "headers": {"keep": ["content-type"]},
                                          "passthrough_media_types": ["text/csv"]}}}
        }
    }"#;

    fn load() -> (Config, CompiledConfig) {
        let env = |_: &str| Some("k".repeat(32));
        let config = Config::from_json(CONFIG.as_bytes()).unwrap();
        let compiled = finalite::policy::compile(&config, &env).unwrap();
        (config, compiled)
    }

    #[test]
    fn describes_every_policy_and_purpose() {
        let (config, compiled) = load();
        let views = describe(&config, &compiled);
        assert_eq!(views.len(), 2);
        let open = &views[0];
        assert_eq!(open.name, "open");
        assert_eq!(open.auth, "none");
        assert_eq!(open.default_purpose.as_deref(), Some("stats"));
        let stats = &open.purposes[0];
        assert!(stats.streaming);
        assert_eq!(stats.default, Effect::Withheld);
        assert_eq!(
            stats.headers,
            HeadersView::KeepOnly(vec!["content-type".into()])
        );
        assert_eq!(stats.passthrough_media_types, vec!["text/csv".to_string()]);

        let patients = &views[1];
        assert_eq!(patients.auth, "required");
        assert_eq!(patients.matches, vec!["GET /patients*".to_string()]);
        assert_eq!(
            patients.scopes,
            vec![
                ("GET".to_string(), "patients:read".to_string()),
                ("*".to_string(), "one of patients:write, admin".to_string()),
            ]
        );
        let care = &patients.purposes[0];
        assert!(care.body_untouched);
        assert_eq!(care.default, Effect::Kept);
        let research = &patients.purposes[1];
        let rules: Vec<String> = research
            .rules
            .iter()
            .map(|r| format!("{} {}", r.path, r.effect))
            .collect();
        assert_eq!(
            rules,
            [
                "**.ssn withheld",
                "address.postalCode transformed: truncated to 2 characters",
                "birthDate transformed: reduced to its year",
                "conditions.code kept",
                "id transformed: pseudonymised (keyed HMAC-SHA-256)",
                "insurance transformed: set to null",
                "phone transformed: masked but the last 2 characters",
            ]
        );
        assert_eq!(
            research.headers,
            HeadersView::Remove(vec!["x-patient-*".into()])
        );
    }

    #[test]
    fn sample_fields_follow_the_engine_in_document_order() {
        let (_, compiled) = load();
        let research = &compiled.policies[1].purposes["research"];
        let sample = br#"[{"id": "1", "name": {"family": "M", "given": ["A", "B"]},
            "birthDate": "1984-03-12", "ssn": "1", "phone": "0600",
            "address": {"city": "Lyon", "postalCode": "69003"},
            "insurance": {"number": "X"},
            "conditions": [{"code": "E11", "display": "d"}, {"code": "I10", "ssn": "2"}],
            "tags": [], "a.b": {"ssn": 3}}]"#;
        let fields = sample_fields(&compiled, research, sample).unwrap();
        let listed: Vec<String> = fields
            .iter()
            .map(|f| format!("{} {}", f.path, f.effect))
            .collect();
        assert_eq!(
            listed,
            [
                "id transformed: pseudonymised (keyed HMAC-SHA-256)",
                "name.family withheld",
                "name.given[*] withheld",
                "birthDate transformed: reduced to its year",
                "ssn withheld",
                "phone transformed: masked but the last 2 characters",
                "address.city withheld",
                "address.postalCode transformed: truncated to 2 characters",
                "insurance.number transformed: set to null",
                "conditions[*].code kept",
                "conditions[*].display withheld",
                "conditions[*].ssn withheld",
                "tags withheld",
                "\"a.b\".ssn withheld",
            ]
        );
    }

    #[test]
    fn an_untouched_body_is_all_kept() {
        let (_, compiled) = load();
        let care = &compiled.policies[1].purposes["care"];
        let fields = sample_fields(&compiled, care, br#"{"a": {"b": 1}, "c": [1]}"#).unwrap();
        let listed: Vec<String> = fields
            .iter()
            .map(|f| format!("{} {}", f.path, f.effect))
            .collect();
        assert_eq!(listed, ["a.b kept", "c[*] kept"]);
    }

    #[test]
    fn engine_errors_come_back_with_offset_and_path() {
        let (_, compiled) = load();
        let research = &compiled.policies[1].purposes["research"];
        let error = sample_fields(&compiled, research, br#"{"birthDate": "soon"}"#).unwrap_err();
        assert_eq!(error.path, "$.birthDate");
        let error = sample_fields(&compiled, research, br#"{"id": }"#).unwrap_err();
        assert_eq!(error.offset, 7);
    }

    #[test]
    fn mtls_clients_are_listed() {
        let json = r#"{"policies": {"internal": {"auth": "mtls",
            "clients": {"spiffe://h.example/ns/care/sa/ehr": {"purposes": ["care"]}},
            "purposes": {"care": {"default": "keep"}}}}}"#;
        let config = Config::from_json(json.as_bytes()).unwrap();
        let compiled = finalite::policy::compile(&config, &|_| None).unwrap();
        let views = describe(&config, &compiled);
        assert_eq!(views[0].auth, "mtls");
        assert_eq!(
            views[0].clients,
            vec![ClientView {
                id: "spiffe://h.example/ns/care/sa/ehr".into(),
                purposes: vec!["care".into()],
                scopes: vec![],
            }]
        );
    }

    #[test]
    fn a_policy_enforcing_smart_scopes_says_so() {
        let json = r#"{"policies": {"fhir": {"fhir": {"base": "/fhir", "smart_scopes": true,
                "patient_claim": "launch_patient"},
            "purposes": {"care": {"default": "keep"}}},
            "plain": {"fhir": {"base": "/r4"}, "purposes": {"care": {"default": "keep"}}}}}"#;
        let config = Config::from_json(json.as_bytes()).unwrap();
        let compiled = finalite::policy::compile(&config, &|_| None).unwrap();
        let views = describe(&config, &compiled);
        assert_eq!(
            views[0].smart,
            Some(SmartView {
                base: "/fhir".into(),
                patient_claim: "launch_patient".into()
            })
        );
        // Read (each resource is decided) even though every field is kept.
        assert!(!views[0].purposes[0].body_untouched);
        assert_eq!(views[1].smart, None);
        let text = crate::render::text("c.json", &views, None);
        assert!(
            text.contains(
                "  SMART scopes:    enforced (FHIR base /fhir, launch patient from the claim launch_patient): a request needs a scope for its interaction, and each resource of the response"
            ),
            "{text}"
        );
        assert_eq!(text.matches("SMART scopes:").count(), 1, "{text}");
        let markdown = crate::render::markdown("c.json", &views, None);
        assert!(
            markdown.contains("| SMART scopes | enforced (FHIR base `/fhir`, launch patient from the claim `launch_patient`)"),
            "{markdown}"
        );
    }

    #[test]
    fn ancestors_respect_quotes() {
        let list: Vec<&str> = ancestors("\"a.b\".c[*].d").collect();
        assert_eq!(list, ["\"a.b\".c[*]", "\"a.b\".c", "\"a.b\""]);
    }
}
