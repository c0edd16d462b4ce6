//! The engine's one error type: every refusal of a document, located by absolute byte offset
//! and JSON path, whichever part of the engine refused it.

use std::fmt;

pub use super::lexer::LexErrorKind;

/// Why the engine refused a document: the cases say which part refused, so a caller can
/// tell the upstream's malformed JSON from a value the policy could not transform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The lexer refused the document: not strict JSON, or past one of its limits.
    Lex(LexErrorKind),
    /// A transform could not be applied to the value it met.
    Transform(String),
}

impl From<LexErrorKind> for ErrorKind {
    fn from(kind: LexErrorKind) -> ErrorKind {
        ErrorKind::Lex(kind)
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Lex(kind) => kind.fmt(f),
            ErrorKind::Transform(message) => f.write_str(message),
        }
    }
}

/// A refusal, located by absolute byte offset and JSON path (`$.entry[3].resource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineError {
    pub offset: u64,
    pub path: String,
    pub kind: ErrorKind,
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at byte {} ({})", self.kind, self.offset, self.path)
    }
}

impl std::error::Error for EngineError {}
