//! Media types and content codings of responses: which bodies the engine can read.

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
    /// Newline-delimited JSON (`application/x-ndjson`, any `+ndjson`, JSON Lines).
    Ndjson,
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
        self.essence == "application/json" || self.essence.ends_with("+json") || self.is_ndjson()
    }

    fn is_ndjson(&self) -> bool {
        matches!(
            self.essence.as_str(),
            "application/x-ndjson"
                | "application/ndjson"
                | "application/jsonl"
                | "application/x-jsonlines"
        ) || self.essence.ends_with("+ndjson")
    }

    /// JSON is UTF-8 (RFC 8259); a body announced in another charset cannot be read safely.
    pub fn format(&self) -> BodyFormat {
        let utf8 = self
            .charset
            .as_deref()
            .is_none_or(|c| c == "utf-8" || c == "utf8");
        match (self.is_ndjson(), self.is_json() && utf8) {
            (true, true) => BodyFormat::Ndjson,
            (false, true) => BodyFormat::Json,
            _ => BodyFormat::Other,
        }
    }
}

/// A `content-encoding` the pipeline can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentEncoding {
    Identity,
    Gzip,
    /// HTTP's `deflate`: the zlib format (RFC 9110 section 8.4.1.2).
    Deflate,
}

impl ContentEncoding {
    /// `None` for an encoding that cannot be decoded (br, zstd, stacked encodings, unknown).
    pub fn parse(header: Option<&str>) -> Option<ContentEncoding> {
        match header.map(|h| h.trim().to_ascii_lowercase()).as_deref() {
            None | Some("") | Some("identity") => Some(ContentEncoding::Identity),
            Some("gzip") | Some("x-gzip") => Some(ContentEncoding::Gzip),
            Some("deflate") => Some(ContentEncoding::Deflate),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(
            ContentEncoding::parse(None),
            Some(ContentEncoding::Identity)
        );
        assert_eq!(
            ContentEncoding::parse(Some(" GZIP ")),
            Some(ContentEncoding::Gzip)
        );
        assert_eq!(
            ContentEncoding::parse(Some("deflate")),
            Some(ContentEncoding::Deflate)
        );
        assert_eq!(ContentEncoding::parse(Some("br")), None);
        assert_eq!(ContentEncoding::parse(Some("zstd")), None);
        assert_eq!(ContentEncoding::parse(Some("gzip, gzip")), None);
    }

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
    fn ndjson_media_types() {
        assert_eq!(format("application/x-ndjson"), Some(BodyFormat::Ndjson));
        assert_eq!(format("application/fhir+ndjson"), Some(BodyFormat::Ndjson));
        assert_eq!(
            format("application/jsonl; charset=utf-8"),
            Some(BodyFormat::Ndjson)
        );
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
