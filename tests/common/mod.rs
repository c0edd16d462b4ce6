//! Shared by the JSON integration tests (`json_test_suite.rs`, `properties.rs`): the engine
//! run over chunks (the reference model it is compared with is
//! `finalite_test_support::reference`).

// Each test crate uses its own part of this module.
#![allow(dead_code)]

use std::sync::Arc;

use finalite::json::{EngineError, FilterStats, JsonFilter};
use finalite::policy::rules::FieldRules;
use finalite::policy::transform::TransformContext;

/// The depth limit the filter runs with by default (`limits.max_depth`).
pub fn max_depth() -> u32 {
    finalite::config::Limits::default().max_depth
}

/// Filters `doc` cut at `cuts` (ascending offsets); `Err` means refused, nothing sent.
pub fn run_cuts(
    rules: &Arc<FieldRules>,
    doc: &[u8],
    cuts: &[usize],
) -> Result<Vec<u8>, EngineError> {
    run_cuts_with_stats(rules, doc, cuts).0
}

/// [`run_cuts`], with what the filter reports for the audit.
pub fn run_cuts_with_stats(
    rules: &Arc<FieldRules>,
    doc: &[u8],
    cuts: &[usize],
) -> (Result<Vec<u8>, EngineError>, FilterStats) {
    let mut filter = JsonFilter::new(rules.clone(), max_depth(), TransformContext::default());
    let mut out = Vec::new();
    let mut last = 0;
    let mut result = Ok(());
    for &at in cuts.iter().chain(std::iter::once(&doc.len())) {
        let at = at.clamp(last, doc.len());
        result = filter.write(&doc[last..at], &mut out);
        last = at;
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        result = filter.finish(&mut out);
    }
    (result.map(|()| out), filter.stats().clone())
}

/// Filters `doc` in one chunk.
pub fn run_whole(rules: &Arc<FieldRules>, doc: &[u8]) -> Result<Vec<u8>, EngineError> {
    run_cuts(rules, doc, &[])
}

/// Filters `doc` fed one byte at a time.
pub fn run_bytewise(rules: &Arc<FieldRules>, doc: &[u8]) -> Result<Vec<u8>, EngineError> {
    let cuts: Vec<usize> = (1..doc.len()).collect();
    run_cuts(rules, doc, &cuts)
}

/// `doc` without the whitespace between tokens: what the engine writes when it rewrites
/// every container and keeps every scalar.
pub fn strip_whitespace(doc: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(doc.len());
    let (mut in_string, mut escaped) = (false, false);
    for &b in doc {
        if in_string {
            out.push(b);
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
        } else if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
            out.push(b);
            in_string = b == b'"';
        }
    }
    out
}
