//! The streaming JSON engine: a push lexer and the filter that applies compiled rules.

pub mod error;
pub mod filter;
pub mod lexer;
pub mod tally;

pub use error::{EngineError, ErrorKind, GrantErrorKind, LexErrorKind, TypeErrorKind};
pub use filter::{FilterStats, JsonFilter};
pub use lexer::Framing;
