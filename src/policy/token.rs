//! The `token` section compiled for verification by finalite itself (`from: "jwks"`).

use std::sync::Arc;

use crate::auth::jwks::KeySet;
use crate::auth::jwt::{
    HmacSecret, VerifySettings, DEFAULT_CLOCK_SKEW_SECONDS, MIN_HMAC_SECRET_BYTES,
};
use crate::auth::verifier::{KeySource, RemoteJwks, Verification};
use crate::config::{TokenConfig, TokenSource};
use crate::error::{ConfigError, KeyPath};

/// Longest clock skew accepted.
pub const MAX_CLOCK_SKEW_SECONDS: u64 = 3600;
/// Longest time between two fetches of a `jwks_uri`.
pub const MAX_REFRESH_SECONDS: u64 = 86_400;

/// What verifies tokens, or `None` with `from: "jwt_authn"`. `env` reads the VM's
/// environment (for the HMAC secret). Errors name the key (`token.jwks.keys[2].n`).
pub fn compile_verification(
    token: &TokenConfig,
    key: &KeyPath,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Arc<Verification>>, ConfigError> {
    if token.from == TokenSource::JwtAuthn {
        let own_keys = [
            ("jwks", token.jwks.is_some()),
            ("jwks_uri", token.jwks_uri.is_some()),
            ("hmac_secret_env", token.hmac_secret_env.is_some()),
            ("issuer", token.issuer.is_some()),
            ("audiences", !token.audiences.is_empty()),
            ("clock_skew_seconds", token.clock_skew_seconds.is_some()),
        ];
        if let Some((name, _)) = own_keys.iter().find(|(_, set)| *set) {
            return Err(key.field(name).error(
                "only used with \"from\": \"jwks\"; with \"jwt_authn\", Envoy's jwt_authn filter verifies tokens: set keys, issuer and audiences on its provider",
            ));
        }
        return Ok(None);
    }

    let hmac_secret = match &token.hmac_secret_env {
        None => None,
        Some(name) => {
            let key = key.field("hmac_secret_env");
            if name.is_empty() {
                return Err(key.error("must name an environment variable"));
            }
            let value = env(name).ok_or_else(|| {
                key.error(format!(
                    "the environment variable {name} is not set in the VM (Envoy: vm_config.environment_variables)"
                ))
            })?;
            if value.len() < MIN_HMAC_SECRET_BYTES {
                return Err(key.error(format!(
                    "the secret in {name} is {} bytes; at least {MIN_HMAC_SECRET_BYTES} are required (48 for HS384, 64 for HS512)",
                    value.len()
                )));
            }
            Some(HmacSecret::new(value.into_bytes()))
        }
    };

    let keys = match (&token.jwks, &token.jwks_uri) {
        (Some(_), Some(_)) => {
            return Err(key
                .field("jwks_uri")
                .error("give \"jwks\" (inline keys) or \"jwks_uri\", not both"))
        }
        (Some(jwks), None) => {
            let jwks_key = key.field("jwks");
            let set = KeySet::from_keys(&jwks.keys).map_err(|e| {
                let at = if e.member.is_empty() {
                    jwks_key.clone()
                } else {
                    jwks_key.field(&e.member)
                };
                at.error(e.message)
            })?;
            if set.is_empty() && hmac_secret.is_none() {
                let mut message = "no key of the set verifies signatures".to_string();
                for skipped in &set.skipped {
                    message.push_str(&format!("; {skipped}"));
                }
                return Err(jwks_key.field("keys").error(message));
            }
            KeySource::Inline(Arc::new(set))
        }
        (None, Some(uri)) => {
            let uri_key = key.field("jwks_uri");
            if uri.cluster.is_empty() || uri.cluster.contains(char::is_whitespace) {
                return Err(uri_key
                    .field("cluster")
                    .error(format!("{:?} is not a cluster name", uri.cluster)));
            }
            if !uri.path.starts_with('/') || uri.path.contains(char::is_whitespace) {
                return Err(uri_key
                    .field("path")
                    .error(format!("{:?} must be a path starting with '/'", uri.path)));
            }
            if !(1..=MAX_REFRESH_SECONDS).contains(&uri.refresh_seconds) {
                return Err(uri_key
                    .field("refresh_seconds")
                    .error(format!("must be between 1 and {MAX_REFRESH_SECONDS}")));
            }
            KeySource::Remote(RemoteJwks {
                cluster: uri.cluster.clone(),
                path: uri.path.clone(),
                authority: uri.authority.clone().unwrap_or_else(|| uri.cluster.clone()),
                refresh_seconds: uri.refresh_seconds,
            })
        }
        (None, None) if hmac_secret.is_some() => KeySource::Inline(Arc::new(KeySet::default())),
        (None, None) => {
            return Err(key.field("from").error(
                "\"jwks\" needs keys: set token.jwks (an inline JWK Set), token.jwks_uri (a cluster serving one) or token.hmac_secret_env",
            ))
        }
    };

    if let Some(issuer) = &token.issuer {
        if issuer.is_empty() {
            return Err(key.field("issuer").error("must not be empty"));
        }
    }
    for (i, audience) in token.audiences.iter().enumerate() {
        if audience.is_empty() {
            return Err(key.field("audiences").index(i).error("must not be empty"));
        }
    }
    let clock_skew_seconds = token
        .clock_skew_seconds
        .unwrap_or(DEFAULT_CLOCK_SKEW_SECONDS);
    if clock_skew_seconds > MAX_CLOCK_SKEW_SECONDS {
        return Err(key
            .field("clock_skew_seconds")
            .error(format!("must be at most {MAX_CLOCK_SKEW_SECONDS}")));
    }
    Ok(Some(Arc::new(Verification {
        settings: VerifySettings {
            issuer: token.issuer.clone(),
            audiences: token.audiences.clone(),
            clock_skew_seconds,
            hmac_secret,
        },
        keys,
    })))
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::auth::testkeys::Key;
    use crate::policy::CompiledConfig;

    const SECRET_ENV: &str = "FINALITE_JWT_SECRET";

    fn env(name: &str) -> Option<String> {
        match name {
            SECRET_ENV => Some("s".repeat(32)),
            "SHORT" => Some("s".repeat(31)),
            _ => None,
        }
    }

    fn load(token: Value) -> Result<CompiledConfig, ConfigError> {
        let config = json!({"token": token, "policies": {"p": {"purposes": {"r": {}}}}});
        CompiledConfig::load(config.to_string().as_bytes(), &env)
    }

    fn verification(token: Value) -> Arc<Verification> {
        load(token).unwrap().token.verification.unwrap()
    }

    fn error(token: Value) -> String {
        load(token).unwrap_err().to_string()
    }

    #[test]
    fn inline_keys() {
        let v = verification(json!({
            "from": "jwks",
            "jwks": {"keys": [Key::RsaA.jwk("a", json!({})), Key::RsaA.jwk("e", json!({"use": "enc"}))]},
            "issuer": "https://idp.example",
            "audiences": ["patients-api"],
        }));
        let KeySource::Inline(set) = &v.keys else {
            panic!("{:?}", v.keys)
        };
        assert_eq!(set.len(), 1);
        assert_eq!(set.skipped.len(), 1);
        assert_eq!(v.settings.issuer.as_deref(), Some("https://idp.example"));
        assert_eq!(v.settings.audiences, ["patients-api"]);
        assert_eq!(v.settings.clock_skew_seconds, 60);
        assert_eq!(v.settings.hmac_secret, None);
    }

    #[test]
    fn remote_keys() {
        let v = verification(json!({
            "from": "jwks",
            "jwks_uri": {"cluster": "idp", "path": "/.well-known/jwks.json"},
            "clock_skew_seconds": 5,
        }));
        assert_eq!(
            v.keys,
            KeySource::Remote(RemoteJwks {
                cluster: "idp".into(),
                path: "/.well-known/jwks.json".into(),
                authority: "idp".into(),
                refresh_seconds: 300
            })
        );
        assert_eq!(v.settings.clock_skew_seconds, 5);
        let v = verification(json!({
            "from": "jwks",
            "jwks_uri": {"cluster": "idp", "path": "/k", "refresh_seconds": 30},
        }));
        assert!(matches!(&v.keys, KeySource::Remote(r) if r.refresh_seconds == 30));
    }

    #[test]
    fn hmac_secret_from_the_environment() {
        let v = verification(json!({"from": "jwks", "hmac_secret_env": SECRET_ENV}));
        assert_eq!(
            v.settings.hmac_secret.as_ref().map(HmacSecret::len),
            Some(32)
        );
        assert!(matches!(&v.keys, KeySource::Inline(set) if set.is_empty()));
        // Next to public keys.
        let v = verification(json!({
            "from": "jwks", "hmac_secret_env": SECRET_ENV,
            "jwks_uri": {"cluster": "idp", "path": "/k"},
        }));
        assert!(v.settings.hmac_secret.is_some());
        assert_eq!(
            error(json!({"from": "jwks", "hmac_secret_env": "UNSET"})),
            "token.hmac_secret_env: the environment variable UNSET is not set in the VM (Envoy: vm_config.environment_variables)"
        );
        assert_eq!(
            error(json!({"from": "jwks", "hmac_secret_env": "SHORT"})),
            "token.hmac_secret_env: the secret in SHORT is 31 bytes; at least 32 are required (48 for HS384, 64 for HS512)"
        );
        // The secret never appears in the compiled configuration's debug output.
        let config = load(json!({"from": "jwks", "hmac_secret_env": SECRET_ENV})).unwrap();
        assert!(!format!("{config:?}").contains(&"s".repeat(32)));
    }

    #[test]
    fn refusals_name_the_key() {
        let rsa = Key::RsaA.public_jwk();
        let cases = [
            (json!({"from": "jwks"}), r#"token.from: "jwks" needs keys: set token.jwks (an inline JWK Set), token.jwks_uri (a cluster serving one) or token.hmac_secret_env"#),
            (
                json!({"from": "jwks", "jwks": {"keys": [rsa]}, "jwks_uri": {"cluster": "idp", "path": "/k"}}),
                r#"token.jwks_uri: give "jwks" (inline keys) or "jwks_uri", not both"#,
            ),
            (
                json!({"from": "jwks", "jwks": {"keys": [rsa, {"kty": "RSA", "n": "AQAB", "e": "AQAB", "d": "AQAB"}]}}),
                "token.jwks.keys[1].d: the set holds a private key; a JWK Set must hold public keys only (publishing a private key is a leak: replace that key)",
            ),
            (
                json!({"from": "jwks", "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "x": "!", "y": "AA"}]}}),
                "token.jwks.keys[0].x: is not base64url",
            ),
            (
                json!({"from": "jwks", "jwks": {"keys": [{"kty": "RSA", "use": "enc"}]}}),
                r#"token.jwks.keys: no key of the set verifies signatures; keys[0] not used: its use is "enc", not "sig""#,
            ),
            (json!({"from": "jwks", "jwks": {"keys": []}}), "token.jwks.keys: no key of the set verifies signatures"),
            (json!({"from": "jwks", "jwks": {}}), "token.jwks: missing field `keys`"),
            (json!({"from": "jwks", "jwks": {"keys": {}}}), "token.jwks.keys: invalid type: map, expected a sequence"),
            (
                json!({"from": "jwks", "jwks_uri": {"cluster": "idp", "path": "/k", "refresh": 1}}),
                "token.jwks_uri.refresh: unknown field `refresh`, expected one of `cluster`, `path`, `authority`, `refresh_seconds`",
            ),
            (json!({"from": "jwks", "jwks_uri": {"path": "/k"}}), "token.jwks_uri: missing field `cluster`"),
            (json!({"from": "jwks", "jwks_uri": "https://idp.example/jwks"}), "token.jwks_uri: invalid type: string"),
            (json!({"from": "jwks", "jwks_uri": {"cluster": "", "path": "/k"}}), r#"token.jwks_uri.cluster: "" is not a cluster name"#),
            (
                json!({"from": "jwks", "jwks_uri": {"cluster": "idp", "path": "https://idp/k"}}),
                r#"token.jwks_uri.path: "https://idp/k" must be a path starting with '/'"#,
            ),
            (
                json!({"from": "jwks", "jwks_uri": {"cluster": "idp", "path": "/k", "refresh_seconds": 0}}),
                "token.jwks_uri.refresh_seconds: must be between 1 and 86400",
            ),
            (
                json!({"from": "jwks", "jwks": {"keys": [rsa]}, "clock_skew_seconds": 7200}),
                "token.clock_skew_seconds: must be at most 3600",
            ),
            (json!({"from": "jwks", "jwks": {"keys": [rsa]}, "issuer": ""}), "token.issuer: must not be empty"),
            (json!({"from": "jwks", "jwks": {"keys": [rsa]}, "audiences": ["a", ""]}), "token.audiences[1]: must not be empty"),
            (json!({"from": "jwks", "hmac_secret_env": ""}), "token.hmac_secret_env: must name an environment variable"),
            (json!({"jwks": {"keys": [rsa]}}), r#"token.jwks: only used with "from": "jwks"; with "jwt_authn", Envoy's jwt_authn filter verifies tokens"#),
            (json!({"from": "jwt_authn", "audiences": ["a"]}), r#"token.audiences: only used with "from": "jwks""#),
            (json!({"issuer": "https://idp.example"}), r#"token.issuer: only used with "from": "jwks""#),
            (json!({"hmac_secret_env": SECRET_ENV}), r#"token.hmac_secret_env: only used with "from": "jwks""#),
        ];
        for (token, expected) in cases {
            let message = error(token.clone());
            assert!(
                message.starts_with(expected),
                "{token}\n got: {message}\nwant: {expected}"
            );
        }
    }

    #[test]
    fn jwt_authn_has_no_verification() {
        let config = load(json!({"from": "jwt_authn"})).unwrap();
        assert!(config.token.verification.is_none());
    }
}
