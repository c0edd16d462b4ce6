//! The bearer token of one request, verified by finalite itself (`token.from: "jwks"`) the
//! first time a claim is asked for, so that routes that need no token never verify one.

use std::cell::{OnceCell, RefCell};

use serde_json::Value;

use super::claims::{BearerRefusal, ClaimSource, ClaimValue};
use super::jwt::{TokenError, VerifiedToken};
use super::verifier::Verifier;

/// A [`ClaimSource`] over the `authorization` header: the adapter builds one per request and
/// hands it to `request::decide` as the caller's claims.
pub struct BearerClaims<'a> {
    authorization: Option<&'a str>,
    keys: RefCell<&'a mut Verifier>,
    now: u64,
    outcome: OnceCell<Result<VerifiedToken, BearerRefusal>>,
}

impl<'a> BearerClaims<'a> {
    /// `authorization` is the header's value, `now` the time in Unix seconds. An unknown
    /// `kid` may schedule an early refresh in `keys`.
    pub fn new(authorization: Option<&'a str>, keys: &'a mut Verifier, now: u64) -> Self {
        BearerClaims {
            authorization,
            keys: RefCell::new(keys),
            now,
            outcome: OnceCell::new(),
        }
    }

    /// The verification's outcome (verifying now if no claim was asked for yet).
    pub fn outcome(&self) -> &Result<VerifiedToken, BearerRefusal> {
        self.outcome.get_or_init(|| {
            let token = bearer_token(self.authorization).map_err(BearerRefusal::Invalid)?;
            self.keys.borrow_mut().verify(token, self.now)
        })
    }

    /// Whether the token was verified (or refused) at all: `false` when no claim was needed.
    pub fn was_checked(&self) -> bool {
        self.outcome.get().is_some()
    }
}

impl ClaimSource for BearerClaims<'_> {
    fn has_verified_token(&self) -> bool {
        self.outcome().is_ok()
    }

    fn claim(&self, name: &str) -> Option<ClaimValue> {
        self.outcome().as_ref().ok()?.claim(name)
    }

    fn refusal(&self) -> Option<BearerRefusal> {
        self.outcome().as_ref().err().cloned()
    }
}

/// The token of an `authorization: Bearer TOKEN` header value (RFC 6750 section 2.1): the
/// scheme in any case, one space, one `b64token`, nothing else.
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, TokenError> {
    let value = authorization.ok_or(TokenError::Missing)?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(if value.trim().is_empty() {
            TokenError::Missing
        } else {
            TokenError::NotBearer
        });
    }
    let token = rest;
    let body = token.trim_end_matches('=');
    let b64token = !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b));
    if !b64token {
        return Err(TokenError::MalformedAuthorization);
    }
    Ok(token)
}

impl ClaimSource for VerifiedToken {
    fn has_verified_token(&self) -> bool {
        true
    }

    /// Strings, and arrays made only of strings; other JSON values are not claims finalite
    /// reads.
    fn claim(&self, name: &str) -> Option<ClaimValue> {
        match self.claims().get(name)? {
            Value::String(s) => Some(ClaimValue::String(s.clone())),
            Value::Array(items) => items
                .iter()
                .map(|item| item.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .map(ClaimValue::List),
            _ => None,
        }
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::jwt::VerifySettings;
    use crate::auth::testkeys::{all_keys, claims, token, Alg, Key, NOW};
    use crate::auth::verifier::{KeySource, Verification};

    fn cache() -> Verifier {
        Verifier::new(Arc::new(Verification {
            settings: VerifySettings::default(),
            keys: KeySource::Inline(Arc::new(all_keys())),
        }))
    }

    #[test]
    fn verifies_once_on_first_use() {
        let mut keys = cache();
        let header = format!(
            "Bearer {}",
            token(Alg::EdDSA, Key::Ed25519, None, &claims())
        );
        let bearer = BearerClaims::new(Some(&header), &mut keys, NOW);
        assert!(!bearer.was_checked());
        assert_eq!(
            bearer.claim("sub"),
            Some(ClaimValue::String("user-1".into()))
        );
        assert!(bearer.was_checked());
        assert!(bearer.has_verified_token());
        assert_eq!(bearer.refusal(), None);
    }

    #[test]
    fn a_refusal_is_kept() {
        let mut keys = cache();
        let bearer = BearerClaims::new(Some("Bearer a.b"), &mut keys, NOW);
        assert!(!bearer.has_verified_token());
        assert_eq!(bearer.claim("sub"), None);
        assert_eq!(
            bearer.refusal(),
            Some(BearerRefusal::Invalid(TokenError::NotCompact))
        );
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(bearer_token(Some("Bearer abc.def.ghi")), Ok("abc.def.ghi"));
        assert_eq!(bearer_token(Some("bearer abc")), Ok("abc"));
        assert_eq!(
            bearer_token(Some("BEARER a-b_c~d+e/f==")),
            Ok("a-b_c~d+e/f==")
        );
        assert_eq!(bearer_token(None), Err(TokenError::Missing));
        assert_eq!(bearer_token(Some("")), Err(TokenError::Missing));
        assert_eq!(
            bearer_token(Some("Basic dXNlcjpwYXNz")),
            Err(TokenError::NotBearer)
        );
        assert_eq!(bearer_token(Some("Bearerabc")), Err(TokenError::NotBearer));
        for bad in [
            "Bearer",
            "Bearer ",
            "Bearer  abc",
            "Bearer abc ",
            "Bearer abc def",
            "Bearer abc,def",
            "Bearer abc, Bearer def",
            "Bearer \"abc\"",
            "Bearer =",
            "Bearer a=b",
            "Bearer\tabc",
        ] {
            let expected = if bad == "Bearer\tabc" {
                TokenError::NotBearer
            } else {
                TokenError::MalformedAuthorization
            };
            assert_eq!(bearer_token(Some(bad)), Err(expected), "{bad:?}");
        }
    }
}
