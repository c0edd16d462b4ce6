//! Resolving the purpose a request is made for.

use super::Policy;
use crate::auth::claims::Claims;
use crate::config::AuthRequirement;

/// Why a purpose was refused; each is its own problem type for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurposeRefusal {
    Undeclared,
    NotAuthorised(String),
    NotAccepted(String),
}

/// The declared purpose (or the policy's default), authorised by the token when the policy
/// requires one, and defined on the policy.
pub fn resolve<'p>(
    declared: Option<&str>,
    policy: &'p Policy,
    claims: Option<&Claims>,
) -> Result<&'p str, PurposeRefusal> {
    let declared = declared.map(str::trim).filter(|d| !d.is_empty());
    let name = match declared.or(policy.default_purpose.as_deref()) {
        Some(name) => name,
        None => return Err(PurposeRefusal::Undeclared),
    };
    // A token (`required`) or a client certificate (`mtls`) says which purposes the caller
    // is authorised for; only open data (`none`) takes the purpose as declared.
    if policy.auth != AuthRequirement::None {
        let authorised = claims.is_some_and(|c| c.purposes.iter().any(|p| p == name));
        if !authorised {
            return Err(PurposeRefusal::NotAuthorised(name.to_string()));
        }
    }
    match policy.purposes.get_key_value(name) {
        Some((key, _)) => Ok(key.as_str()),
        None => Err(PurposeRefusal::NotAccepted(name.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::CompiledConfig;

    fn policy(auth: &str, default: Option<&str>) -> Policy {
        let json = format!(
            r#"{{"policies": {{"p": {{"auth": "{auth}", "default_purpose": {}, "purposes": {{"care": {{}}, "billing": {{}}}}}}}}}}"#,
            default.map_or("null".to_string(), |d| format!("\"{d}\""))
        );
        CompiledConfig::load(json.as_bytes(), &|_| None)
            .unwrap()
            .policies
            .remove(0)
    }

    fn claims(purposes: &[&str]) -> Claims {
        Claims {
            purposes: purposes.iter().map(|p| p.to_string()).collect(),
            ..Claims::default()
        }
    }

    #[test]
    fn authorised_and_accepted() {
        assert_eq!(
            resolve(
                Some("care"),
                &policy("required", None),
                Some(&claims(&["care"]))
            ),
            Ok("care")
        );
    }

    #[test]
    fn the_three_refusals() {
        let p = policy("required", None);
        assert_eq!(
            resolve(None, &p, Some(&claims(&["care"]))),
            Err(PurposeRefusal::Undeclared)
        );
        assert_eq!(
            resolve(Some("  "), &p, Some(&claims(&["care"]))),
            Err(PurposeRefusal::Undeclared)
        );
        assert_eq!(
            resolve(Some("billing"), &p, Some(&claims(&["care"]))),
            Err(PurposeRefusal::NotAuthorised("billing".into()))
        );
        assert_eq!(
            resolve(Some("research"), &p, Some(&claims(&["research"]))),
            Err(PurposeRefusal::NotAccepted("research".into()))
        );
    }

    #[test]
    fn a_token_without_purposes_authorises_none() {
        let p = policy("required", None);
        assert_eq!(
            resolve(Some("care"), &p, Some(&claims(&[]))),
            Err(PurposeRefusal::NotAuthorised("care".into()))
        );
    }

    #[test]
    fn mtls_clients_are_authorised_only_for_their_purposes() {
        let json = r#"{"policies": {"p": {"auth": "mtls", "default_purpose": "care",
            "clients": {"spiffe://h/ns/care/sa/ehr": {"purposes": ["care"]}},
            "purposes": {"care": {}, "billing": {}}}}}"#;
        let p = CompiledConfig::load(json.as_bytes(), &|_| None)
            .unwrap()
            .policies
            .remove(0);
        // What request.rs gives a client the `clients` map does not list: no purpose.
        let unknown = claims(&[]);
        assert_eq!(
            resolve(None, &p, Some(&unknown)),
            Err(PurposeRefusal::NotAuthorised("care".into()))
        );
        assert_eq!(
            resolve(Some("care"), &p, Some(&unknown)),
            Err(PurposeRefusal::NotAuthorised("care".into()))
        );
        let ehr = claims(&["care"]);
        assert_eq!(resolve(None, &p, Some(&ehr)), Ok("care"));
        assert_eq!(
            resolve(Some("billing"), &p, Some(&ehr)),
            Err(PurposeRefusal::NotAuthorised("billing".into()))
        );
    }

    #[test]
    fn open_routes_take_the_declared_or_default_purpose() {
        let p = policy("none", Some("care"));
        assert_eq!(resolve(None, &p, None), Ok("care"));
        assert_eq!(resolve(Some("billing"), &p, None), Ok("billing"));
        assert_eq!(
            resolve(Some("x"), &p, None),
            Err(PurposeRefusal::NotAccepted("x".into()))
        );
    }
}
