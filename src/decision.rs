//! What the core tells the adapter to do: every status, header and body the adapter sends
//! on its own is built here.

use std::sync::Arc;

use crate::body::{BodyError, ContentEncoding};
use crate::json::Framing;
use crate::json::{EngineError, ErrorKind, LexErrorKind};
use crate::policy::rules::FieldRules;

/// An RFC 9457 problem; `slug` makes `type` (`urn:finalite:problem:SLUG`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub slug: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
}

impl Problem {
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "type": format!("urn:finalite:problem:{}", self.slug),
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }))
        .unwrap_or_default()
    }

    /// 502: the upstream body could not be filtered, so none of it is sent.
    pub fn not_filterable(reason: impl Into<String>) -> Problem {
        Problem {
            slug: "response-not-filterable",
            title: "Bad Gateway",
            status: 502,
            detail: format!(
                "the upstream response could not be filtered: {}",
                reason.into()
            ),
        }
    }

    /// The client sees the category of an engine error; the offset and path go to the log.
    pub fn from_engine_error(error: &EngineError) -> Problem {
        Problem::not_filterable(match &error.kind {
            ErrorKind::Lex(LexErrorKind::TooDeep { limit }) => {
                format!("the body nests deeper than the limit of {limit}")
            }
            ErrorKind::Transform(_) => {
                "a value could not be transformed as the policy requires".to_string()
            }
            ErrorKind::Type(_) => {
                "an object's type could not be read as the policy requires".to_string()
            }
            ErrorKind::Lex(LexErrorKind::KeyTooLong | LexErrorKind::ValueTooLong) => {
                "the body holds a key or value too long to filter".to_string()
            }
            _ => "the body is not valid JSON".to_string(),
        })
    }

    pub fn too_large(limit: u64) -> Problem {
        Problem::not_filterable(format!(
            "the body is larger than the limit of {limit} bytes"
        ))
    }

    pub fn from_body_error(error: &BodyError) -> Problem {
        match error {
            BodyError::TooLarge { limit } => Problem::too_large(*limit),
            BodyError::Decoding(_) => {
                Problem::not_filterable("the compressed body could not be decoded")
            }
            BodyError::Json(error) => Problem::from_engine_error(error),
        }
    }
}

/// A refusal of the request, answered by the filter itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    pub problem: Problem,
    /// RFC 6750 challenge, for 401 and scope refusals.
    pub www_authenticate: Option<String>,
    /// `Retry-After` in seconds, for a 503 the client may retry.
    pub retry_after_seconds: Option<u32>,
}

impl Denial {
    pub fn status(&self) -> u16 {
        self.problem.status
    }

    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("content-type", "application/problem+json".to_string()),
            ("cache-control", "no-store".to_string()),
        ];
        if let Some(challenge) = &self.www_authenticate {
            headers.push(("www-authenticate", challenge.clone()));
        }
        if let Some(seconds) = self.retry_after_seconds {
            headers.push(("retry-after", seconds.to_string()));
        }
        headers
    }

    pub fn body(&self) -> Vec<u8> {
        self.problem.body()
    }
}

impl From<Problem> for Denial {
    fn from(problem: Problem) -> Denial {
        Denial {
            problem,
            www_authenticate: None,
            retry_after_seconds: None,
        }
    }
}

/// The verdict on a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestDecision {
    Deny(Denial),
    /// No policy covers the request and the configuration lets such requests through.
    PassUnfiltered,
    Allow(Allowed),
}

/// A request let through for one purpose of one policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allowed {
    pub policy: usize,
    pub purpose: String,
    pub client_id: Option<String>,
}

/// Request headers removed before the request goes upstream: the filter reads whole,
/// uncompressed documents.
pub const REQUEST_HEADERS_TO_REMOVE: &[&str] = &["accept-encoding", "range"];

/// What to do with a response body.
#[derive(Debug, Clone)]
pub enum BodyPlan {
    /// Send as is (no body rules, no body, or an opted-in media type).
    Untouched,
    /// Filter through the engine with these rules.
    Filter(FilterSpec),
    /// Send this problem instead of anything from the upstream.
    FailClosed(Problem),
}

/// How to filter a body.
#[derive(Debug, Clone)]
pub struct FilterSpec {
    pub rules: Arc<FieldRules>,
    pub framing: Framing,
    pub encoding: ContentEncoding,
    /// Send each chunk as soon as it is filtered (the headers are not held).
    pub streaming: bool,
}

/// The plan for a response, decided from its headers.
#[derive(Debug, Clone)]
pub struct ResponsePlan {
    pub remove_headers: Vec<String>,
    pub body: BodyPlan,
}
