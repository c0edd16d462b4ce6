//! What the core tells the adapter to do: the verdict on a request and the plan for its
//! response. The refusals it answers on its own are the catalogue in [`crate::denial`].

use std::sync::Arc;

use crate::body::ContentEncoding;
use crate::json::Framing;
use crate::policy::rules::FieldRules;

/// Where refusals were first defined; callers outside the crate name them from here too.
pub use crate::denial::{Denial, Problem};

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
