//! Verified token claims, whatever verified them.

use super::jwt::TokenError;

/// A claim's value as the host hands it over.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimValue {
    String(String),
    List(Vec<String>),
}

/// Where verified claims come from (Envoy's jwt_authn metadata, or our own verifier).
pub trait ClaimSource {
    /// Whether a verified token is present at all.
    fn has_verified_token(&self) -> bool;
    fn claim(&self, name: &str) -> Option<ClaimValue>;
    /// Why there is no verified token, when the source verified one itself and refused it
    /// (finalite's own verification); `None` when it does not know (jwt_authn).
    fn refusal(&self) -> Option<BearerRefusal> {
        None
    }
}

/// Why a bearer token was not verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BearerRefusal {
    /// The token is missing or fails a check: 401.
    Invalid(TokenError),
    /// No key set is known yet: 503, to retry after this many seconds.
    KeysUnavailable { retry_after_seconds: u32 },
}

/// Which claims name the client and list its purposes (configured in `token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    pub client_claim: String,
    pub purposes_claim: String,
}

/// The claims finalite acts on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    pub client_id: Option<String>,
    /// From `scope` (space-separated) and `scp` (array or string).
    pub scopes: Vec<String>,
    /// From the purposes claim and `purpose:NAME` scopes.
    pub purposes: Vec<String>,
}

impl Claims {
    /// Reads the claims of a verified token; `None` when there is no verified token.
    pub fn read(source: &dyn ClaimSource, names: &ClaimNames) -> Option<Claims> {
        if !source.has_verified_token() {
            return None;
        }
        let mut scopes = Vec::new();
        for name in ["scope", "scp"] {
            if let Some(value) = source.claim(name) {
                scopes.extend(words(value));
            }
        }
        let mut purposes: Vec<String> = source
            .claim(&names.purposes_claim)
            .map(words)
            .unwrap_or_default();
        purposes.extend(
            scopes
                .iter()
                .filter_map(|s| s.strip_prefix("purpose:"))
                .map(str::to_string),
        );
        let client_id = [names.client_claim.as_str(), "azp", "sub"]
            .iter()
            .find_map(|name| match source.claim(name) {
                Some(ClaimValue::String(s)) if !s.is_empty() => Some(s),
                _ => None,
            });
        Some(Claims {
            client_id,
            scopes,
            purposes,
        })
    }
}

/// A claim's words: a string split on ASCII spaces only (RFC 6749 section 3.3: another
/// space, such as U+00A0, is part of a scope, so it cannot turn one grant into two), or a
/// list's elements each as it is.
fn words(value: ClaimValue) -> Vec<String> {
    match value {
        ClaimValue::String(s) => s
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect(),
        ClaimValue::List(list) => list.into_iter().filter(|s| !s.is_empty()).collect(),
    }
}

/// Decodes a claim read through Envoy's `get_property` from jwt_authn's metadata: a list
/// arrives in Envoy's serialised pair-map form (a u32 count, u32 key and value sizes, then
/// NUL-terminated keys and values), a string as its raw bytes. Anything else is not a claim
/// finalite reads (numbers, objects) and yields `None`.
pub fn decode_envoy_claim(bytes: &[u8]) -> Option<ClaimValue> {
    if let Some(list) = decode_pair_list(bytes) {
        return Some(ClaimValue::List(list));
    }
    std::str::from_utf8(bytes)
        .ok()
        .filter(|s| !s.contains('\0'))
        .map(|s| ClaimValue::String(s.to_string()))
}

fn decode_pair_list(bytes: &[u8]) -> Option<Vec<String>> {
    let u32_at = |at: usize| -> Option<usize> {
        let b = bytes.get(at..at + 4)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    let count = u32_at(0)?;
    let mut data = 4usize.checked_add(count.checked_mul(8)?)?;
    if data > bytes.len() {
        return None;
    }
    let mut items = Vec::with_capacity(count);
    for i in 0..count {
        let key_len = u32_at(4 + i * 8)?;
        let value_len = u32_at(8 + i * 8)?;
        if value_len != 0 {
            return None;
        }
        let key = bytes.get(data..data + key_len)?;
        if bytes.get(data + key_len) != Some(&0) || bytes.get(data + key_len + 1) != Some(&0) {
            return None;
        }
        items.push(std::str::from_utf8(key).ok()?.to_string());
        data += key_len + 2;
    }
    (data == bytes.len()).then_some(items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake(Option<HashMap<&'static str, ClaimValue>>);

    impl ClaimSource for Fake {
        fn has_verified_token(&self) -> bool {
            self.0.is_some()
        }
        fn claim(&self, name: &str) -> Option<ClaimValue> {
            self.0.as_ref()?.get(name).cloned()
        }
    }

    fn settings() -> ClaimNames {
        ClaimNames {
            client_claim: "client_id".into(),
            purposes_claim: "purposes".into(),
        }
    }

    fn s(v: &str) -> ClaimValue {
        ClaimValue::String(v.into())
    }

    #[test]
    fn no_token_no_claims() {
        assert_eq!(Claims::read(&Fake(None), &settings()), None);
    }

    #[test]
    fn scopes_purposes_and_client() {
        let claims = Claims::read(
            &Fake(Some(HashMap::from([
                ("scope", s("patients:read  purpose:care")),
                ("scp", ClaimValue::List(vec!["extra".into()])),
                ("purposes", ClaimValue::List(vec!["billing".into()])),
                ("azp", s("partner")),
                ("sub", s("user")),
            ]))),
            &settings(),
        )
        .unwrap();
        assert_eq!(
            claims.scopes,
            vec!["patients:read", "purpose:care", "extra"]
        );
        assert_eq!(claims.purposes, vec!["billing", "care"]);
        assert_eq!(claims.client_id.as_deref(), Some("partner"));
    }

    #[test]
    fn only_ascii_spaces_separate_words() {
        let claims = Claims::read(
            &Fake(Some(HashMap::from([
                ("scope", s("a\u{a0}patients:read b\tc\u{2003}d  e")),
                (
                    "scp",
                    ClaimValue::List(vec!["x y".into(), "".into(), "z\u{a0}w".into()]),
                ),
                ("purposes", s("care\u{a0}billing research")),
            ]))),
            &settings(),
        )
        .unwrap();
        assert_eq!(
            claims.scopes,
            vec![
                "a\u{a0}patients:read",
                "b\tc\u{2003}d",
                "e",
                "x y",
                "z\u{a0}w"
            ]
        );
        assert_eq!(claims.purposes, vec!["care\u{a0}billing", "research"]);
    }

    #[test]
    fn client_falls_back_to_sub() {
        let claims =
            Claims::read(&Fake(Some(HashMap::from([("sub", s("svc"))]))), &settings()).unwrap();
        assert_eq!(claims.client_id.as_deref(), Some("svc"));
        assert!(claims.scopes.is_empty() && claims.purposes.is_empty());
    }

    #[test]
    fn decodes_envoy_lists_and_strings() {
        // The layout Envoy 1.40 gives a list claim of jwt_authn's payload.
        let mut bytes = 4u32.to_le_bytes().to_vec();
        let items = ["billing", "research", "care", "open-data"];
        for item in items {
            bytes.extend((item.len() as u32).to_le_bytes());
            bytes.extend(0u32.to_le_bytes());
        }
        for item in items {
            bytes.extend(item.as_bytes());
            bytes.extend([0, 0]);
        }
        assert_eq!(bytes.len(), 4 + 4 * 8 + 7 + 8 + 4 + 9 + 4 * 2);
        assert_eq!(
            decode_envoy_claim(&bytes),
            Some(ClaimValue::List(
                items.iter().map(|s| s.to_string()).collect()
            ))
        );
        assert_eq!(
            decode_envoy_claim(b"patients:read"),
            Some(s("patients:read"))
        );
        assert_eq!(
            decode_envoy_claim(&0u32.to_le_bytes()),
            Some(ClaimValue::List(vec![]))
        );
        // A number (8-byte double) is not mistaken for a list and is not a string claim here.
        assert_eq!(decode_envoy_claim(&1.7e9f64.to_le_bytes()), None);
    }
}
