//! Why the lexer refused a document: strict RFC 8259 and UTF-8, and the limits that keep its
//! memory bounded. Located by the engine's error ([`crate::json::EngineError`]).

use std::fmt;

use super::{MAX_CAPTURE_BYTES, MAX_KEY_BYTES};

/// A lexing failure: the document is not JSON the engine accepts, or exceeds a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LexErrorKind {
    Unexpected { found: u8, expected: &'static str },
    UnexpectedEnd { expected: &'static str },
    Empty,
    ControlCharacterInString(u8),
    InvalidEscape(u8),
    InvalidUnicodeEscape,
    LoneSurrogate,
    InvalidUtf8,
    InvalidNumber,
    TooDeep { limit: u32 },
    KeyTooLong,
    ValueTooLong,
    TrailingData(u8),
    NewlineInRecord,
}

impl fmt::Display for LexErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LexErrorKind::Unexpected { found, expected } => {
                write!(
                    f,
                    "unexpected {} where {expected} was expected",
                    show_byte(*found)
                )
            }
            LexErrorKind::UnexpectedEnd { expected } => {
                write!(f, "the document ends where {expected} was expected")
            }
            LexErrorKind::Empty => f.write_str("the document is empty"),
            LexErrorKind::ControlCharacterInString(b) => {
                write!(f, "unescaped control character 0x{b:02x} in a string")
            }
            LexErrorKind::InvalidEscape(b) => write!(f, "invalid escape \\{}", show_byte(*b)),
            LexErrorKind::InvalidUnicodeEscape => {
                f.write_str("invalid \\u escape (four hex digits expected)")
            }
            LexErrorKind::LoneSurrogate => f.write_str("unpaired UTF-16 surrogate in a \\u escape"),
            LexErrorKind::InvalidUtf8 => f.write_str("invalid UTF-8 in a string"),
            LexErrorKind::InvalidNumber => f.write_str("invalid number"),
            LexErrorKind::TooDeep { limit } => {
                write!(f, "nesting deeper than the limit of {limit}")
            }
            LexErrorKind::KeyTooLong => {
                write!(f, "object key longer than {MAX_KEY_BYTES} bytes")
            }
            LexErrorKind::ValueTooLong => {
                write!(
                    f,
                    "value to transform longer than {MAX_CAPTURE_BYTES} bytes"
                )
            }
            LexErrorKind::TrailingData(b) => {
                write!(
                    f,
                    "unexpected {} after the end of the document",
                    show_byte(*b)
                )
            }
            LexErrorKind::NewlineInRecord => f.write_str("line feed inside an NDJSON record"),
        }
    }
}

fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() {
        format!("'{}'", b as char)
    } else {
        format!("byte 0x{b:02x}")
    }
}
