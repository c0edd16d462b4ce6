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
    /// With typed rules: an object's type could not be known.
    Type(TypeErrorKind),
    /// Under SMART scopes: the document is a resource the caller's scopes do not grant.
    Grant(GrantErrorKind),
}

/// Why a document is refused under SMART scopes: what it is cannot be sent to this caller
/// at all (a resource inside it would be withheld instead).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantErrorKind {
    /// The root is a resource the scopes do not grant.
    RootNotGranted,
    /// The root is not a resource: not an object, or one without a type member.
    RootNotAResource,
    /// The filter was asked to enforce SMART scopes with rules that do not type objects.
    RulesNotTyped,
}

impl fmt::Display for GrantErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GrantErrorKind::RootNotGranted => {
                "the response is a resource the caller's SMART scopes do not grant"
            }
            GrantErrorKind::RootNotAResource => {
                "the response is not a FHIR resource (no resourceType), so no SMART scope grants it"
            }
            GrantErrorKind::RulesNotTyped => {
                "SMART scopes cannot be enforced with rules that do not type objects"
            }
        })
    }
}

/// Why typed rules could not tell an object's type: the engine never guesses one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeErrorKind {
    /// The type member's value is not a string.
    NotAString,
    /// A typed object has a second type member.
    TwoTypeMembers,
    /// More than the limit of an object's bytes were read without meeting its type member.
    LookaheadExceeded { limit: u64 },
    /// Under SMART scopes: a resource granted only under conditions on its content (a
    /// category, the patient compartment) is larger than the limit, so it cannot be held
    /// whole to be decided.
    GrantLookaheadExceeded { limit: u64 },
}

impl fmt::Display for TypeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypeErrorKind::NotAString => {
                f.write_str("an object's type member is not a string, so its type is unknown")
            }
            TypeErrorKind::TwoTypeMembers => {
                f.write_str("an object has two type members, so its type is ambiguous")
            }
            TypeErrorKind::LookaheadExceeded { limit } => write!(
                f,
                "an object's type member is not within its first {limit} bytes (limits.max_type_lookahead_bytes)"
            ),
            TypeErrorKind::GrantLookaheadExceeded { limit } => write!(
                f,
                "a resource whose SMART grant depends on its content (category, patient compartment) is larger than {limit} bytes (limits.max_type_lookahead_bytes), so it cannot be held whole to be decided"
            ),
        }
    }
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
            ErrorKind::Type(kind) => kind.fmt(f),
            ErrorKind::Grant(kind) => kind.fmt(f),
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
