//! Bearer tokens verified by finalite itself: JWS compact serialisation (RFC 7515) of a JWT
//! (RFC 7519), with the checks of RFC 8725 (JWT best current practices).
//!
//! What is refused, and why:
//! - anything but a 3-part JWS: JWE (5 parts, or an `enc` header), JSON serialisations;
//! - `alg: none` and any algorithm outside [`Algorithm`];
//! - an algorithm that does not fit the key (type, curve, or the key's own `alg`): the
//!   "algorithm confusion" of HS256 signed with an RSA public key cannot happen, as HMAC only
//!   ever uses the secret from the VM's environment and public keys never verify HMAC;
//! - headers that name a key (`jku`, `x5u`, `jwk`, `x5c`): the token must not choose the key
//!   that verifies it; `crit` with any extension (none is supported);
//! - `exp` missing or past, `nbf` or `iat` in the future (each with the clock skew), an `iss`
//!   or `aud` other than the configured ones.

use std::fmt;
use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256, Sha384, Sha512};

use super::jwa::Algorithm;
use super::jwks::{Jwk, KeyMaterial, KeySet};

/// Longest token read; a larger one is refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Clock skew allowed when `clock_skew_seconds` is not set.
pub const DEFAULT_CLOCK_SKEW_SECONDS: u64 = 60;
/// Shortest HMAC secret accepted (HS256's hash size; HS384 and HS512 need 48 and 64).
pub const MIN_HMAC_SECRET_BYTES: usize = 32;

/// Why a token is refused. [`TokenError::description`] is the RFC 6750 `error_description`:
/// it says which check failed and never echoes any part of the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// No `authorization` header.
    Missing,
    /// An `authorization` header with another scheme (`Basic ...`).
    NotBearer,
    /// `Bearer` without exactly one token after exactly one space.
    MalformedAuthorization,
    TooLarge,
    /// JWE: 5 parts, or an `enc` header.
    Encrypted,
    /// Not 3 dot-separated parts.
    NotCompact,
    MalformedHeader,
    /// `alg: none`.
    Unsecured,
    UnsupportedAlgorithm,
    /// `jku`, `x5u`, `jwk` or `x5c`.
    KeyInHeader,
    /// `crit` naming an extension.
    CriticalExtension,
    MalformedSignature,
    /// The `kid` is in no key of the set (an early refresh of the keys may help).
    UnknownKey,
    /// No key of the set (or secret) fits the algorithm.
    NoKeyForAlgorithm,
    /// The key the `kid` names does not fit the algorithm.
    AlgorithmMismatch,
    BadSignature,
    MalformedClaims,
    MissingExpiry,
    Expired,
    NotYetValid,
    IssuedInFuture,
    BadIssuer,
    BadAudience,
}

impl TokenError {
    /// A short RFC 6750 `error_description` (printable ASCII, no `"` or `\`).
    pub fn description(self) -> &'static str {
        match self {
            TokenError::Missing => "the request carries no bearer token",
            TokenError::NotBearer => "the authorization header does not use the Bearer scheme",
            TokenError::MalformedAuthorization => {
                "the authorization header does not hold exactly one bearer token"
            }
            TokenError::TooLarge => "the token is too large",
            TokenError::Encrypted => "encrypted tokens (JWE) are not accepted",
            TokenError::NotCompact => "the token is not a JWS in compact serialization",
            TokenError::MalformedHeader => "the token's header is malformed",
            TokenError::Unsecured => "unsecured tokens (alg none) are not accepted",
            TokenError::UnsupportedAlgorithm => "the token's algorithm is not supported",
            TokenError::KeyInHeader => {
                "the token's header names its own key (jku, x5u, jwk or x5c), which is not accepted"
            }
            TokenError::CriticalExtension => {
                "the token's header has critical extensions, which are not supported"
            }
            TokenError::MalformedSignature => "the token's signature is malformed",
            TokenError::UnknownKey => "the token's key id is not known",
            TokenError::NoKeyForAlgorithm => "no key accepts the token's algorithm",
            TokenError::AlgorithmMismatch => "the token's algorithm does not match its key",
            TokenError::BadSignature => "the token's signature does not verify",
            TokenError::MalformedClaims => "the token's claims are malformed",
            TokenError::MissingExpiry => "the token has no expiry (exp)",
            TokenError::Expired => "the token has expired",
            TokenError::NotYetValid => "the token is not valid yet (nbf)",
            TokenError::IssuedInFuture => "the token's issue time (iat) is in the future",
            TokenError::BadIssuer => "the token's issuer is not accepted",
            TokenError::BadAudience => "the token's audience is not accepted",
        }
    }

    /// The RFC 6750 challenge for a 401.
    pub fn www_authenticate(self) -> String {
        format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            self.description()
        )
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

impl std::error::Error for TokenError {}

/// An HMAC secret, read from the VM's environment; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct HmacSecret(Arc<[u8]>);

impl HmacSecret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> HmacSecret {
        HmacSecret(Arc::from(bytes.into().into_boxed_slice()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// RFC 7518 section 3.2: the key must be at least as long as the hash.
    pub fn fits(&self, alg: Algorithm) -> bool {
        alg.is_hmac() && self.0.len() >= alg.hash_len()
    }
}

impl fmt::Debug for HmacSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HmacSecret({} bytes)", self.0.len())
    }
}

/// The checks a token must pass, besides its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifySettings {
    /// `iss` must equal this, when set.
    pub issuer: Option<String>,
    /// `aud` must contain one of these, when not empty.
    pub audiences: Vec<String>,
    pub clock_skew_seconds: u64,
    /// The secret of HS256/384/512, when configured.
    pub hmac_secret: Option<HmacSecret>,
}

impl Default for VerifySettings {
    fn default() -> Self {
        VerifySettings {
            issuer: None,
            audiences: Vec::new(),
            clock_skew_seconds: DEFAULT_CLOCK_SKEW_SECONDS,
            hmac_secret: None,
        }
    }
}

/// A token whose signature and claims passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    pub alg: Algorithm,
    pub kid: Option<String>,
    claims: Map<String, Value>,
}

impl VerifiedToken {
    /// The payload's claims, as JSON.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// `exp`, in Unix seconds.
    pub fn expires_at(&self) -> f64 {
        self.claims
            .get("exp")
            .and_then(Value::as_f64)
            .unwrap_or_default()
    }
}

/// The JOSE header members finalite looks at. serde refuses a duplicated member.
#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<Value>,
    enc: Option<IgnoredAny>,
    jku: Option<IgnoredAny>,
    x5u: Option<IgnoredAny>,
    jwk: Option<IgnoredAny>,
    x5c: Option<IgnoredAny>,
}

/// Verifies a JWS compact token against `keys` (and the HMAC secret of `settings`) at time
/// `now` (Unix seconds).
pub fn verify(
    token: &str,
    keys: &KeySet,
    settings: &VerifySettings,
    now: u64,
) -> Result<VerifiedToken, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, payload_b64, signature_b64] = parts[..] else {
        return Err(if parts.len() == 5 {
            TokenError::Encrypted
        } else {
            TokenError::NotCompact
        });
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(TokenError::MalformedHeader)?;
    if header.enc.is_some() {
        return Err(TokenError::Encrypted);
    }
    let alg_name = header.alg.as_deref().ok_or(TokenError::MalformedHeader)?;
    let alg = match Algorithm::from_name(alg_name) {
        Some(alg) => alg,
        None if alg_name.eq_ignore_ascii_case("none") => return Err(TokenError::Unsecured),
        None => return Err(TokenError::UnsupportedAlgorithm),
    };
    if header.jku.is_some() || header.x5u.is_some() || header.jwk.is_some() || header.x5c.is_some()
    {
        return Err(TokenError::KeyInHeader);
    }
    match &header.crit {
        None => {}
        Some(Value::Array(items)) if items.is_empty() => {}
        Some(_) => return Err(TokenError::CriticalExtension),
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| TokenError::MalformedSignature)?;
    let signing_input = &token.as_bytes()[..header_b64.len() + 1 + payload_b64.len()];

    if alg.is_hmac() {
        let secret = settings
            .hmac_secret
            .as_ref()
            .filter(|secret| secret.fits(alg))
            .ok_or(TokenError::NoKeyForAlgorithm)?;
        if !hmac_verifies(alg, &secret.0, signing_input, &signature) {
            return Err(TokenError::BadSignature);
        }
    } else {
        let candidates = candidates(keys, alg, header.kid.as_deref())?;
        if !candidates
            .iter()
            .any(|key| signature_verifies(alg, &key.material, signing_input, &signature))
        {
            return Err(TokenError::BadSignature);
        }
    }

    let claims: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(TokenError::MalformedClaims)?;
    check_claims(&claims, settings, now)?;
    Ok(VerifiedToken {
        alg,
        kid: header.kid,
        claims,
    })
}

/// The keys that may have signed the token. With a `kid`, the keys carrying it; when none
/// does, the keys without a `kid` (a set of one unnamed key); without a `kid`, every key
/// that fits the algorithm.
fn candidates<'k>(
    keys: &'k KeySet,
    alg: Algorithm,
    kid: Option<&str>,
) -> Result<Vec<&'k Jwk>, TokenError> {
    if let Some(kid) = kid {
        let named: Vec<&Jwk> = keys
            .keys
            .iter()
            .filter(|k| k.kid.as_deref() == Some(kid))
            .collect();
        if !named.is_empty() {
            let fitting: Vec<&Jwk> = named.into_iter().filter(|k| k.accepts(alg)).collect();
            return if fitting.is_empty() {
                Err(TokenError::AlgorithmMismatch)
            } else {
                Ok(fitting)
            };
        }
        let unnamed: Vec<&Jwk> = keys
            .keys
            .iter()
            .filter(|k| k.kid.is_none() && k.accepts(alg))
            .collect();
        return if unnamed.is_empty() {
            Err(TokenError::UnknownKey)
        } else {
            Ok(unnamed)
        };
    }
    let fitting: Vec<&Jwk> = keys.keys.iter().filter(|k| k.accepts(alg)).collect();
    if fitting.is_empty() {
        Err(TokenError::NoKeyForAlgorithm)
    } else {
        Ok(fitting)
    }
}

fn hmac_verifies(alg: Algorithm, secret: &[u8], input: &[u8], signature: &[u8]) -> bool {
    // `verify_slice` compares in constant time.
    fn check<M: Mac + hmac::digest::KeyInit>(secret: &[u8], input: &[u8], sig: &[u8]) -> bool {
        match <M as hmac::digest::KeyInit>::new_from_slice(secret) {
            Ok(mut mac) => {
                mac.update(input);
                mac.verify_slice(sig).is_ok()
            }
            Err(_) => false,
        }
    }
    match alg {
        Algorithm::HS256 => check::<Hmac<Sha256>>(secret, input, signature),
        Algorithm::HS384 => check::<Hmac<Sha384>>(secret, input, signature),
        Algorithm::HS512 => check::<Hmac<Sha512>>(secret, input, signature),
        _ => false,
    }
}

fn signature_verifies(alg: Algorithm, key: &KeyMaterial, input: &[u8], signature: &[u8]) -> bool {
    use p256::ecdsa::signature::Verifier;
    use rsa::{Pkcs1v15Sign, Pss};
    match (key, alg) {
        (KeyMaterial::Rsa(key), _) => {
            let result = match alg {
                Algorithm::RS256 => key.verify(
                    Pkcs1v15Sign::new::<Sha256>(),
                    &Sha256::digest(input),
                    signature,
                ),
                Algorithm::RS384 => key.verify(
                    Pkcs1v15Sign::new::<Sha384>(),
                    &Sha384::digest(input),
                    signature,
                ),
                Algorithm::RS512 => key.verify(
                    Pkcs1v15Sign::new::<Sha512>(),
                    &Sha512::digest(input),
                    signature,
                ),
                Algorithm::PS256 => {
                    key.verify(Pss::new::<Sha256>(), &Sha256::digest(input), signature)
                }
                Algorithm::PS384 => {
                    key.verify(Pss::new::<Sha384>(), &Sha384::digest(input), signature)
                }
                Algorithm::PS512 => {
                    key.verify(Pss::new::<Sha512>(), &Sha512::digest(input), signature)
                }
                _ => return false,
            };
            result.is_ok()
        }
        (KeyMaterial::P256(key), Algorithm::ES256) => {
            // JWS carries R || S, 32 bytes each (RFC 7518 section 3.4), not DER.
            p256::ecdsa::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify(input, &sig).is_ok())
        }
        (KeyMaterial::P384(key), Algorithm::ES384) => p384::ecdsa::Signature::from_slice(signature)
            .is_ok_and(|sig| key.verify(input, &sig).is_ok()),
        (KeyMaterial::Ed25519(key), Algorithm::EdDSA) => {
            ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify_strict(input, &sig).is_ok())
        }
        _ => false,
    }
}

fn check_claims(
    claims: &Map<String, Value>,
    settings: &VerifySettings,
    now: u64,
) -> Result<(), TokenError> {
    let now = now as f64;
    let skew = settings.clock_skew_seconds as f64;
    let time = |name: &str| -> Result<Option<f64>, TokenError> {
        match claims.get(name) {
            None => Ok(None),
            Some(value) => value.as_f64().map(Some).ok_or(TokenError::MalformedClaims),
        }
    };
    let exp = time("exp")?.ok_or(TokenError::MissingExpiry)?;
    if now >= exp + skew {
        return Err(TokenError::Expired);
    }
    if time("nbf")?.is_some_and(|nbf| nbf > now + skew) {
        return Err(TokenError::NotYetValid);
    }
    if time("iat")?.is_some_and(|iat| iat > now + skew) {
        return Err(TokenError::IssuedInFuture);
    }
    if let Some(issuer) = &settings.issuer {
        if claims.get("iss").and_then(Value::as_str) != Some(issuer.as_str()) {
            return Err(TokenError::BadIssuer);
        }
    }
    if !settings.audiences.is_empty() {
        let accepted = |aud: &Value| {
            aud.as_str()
                .is_some_and(|aud| settings.audiences.iter().any(|a| a == aud))
        };
        let ok = match claims.get("aud") {
            Some(Value::Array(items)) => items.iter().any(accepted),
            Some(aud) => accepted(aud),
            None => false,
        };
        if !ok {
            return Err(TokenError::BadAudience);
        }
    }
    Ok(())
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::claims::{ClaimSource, ClaimValue};
    use crate::auth::testkeys::{self, all_keys, claims, token, Alg, Key, AUDIENCE, ISSUER, NOW};

    fn settings() -> VerifySettings {
        VerifySettings {
            issuer: Some(ISSUER.into()),
            audiences: vec!["other-api".into(), AUDIENCE.into()],
            clock_skew_seconds: 60,
            hmac_secret: Some(HmacSecret::new(testkeys::HMAC_SECRET)),
        }
    }

    fn check(token: &str) -> Result<VerifiedToken, TokenError> {
        verify(token, &all_keys(), &settings(), NOW)
    }

    fn with_claims(changes: Value) -> Value {
        let mut claims = claims();
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                claims.as_object_mut().unwrap().remove(name);
            } else {
                claims[name] = value.clone();
            }
        }
        claims
    }

    #[test]
    fn every_supported_algorithm_verifies() {
        let cases = [
            (Alg::RS256, Key::RsaA, "rsa-a"),
            (Alg::RS384, Key::RsaA, "rsa-a"),
            (Alg::RS512, Key::RsaB, "rsa-b"),
            (Alg::PS256, Key::RsaA, "rsa-a"),
            (Alg::PS384, Key::RsaB, "rsa-b"),
            (Alg::PS512, Key::RsaA, "rsa-a"),
            (Alg::ES256, Key::P256, "p256"),
            (Alg::ES384, Key::P384, "p384"),
            (Alg::EdDSA, Key::Ed25519, "ed25519"),
        ];
        for (alg, key, kid) in cases {
            let verified = check(&token(alg, key, Some(kid), &claims()))
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert_eq!(verified.alg.name(), format!("{alg:?}"));
            assert_eq!(verified.kid.as_deref(), Some(kid));
            // Without a kid, the keys that fit the algorithm are tried.
            check(&token(alg, key, None, &claims())).unwrap_or_else(|e| panic!("{alg:?}: {e}"));
        }
        for alg in [Alg::HS256, Alg::HS384, Alg::HS512] {
            let verified = check(&testkeys::hmac_token(alg, testkeys::HMAC_SECRET, &claims()))
                .unwrap_or_else(|e| panic!("{alg:?}: {e}"));
            assert!(verified.alg.is_hmac());
        }
    }

    #[test]
    fn claims_are_read_as_strings_and_lists() {
        let verified = check(&token(
            Alg::ES256,
            Key::P256,
            Some("p256"),
            &with_claims(json!({"mixed": ["a", 1], "n": 5, "obj": {"a": "b"}})),
        ))
        .unwrap();
        assert!(verified.has_verified_token());
        assert_eq!(
            verified.claim("client_id"),
            Some(ClaimValue::String("partner".into()))
        );
        assert_eq!(
            verified.claim("purposes"),
            Some(ClaimValue::List(vec!["billing".into()]))
        );
        assert_eq!(verified.claim("mixed"), None);
        assert_eq!(verified.claim("n"), None);
        assert_eq!(verified.claim("obj"), None);
        assert_eq!(verified.claim("absent"), None);
        assert_eq!(verified.expires_at(), (NOW + 300) as f64);
        assert_eq!(verified.claims()["sub"], "user-1");
    }

    #[test]
    fn wrong_key_or_tampering_fails_the_signature() {
        // Signed by key B, presented as key A.
        let forged = token(Alg::RS256, Key::RsaB, Some("rsa-a"), &claims());
        assert_eq!(check(&forged), Err(TokenError::BadSignature));
        // A claim changed after signing.
        let good = token(Alg::ES256, Key::P256, Some("p256"), &claims());
        let parts: Vec<&str> = good.split('.').collect();
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            testkeys::b64_json(&with_claims(json!({"scope": "patients:write"}))),
            parts[2]
        );
        assert_eq!(check(&tampered), Err(TokenError::BadSignature));
        // A truncated signature.
        let short = &good[..good.len() - 4];
        assert!(matches!(
            check(short),
            Err(TokenError::BadSignature | TokenError::MalformedSignature)
        ));
        // HS with another secret.
        let other = testkeys::hmac_token(Alg::HS256, &[7u8; 32], &claims());
        assert_eq!(check(&other), Err(TokenError::BadSignature));
        // EdDSA signature on a changed payload.
        let ed = token(Alg::EdDSA, Key::Ed25519, None, &claims());
        let parts: Vec<&str> = ed.split('.').collect();
        let swapped = format!(
            "{}.{}.{}",
            parts[0],
            testkeys::b64_json(&json!({"exp": NOW + 999})),
            parts[2]
        );
        assert_eq!(check(&swapped), Err(TokenError::BadSignature));
    }

    #[test]
    fn time_claims() {
        let mint =
            |changes: Value| token(Alg::RS256, Key::RsaA, Some("rsa-a"), &with_claims(changes));
        assert_eq!(
            check(&mint(json!({"exp": null}))),
            Err(TokenError::MissingExpiry)
        );
        assert_eq!(
            check(&mint(json!({"exp": "tomorrow"}))),
            Err(TokenError::MalformedClaims)
        );
        assert_eq!(
            check(&mint(json!({"exp": NOW - 61}))),
            Err(TokenError::Expired)
        );
        assert_eq!(
            check(&mint(json!({"exp": NOW - 60}))),
            Err(TokenError::Expired)
        );
        // Within the skew.
        check(&mint(json!({"exp": NOW - 59}))).unwrap();
        // Fractional NumericDate.
        check(&mint(json!({"exp": (NOW as f64) + 0.5}))).unwrap();
        assert_eq!(
            check(&mint(json!({"nbf": NOW + 61}))),
            Err(TokenError::NotYetValid)
        );
        check(&mint(json!({"nbf": NOW + 60}))).unwrap();
        assert_eq!(
            check(&mint(json!({"nbf": "soon"}))),
            Err(TokenError::MalformedClaims)
        );
        assert_eq!(
            check(&mint(json!({"iat": NOW + 3600}))),
            Err(TokenError::IssuedInFuture)
        );
        check(&mint(json!({"iat": null, "nbf": null}))).unwrap();
        // No skew.
        let strict = VerifySettings {
            clock_skew_seconds: 0,
            ..settings()
        };
        let token = mint(json!({"exp": NOW}));
        assert_eq!(
            verify(&token, &all_keys(), &strict, NOW),
            Err(TokenError::Expired)
        );
        verify(&token, &all_keys(), &strict, NOW - 1).unwrap();
    }

    #[test]
    fn issuer_and_audience() {
        let mint =
            |changes: Value| token(Alg::ES384, Key::P384, Some("p384"), &with_claims(changes));
        assert_eq!(
            check(&mint(json!({"iss": "https://evil.example"}))),
            Err(TokenError::BadIssuer)
        );
        assert_eq!(
            check(&mint(json!({"iss": null}))),
            Err(TokenError::BadIssuer)
        );
        assert_eq!(
            check(&mint(json!({"iss": ["https://idp.example"]}))),
            Err(TokenError::BadIssuer)
        );
        assert_eq!(
            check(&mint(json!({"aud": "billing-api"}))),
            Err(TokenError::BadAudience)
        );
        assert_eq!(
            check(&mint(json!({"aud": ["a", "b"]}))),
            Err(TokenError::BadAudience)
        );
        assert_eq!(
            check(&mint(json!({"aud": null}))),
            Err(TokenError::BadAudience)
        );
        assert_eq!(
            check(&mint(json!({"aud": 7}))),
            Err(TokenError::BadAudience)
        );
        check(&mint(json!({"aud": ["a", AUDIENCE]}))).unwrap();
        check(&mint(json!({"aud": "other-api"}))).unwrap();
        // Nothing configured: any issuer and audience.
        let open = VerifySettings {
            issuer: None,
            audiences: vec![],
            ..settings()
        };
        let token = mint(json!({"iss": "https://other.example", "aud": "x"}));
        verify(&token, &all_keys(), &open, NOW).unwrap();
    }

    #[test]
    fn unsecured_and_unsupported_algorithms() {
        for alg in ["none", "None", "NONE"] {
            for signature in ["", "c2ln"] {
                let unsecured = format!(
                    "{}.{}.{signature}",
                    testkeys::b64_json(&json!({"alg": alg, "typ": "JWT"})),
                    testkeys::b64_json(&claims())
                );
                assert_eq!(check(&unsecured), Err(TokenError::Unsecured), "{alg}");
            }
        }
        for alg in ["HS1", "RS1", "ES512", "ES256K", "rs256", ""] {
            let token = format!(
                "{}.{}.c2ln",
                testkeys::b64_json(&json!({"alg": alg})),
                testkeys::b64_json(&claims())
            );
            assert_eq!(
                check(&token),
                Err(TokenError::UnsupportedAlgorithm),
                "{alg}"
            );
        }
        let no_alg = format!(
            "{}.{}.c2ln",
            testkeys::b64_json(&json!({"typ": "JWT"})),
            testkeys::b64_json(&claims())
        );
        assert_eq!(check(&no_alg), Err(TokenError::MalformedHeader));
    }

    #[test]
    fn algorithm_confusion_is_refused() {
        // HS256 "signed" with the RSA public key as the secret, in its PEM and JWK forms.
        use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
        let private = rsa::RsaPrivateKey::from_pkcs8_pem(Key::RsaA.pem()).unwrap();
        let public_pem = private
            .to_public_key()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap();
        let jwk_text = serde_json::to_vec(&Key::RsaA.public_jwk()).unwrap();
        for secret in [public_pem.as_bytes(), &jwk_text[..]] {
            for kid in [Some("rsa-a"), None] {
                let mut header = json!({"alg": "HS256", "typ": "JWT"});
                if let Some(kid) = kid {
                    header["kid"] = json!(kid);
                }
                let forged = testkeys::token_with_header(
                    &header,
                    &claims(),
                    Alg::HS256,
                    &jsonwebtoken::EncodingKey::from_secret(secret),
                );
                // With the HMAC secret configured the forgery fails its MAC ...
                assert_eq!(check(&forged), Err(TokenError::BadSignature));
                // ... and without one, no key accepts HS256 at all.
                let no_hmac = VerifySettings {
                    hmac_secret: None,
                    ..settings()
                };
                assert_eq!(
                    verify(&forged, &all_keys(), &no_hmac, NOW),
                    Err(TokenError::NoKeyForAlgorithm)
                );
            }
        }
        // An ES256 token presented under the RSA key's kid.
        let token = token(Alg::ES256, Key::P256, Some("rsa-a"), &claims());
        assert_eq!(check(&token), Err(TokenError::AlgorithmMismatch));
        // PS256 under a key whose alg is ES256.
        let token = testkeys::token(Alg::PS256, Key::RsaA, Some("p256"), &claims());
        assert_eq!(check(&token), Err(TokenError::AlgorithmMismatch));
        // A key restricted to RS256 does not verify PS256, even signed by that very key.
        let rs_only = testkeys::set(vec![Key::RsaA.jwk("a", json!({"alg": "RS256"}))]);
        let ps = testkeys::token(Alg::PS256, Key::RsaA, Some("a"), &claims());
        assert_eq!(
            verify(&ps, &rs_only, &settings(), NOW),
            Err(TokenError::AlgorithmMismatch)
        );
        let ps = testkeys::token(Alg::PS256, Key::RsaA, None, &claims());
        assert_eq!(
            verify(&ps, &rs_only, &settings(), NOW),
            Err(TokenError::NoKeyForAlgorithm)
        );
    }

    #[test]
    fn hmac_secret_must_fit_the_algorithm() {
        let short = VerifySettings {
            hmac_secret: Some(HmacSecret::new(&testkeys::HMAC_SECRET[..40])),
            ..settings()
        };
        let hs256 = testkeys::hmac_token(Alg::HS256, &testkeys::HMAC_SECRET[..40], &claims());
        verify(&hs256, &KeySet::default(), &short, NOW).unwrap();
        let hs384 = testkeys::hmac_token(Alg::HS384, &testkeys::HMAC_SECRET[..40], &claims());
        assert_eq!(
            verify(&hs384, &KeySet::default(), &short, NOW),
            Err(TokenError::NoKeyForAlgorithm)
        );
        assert_eq!(
            format!("{:?}", short.hmac_secret.unwrap()),
            "HmacSecret(40 bytes)"
        );
    }

    #[test]
    fn headers_that_name_a_key_are_refused() {
        let rsa = Key::RsaA.encoding();
        for (name, value) in [
            ("jku", json!("https://evil.example/jwks.json")),
            ("x5u", json!("https://evil.example/cert.pem")),
            ("jwk", Key::RsaA.public_jwk()),
            ("x5c", json!(["MIIB"])),
        ] {
            let mut header = json!({"alg": "RS256", "kid": "rsa-a"});
            header[name] = value;
            let token = testkeys::token_with_header(&header, &claims(), Alg::RS256, &rsa);
            assert_eq!(check(&token), Err(TokenError::KeyInHeader), "{name}");
        }
        // jsonwebtoken's own header fields give the same.
        let mut header = jsonwebtoken::Header::new(Alg::RS256);
        header.jku = Some("https://evil.example/jwks.json".into());
        let token = jsonwebtoken::encode(&header, &claims(), &rsa).unwrap();
        assert_eq!(check(&token), Err(TokenError::KeyInHeader));
        // A thumbprint is only a hint: accepted.
        let header = json!({"alg": "RS256", "kid": "rsa-a", "x5t": "abc", "typ": "at+jwt"});
        check(&testkeys::token_with_header(
            &header,
            &claims(),
            Alg::RS256,
            &rsa,
        ))
        .unwrap();
    }

    #[test]
    fn critical_extensions() {
        let rsa = Key::RsaA.encoding();
        let mint = |crit: Value| {
            testkeys::token_with_header(
                &json!({"alg": "RS256", "kid": "rsa-a", "crit": crit, "b64": false}),
                &claims(),
                Alg::RS256,
                &rsa,
            )
        };
        assert_eq!(
            check(&mint(json!(["b64"]))),
            Err(TokenError::CriticalExtension)
        );
        assert_eq!(
            check(&mint(json!("b64"))),
            Err(TokenError::CriticalExtension)
        );
        check(&mint(json!([]))).unwrap();
    }

    #[test]
    fn encrypted_and_malformed_tokens() {
        let b64 = testkeys::b64_json;
        let jwe = format!(
            "{}.a2V5.aXY.Y2lwaGVy.dGFn",
            b64(&json!({"alg": "RSA-OAEP", "enc": "A256GCM"}))
        );
        assert_eq!(check(&jwe), Err(TokenError::Encrypted));
        let enc_header = testkeys::token_with_header(
            &json!({"alg": "RS256", "enc": "A256GCM"}),
            &claims(),
            Alg::RS256,
            &Key::RsaA.encoding(),
        );
        assert_eq!(check(&enc_header), Err(TokenError::Encrypted));
        let good = token(Alg::RS256, Key::RsaA, Some("rsa-a"), &claims());
        let parts: Vec<&str> = good.split('.').collect();
        for bad in ["", "a", "a.b", "a.b.c.d", "a.b.c.d.e.f"] {
            assert_eq!(check(bad), Err(TokenError::NotCompact), "{bad}");
        }
        let cases = [
            // Header: not base64url, padded, not JSON, not an object, duplicate member.
            (
                format!("!!.{}.{}", parts[1], parts[2]),
                TokenError::MalformedHeader,
            ),
            (
                format!("{}=.{}.{}", parts[0], parts[1], parts[2]),
                TokenError::MalformedHeader,
            ),
            (
                format!("bm90IGpzb24.{}.{}", parts[1], parts[2]),
                TokenError::MalformedHeader,
            ),
            (
                format!("{}.{}.{}", b64(&json!(["RS256"])), parts[1], parts[2]),
                TokenError::MalformedHeader,
            ),
            (
                format!(
                    "{}.{}.{}",
                    URL_SAFE_NO_PAD.encode(r#"{"alg":"none","alg":"RS256"}"#),
                    parts[1],
                    parts[2]
                ),
                TokenError::MalformedHeader,
            ),
            (
                format!(
                    "{}.{}.{}",
                    b64(&json!({"alg": "RS256", "kid": 5})),
                    parts[1],
                    parts[2]
                ),
                TokenError::MalformedHeader,
            ),
            // Signature: not base64url (standard alphabet, padding).
            (
                format!("{}.{}.{}+", parts[0], parts[1], &parts[2][1..]),
                TokenError::MalformedSignature,
            ),
            (
                format!("{}.{}.{}==", parts[0], parts[1], parts[2]),
                TokenError::MalformedSignature,
            ),
            // Too large.
            (
                format!("{}.{}.{}", parts[0], "a".repeat(MAX_TOKEN_BYTES), parts[2]),
                TokenError::TooLarge,
            ),
        ];
        for (token, expected) in cases {
            assert_eq!(check(&token), Err(expected), "{token:.60}");
        }
        // A payload that is not a JSON object, correctly signed.
        let rsa = Key::RsaA.encoding();
        let header = json!({"alg": "RS256", "kid": "rsa-a"});
        for payload in ["not json", "[1,2]", "\"text\""] {
            let input = format!("{}.{}", b64(&header), URL_SAFE_NO_PAD.encode(payload));
            let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &rsa, Alg::RS256).unwrap();
            assert_eq!(
                check(&format!("{input}.{sig}")),
                Err(TokenError::MalformedClaims),
                "{payload}"
            );
        }
    }

    #[test]
    fn key_selection_by_kid() {
        // A kid that no key carries: unknown (the cache may refresh early).
        let token = testkeys::token(Alg::RS256, Key::RsaA, Some("rotated"), &claims());
        assert_eq!(check(&token), Err(TokenError::UnknownKey));
        // ... unless the set has keys without a kid, which are then tried.
        let unnamed = testkeys::set(vec![Key::RsaA.public_jwk()]);
        verify(&token, &unnamed, &settings(), NOW).unwrap();
        // Two keys share a kid: both are tried.
        let shared = testkeys::set(vec![
            Key::RsaB.jwk("k", json!({})),
            Key::RsaA.jwk("k", json!({})),
        ]);
        let token = testkeys::token(Alg::RS256, Key::RsaA, Some("k"), &claims());
        verify(&token, &shared, &settings(), NOW).unwrap();
        // An empty set knows no key at all.
        assert_eq!(
            verify(&token, &KeySet::default(), &settings(), NOW),
            Err(TokenError::UnknownKey)
        );
        let no_kid = testkeys::token(Alg::ES256, Key::P256, None, &claims());
        assert_eq!(
            verify(&no_kid, &KeySet::default(), &settings(), NOW),
            Err(TokenError::NoKeyForAlgorithm)
        );
    }

    #[test]
    fn keys_not_for_signatures_are_not_used() {
        let set = testkeys::set(vec![
            Key::RsaA.jwk("enc", json!({"use": "enc"})),
            Key::RsaA.jwk("wrap", json!({"key_ops": ["wrapKey"]})),
        ]);
        assert_eq!(set.skipped.len(), 2);
        for kid in ["enc", "wrap"] {
            let token = testkeys::token(Alg::RS256, Key::RsaA, Some(kid), &claims());
            assert_eq!(
                verify(&token, &set, &settings(), NOW),
                Err(TokenError::UnknownKey)
            );
        }
    }

    #[test]
    fn descriptions_fit_a_quoted_string_and_name_the_check() {
        let all = [
            TokenError::Missing,
            TokenError::NotBearer,
            TokenError::MalformedAuthorization,
            TokenError::TooLarge,
            TokenError::Encrypted,
            TokenError::NotCompact,
            TokenError::MalformedHeader,
            TokenError::Unsecured,
            TokenError::UnsupportedAlgorithm,
            TokenError::KeyInHeader,
            TokenError::CriticalExtension,
            TokenError::MalformedSignature,
            TokenError::UnknownKey,
            TokenError::NoKeyForAlgorithm,
            TokenError::AlgorithmMismatch,
            TokenError::BadSignature,
            TokenError::MalformedClaims,
            TokenError::MissingExpiry,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::IssuedInFuture,
            TokenError::BadIssuer,
            TokenError::BadAudience,
        ];
        let mut seen = std::collections::HashSet::new();
        for error in all {
            let text = error.description();
            // RFC 6750 section 3: %x20-21 / %x23-5B / %x5D-7E.
            assert!(
                text.bytes()
                    .all(|b| (0x20..=0x7e).contains(&b) && b != b'"' && b != b'\\'),
                "{text}"
            );
            assert!(seen.insert(text), "duplicate: {text}");
            assert_eq!(error.to_string(), text);
        }
        assert_eq!(
            TokenError::Expired.www_authenticate(),
            "Bearer error=\"invalid_token\", error_description=\"the token has expired\""
        );
    }
}
