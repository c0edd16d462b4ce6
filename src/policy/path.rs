//! Field paths as policy authors write them: `address.city`, `contacts[*].phone`, `*.id`,
//! `**.ssn`, `"a.b".c`.
//!
//! Arrays are transparent (a rule applies to every element), so `[*]` is accepted as a
//! readable reminder that a segment holds an array and means nothing more.

use std::fmt;

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// An object key, compared with the *decoded* key of the document.
    Key(String),
    /// `*`: exactly one key, whatever it is.
    AnyKey,
    /// `**`: zero or more keys.
    AnyDepth,
}

/// A parsed field path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    pub segments: Vec<Segment>,
}

/// Why a path was refused; shown to the policy author with the path's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathError(pub String);

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FieldPath {
    /// Parses a path; every mistake is reported with the character position.
    pub fn parse(text: &str) -> Result<FieldPath, PathError> {
        if text.is_empty() {
            return Err(PathError("empty field path".into()));
        }
        let chars: Vec<char> = text.chars().collect();
        let mut segments = Vec::new();
        let mut i = 0;
        loop {
            let start = i;
            let segment = if chars.get(i) == Some(&'"') {
                i += 1;
                let mut key = String::new();
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(PathError(format!(
                                "unterminated quoted segment starting at character {}",
                                start + 1
                            )))
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => match chars.get(i + 1) {
                            Some(c @ ('"' | '\\')) => {
                                key.push(*c);
                                i += 2;
                            }
                            _ => {
                                return Err(PathError(format!(
                                    "bad escape at character {} (only \\\" and \\\\ are allowed in quotes)",
                                    i + 1
                                )))
                            }
                        },
                        Some(c) => {
                            key.push(*c);
                            i += 1;
                        }
                    }
                }
                if key.is_empty() {
                    return Err(PathError(format!("empty key at character {}", start + 1)));
                }
                Segment::Key(key)
            } else {
                let mut raw = String::new();
                while let Some(&c) = chars.get(i) {
                    if c == '.' || c == '[' {
                        break;
                    }
                    if c == '"' || c == ']' || c.is_whitespace() || c.is_control() {
                        return Err(PathError(format!(
                            "unexpected {c:?} at character {} (quote keys that contain it: \"...\")",
                            i + 1
                        )));
                    }
                    raw.push(c);
                    i += 1;
                }
                match raw.as_str() {
                    "" => {
                        return Err(PathError(format!("empty segment at character {}", start + 1)))
                    }
                    "*" => Segment::AnyKey,
                    "**" => Segment::AnyDepth,
                    other if other.contains('*') => {
                        return Err(PathError(format!(
                            "'*' must be a whole segment (got {other:?}); quote a key that contains '*'"
                        )))
                    }
                    other => Segment::Key(other.to_string()),
                }
            };
            segments.push(segment);
            // Optional `[*]` suffixes: arrays are transparent.
            while chars.get(i) == Some(&'[') {
                if chars.get(i + 1) == Some(&'*') && chars.get(i + 2) == Some(&']') {
                    i += 3;
                } else {
                    return Err(PathError(format!(
                        "only [*] may follow a segment (character {}); rules apply to every array element",
                        i + 1
                    )));
                }
            }
            match chars.get(i) {
                None => break,
                Some('.') => {
                    i += 1;
                    if i == chars.len() {
                        return Err(PathError("path ends with '.'".into()));
                    }
                }
                Some(c) => {
                    return Err(PathError(format!(
                        "unexpected {c:?} at character {} (expected '.' or the end)",
                        i + 1
                    )))
                }
            }
        }
        if segments
            .windows(2)
            .any(|w| w[0] == Segment::AnyDepth && w[1] == Segment::AnyDepth)
        {
            return Err(PathError(
                "'**.**' is the same as '**'; write it once".into(),
            ));
        }
        Ok(FieldPath { segments })
    }

    /// Orders rules that reach the same field: more named keys first, then more `*`,
    /// then fewer `**`: the most specific rule wins.
    pub fn specificity(&self) -> (usize, usize, isize) {
        let mut keys = 0;
        let mut any = 0;
        let mut deep = 0;
        for segment in &self.segments {
            match segment {
                Segment::Key(_) => keys += 1,
                Segment::AnyKey => any += 1,
                Segment::AnyDepth => deep += 1,
            }
        }
        (keys, any, -deep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(path: &str) -> Vec<Segment> {
        FieldPath::parse(path).unwrap().segments
    }

    fn key(k: &str) -> Segment {
        Segment::Key(k.to_string())
    }

    #[test]
    fn dotted_path() {
        assert_eq!(keys("address.city"), vec![key("address"), key("city")]);
    }

    #[test]
    fn array_marker_is_transparent() {
        assert_eq!(keys("contacts[*].phone"), keys("contacts.phone"));
        assert_eq!(keys("a[*][*]"), vec![key("a")]);
    }

    #[test]
    fn wildcards() {
        assert_eq!(keys("**.ssn"), vec![Segment::AnyDepth, key("ssn")]);
        assert_eq!(keys("*.id"), vec![Segment::AnyKey, key("id")]);
    }

    #[test]
    fn quoted_segments_hold_dots_and_quotes() {
        assert_eq!(keys(r#""a.b".c"#), vec![key("a.b"), key("c")]);
        assert_eq!(keys(r#""say \"hi\"""#), vec![key("say \"hi\"")]);
        assert_eq!(keys(r#""x*y""#), vec![key("x*y")]);
    }

    #[test]
    fn unicode_keys() {
        assert_eq!(keys("prénom"), vec![key("prénom")]);
    }

    #[test]
    fn errors_say_where() {
        let cases = [
            ("", "empty field path"),
            ("a..b", "empty segment at character 3"),
            ("a.", "path ends with '.'"),
            (".a", "empty segment at character 1"),
            (
                "a b",
                "unexpected ' ' at character 2 (quote keys that contain it: \"...\")",
            ),
            (
                "a[0]",
                "only [*] may follow a segment (character 2); rules apply to every array element",
            ),
            (
                "a*",
                "'*' must be a whole segment (got \"a*\"); quote a key that contains '*'",
            ),
            (
                r#""a"#,
                "unterminated quoted segment starting at character 1",
            ),
            (r#""""#, "empty key at character 1"),
            (
                r#""a"b"#,
                "unexpected 'b' at character 4 (expected '.' or the end)",
            ),
            ("**.**", "'**.**' is the same as '**'; write it once"),
        ];
        for (path, message) in cases {
            assert_eq!(
                FieldPath::parse(path).unwrap_err().0,
                message,
                "path {path:?}"
            );
        }
    }

    #[test]
    fn specificity_prefers_named_keys() {
        let named = FieldPath::parse("patient.ssn").unwrap().specificity();
        let star = FieldPath::parse("*.ssn").unwrap().specificity();
        let deep = FieldPath::parse("**.ssn").unwrap().specificity();
        assert!(named > star && star > deep);
    }
}
