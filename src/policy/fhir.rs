//! A policy in front of a FHIR server: which FHIR interaction a request is, and whether the
//! caller's SMART scopes allow it.
//!
//! The request side of SMART enforcement: the interaction and the resource type come from
//! the path and the method alone, before anything reaches the server. What the server
//! returns is checked again on the response (resources of types, categories or patients the
//! scopes do not grant are withheld), so a server that over-shares is caught either way.

use super::compartment;
use crate::auth::smart::{self, Context, Permission, ScopeGrant};

/// The `fhir` section of a policy, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirSettings {
    /// The FHIR base path, without a trailing `/` (`""` for a server at the root).
    pub base: String,
    pub smart_scopes: bool,
    /// The token claim holding the launch patient's id.
    pub patient_claim: String,
}

/// What a request is, as a FHIR interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interaction {
    /// `metadata` and `.well-known/smart-configuration`: public, no token.
    Public,
    /// An interaction on a resource type that a SMART permission covers.
    OnType {
        resource_type: String,
        permission: Permission,
        /// The id for an instance-level interaction (read, vread, update, delete,
        /// `Patient/{id}/$everything`).
        id: Option<String>,
    },
    /// Anything else (batch, system-level search, operations, compartment searches, a
    /// path outside the base): no scope can authorise it here.
    Unsupported(&'static str),
}

/// Reads a request's path (query and fragment ignored) and method as a FHIR interaction.
pub fn interaction(settings: &FhirSettings, method: &str, path: &str) -> Interaction {
    let path = path.split(['?', '#']).next().unwrap_or_default();
    let Some(rest) = path.strip_prefix(settings.base.as_str()) else {
        return Interaction::Unsupported("the path is outside the FHIR base");
    };
    let rest = match rest {
        "" => "",
        r if r.starts_with('/') => &r[1..],
        _ => return Interaction::Unsupported("the path is outside the FHIR base"),
    };
    let segments: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').collect()
    };
    let method = method.to_ascii_uppercase();
    let read = matches!(method.as_str(), "GET" | "HEAD");
    let on = |resource_type: &str, permission, id: Option<&str>| Interaction::OnType {
        resource_type: resource_type.to_string(),
        permission,
        id: id.map(str::to_string),
    };
    match segments.as_slice() {
        ["metadata"] | [".well-known", "smart-configuration"] if read => Interaction::Public,
        [t, ..] if !smart::is_type_name(t) => {
            Interaction::Unsupported("not a FHIR resource type, or a system-level interaction")
        }
        [t] if read => on(t, Permission::Search, None),
        [t] if method == "POST" => on(t, Permission::Create, None),
        [t, "_search"] if read || method == "POST" => on(t, Permission::Search, None),
        [t, "_history"] if read => on(t, Permission::Search, None),
        [t, id] if is_id(id) => match method.as_str() {
            "GET" | "HEAD" => on(t, Permission::Read, Some(id)),
            "PUT" | "PATCH" => on(t, Permission::Update, Some(id)),
            "DELETE" => on(t, Permission::Delete, Some(id)),
            _ => Interaction::Unsupported("this method is not a FHIR interaction on a resource"),
        },
        [t, id, "_history"] if read && is_id(id) => on(t, Permission::Read, Some(id)),
        [t, id, "_history", vid] if read && is_id(id) && is_id(vid) => {
            on(t, Permission::Read, Some(id))
        }
        ["Patient", id, "$everything"] if read && is_id(id) => {
            on("Patient", Permission::Read, Some(id))
        }
        _ => Interaction::Unsupported("this FHIR interaction cannot be authorised by SMART scopes"),
    }
}

/// A FHIR logical id: 1 to 64 of `A-Z a-z 0-9 - .`.
fn is_id(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The verdict of SMART scopes on an interaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Allowed,
    /// No grant covers it: the scope that would (v2 form, in the context the caller's own
    /// scopes use), for the `insufficient_scope` challenge.
    NeedsScope(String),
    /// A `patient/` grant covers the type, but the instance is not the launch patient's (or
    /// the token names no launch patient).
    OutsideCompartment,
    Unsupported(&'static str),
}

/// Whether `grants` allow `interaction` for a caller whose launch patient is `patient`.
///
/// A `patient/` grant without a launch patient grants nothing. A granular grant
/// (`?category=…`) allows the interaction on the request (the category is a property of
/// each resource, checked on the response). An instance interaction on a `Patient` allowed
/// only by `patient/` grants must name the launch patient.
pub fn access(interaction: &Interaction, grants: &[ScopeGrant], patient: Option<&str>) -> Access {
    let (resource_type, permission, id) = match interaction {
        Interaction::Public => return Access::Allowed,
        Interaction::Unsupported(why) => return Access::Unsupported(why),
        Interaction::OnType {
            resource_type,
            permission,
            id,
        } => (resource_type.as_str(), *permission, id.as_deref()),
    };
    let usable = |g: &&ScopeGrant| g.context != Context::Patient || patient.is_some();
    let covering: Vec<&ScopeGrant> = grants
        .iter()
        .filter(usable)
        .filter(|g| g.allows(resource_type, permission))
        .collect();
    if covering.is_empty() {
        let context = grants.first().map_or(Context::User, |g| g.context);
        return Access::NeedsScope(format!(
            "{}/{resource_type}.{}",
            context.as_str(),
            permission.letter()
        ));
    }
    let only_patient_context = covering.iter().all(|g| g.context == Context::Patient);
    if only_patient_context && resource_type == "Patient" {
        if let Some(id) = id {
            if Some(id) != patient {
                return Access::OutsideCompartment;
            }
        }
    }
    Access::Allowed
}

/// What the response check needs to know of one resource: read by the engine from the
/// resource's own members before it is sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResourceFacts {
    pub resource_type: String,
    /// `id`, for a `Patient`.
    pub id: Option<String>,
    /// Each `category[*].coding[*]` as `(system, code)`.
    pub categories: Vec<(Option<String>, String)>,
    /// The `reference` of each element through which its type belongs to a patient's
    /// compartment ([`compartment::reference_paths`]).
    pub compartment_references: Vec<String>,
}

/// Whether some grant lets the caller see this resource: a grant that allows `r` or `s` on
/// its type, whose category constraints all match one of the resource's codings, and, for a
/// `patient/` grant, whose launch patient's compartment holds the resource (a type outside
/// the compartment follows the type grant alone; a `Patient` only by its id).
pub fn resource_granted(
    facts: &ResourceFacts,
    grants: &[ScopeGrant],
    patient: Option<&str>,
) -> bool {
    let t = facts.resource_type.as_str();
    grants.iter().any(|grant| {
        let readable = grant.allows(t, Permission::Read) || grant.allows(t, Permission::Search);
        readable
            && grant.categories.iter().all(|wanted| {
                facts.categories.iter().any(|(system, code)| {
                    *code == wanted.code
                        && wanted
                            .system
                            .as_ref()
                            .is_none_or(|s| Some(s) == system.as_ref())
                })
            })
            && (grant.context != Context::Patient
                || patient.is_some_and(|p| in_compartment(facts, p)))
    })
}

/// What one request's caller may see of the resources a FHIR server returns: the SMART
/// grants read from its token and its launch patient. Built on the request side, where the
/// claims are read, and carried to the response filter, which asks it about each resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmartAccess {
    /// The grants that can let a resource be read: `r` or `s`, and, for a `patient/` grant,
    /// only with a launch patient (without one it grants nothing).
    grants: Vec<ScopeGrant>,
    patient: Option<String>,
}

/// What a resource's type alone says of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeVerdict {
    /// Some grant allows every resource of the type.
    Granted,
    /// No grant allows the type: withheld whatever it holds.
    Withheld,
    /// Only grants with a condition on the resource (a category, the launch patient's
    /// compartment) allow the type: its facts decide ([`SmartAccess::granted`]).
    NeedsFacts,
}

impl SmartAccess {
    pub fn new(grants: Vec<ScopeGrant>, patient: Option<String>) -> SmartAccess {
        let patient = patient.filter(|p| !p.is_empty());
        let grants = grants
            .into_iter()
            .filter(|g| {
                g.permissions.contains(Permission::Read)
                    || g.permissions.contains(Permission::Search)
            })
            .filter(|g| g.context != Context::Patient || patient.is_some())
            .collect();
        SmartAccess { grants, patient }
    }

    /// The verdict on a resource of type `resource_type` before anything else of it is read.
    ///
    /// A `Bundle` is an envelope (a search result, a document, a history): it is never
    /// withheld for its type, and each resource in it is decided on its own. What could
    /// tell of the withheld ones, its `total`, is withheld by the filter.
    pub fn type_verdict(&self, resource_type: &str) -> TypeVerdict {
        if resource_type == "Bundle" {
            return TypeVerdict::Granted;
        }
        let readable = |g: &&ScopeGrant| {
            g.allows(resource_type, Permission::Read) || g.allows(resource_type, Permission::Search)
        };
        let mut covering = self.grants.iter().filter(readable).peekable();
        if covering.peek().is_none() {
            return TypeVerdict::Withheld;
        }
        let compartment =
            resource_type == "Patient" || compartment::reference_paths(resource_type).is_some();
        if covering
            .any(|g| g.categories.is_empty() && (g.context != Context::Patient || !compartment))
        {
            TypeVerdict::Granted
        } else {
            TypeVerdict::NeedsFacts
        }
    }

    /// Whether a resource with these facts is granted ([`resource_granted`]).
    pub fn granted(&self, facts: &ResourceFacts) -> bool {
        facts.resource_type == "Bundle"
            || resource_granted(facts, &self.grants, self.patient.as_deref())
    }
}

fn in_compartment(facts: &ResourceFacts, patient: &str) -> bool {
    if facts.resource_type == "Patient" {
        return facts.id.as_deref() == Some(patient);
    }
    if compartment::reference_paths(&facts.resource_type).is_none() {
        return true;
    }
    facts
        .compartment_references
        .iter()
        .any(|r| compartment::refers_to_patient(r, patient))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(base: &str) -> FhirSettings {
        FhirSettings {
            base: base.into(),
            smart_scopes: true,
            patient_claim: "patient".into(),
        }
    }

    fn on(t: &str, permission: Permission, id: Option<&str>) -> Interaction {
        Interaction::OnType {
            resource_type: t.into(),
            permission,
            id: id.map(str::to_string),
        }
    }

    #[test]
    fn interactions_by_path_and_method() {
        let s = settings("/fhir");
        use Permission::*;
        let cases = [
            ("GET", "/fhir/metadata", Interaction::Public),
            (
                "GET",
                "/fhir/.well-known/smart-configuration",
                Interaction::Public,
            ),
            (
                "GET",
                "/fhir/Observation?patient=example",
                on("Observation", Search, None),
            ),
            ("HEAD", "/fhir/Observation", on("Observation", Search, None)),
            (
                "POST",
                "/fhir/Observation/_search",
                on("Observation", Search, None),
            ),
            (
                "GET",
                "/fhir/Observation/_search?code=x",
                on("Observation", Search, None),
            ),
            (
                "GET",
                "/fhir/Observation/_history",
                on("Observation", Search, None),
            ),
            ("POST", "/fhir/Observation", on("Observation", Create, None)),
            (
                "GET",
                "/fhir/Observation/f001",
                on("Observation", Read, Some("f001")),
            ),
            (
                "PUT",
                "/fhir/Observation/f001",
                on("Observation", Update, Some("f001")),
            ),
            (
                "PATCH",
                "/fhir/Observation/f001",
                on("Observation", Update, Some("f001")),
            ),
            (
                "DELETE",
                "/fhir/Observation/f001",
                on("Observation", Delete, Some("f001")),
            ),
            (
                "GET",
                "/fhir/Observation/f001/_history",
                on("Observation", Read, Some("f001")),
            ),
            (
                "GET",
                "/fhir/Observation/f001/_history/2",
                on("Observation", Read, Some("f001")),
            ),
            (
                "GET",
                "/fhir/Patient/example/$everything",
                on("Patient", Read, Some("example")),
            ),
        ];
        for (method, path, expected) in cases {
            assert_eq!(interaction(&s, method, path), expected, "{method} {path}");
        }
    }

    #[test]
    fn what_no_scope_can_authorise() {
        let s = settings("/fhir");
        for (method, path) in [
            ("POST", "/fhir"),
            ("GET", "/fhir"),
            ("GET", "/fhir/_history"),
            ("GET", "/fhir/$export"),
            ("GET", "/fhir/Patient/$export"),
            ("GET", "/fhir/Patient/example/Observation"),
            ("POST", "/fhir/Observation/$validate"),
            ("GET", "/fhir/Observation/f%30"),
            ("GET", "/fhir/observation/f001"),
            ("GET", "/fhirObservation"),
            ("GET", "/other/Observation"),
            ("GET", "/fhir/metadata/x"),
            ("POST", "/fhir/metadata"),
            ("OPTIONS", "/fhir/Observation/f001"),
            ("GET", "/fhir/Observation/f001/_history/2/x"),
        ] {
            assert!(
                matches!(interaction(&s, method, path), Interaction::Unsupported(_)),
                "{method} {path}: {:?}",
                interaction(&s, method, path)
            );
        }
        // A server at the root.
        assert_eq!(
            interaction(&settings(""), "GET", "/Patient/1"),
            on("Patient", Permission::Read, Some("1"))
        );
    }

    fn grants(scopes: &[&str]) -> Vec<ScopeGrant> {
        smart::grants(&scopes.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn scopes_allow_or_name_what_is_missing() {
        let s = settings("/fhir");
        let search_obs = interaction(&s, "GET", "/fhir/Observation");
        let g = grants(&["user/Observation.rs"]);
        assert_eq!(access(&search_obs, &g, None), Access::Allowed);
        assert_eq!(
            access(&interaction(&s, "GET", "/fhir/Condition"), &g, None),
            Access::NeedsScope("user/Condition.s".into())
        );
        assert_eq!(
            access(&interaction(&s, "POST", "/fhir/Observation"), &g, None),
            Access::NeedsScope("user/Observation.c".into())
        );
        // v1 read covers search and read.
        let v1 = grants(&["patient/Observation.read"]);
        assert_eq!(access(&search_obs, &v1, Some("example")), Access::Allowed);
        // A patient/ scope without a launch patient grants nothing.
        assert_eq!(
            access(&search_obs, &v1, None),
            Access::NeedsScope("patient/Observation.s".into())
        );
        // Granular scopes allow the request; the category is checked per resource.
        let lab = grants(&["patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory"]);
        assert_eq!(access(&search_obs, &lab, Some("example")), Access::Allowed);
        // Unparseable scopes grant nothing; no SMART scope at all names the user context.
        assert_eq!(
            access(
                &search_obs,
                &grants(&["patient/Observation.sr", "openid"]),
                Some("x")
            ),
            Access::NeedsScope("user/Observation.s".into())
        );
        assert_eq!(
            access(&interaction(&s, "GET", "/fhir/metadata"), &[], None),
            Access::Allowed
        );
    }

    #[test]
    fn a_patient_context_reads_only_its_patient() {
        let s = settings("/fhir");
        let g = grants(&["patient/Patient.rs", "patient/Observation.rs"]);
        let read = |path: &str| access(&interaction(&s, "GET", path), &g, Some("example"));
        assert_eq!(read("/fhir/Patient/example"), Access::Allowed);
        assert_eq!(read("/fhir/Patient/example/$everything"), Access::Allowed);
        assert_eq!(read("/fhir/Patient/other"), Access::OutsideCompartment);
        assert_eq!(
            read("/fhir/Patient/other/$everything"),
            Access::OutsideCompartment
        );
        assert_eq!(
            read("/fhir/Patient/other/_history/1"),
            Access::OutsideCompartment
        );
        // A user/ grant on Patient reads any patient the user may see.
        let both = grants(&["patient/Patient.rs", "user/Patient.r"]);
        assert_eq!(
            access(
                &interaction(&s, "GET", "/fhir/Patient/other"),
                &both,
                Some("example")
            ),
            Access::Allowed
        );
    }

    fn load_error(fhir: &str, auth: &str) -> String {
        let config = format!(
            r#"{{"policies": {{"f": {{"auth": "{auth}", "fhir": {fhir},
                "purposes": {{"care": {{"default": "keep"}}}}}}}}}}"#
        );
        crate::policy::CompiledConfig::load(config.as_bytes(), &|_| None)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_fhir_section_is_checked_at_load() {
        assert_eq!(
            load_error(r#"{"base": "fhir"}"#, "required"),
            "policies.f.fhir.base: \"fhir\" is not a base path (it starts with \"/\", without query or fragment)"
        );
        assert_eq!(
            load_error(r#"{"smart_scopes": true}"#, "none"),
            "policies.f.fhir.smart_scopes: SMART scopes come from a token: set \"auth\": \"required\" on this policy"
        );
        assert_eq!(
            load_error(r#"{"patient_claim": ""}"#, "required"),
            "policies.f.fhir.patient_claim: names no claim; leave it out for \"patient\""
        );
        assert_eq!(
            load_error(r#"{"smart_scope": true}"#, "required"),
            "policies.f.fhir.smart_scope: unknown field `smart_scope`, expected one of `base`, \
             `smart_scopes`, `patient_claim`"
        );
        // A body passed through whole would skip the per-resource check.
        let passthrough = crate::policy::CompiledConfig::load(
            br#"{"policies": {"f": {"fhir": {"smart_scopes": true}, "purposes": {"care": {
                "default": "keep", "passthrough_media_types": ["application/fhir+xml"]}}}}}"#,
            &|_| None,
        )
        .unwrap_err();
        assert_eq!(
            passthrough.to_string(),
            "policies.f.purposes.care.passthrough_media_types: the policy enforces SMART scopes \
             (fhir.smart_scopes): every response is checked resource by resource, and a body \
             passed through would not be; remove this list"
        );
        let loaded = crate::policy::CompiledConfig::load(
            br#"{"policies": {"f": {"fhir": {"base": "/fhir/", "smart_scopes": true},
                "purposes": {"care": {"default": "keep"}}}}}"#,
            &|_| None,
        )
        .unwrap();
        assert_eq!(
            loaded.policies[0].fhir,
            Some(FhirSettings {
                base: "/fhir".into(),
                smart_scopes: true,
                patient_claim: "patient".into()
            })
        );
    }

    fn facts(
        t: &str,
        id: Option<&str>,
        categories: &[(&str, &str)],
        refs: &[&str],
    ) -> ResourceFacts {
        ResourceFacts {
            resource_type: t.into(),
            id: id.map(str::to_string),
            categories: categories
                .iter()
                .map(|(s, c)| ((!s.is_empty()).then(|| s.to_string()), c.to_string()))
                .collect(),
            compartment_references: refs.iter().map(|r| r.to_string()).collect(),
        }
    }

    const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

    #[test]
    fn resources_by_type_category_and_patient() {
        let lab = facts(
            "Observation",
            None,
            &[(CATEGORY, "laboratory")],
            &["Patient/example"],
        );
        let vitals = facts(
            "Observation",
            None,
            &[(CATEGORY, "vital-signs")],
            &["Patient/example"],
        );
        let other = facts(
            "Observation",
            None,
            &[(CATEGORY, "laboratory")],
            &["Patient/pat2"],
        );
        let uncategorised = facts("Observation", None, &[], &["Patient/example"]);
        let condition = facts("Condition", None, &[], &["Patient/example"]);
        let org = facts("Organization", None, &[], &[]);
        let me = facts("Patient", Some("example"), &[], &[]);
        let them = facts("Patient", Some("pat2"), &[], &[]);

        let user = grants(&["user/Observation.rs"]);
        assert!(resource_granted(&lab, &user, None) && resource_granted(&other, &user, None));
        assert!(!resource_granted(&condition, &user, None) && !resource_granted(&me, &user, None));

        let granular = grants(&[&format!(
            "user/Observation.rs?category={CATEGORY}|laboratory"
        )]);
        assert!(resource_granted(&lab, &granular, None));
        assert!(!resource_granted(&vitals, &granular, None));
        assert!(!resource_granted(&uncategorised, &granular, None));
        let code_only = grants(&["user/Observation.rs?category=laboratory"]);
        assert!(resource_granted(&lab, &code_only, None));
        let wrong_system = grants(&["user/Observation.rs?category=http://other|laboratory"]);
        assert!(!resource_granted(&lab, &wrong_system, None));

        let patient = grants(&["patient/*.rs"]);
        let p = Some("example");
        assert!(resource_granted(&lab, &patient, p) && resource_granted(&condition, &patient, p));
        assert!(!resource_granted(&other, &patient, p));
        assert!(resource_granted(&me, &patient, p) && !resource_granted(&them, &patient, p));
        // Outside the compartment: the type grant alone.
        assert!(resource_granted(&org, &patient, p));
        // Without the launch patient, patient/ grants nothing.
        assert!(!resource_granted(&lab, &patient, None) && !resource_granted(&org, &patient, None));
        // A write-only scope does not let a resource be read.
        assert!(!resource_granted(
            &lab,
            &grants(&["user/Observation.cud"]),
            None
        ));
    }

    #[test]
    fn smart_scopes_decide_resources_typed_by_resource_type() {
        let config = br#"{"policies": {"f": {"type_key": "kind", "fhir": {"base": "/fhir", "smart_scopes": true},
            "purposes": {"care": {"default": "keep"}}}}}"#;
        assert_eq!(
            crate::policy::CompiledConfig::load(config, &|_| None)
                .unwrap_err()
                .to_string(),
            "policies.f.type_key: SMART scopes decide FHIR resources, typed by \"resourceType\", not \"kind\": remove type_key"
        );
        let config = br#"{"policies": {"f": {"type_key": "resourceType", "fhir": {"base": "/fhir", "smart_scopes": true},
            "purposes": {"care": {"default": "keep"}}}}}"#;
        let loaded = crate::policy::CompiledConfig::load(config, &|_| None).unwrap();
        // Everything kept, but read: each resource must be decided.
        let rules = loaded.policies[0].purposes["care"].body.clone().unwrap();
        assert!(rules
            .typing
            .as_ref()
            .is_some_and(|t| t.unlisted_follow_rules));
    }

    #[test]
    fn the_type_alone_decides_when_it_can() {
        let access = |scopes: &[&str], patient: Option<&str>| {
            SmartAccess::new(grants(scopes), patient.map(str::to_string))
        };
        use TypeVerdict::*;
        let cases: [(&[&str], Option<&str>, &str, TypeVerdict); 12] = [
            (&["user/Observation.rs"], None, "Observation", Granted),
            (&["user/Observation.rs"], None, "Condition", Withheld),
            (&["user/Observation.cud"], None, "Observation", Withheld),
            (&["user/Observation.rs"], None, "Bundle", Granted),
            (&[], None, "Bundle", Granted),
            (
                &["user/Observation.rs?category=laboratory"],
                None,
                "Observation",
                NeedsFacts,
            ),
            (&["patient/*.rs"], Some("p"), "Observation", NeedsFacts),
            (&["patient/*.rs"], Some("p"), "Patient", NeedsFacts),
            (&["patient/*.rs"], Some("p"), "Organization", Granted),
            (&["patient/*.rs"], None, "Organization", Withheld),
            (
                &["patient/*.rs", "user/Observation.r"],
                Some("p"),
                "Observation",
                Granted,
            ),
            (&["system/*.read"], None, "Patient", Granted),
        ];
        for (scopes, patient, t, expected) in cases {
            assert_eq!(
                access(scopes, patient).type_verdict(t),
                expected,
                "{scopes:?} {patient:?} {t}"
            );
        }
    }

    #[test]
    fn a_fhir_policy_types_objects_by_resource_type() {
        let config = br#"{"policies": {"f": {"fhir": {"base": "/fhir"},
            "purposes": {"r": {"types": {"Patient": {"fields": {"gender": "keep"}}}}}}}}"#;
        let loaded = crate::policy::CompiledConfig::load(config, &|_| None).unwrap();
        let rules = loaded.policies[0].purposes["r"].body.clone().unwrap();
        let context = crate::policy::transform::TransformContext::new(None, None);
        let mut filter = crate::json::JsonFilter::new(rules, 64, context);
        let mut out = Vec::new();
        filter
            .write(
                br#"{"gender":"f","name":"x","resourceType":"Patient"}"#,
                &mut out,
            )
            .unwrap();
        filter.finish(&mut out).unwrap();
        assert_eq!(out, br#"{"gender":"f","resourceType":"Patient"}"#);
    }
}
