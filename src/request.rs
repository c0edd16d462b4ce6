//! The request path: policy, caller identity, scopes, purpose.

use std::sync::Arc;

use crate::auth::claims::{BearerRefusal, ClaimSource, ClaimValue, Claims};
use crate::auth::scopes::MethodScopes;
use crate::auth::smart;
use crate::config::{AuthRequirement, PolicyMode, Unmatched};
use crate::decision::{Allowed, RequestDecision, CONDITIONAL_HEADERS, REQUEST_HEADERS_TO_REMOVE};
use crate::denial::{Denial, DenialKind};
use crate::policy::fhir::{self, Access, FhirSettings, Interaction, SmartAccess};
use crate::policy::purpose;
use crate::policy::route::{RouteInfo, Selection};
use crate::policy::{CompiledConfig, Policy};

/// The decision and what the audit record says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub decision: RequestDecision,
    pub policy: Option<usize>,
    /// The purpose, only when it is a name the policy defines (never a raw header value).
    pub purpose: Option<String>,
    pub client: Option<String>,
    /// The policy is in dry-run mode: a denial is recorded but not enforced, and the
    /// response is measured but not changed.
    pub dry_run: bool,
}

/// What the adapter does with a request, the policy's mode applied to the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestAction<'a> {
    /// Answer this refusal; the request goes no further.
    Refuse(&'a Denial),
    /// Dry run: the refusal is recorded (and logged by its type), the request goes on.
    RecordRefusal(&'a Denial),
    /// Let through, unfiltered.
    Pass,
    /// Let through; the response is planned for this purpose.
    Filter(&'a Allowed),
}

impl Verdict {
    pub fn action(&self) -> RequestAction<'_> {
        match &self.decision {
            RequestDecision::Deny(denial) if self.dry_run => RequestAction::RecordRefusal(denial),
            RequestDecision::Deny(denial) => RequestAction::Refuse(denial),
            RequestDecision::PassUnfiltered => RequestAction::Pass,
            RequestDecision::Allow(allowed) => RequestAction::Filter(allowed),
        }
    }

    fn new(decision: RequestDecision) -> Verdict {
        Verdict {
            decision,
            policy: None,
            purpose: None,
            client: None,
            dry_run: false,
        }
    }
}

/// The purpose a request declares in its purpose header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declared<'a> {
    /// No purpose header (or an empty one).
    None,
    One(&'a str),
    /// The header is sent more than once with different values: refused, since the upstream
    /// (or another filter) may act on another value than the one finalite checked.
    Conflicting,
}

impl<'a> From<Option<&'a str>> for Declared<'a> {
    fn from(value: Option<&'a str>) -> Declared<'a> {
        value.map_or(Declared::None, Declared::One)
    }
}

/// What the request's header map declares in the header `name` (lowercase): every value
/// is read, and values that differ (spaces around them aside; a value that is not UTF-8
/// differs from any) conflict.
pub fn declared_purpose<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Declared<'a> {
    let mut values = headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v);
    let Some(first) = values.next() else {
        return Declared::None;
    };
    let trimmed = |v: &'a Vec<u8>| std::str::from_utf8(v).ok().map(str::trim);
    let first_text = trimmed(first);
    if values.any(|v| first_text.is_none() || trimmed(v) != first_text) {
        return Declared::Conflicting;
    }
    match first_text {
        Some(text) => Declared::One(text),
        // Not UTF-8: it cannot name a purpose (as if undeclared, then checked as such).
        None => Declared::None,
    }
}

/// The first value of the request header `name` (the one a host's single-header read
/// returns), or `None` when absent or not UTF-8 (such a value cannot name a purpose).
/// `headers` is the map as the host hands it over in one call; `name` is lowercase, as the
/// host's names are.
pub fn first_header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a str> {
    let (_, value) = headers.iter().find(|(n, _)| n == name)?;
    std::str::from_utf8(value).ok()
}

/// The headers of an allowed request to remove before it goes upstream: those of
/// `REQUEST_HEADERS_TO_REMOVE`, and of `CONDITIONAL_HEADERS` when the purpose filters the
/// body, that it carries; or all of them when its header map could not be read (fail
/// closed).
pub fn headers_to_remove<'a>(
    config: &CompiledConfig,
    allowed: &Allowed,
    headers: Option<&'a [(String, Vec<u8>)]>,
) -> impl Iterator<Item = &'static str> + 'a {
    let filters_body = config
        .policies
        .get(allowed.policy)
        .and_then(|policy| policy.purposes.get(&allowed.purpose))
        .is_none_or(|purpose| purpose.body.is_some());
    let conditional: &[&str] = if filters_body {
        CONDITIONAL_HEADERS
    } else {
        &[]
    };
    REQUEST_HEADERS_TO_REMOVE
        .iter()
        .chain(conditional)
        .copied()
        .filter(move |name| headers.is_none_or(|headers| headers.iter().any(|(n, _)| n == name)))
}

/// Who is calling, as the host established it.
pub struct Caller<'a> {
    /// Verified token claims: Envoy's jwt_authn metadata, or the bearer token verified by
    /// finalite itself on first use (`auth::bearer::BearerClaims`, `token.from: "jwks"`).
    pub claims: &'a dyn ClaimSource,
    /// The URI SAN of the client certificate, when the connection is mutual TLS.
    pub peer_uri_san: Option<&'a str>,
}

/// Decides a request from what the host tells about it.
pub fn decide<'d>(
    config: &CompiledConfig,
    route: &RouteInfo<'_>,
    declared: impl Into<Declared<'d>>,
    caller: &Caller<'_>,
) -> Verdict {
    let declared = declared.into();
    let declared_purpose = match declared {
        Declared::One(name) => Some(name),
        Declared::None | Declared::Conflicting => None,
    };
    let index = match config.routes.select(route) {
        Selection::Policy(index) => index,
        Selection::UnknownPolicy(_) => {
            return Verdict::new(RequestDecision::Deny(Denial::no_policy()))
        }
        Selection::None => {
            return Verdict::new(match config.unmatched {
                Unmatched::Allow => RequestDecision::PassUnfiltered,
                Unmatched::Deny => RequestDecision::Deny(Denial::no_policy()),
            })
        }
    };
    let policy = &config.policies[index];
    let smart = policy
        .fhir
        .as_ref()
        .filter(|f| f.smart_scopes)
        .map(|f| (f, fhir::interaction(f, route.method, route.path)));
    if let Some((_, Interaction::Public)) = &smart {
        // The capability statement and the SMART configuration: public, and free of
        // personal data.
        let mut verdict = Verdict::new(RequestDecision::PassUnfiltered);
        verdict.policy = Some(index);
        return verdict;
    }
    let claims = identify(policy, config, caller);
    // The name the purpose checks consider: the declared one, the default only when none is
    // declared (none when two conflict). The record names it only when the policy defines
    // it: an undefined name is client input, and the default did not apply to it.
    let considered = match declared {
        Declared::Conflicting => None,
        _ => declared_purpose
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .or(policy.default_purpose.as_deref()),
    };
    let mut verdict = Verdict {
        decision: RequestDecision::PassUnfiltered,
        policy: Some(index),
        purpose: considered
            .filter(|name| policy.purposes.contains_key(*name))
            .map(str::to_string),
        client: claims
            .as_ref()
            .ok()
            .and_then(|c| c.as_ref())
            .and_then(|c| c.client_id.clone()),
        dry_run: policy.mode == PolicyMode::DryRun,
    };
    verdict.decision = match claims {
        Err(denial) => RequestDecision::Deny(denial),
        Ok(claims) => match check_scopes(policy, route.method, claims.as_ref()).and_then(|()| {
            smart.as_ref().map_or(Ok(None), |(settings, interaction)| {
                check_smart(settings, interaction, claims.as_ref(), caller.claims).map(Some)
            })
        }) {
            Err(denial) => RequestDecision::Deny(denial),
            Ok(_) if declared == Declared::Conflicting => {
                RequestDecision::Deny(Denial::purpose_ambiguous(&config.purpose_header))
            }
            Ok(access) => match purpose::resolve(declared_purpose, policy, claims.as_ref()) {
                Ok(name) => RequestDecision::Allow(Allowed {
                    policy: index,
                    purpose: name.to_string(),
                    client_id: claims.and_then(|c| c.client_id),
                    smart: access.map(Arc::new),
                }),
                Err(refusal) => {
                    RequestDecision::Deny(Denial::purpose(refusal, &config.purpose_header))
                }
            },
        },
    };
    verdict
}

/// The caller's claims as the policy's `auth` defines them (`None` for open routes).
fn identify(
    policy: &Policy,
    config: &CompiledConfig,
    caller: &Caller<'_>,
) -> Result<Option<Claims>, Denial> {
    match policy.auth {
        AuthRequirement::None => Ok(None),
        AuthRequirement::Required => match Claims::read(caller.claims, &config.token.claims) {
            Some(claims) => Ok(Some(claims)),
            None => Err(match caller.claims.refusal() {
                None => Denial::no_token(),
                Some(BearerRefusal::Invalid(error)) => Denial::invalid_token(error),
                Some(BearerRefusal::KeysUnavailable {
                    retry_after_seconds,
                }) => Denial::keys_unavailable(retry_after_seconds),
            }),
        },
        AuthRequirement::Mtls => match caller.peer_uri_san.filter(|s| !s.is_empty()) {
            // An unknown client is identified but authorised for nothing.
            Some(san) => Ok(Some(Claims {
                client_id: Some(san.to_string()),
                scopes: policy
                    .clients
                    .get(san)
                    .map(|c| c.scopes.clone())
                    .unwrap_or_default(),
                purposes: policy
                    .clients
                    .get(san)
                    .map(|c| c.purposes.clone())
                    .unwrap_or_default(),
            })),
            None => Err(Denial::client_certificate_required()),
        },
    }
}

fn check_scopes(policy: &Policy, method: &str, claims: Option<&Claims>) -> Result<(), Denial> {
    let Some(claims) = claims else {
        return Ok(());
    };
    match policy.scopes.for_method(method) {
        MethodScopes::None => Ok(()),
        MethodScopes::Required(requirement) if requirement.is_met_by(&claims.scopes) => Ok(()),
        MethodScopes::Required(requirement) => Err(Denial::insufficient_scope(
            &requirement.challenge(),
            policy.auth == AuthRequirement::Required,
        )),
        MethodScopes::MethodNotCovered => Err(Denial::method_not_covered(method)),
    }
}

/// SMART scopes on the request's FHIR interaction; when they allow it, the grants the
/// response is checked against, resource by resource.
fn check_smart(
    settings: &FhirSettings,
    interaction: &Interaction,
    claims: Option<&Claims>,
    source: &dyn ClaimSource,
) -> Result<SmartAccess, Denial> {
    let scopes = claims.map(|c| c.scopes.as_slice()).unwrap_or_default();
    let patient = match source.claim(&settings.patient_claim) {
        Some(ClaimValue::String(id)) if !id.is_empty() => Some(id),
        _ => None,
    };
    let grants = smart::grants(scopes);
    match fhir::access(interaction, &grants, patient.as_deref()) {
        Access::Allowed => Ok(SmartAccess::new(grants, patient)),
        Access::NeedsScope(scope) => Err(Denial::insufficient_scope(&scope, true)),
        Access::OutsideCompartment => Err(DenialKind::OutsidePatientCompartment
            .problem("the caller's patient/ scopes grant only the launch patient's compartment")
            .into()),
        Access::Unsupported(why) => Err(DenialKind::FhirInteractionNotAllowed
            .problem(format!("{why}; this route enforces SMART scopes"))
            .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::ClaimValue;
    use std::collections::HashMap;

    fn header_map(pairs: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_vec()))
            .collect()
    }

    #[test]
    fn a_repeated_header_counts_by_its_first_value() {
        let headers = header_map(&[
            ("x-purpose", b"billing"),
            ("x-purpose", b"research"),
            ("x-bad", b"\xff"),
        ]);
        assert_eq!(first_header(&headers, "x-purpose"), Some("billing"));
        assert_eq!(first_header(&headers, "x-bad"), None);
        assert_eq!(first_header(&headers, "x-absent"), None);
    }

    /// Allowed on the patients policy (the second by name).
    fn allowed(purpose: &str) -> Allowed {
        Allowed {
            policy: 1,
            purpose: purpose.into(),
            client_id: None,
            smart: None,
        }
    }

    #[test]
    fn two_different_purposes_conflict() {
        let declared = |pairs: &[(&str, &[u8])]| {
            let headers = header_map(pairs);
            format!("{:?}", declared_purpose(&headers, "x-purpose"))
        };
        assert_eq!(declared(&[]), "None");
        assert_eq!(declared(&[("x-purpose", b" billing")]), r#"One("billing")"#);
        assert_eq!(
            declared(&[
                ("x-purpose", b"billing"),
                ("x-other", b"x"),
                ("x-purpose", b"billing ")
            ]),
            r#"One("billing")"#
        );
        for second in [&b"research"[..], b"", b"\xff"] {
            assert_eq!(
                declared(&[("x-purpose", b"billing"), ("x-purpose", second)]),
                "Conflicting"
            );
        }
        assert_eq!(
            declared(&[("x-purpose", b"\xff"), ("x-purpose", b"\xff")]),
            "Conflicting"
        );
        assert_eq!(declared(&[("x-purpose", b"\xff")]), "None");

        let c = config("deny");
        let verdict = super::decide(
            &c,
            &route("/patients", "GET"),
            Declared::Conflicting,
            &Caller {
                claims: &token("patients:read", &["billing", "research"]),
                peer_uri_san: None,
            },
        );
        assert_eq!(verdict.purpose, None);
        assert_eq!(slug(verdict.decision), (400, "purpose-ambiguous", None));
        // A missing token is still a 401 first.
        assert_eq!(
            slug(
                super::decide(
                    &c,
                    &route("/patients", "GET"),
                    Declared::Conflicting,
                    &Caller {
                        claims: &Token(None),
                        peer_uri_san: None,
                    },
                )
                .decision
            )
            .0,
            401
        );
    }

    #[test]
    fn only_the_headers_a_request_carries_are_removed_unless_unreadable() {
        let c = config("deny");
        let billing = allowed("billing");
        let headers = header_map(&[(":path", b"/"), ("range", b"bytes=0-9")]);
        assert_eq!(
            headers_to_remove(&c, &billing, Some(&headers)).collect::<Vec<_>>(),
            ["range"]
        );
        assert_eq!(headers_to_remove(&c, &billing, Some(&[])).count(), 0);
        assert_eq!(
            headers_to_remove(&c, &billing, None).collect::<Vec<_>>(),
            [REQUEST_HEADERS_TO_REMOVE, CONDITIONAL_HEADERS].concat()
        );
    }

    #[test]
    fn validators_go_only_when_the_purpose_filters_the_body() {
        let c = config("deny");
        let headers = header_map(&[
            ("if-none-match", b"\"x\""),
            ("if-modified-since", b"Mon, 07 Dec 2026 10:00:00 GMT"),
            ("accept-encoding", b"gzip"),
        ]);
        assert_eq!(
            headers_to_remove(&c, &allowed("billing"), Some(&headers)).collect::<Vec<_>>(),
            ["accept-encoding", "if-none-match", "if-modified-since"]
        );
        // care sees the body as it is: the upstream's validators are about what it gets.
        assert_eq!(
            headers_to_remove(&c, &allowed("care"), Some(&headers)).collect::<Vec<_>>(),
            ["accept-encoding"]
        );
        // A purpose the policy does not know: everything goes.
        assert_eq!(
            headers_to_remove(&c, &allowed("nope"), Some(&headers)).count(),
            3
        );
    }

    struct Token(Option<HashMap<&'static str, ClaimValue>>);

    impl ClaimSource for Token {
        fn has_verified_token(&self) -> bool {
            self.0.is_some()
        }
        fn claim(&self, name: &str) -> Option<ClaimValue> {
            self.0.as_ref()?.get(name).cloned()
        }
    }

    /// `decide` with a token and no client certificate.
    fn decide(
        c: &CompiledConfig,
        route: &RouteInfo<'_>,
        purpose: Option<&str>,
        token: &Token,
    ) -> RequestDecision {
        super::decide(
            c,
            route,
            purpose,
            &Caller {
                claims: token,
                peer_uri_san: None,
            },
        )
        .decision
    }

    fn token(scope: &str, purposes: &[&str]) -> Token {
        Token(Some(HashMap::from([
            ("scope", ClaimValue::String(scope.into())),
            (
                "purposes",
                ClaimValue::List(purposes.iter().map(|p| p.to_string()).collect()),
            ),
            ("client_id", ClaimValue::String("partner".into())),
        ])))
    }

    fn config(unmatched: &str) -> CompiledConfig {
        let json = format!(
            r#"{{"unmatched": "{unmatched}", "policies": {{
              "patients": {{"match": [{{"prefix": "/patients"}}], "scopes": {{"GET": ["patients:read"]}},
                           "purposes": {{"care": {{"default": "keep"}}, "billing": {{}}}}}},
              "open": {{"auth": "none", "default_purpose": "open-data", "purposes": {{"open-data": {{}}}}}}}}}}"#
        );
        CompiledConfig::load(json.as_bytes(), &|_| None).unwrap()
    }

    fn route<'a>(path: &'a str, method: &'a str) -> RouteInfo<'a> {
        RouteInfo {
            path,
            method,
            ..RouteInfo::default()
        }
    }

    pub(super) fn slug(decision: RequestDecision) -> (u16, &'static str, Option<String>) {
        match decision {
            RequestDecision::Deny(d) => (d.status(), d.problem.slug, d.www_authenticate),
            other => panic!("not denied: {other:?}"),
        }
    }

    /// An allowed request on the patients policy, which does not enforce SMART scopes.
    pub(super) fn decide_on_patients(purpose: &str) -> RequestDecision {
        decide(
            &config("deny"),
            &route("/patients/1", "GET"),
            Some(purpose),
            &token("patients:read", &[purpose]),
        )
    }

    #[test]
    fn allowed_with_scope_and_purpose() {
        let decision = decide(
            &config("deny"),
            &route("/patients/1", "GET"),
            Some("billing"),
            &token("patients:read", &["billing"]),
        );
        assert_eq!(
            decision,
            RequestDecision::Allow(Allowed {
                policy: 1,
                purpose: "billing".into(),
                client_id: Some("partner".into()),
                smart: None,
            })
        );
    }

    #[test]
    fn every_refusal() {
        let c = config("deny");
        let get = route("/patients", "GET");
        assert_eq!(
            slug(decide(&c, &get, Some("care"), &Token(None))),
            (
                401,
                "invalid-token",
                Some("Bearer error=\"invalid_token\"".into())
            )
        );
        assert_eq!(
            slug(decide(&c, &get, Some("care"), &token("other", &["care"]))),
            (
                403,
                "insufficient-scope",
                Some("Bearer error=\"insufficient_scope\", scope=\"patients:read\"".into())
            )
        );
        assert_eq!(
            slug(decide(
                &c,
                &route("/patients", "DELETE"),
                Some("care"),
                &token("patients:read", &["care"])
            )),
            (403, "method-not-covered", None)
        );
        assert_eq!(
            slug(decide(&c, &get, None, &token("patients:read", &["care"]))),
            (403, "purpose-undeclared", None)
        );
        assert_eq!(
            slug(decide(
                &c,
                &get,
                Some("billing"),
                &token("patients:read", &["care"])
            )),
            (403, "purpose-not-authorised", None)
        );
        assert_eq!(
            slug(decide(
                &c,
                &get,
                Some("research"),
                &token("patients:read purpose:research", &[])
            )),
            (403, "purpose-not-accepted", None)
        );
        assert_eq!(
            slug(decide(&c, &route("/other", "GET"), None, &Token(None))),
            (403, "no-policy", None)
        );
        let unknown = RouteInfo {
            metadata_policy: Some("nope"),
            ..route("/patients", "GET")
        };
        assert_eq!(
            slug(decide(&c, &unknown, None, &Token(None))),
            (403, "no-policy", None)
        );
    }

    #[test]
    fn unmatched_allow_passes_unfiltered() {
        assert_eq!(
            decide(
                &config("allow"),
                &route("/other", "GET"),
                None,
                &Token(None)
            ),
            RequestDecision::PassUnfiltered
        );
    }

    #[test]
    fn a_refused_undefined_purpose_is_not_recorded_as_the_default() {
        let open = RouteInfo {
            route_name: Some("open"),
            ..route("/stats", "GET")
        };
        let c = config("deny");
        let recorded = |declared: Option<&str>| {
            let verdict = super::decide(
                &c,
                &open,
                declared,
                &Caller {
                    claims: &Token(None),
                    peer_uri_san: None,
                },
            );
            (verdict.purpose, slug_or_allowed(verdict.decision))
        };
        assert_eq!(recorded(Some("marketing")), (None, "purpose-not-accepted"));
        assert_eq!(
            recorded(Some(" open-data ")),
            (Some("open-data".into()), "allowed")
        );
        assert_eq!(recorded(None), (Some("open-data".into()), "allowed"));
        assert_eq!(recorded(Some("")), (Some("open-data".into()), "allowed"));
    }

    fn slug_or_allowed(decision: RequestDecision) -> &'static str {
        match decision {
            RequestDecision::Deny(d) => d.problem.slug,
            _ => "allowed",
        }
    }

    #[test]
    fn open_routes_need_no_token() {
        let open = RouteInfo {
            route_name: Some("open"),
            ..route("/stats", "GET")
        };
        match decide(&config("deny"), &open, None, &Token(None)) {
            RequestDecision::Allow(allowed) => {
                assert_eq!(allowed.purpose, "open-data");
                assert_eq!(allowed.client_id, None);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[cfg(test)]
mod mtls_and_audit_tests {
    use super::*;
    use crate::auth::claims::ClaimValue;

    pub(super) struct NoToken;

    impl ClaimSource for NoToken {
        fn has_verified_token(&self) -> bool {
            false
        }
        fn claim(&self, _: &str) -> Option<ClaimValue> {
            None
        }
    }

    fn config() -> CompiledConfig {
        CompiledConfig::load(
            br#"{"policies": {
              "internal": {"auth": "mtls", "mode": "dry_run", "scopes": {"GET": ["records:read"]},
                           "clients": {"spiffe://hospital.example/ns/care/sa/ehr": {"purposes": ["care"], "scopes": ["records:read"]}},
                           "purposes": {"care": {"default": "keep"}, "audit": {}}}}}"#,
            &|_| None,
        )
        .unwrap()
    }

    fn run(san: Option<&str>, purpose: Option<&str>) -> Verdict {
        let route = RouteInfo {
            route_name: Some("internal"),
            path: "/x",
            method: "GET",
            ..RouteInfo::default()
        };
        decide(
            &config(),
            &route,
            purpose,
            &Caller {
                claims: &NoToken,
                peer_uri_san: san,
            },
        )
    }

    #[test]
    fn the_certificate_names_the_client() {
        let v = run(
            Some("spiffe://hospital.example/ns/care/sa/ehr"),
            Some("care"),
        );
        assert!(
            matches!(v.decision, RequestDecision::Allow(ref a) if a.client_id.as_deref() == Some("spiffe://hospital.example/ns/care/sa/ehr"))
        );
        assert_eq!(
            v.client.as_deref(),
            Some("spiffe://hospital.example/ns/care/sa/ehr")
        );
        assert_eq!(v.purpose.as_deref(), Some("care"));
        assert!(v.dry_run);
    }

    #[test]
    fn a_dry_run_records_refusals_and_lets_the_request_on() {
        let refused = run(None, Some("care"));
        match (&refused.decision, refused.action()) {
            (RequestDecision::Deny(denial), RequestAction::RecordRefusal(recorded)) => {
                assert_eq!(denial, recorded)
            }
            other => panic!("{other:?}"),
        }
        let allowed = run(
            Some("spiffe://hospital.example/ns/care/sa/ehr"),
            Some("care"),
        );
        assert!(matches!(allowed.action(), RequestAction::Filter(a) if a.purpose == "care"));
        let enforced = Verdict {
            dry_run: false,
            ..refused.clone()
        };
        assert!(matches!(enforced.action(), RequestAction::Refuse(_)));
    }

    #[test]
    fn no_certificate_or_an_unknown_client_is_refused() {
        match run(None, Some("care")).decision {
            RequestDecision::Deny(d) => {
                assert_eq!(
                    (d.status(), d.problem.slug),
                    (401, "client-certificate-required")
                );
                assert_eq!(d.www_authenticate, None);
            }
            other => panic!("{other:?}"),
        }
        match run(Some("spiffe://elsewhere/sa/x"), Some("care")).decision {
            RequestDecision::Deny(d) => assert_eq!(d.problem.slug, "insufficient-scope"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_audit_never_carries_an_undefined_purpose() {
        assert_eq!(
            run(
                Some("spiffe://hospital.example/ns/care/sa/ehr"),
                Some("<script>")
            )
            .purpose,
            None
        );
        assert_eq!(
            run(
                Some("spiffe://hospital.example/ns/care/sa/ehr"),
                Some("audit")
            )
            .purpose
            .as_deref(),
            Some("audit")
        );
    }

    #[test]
    fn mtls_configuration_errors() {
        let err = |json: &str| {
            CompiledConfig::load(json.as_bytes(), &|_| None)
                .unwrap_err()
                .to_string()
        };
        assert!(
            err(r#"{"policies": {"p": {"auth": "mtls", "purposes": {"c": {}}}}}"#)
                .starts_with("policies.p.clients: \"auth\": \"mtls\" needs")
        );
        assert!(
            err(r#"{"policies": {"p": {"clients": {"x": {}}, "purposes": {"c": {}}}}}"#)
                .starts_with("policies.p.clients: clients are for")
        );
        assert!(err(r#"{"policies": {"p": {"auth": "mtls", "clients": {"x": {"purposes": ["d"]}}, "purposes": {"c": {}}}}}"#)
            .starts_with("policies.p.clients.x.purposes[0]: purpose \"d\" is not defined"));
    }
}

/// Tokens verified by finalite itself (`token.from: "jwks"`).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod bearer_tests {
    use std::sync::Arc;

    use serde_json::{json, Value};

    use super::*;
    use crate::auth::bearer::BearerClaims;
    use crate::auth::testkeys::{claims, token, Alg, Key, AUDIENCE, ISSUER, NOW};
    use crate::auth::verifier::Verifier;

    fn config(keys: Value) -> CompiledConfig {
        let mut token = json!({"from": "jwks", "issuer": ISSUER, "audiences": [AUDIENCE]});
        for (name, value) in keys.as_object().unwrap() {
            token[name] = value.clone();
        }
        let json = json!({
            "token": token,
            "policies": {
                "patients": {"match": [{"prefix": "/patients"}], "scopes": {"GET": ["patients:read"]},
                             "purposes": {"care": {"default": "keep"}, "billing": {}}},
                "open": {"match": [{"prefix": "/open"}], "auth": "none", "default_purpose": "open-data",
                         "purposes": {"open-data": {}}}}});
        CompiledConfig::load(json.to_string().as_bytes(), &|_| None).unwrap()
    }

    fn inline() -> CompiledConfig {
        config(
            json!({"jwks": {"keys": [Key::RsaA.jwk("a", json!({})), Key::P256.jwk("e", json!({}))]}}),
        )
    }

    fn remote() -> CompiledConfig {
        config(json!({"jwks_uri": {"cluster": "idp", "path": "/jwks"}}))
    }

    fn cache(config: &CompiledConfig) -> Verifier {
        Verifier::new(Arc::clone(config.token.verification.as_ref().unwrap()))
    }

    fn get(path: &str) -> RouteInfo<'_> {
        RouteInfo {
            path,
            method: "GET",
            ..RouteInfo::default()
        }
    }

    fn run(
        config: &CompiledConfig,
        keys: &mut Verifier,
        path: &str,
        purpose: Option<&str>,
        authorization: Option<&str>,
        now: u64,
    ) -> RequestDecision {
        let bearer = BearerClaims::new(authorization, keys, now);
        decide(
            config,
            &get(path),
            purpose,
            &Caller {
                claims: &bearer,
                peer_uri_san: None,
            },
        )
        .decision
    }

    fn bearer(claims: &Value) -> String {
        format!("Bearer {}", token(Alg::RS256, Key::RsaA, Some("a"), claims))
    }

    fn refused(decision: RequestDecision) -> Denial {
        match decision {
            RequestDecision::Deny(denial) => denial,
            other => panic!("not denied: {other:?}"),
        }
    }

    #[test]
    fn a_valid_token_is_read_for_scopes_purposes_and_client() {
        let config = inline();
        let mut keys = cache(&config);
        let decision = run(
            &config,
            &mut keys,
            "/patients/1",
            Some("billing"),
            Some(&bearer(&claims())),
            NOW,
        );
        assert_eq!(
            decision,
            RequestDecision::Allow(Allowed {
                policy: 1,
                purpose: "billing".into(),
                client_id: Some("partner".into()),
                smart: None,
            })
        );
        // `purpose:care` in the scope authorises care too.
        let es256 = format!(
            "Bearer {}",
            token(Alg::ES256, Key::P256, Some("e"), &claims())
        );
        assert!(matches!(
            run(&config, &mut keys, "/patients", Some("care"), Some(&es256), NOW),
            RequestDecision::Allow(Allowed { ref purpose, .. }) if purpose == "care"
        ));
        // Verified, but lacking the scope: 403 as with jwt_authn.
        let mut no_scope = claims();
        no_scope["scope"] = json!("other");
        let denial = refused(run(
            &config,
            &mut keys,
            "/patients",
            Some("billing"),
            Some(&bearer(&no_scope)),
            NOW,
        ));
        assert_eq!(
            (denial.status(), denial.problem.slug),
            (403, "insufficient-scope")
        );
    }

    #[test]
    fn a_refused_token_is_a_401_that_names_the_check() {
        let config = inline();
        let mut keys = cache(&config);
        let mut expired = claims();
        expired["exp"] = json!(NOW - 3600);
        let mut wrong_aud = claims();
        wrong_aud["aud"] = json!("billing-api");
        let cases = [
            (None, "the request carries no bearer token"),
            (
                Some("Basic dXNlcjpwYXNz".to_string()),
                "the authorization header does not use the Bearer scheme",
            ),
            (Some(bearer(&expired)), "the token has expired"),
            (
                Some(bearer(&wrong_aud)),
                "the token's audience is not accepted",
            ),
            (
                Some(format!(
                    "Bearer {}",
                    token(Alg::RS256, Key::RsaB, Some("a"), &claims())
                )),
                "the token's signature does not verify",
            ),
        ];
        for (authorization, description) in cases {
            let denial = refused(run(
                &config,
                &mut keys,
                "/patients",
                Some("care"),
                authorization.as_deref(),
                NOW,
            ));
            assert_eq!(denial.status(), 401);
            assert_eq!(denial.problem.slug, "invalid-token");
            assert_eq!(
                denial.www_authenticate.as_deref(),
                Some(
                    format!("Bearer error=\"invalid_token\", error_description=\"{description}\"")
                        .as_str()
                )
            );
            assert_eq!(
                denial.problem.detail,
                format!("this route requires a valid bearer token: {description}")
            );
            let body: Value = serde_json::from_slice(&denial.body()).unwrap();
            assert_eq!(body["type"], "urn:finalite:problem:invalid-token");
            assert_eq!(body["status"], 401);
            // The token is never echoed.
            if let Some(authorization) = &authorization {
                let token = authorization.rsplit(' ').next().unwrap();
                assert!(!String::from_utf8_lossy(&denial.body()).contains(token));
                assert!(!denial.headers().iter().any(|(_, v)| v.contains(token)));
            }
        }
    }

    #[test]
    fn no_keys_yet_is_a_503_with_retry_after_then_the_keys_are_used() {
        let config = remote();
        let mut keys = cache(&config);
        let token = bearer(&claims());
        let denial = refused(run(
            &config,
            &mut keys,
            "/patients",
            Some("care"),
            Some(&token),
            NOW,
        ));
        assert_eq!(
            (denial.status(), denial.problem.slug),
            (503, "keys-unavailable")
        );
        assert_eq!(denial.www_authenticate, None);
        assert!(denial.headers().contains(&("retry-after", "1".to_string())));
        // No token is still a 401, keys or not.
        assert_eq!(
            denial_status(run(
                &config,
                &mut keys,
                "/patients",
                Some("care"),
                None,
                NOW
            )),
            401
        );
        assert!(keys.needs_fetch(NOW));
        keys.fetch_started(NOW);
        let set = json!({"keys": [Key::RsaA.jwk("a", json!({}))]}).to_string();
        keys.on_fetch_response(NOW, Some(200), Some(set.as_bytes()));
        assert!(matches!(
            run(
                &config,
                &mut keys,
                "/patients",
                Some("care"),
                Some(&token),
                NOW + 1
            ),
            RequestDecision::Allow(_)
        ));
        // A token from a rotated key: 401 now, and the refresh is brought forward.
        let rotated = format!(
            "Bearer {}",
            crate::auth::testkeys::token(Alg::RS256, Key::RsaB, Some("b"), &claims())
        );
        let denial = refused(run(
            &config,
            &mut keys,
            "/patients",
            Some("care"),
            Some(&rotated),
            NOW + 60,
        ));
        assert_eq!(
            denial.www_authenticate.as_deref(),
            Some("Bearer error=\"invalid_token\", error_description=\"the token's key id is not known\"")
        );
        assert!(keys.needs_fetch(NOW + 60));
    }

    fn denial_status(decision: RequestDecision) -> u16 {
        refused(decision).status()
    }

    #[test]
    fn routes_without_auth_never_look_at_the_token() {
        let config = remote();
        let mut keys = cache(&config);
        let bearer = BearerClaims::new(Some("Bearer a.b.c"), &mut keys, NOW);
        let caller = Caller {
            claims: &bearer,
            peer_uri_san: None,
        };
        assert!(matches!(
            decide(&config, &get("/open/x"), None, &caller).decision,
            RequestDecision::Allow(_)
        ));
        assert!(!bearer.was_checked());
        let mut keys = cache(&config);
        // Keys unknown and a garbage header: the open route does not care.
        match run(
            &config,
            &mut keys,
            "/open/stats",
            None,
            Some("Bearer !!"),
            NOW,
        ) {
            RequestDecision::Allow(allowed) => {
                assert_eq!(allowed.purpose, "open-data");
                assert_eq!(allowed.client_id, None);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            refused(run(&config, &mut keys, "/elsewhere", None, None, NOW))
                .problem
                .slug,
            "no-policy"
        );
    }
}

#[cfg(test)]
mod smart_tests {
    use super::mtls_and_audit_tests::NoToken;
    use super::tests::slug as refusal;
    use super::*;
    use std::collections::HashMap;

    const CONFIG: &str = r#"{"policies": {"fhir": {
        "match": [{"prefix": "/fhir"}],
        "fhir": {"base": "/fhir", "smart_scopes": true},
        "scopes": {"*": ["fhir"]},
        "purposes": {"care": {"default": "keep"}}}}}"#;

    struct Token(HashMap<&'static str, ClaimValue>);

    impl ClaimSource for Token {
        fn has_verified_token(&self) -> bool {
            true
        }
        fn claim(&self, name: &str) -> Option<ClaimValue> {
            self.0.get(name).cloned()
        }
    }

    fn token(scope: &str, patient: Option<&str>) -> Token {
        let mut claims = HashMap::from([
            (
                "scope",
                ClaimValue::String(format!("fhir purpose:care {scope}")),
            ),
            ("client_id", ClaimValue::String("app".into())),
        ]);
        if let Some(patient) = patient {
            claims.insert("patient", ClaimValue::String(patient.into()));
        }
        Token(claims)
    }

    fn decide(method: &str, path: &str, token: Option<&Token>) -> RequestDecision {
        let config = CompiledConfig::load(CONFIG.as_bytes(), &|_| None).unwrap();
        let route = RouteInfo {
            metadata_policy: None,
            route_name: None,
            path,
            method,
        };
        let claims: &dyn ClaimSource = match token {
            Some(token) => token,
            None => &NoToken,
        };
        super::decide(
            &config,
            &route,
            Some("care"),
            &Caller {
                claims,
                peer_uri_san: None,
            },
        )
        .decision
    }

    #[test]
    fn search_and_read_need_their_letters() {
        let t = token("user/Observation.rs", None);
        assert!(matches!(
            decide("GET", "/fhir/Observation?code=x", Some(&t)),
            RequestDecision::Allow(_)
        ));
        assert!(matches!(
            decide("GET", "/fhir/Observation/f001/_history/1", Some(&t)),
            RequestDecision::Allow(_)
        ));
        assert_eq!(
            refusal(decide("GET", "/fhir/Condition", Some(&t))),
            (
                403,
                "insufficient-scope",
                Some("Bearer error=\"insufficient_scope\", scope=\"user/Condition.s\"".into())
            )
        );
        assert_eq!(
            refusal(decide("DELETE", "/fhir/Observation/f001", Some(&t))).1,
            "insufficient-scope"
        );
        assert_eq!(
            refusal(decide("POST", "/fhir", Some(&t))).1,
            "fhir-interaction-not-allowed"
        );
    }

    #[test]
    fn metadata_is_public_and_the_rest_needs_a_token() {
        assert_eq!(
            decide("GET", "/fhir/metadata", None),
            RequestDecision::PassUnfiltered
        );
        assert_eq!(
            decide("GET", "/fhir/.well-known/smart-configuration", None),
            RequestDecision::PassUnfiltered
        );
        assert_eq!(refusal(decide("GET", "/fhir/Observation", None)).0, 401);
    }

    #[test]
    fn the_patient_context_needs_its_claim_and_keeps_to_its_patient() {
        let with = token("patient/Patient.rs patient/Observation.rs", Some("example"));
        assert!(matches!(
            decide("GET", "/fhir/Patient/example/$everything", Some(&with)),
            RequestDecision::Allow(_)
        ));
        assert_eq!(
            refusal(decide("GET", "/fhir/Patient/other", Some(&with))).1,
            "outside-patient-compartment"
        );
        let without = token("patient/Observation.rs", None);
        assert_eq!(
            refusal(decide("GET", "/fhir/Observation", Some(&without))).1,
            "insufficient-scope"
        );
    }

    #[test]
    fn an_allowed_request_carries_the_grants_its_response_is_checked_against() {
        use crate::auth::smart;
        let t = token(
            "patient/Observation.rs user/Patient.r patient/Condition.c launch/patient",
            Some("example"),
        );
        let RequestDecision::Allow(allowed) = decide("GET", "/fhir/Observation", Some(&t)) else {
            panic!("not allowed");
        };
        // The read grants, with the launch patient; the scope table's `fhir` and the
        // write-only grant grant nothing to read.
        let scopes = ["patient/Observation.rs", "user/Patient.r"].map(str::to_string);
        assert_eq!(
            allowed.smart.as_deref(),
            Some(&SmartAccess::new(
                smart::grants(&scopes),
                Some("example".into())
            ))
        );
        // A policy without SMART scopes carries none.
        let decision = super::tests::decide_on_patients("billing");
        assert!(matches!(
            decision,
            RequestDecision::Allow(Allowed { smart: None, .. })
        ));
    }

    #[test]
    fn the_scopes_table_still_applies() {
        let mut t = token("user/Observation.rs", None);
        t.0.insert(
            "scope",
            ClaimValue::String("purpose:care user/Observation.rs".into()),
        );
        assert_eq!(
            refusal(decide("GET", "/fhir/Observation", Some(&t))).1,
            "insufficient-scope"
        );
    }
}
