//! What the core tells the adapter to do: the verdict on a request and the plan for its
//! response. The refusals it answers on its own are the catalogue of the private `denial`
//! module, re-exported here.

use std::sync::Arc;

use crate::json::Framing;
use crate::media_type::ContentEncoding;
use crate::policy::fhir::SmartAccess;
use crate::policy::rules::FieldRules;

/// The refusal catalogue, defined privately in `denial`: callers outside the crate name it from here.
pub use crate::denial::{Denial, DenialKind, Problem};

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
    /// On a policy that enforces SMART scopes: what the caller's token grants, which the
    /// response is checked against resource by resource.
    pub smart: Option<Arc<SmartAccess>>,
}

/// Request headers removed before the request goes upstream: the filter reads whole,
/// uncompressed documents.
pub const REQUEST_HEADERS_TO_REMOVE: &[&str] = &["accept-encoding", "range"];

/// The validators of a conditional request, removed before it goes upstream when the purpose
/// filters the body: the upstream would compare them with its own, unfiltered bytes, and its
/// 304 or 412 would tell the reuser whether a guess of the withheld fields was right.
pub const CONDITIONAL_HEADERS: &[&str] = &[
    "if-none-match",
    "if-match",
    "if-range",
    "if-modified-since",
    "if-unmodified-since",
];

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
    pub delivery: Delivery,
    /// Under SMART scopes: the caller's grants, enforced on every resource of the body.
    pub smart: Option<Arc<SmartAccess>>,
}

/// How a filtered body reaches the client, and so what a failure can still do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// The response headers wait until the whole body is filtered, so that a failure can
    /// still become a clean 502; the body is held whole, within `limits.max_body_bytes`.
    Buffered,
    /// Each chunk is filtered and sent at once (large exports): the body is never held
    /// whole, and a failure can only reset the stream.
    Streamed,
    /// Dry run: each chunk is filtered to be measured, and passed on unchanged; a failure
    /// is recorded, never enforced. `streamed` is how enforcement would deliver the body,
    /// whose size limit the measure keeps, so that it fails where enforcement would.
    Measured { streamed: bool },
}

impl Delivery {
    /// Whether the response headers are held until the body is filtered.
    pub fn holds_headers(self) -> bool {
        self == Delivery::Buffered
    }

    /// Whether each chunk is replaced by its filtered bytes as it passes.
    pub fn replaces_chunks(self) -> bool {
        self == Delivery::Streamed
    }

    /// What a failure of the body does.
    pub fn on_failure(self) -> FailureEffect {
        match self {
            Delivery::Buffered => FailureEffect::Replace,
            Delivery::Streamed => FailureEffect::Reset,
            Delivery::Measured { .. } => FailureEffect::Record,
        }
    }

    /// The most bytes, encoded or decoded, the body may have. A buffered body is held whole
    /// (by the filter, and by the host before it), so it is bounded; a streamed one is
    /// handed on chunk by chunk and never held, so it is not.
    pub fn size_limit(self, max_body_bytes: u64) -> u64 {
        match self {
            Delivery::Buffered | Delivery::Measured { streamed: false } => max_body_bytes,
            Delivery::Streamed | Delivery::Measured { streamed: true } => u64::MAX,
        }
    }
}

/// What a failure to filter a response does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureEffect {
    /// Nothing of the response has gone out: the problem is answered instead (a 502).
    Replace,
    /// The headers, and maybe filtered chunks, have gone out: the stream is reset, so that
    /// the client never takes a cut body for a complete one.
    Reset,
    /// Dry run: the failure is recorded, the upstream response goes on unchanged.
    Record,
}

/// The plan for a response, decided from its headers.
#[derive(Debug, Clone)]
pub struct ResponsePlan {
    /// Response headers to remove (none in a dry run, which changes nothing).
    pub remove_headers: Vec<String>,
    /// Response headers to set, replacing every value the upstream gave (none in a dry run).
    pub set_headers: Vec<(&'static str, String)>,
    pub body: BodyPlan,
    /// What [`BodyPlan::FailClosed`] does: replace the response, or record the failure in
    /// a dry run.
    pub on_failure: FailureEffect,
}
