//! Response header rules of a purpose: remove named headers, or keep only an allowlist.

/// A header name pattern: lower-case, `*` matches any run of characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderPattern(String);

impl HeaderPattern {
    /// Header names are case-insensitive; a pseudo-header (`:status`) is never a target.
    pub fn parse(text: &str) -> Result<HeaderPattern, String> {
        if text.is_empty() {
            return Err("empty header name".into());
        }
        if text.starts_with(':') {
            return Err(format!("{text:?}: pseudo-headers are never touched"));
        }
        if let Some(bad) = text.chars().find(|&c| !(is_tchar(c) || c == '*')) {
            return Err(format!("{text:?}: {bad:?} cannot appear in a header name"));
        }
        Ok(HeaderPattern(text.to_ascii_lowercase()))
    }

    pub fn matches(&self, name: &str) -> bool {
        glob(self.0.as_bytes(), name.to_ascii_lowercase().as_bytes())
    }
}

/// RFC 9110 token characters, minus `*` which is our wildcard.
fn is_tchar(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'+-.^_`|~".contains(c)
}

fn glob(pattern: &[u8], name: &[u8]) -> bool {
    match pattern.split_first() {
        None => name.is_empty(),
        Some((b'*', rest)) => (0..=name.len()).any(|skip| glob(rest, &name[skip..])),
        Some((c, rest)) => name.first() == Some(c) && glob(rest, &name[1..]),
    }
}

/// What a purpose does to response headers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HeaderRules {
    #[default]
    KeepAll,
    Remove(Vec<HeaderPattern>),
    /// Only these stay (pseudo-headers always stay).
    KeepOnly(Vec<HeaderPattern>),
}

impl HeaderRules {
    /// Whether the header named `name` must be removed from the response.
    pub fn removes(&self, name: &str) -> bool {
        if name.starts_with(':') {
            return false;
        }
        match self {
            HeaderRules::KeepAll => false,
            HeaderRules::Remove(patterns) => patterns.iter().any(|p| p.matches(name)),
            HeaderRules::KeepOnly(patterns) => !patterns.iter().any(|p| p.matches(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(list: &[&str]) -> Vec<HeaderPattern> {
        list.iter()
            .map(|p| HeaderPattern::parse(p).unwrap())
            .collect()
    }

    #[test]
    fn remove_by_name_and_wildcard_case_insensitively() {
        let rules = HeaderRules::Remove(patterns(&["X-Patient-*", "server"]));
        assert!(rules.removes("x-patient-count"));
        assert!(rules.removes("X-PATIENT-ID"));
        assert!(rules.removes("Server"));
        assert!(!rules.removes("x-patient"));
        assert!(!rules.removes("content-type"));
    }

    #[test]
    fn keep_only_an_allowlist() {
        let rules = HeaderRules::KeepOnly(patterns(&["content-type", "x-request-*"]));
        assert!(!rules.removes("content-type"));
        assert!(!rules.removes("x-request-id"));
        assert!(rules.removes("x-patient-count"));
        assert!(!rules.removes(":status"));
    }

    #[test]
    fn wildcard_in_the_middle() {
        let rules = HeaderRules::Remove(patterns(&["x-*-secret"]));
        assert!(rules.removes("x-db-secret"));
        assert!(!rules.removes("x-db-secrets"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert_eq!(HeaderPattern::parse("").unwrap_err(), "empty header name");
        assert_eq!(
            HeaderPattern::parse(":status").unwrap_err(),
            "\":status\": pseudo-headers are never touched"
        );
        assert_eq!(
            HeaderPattern::parse("x patient").unwrap_err(),
            "\"x patient\": ' ' cannot appear in a header name"
        );
    }
}
