//! Test-only keys (`testdata/`, published on purpose) and tokens minted with them by a real
//! JOSE library (jsonwebtoken, on ring: an implementation independent of the verifier's).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};

pub use jsonwebtoken::Algorithm as Alg;

use super::jwks::KeySet;

pub const ISSUER: &str = "https://idp.example";
pub const AUDIENCE: &str = "patients-api";
/// 64 bytes: enough for HS256, HS384 and HS512.
pub const HMAC_SECRET: &[u8] = b"test-only-hmac-secret-0123456789-test-only-hmac-secret-012345678";
/// A fixed "now" for the tests (2026-01-01T00:00:00Z).
pub const NOW: u64 = 1_767_225_600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Key {
    RsaA,
    RsaB,
    Rsa1024,
    P256,
    P384,
    Ed25519,
}

impl Key {
    pub fn pem(self) -> &'static str {
        match self {
            Key::RsaA => include_str!("testdata/rsa-a.pem"),
            Key::RsaB => include_str!("testdata/rsa-b.pem"),
            Key::Rsa1024 => include_str!("testdata/rsa-1024.pem"),
            Key::P256 => include_str!("testdata/ec-p256.pem"),
            Key::P384 => include_str!("testdata/ec-p384.pem"),
            Key::Ed25519 => include_str!("testdata/ed25519.pem"),
        }
    }

    pub fn encoding(self) -> EncodingKey {
        let pem = self.pem().as_bytes();
        match self {
            Key::RsaA | Key::RsaB | Key::Rsa1024 => EncodingKey::from_rsa_pem(pem),
            Key::P256 | Key::P384 => EncodingKey::from_ec_pem(pem),
            Key::Ed25519 => EncodingKey::from_ed_pem(pem),
        }
        .expect("test key")
    }

    /// The public JWK of the key (no `kid`, `alg` or `use`), derived from the PEM once.
    pub fn public_jwk(self) -> Value {
        static CACHE: OnceLock<Mutex<HashMap<Key, Value>>> = OnceLock::new();
        let cache = CACHE.get_or_init(Default::default);
        if let Some(jwk) = cache.lock().unwrap().get(&self) {
            return jwk.clone();
        }
        let jwk = self.derive_public_jwk();
        cache.lock().unwrap().insert(self, jwk.clone());
        jwk
    }

    fn derive_public_jwk(self) -> Value {
        let b64 = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        match self {
            Key::RsaA | Key::RsaB | Key::Rsa1024 => {
                use rsa::pkcs8::DecodePrivateKey;
                use rsa::traits::PublicKeyParts;
                let key = rsa::RsaPrivateKey::from_pkcs8_pem(self.pem()).unwrap();
                json!({"kty": "RSA", "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be())})
            }
            Key::P256 => {
                use p256::elliptic_curve::sec1::ToEncodedPoint;
                use p256::pkcs8::DecodePrivateKey;
                let key = p256::SecretKey::from_pkcs8_pem(self.pem()).unwrap();
                let point = key.public_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-256", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
            }
            Key::P384 => {
                use p384::elliptic_curve::sec1::ToEncodedPoint;
                use p384::pkcs8::DecodePrivateKey;
                let key = p384::SecretKey::from_pkcs8_pem(self.pem()).unwrap();
                let point = key.public_key().to_encoded_point(false);
                json!({"kty": "EC", "crv": "P-384", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())})
            }
            Key::Ed25519 => {
                use ed25519_dalek::pkcs8::DecodePrivateKey;
                let key = ed25519_dalek::SigningKey::from_pkcs8_pem(self.pem()).unwrap();
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(key.verifying_key().as_bytes())})
            }
        }
    }

    /// The public JWK with a `kid` and the members of `extra`.
    pub fn jwk(self, kid: &str, extra: Value) -> Value {
        let mut jwk = self.public_jwk();
        jwk["kid"] = json!(kid);
        if let Value::Object(extra) = extra {
            for (name, value) in extra {
                jwk[name] = value;
            }
        }
        jwk
    }
}

/// A key set of `jwks`.
pub fn set(jwks: Vec<Value>) -> KeySet {
    KeySet::from_keys(&jwks).expect("test key set")
}

/// One key per test key, kids `rsa-a`, `rsa-b`, `p256`, `p384`, `ed25519`.
pub fn all_keys() -> KeySet {
    static ALL: OnceLock<KeySet> = OnceLock::new();
    ALL.get_or_init(|| {
        set(vec![
            Key::RsaA.jwk("rsa-a", json!({"use": "sig"})),
            Key::RsaB.jwk("rsa-b", json!({})),
            Key::P256.jwk("p256", json!({"alg": "ES256"})),
            Key::P384.jwk("p384", json!({})),
            Key::Ed25519.jwk("ed25519", json!({"key_ops": ["verify"]})),
        ])
    })
    .clone()
}

/// Claims that pass every check at [`NOW`].
pub fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1",
        "client_id": "partner",
        "exp": NOW + 300,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "scope": "patients:read purpose:care",
        "purposes": ["billing"],
    })
}

/// A token minted by jsonwebtoken's own `encode`.
pub fn token(alg: Alg, key: Key, kid: Option<&str>, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key.encoding()).expect("mint")
}

/// An HS token signed with `secret`.
pub fn hmac_token(alg: Alg, secret: &[u8], claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, &EncodingKey::from_secret(secret))
        .expect("mint")
}

/// A token with a header written by hand, signed by jsonwebtoken with `key` and `alg`.
pub fn token_with_header(header: &Value, claims: &Value, alg: Alg, key: &EncodingKey) -> String {
    let input = format!("{}.{}", b64_json(header), b64_json(claims));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("sign");
    format!("{input}.{signature}")
}

pub fn b64_json(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}
