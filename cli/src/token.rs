//! DEMO access tokens: RS256 JWTs signed with the public demo key of envoy/demo, carrying the
//! claims finalite reads through Envoy's jwt_authn. For trying finalite locally only: anyone
//! can mint the same tokens, so nothing real may ever trust that key.
//!
//! The tokens are the ones envoy/demo/mint_token.py mints: same header, same claims in the
//! same order, so either tool works with the shipped envoy.yaml.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rsa::pkcs1v15::SigningKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::RsaPrivateKey;
use serde_json::{json, Map, Value};
use sha2::Sha256;

/// The demo key, built into the tool so `finalite token` works from any directory.
pub const DEMO_KEY_PEM: &str = include_str!("../../envoy/demo/DEMO-ONLY-signing-key.pem");
pub const DEMO_KID: &str = "finalite-demo-1";
pub const ISSUER: &str = "https://idp.example";
pub const AUDIENCE: &str = "patients-api";

/// What goes into a token.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub client_id: String,
    /// Space-separated in the token.
    pub scopes: Vec<String>,
    /// `None`: no purposes claim at all.
    pub purposes: Option<Vec<String>>,
    pub ttl_seconds: u64,
    /// Issued-at, seconds since the epoch.
    pub now: u64,
    pub issuer: String,
    pub audience: String,
    pub kid: String,
}

/// Loads a PEM PKCS#8 RSA private key; text before the BEGIN line (the demo key's warning)
/// is ignored.
pub fn load_key(pem: &str) -> Result<RsaPrivateKey, String> {
    let start = pem
        .find("-----BEGIN PRIVATE KEY-----")
        .ok_or("no \"-----BEGIN PRIVATE KEY-----\" (PKCS#8 PEM) in the key file")?;
    RsaPrivateKey::from_pkcs8_pem(&pem[start..])
        .map_err(|e| format!("not an RSA private key in PKCS#8 PEM: {e}"))
}

/// The claims, in the order mint_token.py writes them.
pub fn claims(request: &TokenRequest) -> Value {
    let mut claims = Map::new();
    claims.insert("iat".into(), json!(request.now));
    claims.insert("exp".into(), json!(request.now + request.ttl_seconds));
    claims.insert("iss".into(), json!(request.issuer));
    claims.insert("aud".into(), json!(request.audience));
    claims.insert("client_id".into(), json!(request.client_id));
    if !request.scopes.is_empty() {
        claims.insert("scope".into(), json!(request.scopes.join(" ")));
    }
    if let Some(purposes) = &request.purposes {
        claims.insert("purposes".into(), json!(purposes));
    }
    Value::Object(claims)
}

/// A signed compact JWS (RS256).
pub fn mint(key: &RsaPrivateKey, request: &TokenRequest) -> String {
    // Written by hand to keep the member order (serde_json sorts object keys here).
    let header = format!(
        "{{\"alg\":\"RS256\",\"kid\":{},\"typ\":\"JWT\"}}",
        Value::String(request.kid.clone())
    );
    let payload = ordered_json(&claims(request));
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = SigningKey::<Sha256>::new(key.clone()).sign(signing_input.as_bytes());
    format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.to_bytes())
    )
}

/// Compact JSON of the claims in [`claims`]'s order (iat, exp, iss, aud, client_id, scope,
/// purposes), whatever order the map keeps.
fn ordered_json(claims: &Value) -> String {
    const ORDER: [&str; 7] = ["iat", "exp", "iss", "aud", "client_id", "scope", "purposes"];
    let members: Vec<String> = ORDER
        .iter()
        .filter_map(|name| {
            let value = claims.get(*name)?;
            Some(format!("{}:{}", Value::String(name.to_string()), value))
        })
        .collect();
    format!("{{{}}}", members.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_key_loads() {
        load_key(DEMO_KEY_PEM).unwrap();
        assert!(load_key("no key here").is_err());
    }

    #[test]
    fn claims_keep_the_documented_order() {
        let request = TokenRequest {
            client_id: "c".into(),
            scopes: vec!["a".into(), "b".into()],
            purposes: Some(vec!["care".into()]),
            ttl_seconds: 10,
            now: 100,
            issuer: ISSUER.into(),
            audience: AUDIENCE.into(),
            kid: DEMO_KID.into(),
        };
        assert_eq!(
            ordered_json(&claims(&request)),
            r#"{"iat":100,"exp":110,"iss":"https://idp.example","aud":"patients-api","client_id":"c","scope":"a b","purposes":["care"]}"#
        );
    }
}
