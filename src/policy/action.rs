//! What a rule does to the field it reaches.

use serde_json::Value;

/// The action a rule applies; `keep` and `drop` are the heart of minimisation, the others
/// disguise a value the purpose may only see in part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Keep,
    Drop,
    /// The value becomes `null`: the reuser learns the field exists, not what it holds.
    Null,
    Transform(Transform),
}

/// Transforms of scalar values; an object or array met by a transform is withheld.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// Keyed HMAC-SHA-256, base64url: linkable within one reuser, not across reusers.
    Pseudonymize,
    /// A date or date-time becomes its year.
    Year,
    /// Only the last `keep_last` characters stay readable.
    Mask { keep_last: usize },
    /// Only the first N characters stay (a postcode to its department).
    Truncate(usize),
}

impl Action {
    /// Ranks actions for rules of equal specificity: the more protective wins
    /// (at equal specificity `drop` beats `keep`).
    pub fn protection_rank(&self) -> u8 {
        match self {
            Action::Keep => 0,
            Action::Transform(Transform::Year) => 1,
            Action::Transform(Transform::Truncate(_)) => 2,
            Action::Transform(Transform::Mask { .. }) => 3,
            Action::Transform(Transform::Pseudonymize) => 4,
            Action::Null => 5,
            Action::Drop => 6,
        }
    }

    /// Parses an action as written in `fields`; the message says what is accepted.
    pub fn parse(value: &Value) -> Result<Action, String> {
        const EXPECTED: &str = "expected \"keep\", \"drop\", \"null\", \"pseudonymize\", \"year\", {\"mask\": {\"keep_last\": N}} or {\"truncate\": N}";
        match value {
            Value::String(name) => match name.as_str() {
                "keep" => Ok(Action::Keep),
                "drop" => Ok(Action::Drop),
                "null" => Ok(Action::Null),
                "pseudonymize" => Ok(Action::Transform(Transform::Pseudonymize)),
                "year" => Ok(Action::Transform(Transform::Year)),
                "mask" | "truncate" => Err(format!(
                    "action \"{name}\" needs a parameter: {}",
                    if name == "mask" {
                        "{\"mask\": {\"keep_last\": N}}"
                    } else {
                        "{\"truncate\": N}"
                    }
                )),
                other => Err(format!("unknown action {other:?}; {EXPECTED}")),
            },
            Value::Object(map) if map.len() == 1 => {
                let (name, parameter) = map.iter().next().expect("one entry");
                match name.as_str() {
                    "truncate" => match parameter.as_u64() {
                        Some(n) if n >= 1 => Ok(Action::Transform(Transform::Truncate(n as usize))),
                        _ => Err(
                            "\"truncate\" takes a whole number of characters, at least 1".into(),
                        ),
                    },
                    "mask" => parse_mask(parameter),
                    other => Err(format!("unknown action {other:?}; {EXPECTED}")),
                }
            }
            _ => Err(format!("not an action; {EXPECTED}")),
        }
    }
}

fn parse_mask(parameter: &Value) -> Result<Action, String> {
    let Value::Object(map) = parameter else {
        return Err("\"mask\" takes {\"keep_last\": N}".into());
    };
    if let Some(unknown) = map.keys().find(|k| k.as_str() != "keep_last") {
        return Err(format!(
            "unknown field `{unknown}` in \"mask\"; expected `keep_last`"
        ));
    }
    match map.get("keep_last").map(Value::as_u64) {
        Some(Some(n)) => Ok(Action::Transform(Transform::Mask {
            keep_last: n as usize,
        })),
        Some(None) => Err("\"keep_last\" takes a whole number of characters".into()),
        None => Err("\"mask\" needs `keep_last`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_documented_action() {
        assert_eq!(Action::parse(&json!("keep")), Ok(Action::Keep));
        assert_eq!(Action::parse(&json!("drop")), Ok(Action::Drop));
        assert_eq!(Action::parse(&json!("null")), Ok(Action::Null));
        assert_eq!(
            Action::parse(&json!("pseudonymize")),
            Ok(Action::Transform(Transform::Pseudonymize))
        );
        assert_eq!(
            Action::parse(&json!("year")),
            Ok(Action::Transform(Transform::Year))
        );
        assert_eq!(
            Action::parse(&json!({"mask": {"keep_last": 4}})),
            Ok(Action::Transform(Transform::Mask { keep_last: 4 }))
        );
        assert_eq!(
            Action::parse(&json!({"truncate": 2})),
            Ok(Action::Transform(Transform::Truncate(2)))
        );
    }

    #[test]
    fn refuses_with_actionable_messages() {
        assert!(Action::parse(&json!("yeer"))
            .unwrap_err()
            .starts_with("unknown action \"yeer\"; expected"));
        assert_eq!(
            Action::parse(&json!({"truncate": 0})).unwrap_err(),
            "\"truncate\" takes a whole number of characters, at least 1"
        );
        assert_eq!(
            Action::parse(&json!({"mask": {"keep": 4}})).unwrap_err(),
            "unknown field `keep` in \"mask\"; expected `keep_last`"
        );
        assert_eq!(
            Action::parse(&json!("mask")).unwrap_err(),
            "action \"mask\" needs a parameter: {\"mask\": {\"keep_last\": N}}"
        );
        assert!(Action::parse(&json!(3))
            .unwrap_err()
            .starts_with("not an action"));
        assert!(Action::parse(&json!({"a": 1, "b": 2}))
            .unwrap_err()
            .starts_with("not an action"));
    }

    #[test]
    fn drop_is_the_most_protective() {
        assert!(Action::Drop.protection_rank() > Action::Null.protection_rank());
        assert!(Action::Null.protection_rank() > Action::Keep.protection_rank());
    }
}
