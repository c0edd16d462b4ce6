//! The bearer token of one request, verified by finalite itself (`token.from: "jwks"`) the
//! first time a claim is asked for, so that routes that need no token never verify one.

use std::cell::{OnceCell, RefCell};

use super::claims::{ClaimSource, ClaimValue};
use super::jwt::VerifiedToken;
use super::key_cache::{BearerRefusal, KeyCache};

/// A [`ClaimSource`] over the `authorization` header: the adapter builds one per request and
/// hands it to `request::decide` as the caller's claims.
pub struct BearerClaims<'a> {
    authorization: Option<&'a str>,
    keys: RefCell<&'a mut KeyCache>,
    now: u64,
    outcome: OnceCell<Result<VerifiedToken, BearerRefusal>>,
}

impl<'a> BearerClaims<'a> {
    /// `authorization` is the header's value, `now` the time in Unix seconds. An unknown
    /// `kid` may schedule an early refresh in `keys`.
    pub fn new(authorization: Option<&'a str>, keys: &'a mut KeyCache, now: u64) -> Self {
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
            self.keys
                .borrow_mut()
                .verify_bearer(self.authorization, self.now)
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

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::auth::jwt::{TokenError, VerifySettings};
    use crate::auth::key_cache::{KeySource, Verification};
    use crate::auth::testkeys::{all_keys, claims, token, Alg, Key, NOW};

    fn cache() -> KeyCache {
        KeyCache::new(Arc::new(Verification {
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
}
