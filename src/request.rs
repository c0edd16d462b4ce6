//! The request path: policy, caller identity, scopes, purpose.

use crate::auth::claims::{ClaimSource, Claims};
use crate::auth::purpose::{self, PurposeRefusal};
use crate::auth::scopes::MethodScopes;
use crate::config::{AuthRequirement, PolicyMode, Unmatched};
use crate::decision::{Allowed, Denial, Problem, RequestDecision};
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

impl Verdict {
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

/// Who is calling, as the host established it.
pub struct Caller<'a> {
    /// Verified token claims.
    pub claims: &'a dyn ClaimSource,
    /// The URI SAN of the client certificate, when the connection is mutual TLS.
    pub peer_uri_san: Option<&'a str>,
}

/// Decides a request from what the host tells about it.
pub fn decide(
    config: &CompiledConfig,
    route: &RouteInfo<'_>,
    declared_purpose: Option<&str>,
    caller: &Caller<'_>,
) -> Verdict {
    let index = match config.routes.select(route) {
        Selection::Policy(index) => index,
        Selection::UnknownPolicy(_) => return Verdict::new(RequestDecision::Deny(no_policy())),
        Selection::None => {
            return Verdict::new(match config.unmatched {
                Unmatched::Allow => RequestDecision::PassUnfiltered,
                Unmatched::Deny => RequestDecision::Deny(no_policy()),
            })
        }
    };
    let policy = &config.policies[index];
    let claims = identify(policy, config, caller);
    let defined = |name: Option<&str>| {
        name.map(str::trim)
            .filter(|n| policy.purposes.contains_key(*n))
            .map(str::to_string)
    };
    let mut verdict = Verdict {
        decision: RequestDecision::PassUnfiltered,
        policy: Some(index),
        purpose: defined(declared_purpose).or_else(|| policy.default_purpose.clone()),
        client: claims
            .as_ref()
            .ok()
            .and_then(|c| c.as_ref())
            .and_then(|c| c.client_id.clone()),
        dry_run: policy.mode == PolicyMode::DryRun,
    };
    verdict.decision = match claims {
        Err(denial) => RequestDecision::Deny(denial),
        Ok(claims) => match check_scopes(policy, route.method, claims.as_ref()) {
            Err(denial) => RequestDecision::Deny(denial),
            Ok(()) => match purpose::resolve(declared_purpose, policy, claims.as_ref()) {
                Ok(name) => RequestDecision::Allow(Allowed {
                    policy: index,
                    purpose: name.to_string(),
                    client_id: claims.and_then(|c| c.client_id),
                }),
                Err(refusal) => {
                    RequestDecision::Deny(purpose_denial(refusal, &config.purpose_header).into())
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
        AuthRequirement::Required => match Claims::read(caller.claims, &config.token) {
            Some(claims) => Ok(Some(claims)),
            None => Err(Denial {
                problem: Problem {
                    slug: "invalid-token",
                    title: "Unauthorized",
                    status: 401,
                    detail: "this route requires a valid bearer token".into(),
                },
                www_authenticate: Some("Bearer error=\"invalid_token\"".into()),
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
            None => Err(Problem {
                slug: "client-certificate-required",
                title: "Unauthorized",
                status: 401,
                detail: "this route requires a client certificate with a URI SAN (mutual TLS)"
                    .into(),
            }
            .into()),
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
        MethodScopes::Required(requirement) => {
            let scope = requirement.challenge();
            Err(Denial {
                problem: Problem {
                    slug: "insufficient-scope",
                    title: "Forbidden",
                    status: 403,
                    detail: format!("the caller lacks the scope this request needs: {scope}"),
                },
                www_authenticate: (policy.auth == AuthRequirement::Required)
                    .then(|| format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"")),
            })
        }
        MethodScopes::MethodNotCovered => Err(Problem {
            slug: "method-not-covered",
            title: "Forbidden",
            status: 403,
            detail: format!("this route's policy grants no scope for the method {method}"),
        }
        .into()),
    }
}

fn no_policy() -> Denial {
    Problem {
        slug: "no-policy",
        title: "Forbidden",
        status: 403,
        detail: "no policy covers this route".into(),
    }
    .into()
}

fn purpose_denial(refusal: PurposeRefusal, header: &str) -> Problem {
    let (slug, detail) = match refusal {
        PurposeRefusal::Undeclared => (
            "purpose-undeclared",
            format!("no purpose declared: send the {header} header"),
        ),
        PurposeRefusal::NotAuthorised(name) => (
            "purpose-not-authorised",
            format!("the caller is not authorised for the purpose {name:?}"),
        ),
        PurposeRefusal::NotAccepted(name) => (
            "purpose-not-accepted",
            format!("the purpose {name:?} is not accepted on this route"),
        ),
    };
    Problem {
        slug,
        title: "Forbidden",
        status: 403,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::claims::ClaimValue;
    use std::collections::HashMap;

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

    fn slug(decision: RequestDecision) -> (u16, &'static str, Option<String>) {
        match decision {
            RequestDecision::Deny(d) => (d.status(), d.problem.slug, d.www_authenticate),
            other => panic!("not denied: {other:?}"),
        }
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
                client_id: Some("partner".into())
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

    struct NoToken;

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
