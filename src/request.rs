//! The request path: policy, token, scopes, purpose.

use crate::auth::claims::{ClaimSource, Claims};
use crate::auth::purpose::{self, PurposeRefusal};
use crate::auth::scopes::MethodScopes;
use crate::config::{AuthRequirement, Unmatched};
use crate::decision::{Allowed, Denial, Problem, RequestDecision};
use crate::policy::route::{RouteInfo, Selection};
use crate::policy::CompiledConfig;

/// Decides a request from what the host tells about it.
pub fn decide(
    config: &CompiledConfig,
    route: &RouteInfo<'_>,
    declared_purpose: Option<&str>,
    claims: &dyn ClaimSource,
) -> RequestDecision {
    let policy = match config.routes.select(route) {
        Selection::Policy(index) => index,
        Selection::UnknownPolicy(_) => return RequestDecision::Deny(no_policy()),
        Selection::None => {
            return match config.unmatched {
                Unmatched::Allow => RequestDecision::PassUnfiltered,
                Unmatched::Deny => RequestDecision::Deny(no_policy()),
            }
        }
    };
    let policy_config = &config.policies[policy];
    let claims = match policy_config.auth {
        AuthRequirement::None => None,
        AuthRequirement::Required => match Claims::read(claims, &config.token) {
            Some(claims) => Some(claims),
            None => {
                return RequestDecision::Deny(Denial {
                    problem: Problem {
                        slug: "invalid-token",
                        title: "Unauthorized",
                        status: 401,
                        detail: "this route requires a valid bearer token".into(),
                    },
                    www_authenticate: Some("Bearer error=\"invalid_token\"".into()),
                })
            }
        },
    };
    if let Some(claims) = &claims {
        match policy_config.scopes.for_method(route.method) {
            MethodScopes::None => {}
            MethodScopes::Required(requirement) if requirement.is_met_by(&claims.scopes) => {}
            MethodScopes::Required(requirement) => {
                let scope = requirement.challenge();
                return RequestDecision::Deny(Denial {
                    problem: Problem {
                        slug: "insufficient-scope",
                        title: "Forbidden",
                        status: 403,
                        detail: format!("the token lacks the scope this request needs: {scope}"),
                    },
                    www_authenticate: Some(format!(
                        "Bearer error=\"insufficient_scope\", scope=\"{scope}\""
                    )),
                });
            }
            MethodScopes::MethodNotCovered => {
                return RequestDecision::Deny(
                    Problem {
                        slug: "method-not-covered",
                        title: "Forbidden",
                        status: 403,
                        detail: format!(
                            "this route's policy grants no scope for the method {}",
                            route.method
                        ),
                    }
                    .into(),
                )
            }
        }
    }
    match purpose::resolve(declared_purpose, policy_config, claims.as_ref()) {
        Ok(name) => RequestDecision::Allow(Allowed {
            policy,
            purpose: name.to_string(),
            client_id: claims.and_then(|c| c.client_id),
        }),
        Err(refusal) => {
            RequestDecision::Deny(purpose_denial(refusal, &config.purpose_header).into())
        }
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
            format!("the token does not authorise the purpose {name:?}"),
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
