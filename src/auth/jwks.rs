//! JSON Web Key Sets (RFC 7517) read into verification keys.
//!
//! A set is read strictly where a mistake could weaken verification, and leniently where
//! RFC 7517 section 5 asks for it:
//! - refused, with the index and member of the culprit (`keys[2].n: ...`): a document that is
//!   not a JWK Set, a private key (`d`, `p`, ... or a symmetric `k`: publishing a secret is a
//!   leak, whoever reads it), a malformed member of a key finalite understands, an RSA modulus
//!   under 2048 bits, a point not on its curve, a key whose `alg` contradicts its type;
//! - skipped, and reported: keys that are not for signature verification (`use: "enc"`,
//!   `key_ops` without `verify`), and key types, curves or algorithms finalite does not
//!   implement (an identity provider may publish them for other clients).

use std::fmt;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde_json::{Map, Value};

use super::jwa::Algorithm;

/// At most this many keys are read from one set.
pub const MAX_KEYS: usize = 64;
/// Smallest RSA modulus accepted (RFC 7518 section 3.3).
pub const MIN_RSA_BITS: usize = 2048;
/// Largest RSA modulus accepted.
pub const MAX_RSA_BITS: usize = 8192;

/// Members that only a private (or symmetric) key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// The public key material of one JWK.
#[derive(Clone, PartialEq)]
pub enum KeyMaterial {
    Rsa(rsa::RsaPublicKey),
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl KeyMaterial {
    /// Whether the key's type and curve fit the algorithm.
    pub fn fits(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyMaterial::Rsa(_) => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyMaterial::P256(_) => alg == ES256,
            KeyMaterial::P384(_) => alg == ES384,
            KeyMaterial::Ed25519(_) => alg == EdDSA,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            KeyMaterial::Rsa(_) => "RSA",
            KeyMaterial::P256(_) => "EC P-256",
            KeyMaterial::P384(_) => "EC P-384",
            KeyMaterial::Ed25519(_) => "OKP Ed25519",
        }
    }
}

impl fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyMaterial::Rsa(key) => {
                use rsa::traits::PublicKeyParts;
                write!(f, "RSA({} bits)", key.n().bits())
            }
            other => f.write_str(other.kind()),
        }
    }
}

/// One verification key.
#[derive(Debug, Clone, PartialEq)]
pub struct Jwk {
    pub kid: Option<String>,
    /// The only algorithm the key may verify, when its `alg` says so.
    pub alg: Option<Algorithm>,
    pub material: KeyMaterial,
}

impl Jwk {
    /// Whether this key may verify a signature made with `alg`.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.material.fits(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

/// A key of the set that is not used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedKey {
    pub index: usize,
    pub kid: Option<String>,
    pub reason: String,
}

impl fmt::Display for SkippedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "keys[{}]", self.index)?;
        if let Some(kid) = &self.kid {
            write!(f, " (kid {kid:?})")?;
        }
        write!(f, " not used: {}", self.reason)
    }
}

/// The verification keys of a JWK Set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KeySet {
    pub keys: Vec<Jwk>,
    /// Keys present in the document but not used (reported, not an error).
    pub skipped: Vec<SkippedKey>,
}

/// Why a JWK Set is refused; `member` locates the culprit inside the set (`keys[2].n`,
/// empty for the document as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksError {
    pub member: String,
    pub message: String,
}

impl JwksError {
    fn at(index: usize, member: &str, message: impl Into<String>) -> JwksError {
        let member = if member.is_empty() {
            format!("keys[{index}]")
        } else {
            format!("keys[{index}].{member}")
        };
        JwksError {
            member,
            message: message.into(),
        }
    }

    fn document(message: impl Into<String>) -> JwksError {
        JwksError {
            member: String::new(),
            message: message.into(),
        }
    }
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.member.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.member, self.message)
        }
    }
}

impl std::error::Error for JwksError {}

/// Base64url as JWKs write it: without padding, though some publishers pad; the last
/// character must not carry stray bits.
const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl KeySet {
    /// Reads a JWK Set document (`{"keys": [...]}`), as a `jwks_uri` serves it.
    pub fn parse(bytes: &[u8]) -> Result<KeySet, JwksError> {
        let document: Value = serde_json::from_slice(bytes)
            .map_err(|e| JwksError::document(format!("not valid JSON: {e}")))?;
        let Some(keys) = document.get("keys") else {
            return Err(JwksError::document(
                "not a JWK Set: expected an object with a \"keys\" array",
            ));
        };
        let Some(keys) = keys.as_array() else {
            return Err(JwksError {
                member: "keys".into(),
                message: "must be an array".into(),
            });
        };
        KeySet::from_keys(keys)
    }

    /// Reads the `keys` array of a JWK Set.
    pub fn from_keys(keys: &[Value]) -> Result<KeySet, JwksError> {
        if keys.len() > MAX_KEYS {
            return Err(JwksError {
                member: "keys".into(),
                message: format!(
                    "the set holds {} keys; at most {MAX_KEYS} are read",
                    keys.len()
                ),
            });
        }
        let mut set = KeySet::default();
        for (index, value) in keys.iter().enumerate() {
            let Some(members) = value.as_object() else {
                return Err(JwksError::at(index, "", "a key must be a JSON object"));
            };
            match read_key(index, members)? {
                Ok(jwk) => set.keys.push(jwk),
                Err(reason) => set.skipped.push(SkippedKey {
                    index,
                    kid: members
                        .get("kid")
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    reason,
                }),
            }
        }
        Ok(set)
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether some key carries this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// `Ok(Ok(key))`: a key to use; `Ok(Err(reason))`: a key to skip; `Err`: the set is refused.
fn read_key(index: usize, members: &Map<String, Value>) -> Result<Result<Jwk, String>, JwksError> {
    let string = |name: &str| -> Result<Option<&str>, JwksError> {
        match members.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(JwksError::at(index, name, "must be a string")),
        }
    };
    let kty = string("kty")?.ok_or_else(|| JwksError::at(index, "kty", "is missing"))?;
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| members.contains_key(**m)) {
        let message = if *member == "k" {
            "the set publishes a symmetric secret; a JWK Set must hold public keys only (HMAC secrets come from token.hmac_secret_env)"
        } else {
            "the set holds a private key; a JWK Set must hold public keys only (publishing a private key is a leak: replace that key)"
        };
        return Err(JwksError::at(index, member, message));
    }
    let kid = string("kid")?.map(str::to_string);
    let alg_name = string("alg")?;
    if let Some(usage) = string("use")? {
        if usage != "sig" {
            return Ok(Err(format!("its use is {usage:?}, not \"sig\"")));
        }
    }
    if let Some(ops) = members.get("key_ops") {
        let ops = ops
            .as_array()
            .filter(|ops| ops.iter().all(Value::is_string))
            .ok_or_else(|| JwksError::at(index, "key_ops", "must be an array of strings"))?;
        if !ops.iter().any(|op| op == "verify") {
            return Ok(Err("its key_ops do not include \"verify\"".to_string()));
        }
    }
    let alg = match alg_name {
        None => None,
        Some(name) => match Algorithm::from_name(name) {
            Some(alg) if alg.is_hmac() => {
                return Err(JwksError::at(
                    index,
                    "alg",
                    format!("{name:?} needs a shared secret, which a JWK Set must not publish"),
                ))
            }
            Some(alg) => Some(alg),
            None => return Ok(Err(format!("its algorithm {name:?} is not supported"))),
        },
    };
    let bytes = |name: &str| -> Result<Vec<u8>, JwksError> {
        let text = string(name)?.ok_or_else(|| JwksError::at(index, name, "is missing"))?;
        JWK_BASE64
            .decode(text)
            .map_err(|_| JwksError::at(index, name, "is not base64url"))
    };
    let material = match kty {
        "RSA" => {
            use rsa::traits::PublicKeyParts;
            let n = rsa::BigUint::from_bytes_be(&bytes("n")?);
            let e = rsa::BigUint::from_bytes_be(&bytes("e")?);
            let bits = n.bits();
            if bits < MIN_RSA_BITS {
                return Err(JwksError::at(
                    index,
                    "n",
                    format!("the modulus has {bits} bits; at least {MIN_RSA_BITS} are required"),
                ));
            }
            let key = rsa::RsaPublicKey::new_with_max_size(n, e, MAX_RSA_BITS)
                .map_err(|e| JwksError::at(index, "n", format!("not a usable RSA key: {e}")))?;
            debug_assert!(key.size() * 8 >= MIN_RSA_BITS);
            KeyMaterial::Rsa(key)
        }
        "EC" => {
            let crv = string("crv")?.ok_or_else(|| JwksError::at(index, "crv", "is missing"))?;
            let size = match crv {
                "P-256" => 32,
                "P-384" => 48,
                other => return Ok(Err(format!("its curve {other:?} is not supported"))),
            };
            let (x, y) = (bytes("x")?, bytes("y")?);
            for (name, coordinate) in [("x", &x), ("y", &y)] {
                if coordinate.len() != size {
                    return Err(JwksError::at(
                        index,
                        name,
                        format!(
                            "is {} bytes; a {crv} coordinate is {size}",
                            coordinate.len()
                        ),
                    ));
                }
            }
            let mut sec1 = Vec::with_capacity(1 + 2 * size);
            sec1.push(0x04);
            sec1.extend_from_slice(&x);
            sec1.extend_from_slice(&y);
            let not_on_curve =
                || JwksError::at(index, "x", format!("(x, y) is not a point of {crv}"));
            if size == 32 {
                KeyMaterial::P256(
                    p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                        .map_err(|_| not_on_curve())?,
                )
            } else {
                KeyMaterial::P384(
                    p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1)
                        .map_err(|_| not_on_curve())?,
                )
            }
        }
        "OKP" => {
            let crv = string("crv")?.ok_or_else(|| JwksError::at(index, "crv", "is missing"))?;
            if crv != "Ed25519" {
                return Ok(Err(format!("its curve {crv:?} is not supported")));
            }
            let x: [u8; 32] = bytes("x")?.try_into().map_err(|x: Vec<u8>| {
                JwksError::at(
                    index,
                    "x",
                    format!("is {} bytes; an Ed25519 key is 32", x.len()),
                )
            })?;
            let key = ed25519_dalek::VerifyingKey::from_bytes(&x)
                .ok()
                .filter(|key| !key.is_weak())
                .ok_or_else(|| JwksError::at(index, "x", "not a usable Ed25519 public key"))?;
            KeyMaterial::Ed25519(key)
        }
        other => return Ok(Err(format!("its key type {other:?} is not supported"))),
    };
    if let Some(alg) = alg {
        if !material.fits(alg) {
            return Err(JwksError::at(
                index,
                "alg",
                format!(
                    "{} is not an algorithm for an {} key",
                    alg.name(),
                    material.kind()
                ),
            ));
        }
    }
    Ok(Ok(Jwk { kid, alg, material }))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::testkeys::Key;

    fn error(keys: Vec<Value>) -> String {
        KeySet::from_keys(&keys).unwrap_err().to_string()
    }

    fn with(key: Key, changes: Value) -> Value {
        let mut jwk = key.public_jwk();
        for (name, value) in changes.as_object().unwrap() {
            if value.is_null() {
                jwk.as_object_mut().unwrap().remove(name);
            } else {
                jwk[name] = value.clone();
            }
        }
        jwk
    }

    #[test]
    fn reads_every_supported_key_type() {
        let set = KeySet::parse(
            serde_json::to_string(&json!({"keys": [
                Key::RsaA.jwk("a", json!({"alg": "RS256", "use": "sig"})),
                Key::P256.jwk("b", json!({"key_ops": ["verify"]})),
                Key::P384.jwk("c", json!({"alg": "ES384"})),
                Key::Ed25519.jwk("d", json!({"alg": "EdDSA"})),
                Key::Ed25519.public_jwk(),
            ], "other": "members are ignored"}))
            .unwrap()
            .as_bytes(),
        )
        .unwrap();
        assert!(set.skipped.is_empty());
        let kinds: Vec<String> = set
            .keys
            .iter()
            .map(|k| format!("{:?}", k.material))
            .collect();
        assert_eq!(
            kinds,
            [
                "RSA(2048 bits)",
                "EC P-256",
                "EC P-384",
                "OKP Ed25519",
                "OKP Ed25519"
            ]
        );
        assert_eq!(set.keys[0].kid.as_deref(), Some("a"));
        assert_eq!(set.keys[0].alg, Some(Algorithm::RS256));
        assert_eq!(set.keys[4].kid, None);
        assert!(set.keys[0].accepts(Algorithm::RS256));
        assert!(!set.keys[0].accepts(Algorithm::PS256));
        assert!(set.keys[1].accepts(Algorithm::ES256));
        assert!(!set.keys[1].accepts(Algorithm::ES384));
        assert!(set.has_kid("c") && !set.has_kid("z"));
        assert_eq!(set.len(), 5);
        // An RSA key without alg fits every RSA algorithm, and nothing else.
        let rsa = KeySet::from_keys(&[Key::RsaB.public_jwk()]).unwrap();
        for alg in Algorithm::ALL {
            assert_eq!(
                rsa.keys[0].accepts(alg),
                alg.name().starts_with(['R', 'P']),
                "{alg:?}"
            );
        }
        // Padded base64url is tolerated in a JWK.
        let mut padded = Key::P256.public_jwk();
        padded["x"] = json!(format!("{}=", padded["x"].as_str().unwrap()));
        KeySet::from_keys(&[padded]).unwrap();
    }

    #[test]
    fn keys_for_other_uses_or_algorithms_are_skipped() {
        let set = KeySet::from_keys(&[
            Key::RsaA.jwk("enc", json!({"use": "enc"})),
            Key::RsaA.jwk("ops", json!({"key_ops": ["encrypt", "wrapKey"]})),
            Key::RsaA.jwk("oaep", json!({"alg": "RSA-OAEP"})),
            json!({"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"}),
            json!({"kty": "OKP", "crv": "X25519", "kid": "x", "x": "AA"}),
            json!({"kty": "AKP", "kid": "pq", "alg": "ML-DSA-44", "pub": "AA"}),
            json!({"kty": "oct", "kid": "no-secret"}),
            Key::RsaB.jwk("used", json!({})),
        ])
        .unwrap();
        assert_eq!(set.len(), 1);
        let reasons: Vec<String> = set.skipped.iter().map(|s| s.to_string()).collect();
        assert_eq!(
            reasons,
            [
                r#"keys[0] (kid "enc") not used: its use is "enc", not "sig""#,
                r#"keys[1] (kid "ops") not used: its key_ops do not include "verify""#,
                r#"keys[2] (kid "oaep") not used: its algorithm "RSA-OAEP" is not supported"#,
                r#"keys[3] (kid "p521") not used: its curve "P-521" is not supported"#,
                r#"keys[4] (kid "x") not used: its curve "X25519" is not supported"#,
                r#"keys[5] (kid "pq") not used: its algorithm "ML-DSA-44" is not supported"#,
                r#"keys[6] (kid "no-secret") not used: its key type "oct" is not supported"#,
            ]
        );
    }

    #[test]
    fn private_keys_are_refused() {
        for (key, member) in [
            (Key::RsaA, "d"),
            (Key::RsaA, "p"),
            (Key::RsaA, "qi"),
            (Key::P256, "d"),
            (Key::Ed25519, "d"),
        ] {
            let mut jwk = key.jwk("k", json!({}));
            jwk[member] = json!("AQAB");
            let message = error(vec![Key::RsaB.public_jwk(), jwk]);
            assert!(
                message.starts_with(&format!("keys[1].{member}: the set holds a private key")),
                "{message}"
            );
        }
        // Even a key for encryption, which would otherwise be skipped.
        let message = error(vec![with(Key::RsaA, json!({"use": "enc", "d": "AQAB"}))]);
        assert!(
            message.starts_with("keys[0].d: the set holds a private key"),
            "{message}"
        );
        let message = error(vec![json!({"kty": "oct", "k": "c2VjcmV0"})]);
        assert!(
            message.starts_with("keys[0].k: the set publishes a symmetric secret"),
            "{message}"
        );
        let message = error(vec![with(Key::RsaA, json!({"alg": "HS256"}))]);
        assert!(
            message.starts_with("keys[0].alg: \"HS256\" needs a shared secret"),
            "{message}"
        );
    }

    #[test]
    fn malformed_keys_name_their_member() {
        let cases = [
            (
                with(Key::RsaA, json!({"kty": null})),
                "keys[0].kty: is missing",
            ),
            (
                with(Key::RsaA, json!({"kty": 1})),
                "keys[0].kty: must be a string",
            ),
            (with(Key::RsaA, json!({"n": null})), "keys[0].n: is missing"),
            (
                with(Key::RsaA, json!({"e": "A+B/"})),
                "keys[0].e: is not base64url",
            ),
            (
                with(Key::RsaA, json!({"n": "!!"})),
                "keys[0].n: is not base64url",
            ),
            (
                with(Key::RsaA, json!({"kid": 7})),
                "keys[0].kid: must be a string",
            ),
            (
                with(Key::RsaA, json!({"use": ["sig"]})),
                "keys[0].use: must be a string",
            ),
            (
                with(Key::RsaA, json!({"key_ops": "verify"})),
                "keys[0].key_ops: must be an array of strings",
            ),
            (
                with(Key::RsaA, json!({"alg": "ES256"})),
                "keys[0].alg: ES256 is not an algorithm for an RSA key",
            ),
            (
                with(Key::P256, json!({"alg": "ES384"})),
                "keys[0].alg: ES384 is not an algorithm for an EC P-256 key",
            ),
            (
                with(Key::Ed25519, json!({"alg": "RS256"})),
                "keys[0].alg: RS256 is not an algorithm for an OKP Ed25519 key",
            ),
            (
                with(Key::Rsa1024, json!({})),
                "keys[0].n: the modulus has 1024 bits; at least 2048 are required",
            ),
            (
                with(Key::RsaA, json!({"e": "AA"})),
                "keys[0].n: not a usable RSA key",
            ),
            (
                with(Key::P256, json!({"crv": null})),
                "keys[0].crv: is missing",
            ),
            (
                with(Key::P256, json!({"x": "AAAA"})),
                "keys[0].x: is 3 bytes; a P-256 coordinate is 32",
            ),
            (
                with(Key::P256, json!({"crv": "P-384"})),
                "keys[0].x: is 32 bytes; a P-384 coordinate is 48",
            ),
            (
                with(Key::Ed25519, json!({"x": "AAAA"})),
                "keys[0].x: is 3 bytes; an Ed25519 key is 32",
            ),
            // The identity point: a small-order (weak) key.
            (
                with(
                    Key::Ed25519,
                    json!({"x": "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}),
                ),
                "keys[0].x: not a usable Ed25519 public key",
            ),
            (json!("RSA"), "keys[0]: a key must be a JSON object"),
        ];
        for (jwk, expected) in cases {
            let message = error(vec![jwk.clone()]);
            assert!(
                message.starts_with(expected),
                "{jwk}\n got: {message}\nwant: {expected}"
            );
        }
        // A point off the curve: y of another key.
        let mut off = Key::P256.public_jwk();
        off["y"] = json!(URL_SAFE_NO_PAD_TEST.encode([7u8; 32]));
        assert_eq!(
            error(vec![off]),
            "keys[0].x: (x, y) is not a point of P-256"
        );
    }

    const URL_SAFE_NO_PAD_TEST: base64::engine::GeneralPurpose =
        base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn documents_that_are_not_key_sets() {
        let parse = |text: &str| KeySet::parse(text.as_bytes()).unwrap_err().to_string();
        assert!(parse("{").starts_with("not valid JSON"));
        assert!(parse("[]").starts_with("not a JWK Set"));
        assert!(parse(r#"{"kty": "RSA"}"#).starts_with("not a JWK Set"));
        assert_eq!(parse(r#"{"keys": {}}"#), "keys: must be an array");
        let many = format!(
            r#"{{"keys": [{}]}}"#,
            vec![r#"{"kty": "x"}"#; MAX_KEYS + 1].join(",")
        );
        assert_eq!(
            parse(&many),
            "keys: the set holds 65 keys; at most 64 are read"
        );
        assert!(KeySet::parse(br#"{"keys": []}"#).unwrap().is_empty());
    }
}
