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

/// `*` matches any run of bytes. Linear backtracking to the last `*` only, so the time is
/// at most pattern × name: a configured pattern with many stars cannot stall a request
/// (a recursive match is exponential in the number of stars).
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    // The last `*` seen, and where in the name its match would end next.
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    star = Some((star_p, star_n + 1));
                    p = star_p + 1;
                    n = star_n + 1;
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
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
    fn many_wildcards_match_in_linear_time() {
        let pattern = HeaderPattern::parse(&format!("{}b", "*a".repeat(20))).unwrap();
        assert!(!pattern.matches(&"a".repeat(4096)));
        assert!(pattern.matches(&format!("{}b", "a".repeat(4096))));
        for (pattern, name, expected) in [
            ("*", "", true),
            ("**", "x", true),
            ("a*", "a", true),
            ("*a", "ba", true),
            ("*a", "ab", false),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbYcZ", false),
            ("*ab*", "aab", true),
            ("x-*-*-y", "x--y", false),
            ("x-*-*-y", "x---y", true),
        ] {
            let p = HeaderPattern::parse(pattern).unwrap();
            assert_eq!(p.matches(name), expected, "{pattern} on {name:?}");
        }
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
