//! The catalogue of refusals: every problem finalite answers on its own (a refused request,
//! or an upstream response it could not filter), with its status, type, title and headers.
//!
//! Each kind is one variant of [`DenialKind`], and every value the adapter sends is built by
//! a constructor here, so what the client sees and what the audit records (its outcome,
//! derived from the kind) cannot drift apart.

use crate::auth::jwt::TokenError;
use crate::body::BodyError;
use crate::json::{EngineError, ErrorKind, GrantErrorKind, LexErrorKind, TypeErrorKind};
use crate::policy::purpose::PurposeRefusal;

/// Why finalite answered on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenialKind {
    /// `auth: required` and no verified token (or one finalite refused).
    InvalidToken,
    /// `auth: mtls` and no client certificate URI SAN.
    ClientCertificateRequired,
    /// `token.from: jwks` and no key set known yet.
    KeysUnavailable,
    /// A scope the method needs is missing.
    InsufficientScope,
    /// The policy lists scopes, none for this method.
    MethodNotCovered,
    /// No purpose declared and no default.
    PurposeUndeclared,
    /// The token does not authorise the purpose.
    PurposeNotAuthorised,
    /// The policy does not define the purpose.
    PurposeNotAccepted,
    /// The request declares two different purposes.
    PurposeAmbiguous,
    /// No policy covers the route.
    NoPolicy,
    /// The upstream response could not be filtered: none of it is sent.
    ResponseNotFilterable,
    /// SMART `patient/` scopes, and a resource of another patient asked for by id.
    OutsidePatientCompartment,
    /// SMART scopes are enforced and the request is no interaction a scope can allow.
    FhirInteractionNotAllowed,
    /// SMART scopes are enforced and the response is a resource they do not grant (of
    /// another type, category or patient), or no resource at all: none of it is sent.
    ResourceNotGranted,
}

impl DenialKind {
    pub const ALL: [DenialKind; 14] = [
        DenialKind::InvalidToken,
        DenialKind::ClientCertificateRequired,
        DenialKind::KeysUnavailable,
        DenialKind::InsufficientScope,
        DenialKind::MethodNotCovered,
        DenialKind::PurposeUndeclared,
        DenialKind::PurposeNotAuthorised,
        DenialKind::PurposeNotAccepted,
        DenialKind::PurposeAmbiguous,
        DenialKind::NoPolicy,
        DenialKind::ResponseNotFilterable,
        DenialKind::OutsidePatientCompartment,
        DenialKind::FhirInteractionNotAllowed,
        DenialKind::ResourceNotGranted,
    ];

    /// The problem type's last segment (`urn:finalite:problem:SLUG`): clients match on it.
    pub fn slug(self) -> &'static str {
        match self {
            DenialKind::InvalidToken => "invalid-token",
            DenialKind::ClientCertificateRequired => "client-certificate-required",
            DenialKind::KeysUnavailable => "keys-unavailable",
            DenialKind::InsufficientScope => "insufficient-scope",
            DenialKind::MethodNotCovered => "method-not-covered",
            DenialKind::PurposeUndeclared => "purpose-undeclared",
            DenialKind::PurposeNotAuthorised => "purpose-not-authorised",
            DenialKind::PurposeNotAccepted => "purpose-not-accepted",
            DenialKind::PurposeAmbiguous => "purpose-ambiguous",
            DenialKind::NoPolicy => "no-policy",
            DenialKind::ResponseNotFilterable => "response-not-filterable",
            DenialKind::OutsidePatientCompartment => "outside-patient-compartment",
            DenialKind::FhirInteractionNotAllowed => "fhir-interaction-not-allowed",
            DenialKind::ResourceNotGranted => "resource-not-granted",
        }
    }

    pub fn status(self) -> u16 {
        match self {
            DenialKind::InvalidToken | DenialKind::ClientCertificateRequired => 401,
            DenialKind::KeysUnavailable => 503,
            DenialKind::PurposeAmbiguous => 400,
            DenialKind::ResponseNotFilterable => 502,
            DenialKind::InsufficientScope
            | DenialKind::MethodNotCovered
            | DenialKind::PurposeUndeclared
            | DenialKind::PurposeNotAuthorised
            | DenialKind::PurposeNotAccepted
            | DenialKind::NoPolicy
            | DenialKind::OutsidePatientCompartment
            | DenialKind::FhirInteractionNotAllowed
            | DenialKind::ResourceNotGranted => 403,
        }
    }

    /// The status's reason phrase, as the problem's `title`.
    pub fn title(self) -> &'static str {
        match self.status() {
            400 => "Bad Request",
            401 => "Unauthorized",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            _ => "Forbidden",
        }
    }

    /// The problem of this kind, with a detail for the client.
    pub fn problem(self, detail: impl Into<String>) -> Problem {
        Problem {
            kind: self,
            slug: self.slug(),
            title: self.title(),
            status: self.status(),
            detail: detail.into(),
        }
    }
}

/// An RFC 9457 problem; `slug` makes `type` (`urn:finalite:problem:SLUG`). Built only by
/// [`DenialKind::problem`], so `slug`, `title` and `status` are always the kind's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub kind: DenialKind,
    pub slug: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
}

impl Problem {
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "type": format!("urn:finalite:problem:{}", self.slug),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }))
        .unwrap_or_default()
    }

    /// 502: the upstream body could not be filtered, so none of it is sent.
    pub fn not_filterable(reason: impl Into<String>) -> Problem {
        DenialKind::ResponseNotFilterable.problem(format!(
            "the upstream response could not be filtered: {}",
            reason.into()
        ))
    }

    /// The client sees the category of an engine error; the offset and path go to the log.
    /// A resource SMART scopes do not grant is a refusal (403), not a failure.
    pub fn from_engine_error(error: &EngineError) -> Problem {
        if let ErrorKind::Grant(kind) = &error.kind {
            return Problem::resource_not_granted(*kind);
        }
        Problem::not_filterable(match &error.kind {
            ErrorKind::Lex(LexErrorKind::TooDeep { limit }) => {
                format!("the body nests deeper than the limit of {limit}")
            }
            ErrorKind::Transform(_) => {
                "a value could not be transformed as the policy requires".to_string()
            }
            ErrorKind::Type(TypeErrorKind::GrantLookaheadExceeded { limit }) => format!(
                "a resource whose SMART grant depends on its content is larger than the limit of {limit} bytes"
            ),
            ErrorKind::Type(_) => {
                "an object's type could not be read as the policy requires".to_string()
            }
            ErrorKind::Lex(LexErrorKind::KeyTooLong | LexErrorKind::ValueTooLong) => {
                "the body holds a key or value too long to filter".to_string()
            }
            _ => "the body is not valid JSON".to_string(),
        })
    }

    /// 403: the response is a resource the caller's SMART scopes do not grant, or is not a
    /// resource; the detail does not say which resource it was.
    pub fn resource_not_granted(kind: GrantErrorKind) -> Problem {
        DenialKind::ResourceNotGranted.problem(match kind {
            GrantErrorKind::RootNotGranted => {
                "the caller's SMART scopes do not grant the resource this response holds"
            }
            GrantErrorKind::RootNotAResource | GrantErrorKind::RulesNotTyped => {
                "the response is not a FHIR resource, so the caller's SMART scopes grant none of it"
            }
        })
    }

    pub fn too_large(limit: u64) -> Problem {
        Problem::not_filterable(format!(
            "the body is larger than the limit of {limit} bytes"
        ))
    }

    pub fn from_body_error(error: &BodyError) -> Problem {
        match error {
            BodyError::TooLarge { limit } => Problem::too_large(*limit),
            BodyError::Decoding(_) => {
                Problem::not_filterable("the compressed body could not be decoded")
            }
            BodyError::Json(error) => Problem::from_engine_error(error),
        }
    }
}

/// A refusal answered by the filter itself: the problem and the headers that go with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub problem: Problem,
    /// RFC 6750 challenge, for 401 and scope refusals.
    pub www_authenticate: Option<String>,
    /// `Retry-After` in seconds, for a 503 the client may retry.
    pub retry_after_seconds: Option<u32>,
}

impl Denial {
    pub fn kind(&self) -> DenialKind {
        self.problem.kind
    }

    pub fn status(&self) -> u16 {
        self.problem.status
    }

    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("content-type", "application/problem+json".to_string()),
            ("cache-control", "no-store".to_string()),
        ];
        if let Some(challenge) = &self.www_authenticate {
            headers.push(("www-authenticate", challenge.clone()));
        }
        if let Some(seconds) = self.retry_after_seconds {
            headers.push(("retry-after", seconds.to_string()));
        }
        headers
    }

    pub fn body(&self) -> Vec<u8> {
        self.problem.body()
    }

    /// No verified token, and no reason known (jwt_authn saw none, or refused it before us).
    pub fn no_token() -> Denial {
        Denial {
            www_authenticate: Some("Bearer error=\"invalid_token\"".into()),
            ..DenialKind::InvalidToken
                .problem("this route requires a valid bearer token")
                .into()
        }
    }

    /// A token finalite refused: the challenge says which check failed, never echoing the
    /// token.
    pub fn invalid_token(error: TokenError) -> Denial {
        Denial {
            www_authenticate: Some(error.www_authenticate()),
            ..DenialKind::InvalidToken
                .problem(format!(
                    "this route requires a valid bearer token: {}",
                    error.description()
                ))
                .into()
        }
    }

    /// No key set is known yet (the first fetch of `jwks_uri` has not succeeded): never an
    /// unverified pass.
    pub fn keys_unavailable(retry_after_seconds: u32) -> Denial {
        Denial {
            retry_after_seconds: Some(retry_after_seconds.max(1)),
            ..DenialKind::KeysUnavailable
                .problem("the keys that verify bearer tokens are not available yet; retry shortly")
                .into()
        }
    }

    pub fn client_certificate_required() -> Denial {
        DenialKind::ClientCertificateRequired
            .problem("this route requires a client certificate with a URI SAN (mutual TLS)")
            .into()
    }

    /// A scope is missing; `scope` is the requirement's challenge. The RFC 6750 header goes
    /// only with bearer tokens (`bearer`), not with client certificates.
    pub fn insufficient_scope(scope: &str, bearer: bool) -> Denial {
        Denial {
            www_authenticate: bearer
                .then(|| format!("Bearer error=\"insufficient_scope\", scope=\"{scope}\"")),
            ..DenialKind::InsufficientScope
                .problem(format!(
                    "the caller lacks the scope this request needs: {scope}"
                ))
                .into()
        }
    }

    pub fn method_not_covered(method: &str) -> Denial {
        DenialKind::MethodNotCovered
            .problem(format!(
                "this route's policy grants no scope for the method {method}"
            ))
            .into()
    }

    pub fn no_policy() -> Denial {
        DenialKind::NoPolicy
            .problem("no policy covers this route")
            .into()
    }

    /// A purpose check failed; `header` is the request header that declares purposes.
    pub fn purpose(refusal: PurposeRefusal, header: &str) -> Denial {
        match refusal {
            PurposeRefusal::Undeclared => DenialKind::PurposeUndeclared
                .problem(format!("no purpose declared: send the {header} header")),
            PurposeRefusal::NotAuthorised(name) => DenialKind::PurposeNotAuthorised.problem(
                format!("the caller is not authorised for the purpose {name:?}"),
            ),
            PurposeRefusal::NotAccepted(name) => DenialKind::PurposeNotAccepted.problem(format!(
                "the purpose {name:?} is not accepted on this route"
            )),
        }
        .into()
    }
}

impl Denial {
    /// Two different purposes declared: which one the upstream or another filter acts on is
    /// not for finalite to guess, so neither is taken.
    pub fn purpose_ambiguous(header: &str) -> Denial {
        DenialKind::PurposeAmbiguous
            .problem(format!(
                "the request declares more than one purpose: send one {header} header"
            ))
            .into()
    }
}

impl From<Problem> for Denial {
    fn from(problem: Problem) -> Denial {
        Denial {
            problem,
            www_authenticate: None,
            retry_after_seconds: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_type_and_a_consistent_status_and_title() {
        let mut slugs: Vec<&str> = DenialKind::ALL.iter().map(|k| k.slug()).collect();
        slugs.sort_unstable();
        slugs.dedup();
        assert_eq!(slugs.len(), DenialKind::ALL.len());
        for kind in DenialKind::ALL {
            let problem = kind.problem("d");
            assert_eq!(
                (problem.slug, problem.title, problem.status),
                (kind.slug(), kind.title(), kind.status())
            );
            let body: serde_json::Value = serde_json::from_slice(&problem.body()).unwrap();
            assert_eq!(
                body["type"],
                format!("urn:finalite:problem:{}", kind.slug())
            );
        }
        // SMART refusals of the engine: a root not granted is the caller's, a resource too
        // large to be decided the proxy's.
        let engine_error = |kind| EngineError {
            offset: 401,
            path: "$".into(),
            kind,
        };
        let problem = Problem::from_engine_error(&engine_error(ErrorKind::Grant(
            GrantErrorKind::RootNotGranted,
        )));
        assert_eq!(
            (problem.status, problem.slug, problem.detail.as_str()),
            (
                403,
                "resource-not-granted",
                "the caller's SMART scopes do not grant the resource this response holds"
            )
        );
        let too_large = engine_error(ErrorKind::Type(TypeErrorKind::GrantLookaheadExceeded {
            limit: 400,
        }));
        assert_eq!(Problem::from_engine_error(&too_large).status, 502);
        assert_eq!(
            Denial::no_policy().problem.title,
            "Forbidden",
            "403s are Forbidden"
        );
        assert_eq!(
            Denial::keys_unavailable(0).headers(),
            vec![
                ("content-type", "application/problem+json".to_string()),
                ("cache-control", "no-store".to_string()),
                ("retry-after", "1".to_string()),
            ]
        );
    }
}
