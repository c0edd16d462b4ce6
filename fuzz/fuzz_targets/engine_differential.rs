//! The streaming engine against the plain serde_json reference model
//! (`finalite_test_support::reference`).
//!
//! Input: a policy from a small vocabulary (typed rules or not), the framing, the depth
//! limit, chunk sizes and a document (fuzz/src/case.rs). Checked:
//! - the engine gives the same result (output bytes, or the same error) whole and in the
//!   chunks the input asks for;
//! - both refuse, or both accept and the engine's output is valid JSON equal to the
//!   reference projection (members in order with duplicates, numbers as written);
//! - a purpose that keeps everything is compiled to no body rules at all (the proxy does
//!   not read the body): then the reference must leave any document it accepts unchanged.
//!
//! Intentional differences, handled explicitly:
//! - typed rules hold an object until its type member is read, up to 1 MiB, more than any
//!   document tried here: the reference does not model the limit;
//! - the engine's limits on one key (`MAX_KEY_BYTES`) and on a value to transform
//!   (`MAX_CAPTURE_BYTES`), both 64 KiB: larger inputs are skipped (libFuzzer's default
//!   `-max_len` is 4096 anyway);
//! - serde_json's recursion limit (128) is above every `max_depth` tried here (at most 64),
//!   so a document deep enough to hit it is refused by both;
//! - a purpose whose rules keep everything compiles to no body rules: the proxy passes the
//!   body unread, malformed or not, so only documents the reference accepts are compared;
//! - number spelling: `arbitrary_precision` rewrites `1E400` as `1e+400`, while the engine
//!   copies numbers as written and transforms their text: the reference reads each value's
//!   exact text (`raw_value`).
//!
//! Not differences: a byte order mark, lone surrogates (`"\ud800"`), invalid UTF-8 and raw
//! control characters in strings are refused by both (the lexer; serde_json when it decodes
//! a string or key), as the seeds show.

#![no_main]

use std::sync::Arc;

use finalite::json::{EngineError, Framing, JsonFilter};
use finalite::policy::rules::FieldRules;
use finalite::policy::transform::TransformContext;
use finalite::policy::CompiledConfig;
use finalite_fuzz::case::{Case, CLIENT, KEY};
use finalite_test_support::reference::{self, J};
use libfuzzer_sys::fuzz_target;

const LIMIT: usize = 60 * 1024;

fn run(
    rules: &Arc<FieldRules>,
    case: &Case,
    context: &TransformContext,
    chunks: &[&[u8]],
) -> Result<Vec<u8>, EngineError> {
    let framing = if case.lines {
        Framing::Lines
    } else {
        Framing::Single
    };
    let mut filter =
        JsonFilter::with_framing(rules.clone(), case.max_depth, context.clone(), framing);
    let mut out = Vec::new();
    for chunk in chunks {
        filter.write(chunk, &mut out)?;
    }
    filter.finish(&mut out)?;
    let stats = filter.stats();
    assert_eq!(stats.bytes_in, case.document.len() as u64);
    assert_eq!(stats.bytes_out, out.len() as u64);
    Ok(out)
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn blank(line: &[u8]) -> bool {
    line.iter().all(|b| matches!(b, b' ' | b'\t' | b'\r'))
}

/// The document parsed as is: each line, `None` for a blank one (one line unless NDJSON).
fn parse_body(case: &Case, body: &[u8]) -> Result<Vec<Option<J>>, String> {
    if case.lines {
        body.split(|&b| b == b'\n')
            .map(|line| {
                if blank(line) {
                    Ok(None)
                } else {
                    reference::parse(line).map(Some)
                }
            })
            .collect()
    } else {
        reference::parse(body).map(|j| vec![Some(j)])
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(case) = Case::decode(data) else {
        return;
    };
    if case.document.len() > LIMIT {
        return;
    }
    let config = CompiledConfig::load(&case.configuration(), &|name| {
        (name == "KEY").then(|| KEY.to_string())
    })
    .expect("every vocabulary policy loads");
    let purpose = &config.policies[0].purposes["f"];
    let context = config.transform_context(Some(CLIENT));

    let policy = case.policy();
    let expected: Result<Vec<Option<J>>, reference::Refused> = if case.lines {
        policy.project_lines(case.document, &context)
    } else {
        policy
            .project(case.document, &context)
            .map(|j| vec![Some(j)])
    };

    let Some(rules) = &purpose.body else {
        if let Ok(lines) = &expected {
            assert_eq!(
                Ok(lines),
                parse_body(&case, case.document).as_ref(),
                "rules {:?} compiled to `keeps everything` but change {:?}",
                case.rules,
                show(case.document)
            );
        }
        return;
    };

    let whole = run(rules, &case, &context, &[case.document]);
    let chunks = case.split();
    let chunked = run(rules, &case, &context, &chunks);
    assert_eq!(
        whole,
        chunked,
        "chunks {:?} change the result",
        chunks.iter().map(|c| c.len()).collect::<Vec<_>>()
    );

    match (&whole, &expected) {
        (Err(_), Err(_)) => {}
        (Ok(out), Ok(expected)) => {
            let actual = parse_body(&case, out)
                .unwrap_or_else(|e| panic!("the engine wrote invalid JSON {:?}: {e}", show(out)));
            // A blank output line is an empty one: the engine writes nothing for it.
            if case.lines {
                for (line, out_line) in actual.iter().zip(out.split(|&b| b == b'\n')) {
                    assert!(line.is_some() || out_line.is_empty(), "{:?}", show(out));
                }
            }
            assert_eq!(
                &actual,
                expected,
                "rules {:?} default keep {} on {:?}: the engine wrote {:?}",
                case.rules,
                case.default_keep,
                show(case.document),
                show(out)
            );
        }
        (Ok(out), Err(refused)) => panic!(
            "the engine accepted what the reference refuses ({}): {:?} -> {:?}",
            refused.0,
            show(case.document),
            show(out)
        ),
        (Err(error), Ok(expected)) => panic!(
            "the engine refused ({error}) what the reference accepts: {:?} -> {expected:?}",
            show(case.document),
        ),
    }
});
