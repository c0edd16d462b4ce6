//! Media types of responses: which ones the engine can read.

/// A parsed `content-type`: essence lower-cased, parameters kept for the charset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaType {
    essence: String,
    charset: Option<String>,
}

/// How the filter must treat a body of this media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON document (`application/json`, any `+json`).
    Json,
    /// Anything else: not readable by the engine.
    Other,
}

impl MediaType {
    /// Parses `type/subtype; param=value`; `None` when it is not a media type.
    pub fn parse(text: &str) -> Option<MediaType> {
        let mut parts = text.split(';');
        let essence = parts.next()?.trim().to_ascii_lowercase();
        let (kind, subtype) = essence.split_once('/')?;
        let token = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+*".contains(&b))
        };
        if !token(kind) || !token(subtype) {
            return None;
        }
        let mut charset = None;
        for parameter in parts {
            if let Some((name, value)) = parameter.split_once('=') {
                if name.trim().eq_ignore_ascii_case("charset") {
                    charset = Some(value.trim().trim_matches('"').to_ascii_lowercase());
                }
            }
        }
        Some(MediaType { essence, charset })
    }

    pub fn essence(&self) -> &str {
        &self.essence
    }

    pub fn is_json(&self) -> bool {
        self.essence == "application/json" || self.essence.ends_with("+json")
    }

    /// JSON is UTF-8 (RFC 8259); a body announced in another charset cannot be read safely.
    pub fn format(&self) -> BodyFormat {
        let utf8 = self
            .charset
            .as_deref()
            .is_none_or(|c| c == "utf-8" || c == "utf8");
        if self.is_json() && utf8 {
            BodyFormat::Json
        } else {
            BodyFormat::Other
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn format(text: &str) -> Option<BodyFormat> {
        MediaType::parse(text).map(|m| m.format())
    }

    #[test]
    fn json_media_types() {
        assert_eq!(format("application/json"), Some(BodyFormat::Json));
        assert_eq!(
            format("Application/JSON; charset=UTF-8"),
            Some(BodyFormat::Json)
        );
        assert_eq!(
            format("application/fhir+json;fhirVersion=4.0"),
            Some(BodyFormat::Json)
        );
        assert_eq!(format("application/problem+json"), Some(BodyFormat::Json));
    }

    #[test]
    fn everything_else_is_not_readable() {
        assert_eq!(format("text/plain"), Some(BodyFormat::Other));
        assert_eq!(
            format("application/json; charset=iso-8859-1"),
            Some(BodyFormat::Other)
        );
        assert_eq!(format("application/jsonp"), Some(BodyFormat::Other));
        assert_eq!(format("json"), None);
        assert_eq!(format(""), None);
    }
}
