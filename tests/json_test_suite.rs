//! Conformance with the JSONTestSuite (`test_parsing/`, Nicolas Seriot's "Parsing JSON is a
//! Minefield"), read from `../shared/testdata/JSONTestSuite/test_parsing/` next to the crate.
//!
//! Every file goes through the engine under two policies, in one chunk and one byte at a
//! time (the two must agree exactly, output or error):
//! - *keep-all*: `default: keep` plus `**.__never__: drop`, a rule that names nothing but
//!   makes the engine open and rewrite every container, so it really parses everything;
//! - *drop-most*: `default: drop` with a few rules that keep or null some of the suite's keys.
//!
//! `y_` files must be accepted, `n_` refused, `i_` either: the engine's choice for each `i_`
//! file is asserted against [`I_DECISIONS`] and written to `tests/json_test_suite_i_cases.md`
//! (`FINALITE_WRITE_I_TABLE=1 cargo test --test json_test_suite` regenerates it; without the
//! variable, the test fails when the committed table is stale). An accepted document's output
//! must parse with serde_json and equal the reference projection (`finalite_test_support::reference`)
//! of the input as serde_json parses it; under keep-all, the output is also exactly the input
//! without the whitespace between tokens. A refused document's output is discarded by the
//! caller (the filter's contract), so only the refusal is checked.
//!
//! serde_json (into a `Value`) does not decide every file as the engine does; each such file
//! is listed, with the reason, in [`SERDE_DIFFERENCES`], and the test fails on any other.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use common::{max_depth, run_bytewise, run_cuts, run_whole, strip_whitespace};
use finalite::json::{EngineError, ErrorKind};
use finalite_test_support::reference::{Act, Policy};
use serde_json::Value;

const SUITE: &str = "../shared/testdata/JSONTestSuite/test_parsing";
const I_TABLE: &str = "tests/json_test_suite_i_cases.md";
const WRITE_TABLE: &str = "FINALITE_WRITE_I_TABLE";

/// The engine's decision on each `i_` file: `None` accepted, `Some(kind)` refused with that
/// `ErrorKind` variant. A change here is a change of behaviour: update the table too.
const I_DECISIONS: &[(&str, Option<&str>)] = &[
    ("i_number_double_huge_neg_exp.json", None),
    ("i_number_huge_exp.json", None),
    ("i_number_neg_int_huge_exp.json", None),
    ("i_number_pos_double_huge_exp.json", None),
    ("i_number_real_neg_overflow.json", None),
    ("i_number_real_pos_overflow.json", None),
    ("i_number_real_underflow.json", None),
    ("i_number_too_big_neg_int.json", None),
    ("i_number_too_big_pos_int.json", None),
    ("i_number_very_big_negative_int.json", None),
    (
        "i_object_key_lone_2nd_surrogate.json",
        Some("LoneSurrogate"),
    ),
    (
        "i_string_1st_surrogate_but_2nd_missing.json",
        Some("LoneSurrogate"),
    ),
    (
        "i_string_1st_valid_surrogate_2nd_invalid.json",
        Some("LoneSurrogate"),
    ),
    ("i_string_UTF-16LE_with_BOM.json", Some("Unexpected")),
    ("i_string_UTF-8_invalid_sequence.json", Some("InvalidUtf8")),
    ("i_string_UTF8_surrogate_U+D800.json", Some("InvalidUtf8")),
    (
        "i_string_incomplete_surrogate_and_escape_valid.json",
        Some("LoneSurrogate"),
    ),
    (
        "i_string_incomplete_surrogate_pair.json",
        Some("LoneSurrogate"),
    ),
    (
        "i_string_incomplete_surrogates_escape_valid.json",
        Some("LoneSurrogate"),
    ),
    (
        "i_string_invalid_lonely_surrogate.json",
        Some("LoneSurrogate"),
    ),
    ("i_string_invalid_surrogate.json", Some("LoneSurrogate")),
    ("i_string_invalid_utf-8.json", Some("InvalidUtf8")),
    (
        "i_string_inverted_surrogates_U+1D11E.json",
        Some("LoneSurrogate"),
    ),
    ("i_string_iso_latin_1.json", Some("InvalidUtf8")),
    ("i_string_lone_second_surrogate.json", Some("LoneSurrogate")),
    (
        "i_string_lone_utf8_continuation_byte.json",
        Some("InvalidUtf8"),
    ),
    ("i_string_not_in_unicode_range.json", Some("InvalidUtf8")),
    (
        "i_string_overlong_sequence_2_bytes.json",
        Some("InvalidUtf8"),
    ),
    (
        "i_string_overlong_sequence_6_bytes.json",
        Some("InvalidUtf8"),
    ),
    (
        "i_string_overlong_sequence_6_bytes_null.json",
        Some("InvalidUtf8"),
    ),
    ("i_string_truncated-utf-8.json", Some("InvalidUtf8")),
    // UTF-16 and a BOM: the first byte is not JSON (RFC 8259 section 8.1: UTF-8, no BOM).
    ("i_string_utf16BE_no_BOM.json", Some("Unexpected")),
    ("i_string_utf16LE_no_BOM.json", Some("Unexpected")),
    // Deeper than the default limit of 64.
    ("i_structure_500_nested_arrays.json", Some("TooDeep")),
    (
        "i_structure_UTF-8_BOM_empty_object.json",
        Some("Unexpected"),
    ),
];

/// Files that serde_json, parsing into a `Value`, decides differently from the engine.
/// `(file, reason, expected drop-most output)`: when the engine accepts what serde_json
/// refuses, the reference cannot be computed and the drop-most output is given here instead.
const SERDE_DIFFERENCES: &[(&str, &str, Option<&str>)] = &[
    ("i_number_huge_exp.json", HUGE, Some("[]")),
    ("i_number_neg_int_huge_exp.json", HUGE, Some("[]")),
    ("i_number_pos_double_huge_exp.json", HUGE, Some("[]")),
    ("i_number_real_neg_overflow.json", HUGE, Some("[]")),
    ("i_number_real_pos_overflow.json", HUGE, Some("[]")),
];

/// Why serde_json refuses a number the engine accepts.
const HUGE: &str = "a number beyond the range of f64: serde_json refuses it, the grammar allows it and the engine copies it verbatim";

fn keep_all() -> Policy {
    Policy::new(Act::Keep, &[("**.__never__", Act::Drop)])
}

fn drop_most() -> Policy {
    Policy::new(
        Act::Drop,
        &[
            ("a", Act::Keep),
            ("**.id", Act::Keep),
            ("min", Act::Keep),
            ("asd", Act::Null),
        ],
    )
}

fn suite_files() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(SUITE);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| {
        panic!(
            "the JSONTestSuite is missing at {} ({e}); this test does not skip",
            dir.display()
        )
    });
    let mut files: Vec<(String, Vec<u8>)> = entries
        .map(|entry| {
            let path: PathBuf = entry.expect("directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = std::fs::read(&path).expect("readable test file");
            (name, bytes)
        })
        .filter(|(name, _)| name.ends_with(".json"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 300,
        "only {} files in {}: the JSONTestSuite is incomplete",
        files.len(),
        dir.display()
    );
    files
}

/// The variant name of an error kind (`LoneSurrogate`, `TooDeep`, ...).
fn variant(error: &EngineError) -> String {
    let debug = match &error.kind {
        ErrorKind::Lex(kind) => format!("{kind:?}"),
        kind => format!("{kind:?}"),
    };
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or_default()
        .to_string()
}

/// One line of the `i_` table.
struct IRow {
    name: String,
    bytes: Vec<u8>,
    engine: Result<(), EngineError>,
    /// serde_json parsing into a `Value`.
    serde: Result<(), String>,
    /// serde_json validating only (`IgnoredAny`).
    serde_validates: bool,
}

/// What the engine decided on one file, under every policy and chunking.
struct Decision {
    /// `Ok`: outputs under keep-all and drop-most.
    result: Result<(Vec<u8>, Vec<u8>), EngineError>,
}

fn decide(name: &str, bytes: &[u8], problems: &mut Vec<String>) -> Decision {
    let mut outputs = Vec::new();
    let mut error: Option<EngineError> = None;
    for policy in [keep_all(), drop_most()] {
        let rules = policy.compile();
        let whole = run_whole(&rules, bytes);
        let bytewise = run_bytewise(&rules, bytes);
        if whole != bytewise {
            problems.push(format!(
                "{name} ({policy}): one chunk gives {whole:?}, one byte at a time {bytewise:?}"
            ));
        }
        match whole {
            Ok(out) => outputs.push(out),
            Err(e) => {
                if let Some(first) = &error {
                    if *first != e {
                        problems.push(format!(
                            "{name}: refused differently under {policy}: {e} vs {first}"
                        ));
                    }
                }
                error = Some(e);
            }
        }
    }
    let result = match (error, outputs.len()) {
        (None, 2) => Ok((outputs.remove(0), outputs.remove(0))),
        (Some(e), 0) => Err(e),
        (Some(e), _) => {
            problems.push(format!("{name}: accepted under one policy only ({e})"));
            Err(e)
        }
        _ => unreachable!(),
    };
    Decision { result }
}

fn parse_output(name: &str, label: &str, out: &[u8], problems: &mut Vec<String>) -> Option<Value> {
    match serde_json::from_slice::<Value>(out) {
        Ok(v) => Some(v),
        Err(e) => {
            problems.push(format!(
                "{name} ({label}): output does not parse ({e}): {}",
                String::from_utf8_lossy(out)
            ));
            None
        }
    }
}

/// Every file once more where the filter skims it (the value of a dropped member; an element
/// of a member kept whole, copied as spelled): skimming reads only what no rule concerns, and
/// must refuse exactly what reading every token refuses, at the same offset and path and for
/// the same reason, in one chunk and cut in the middle.
#[test]
fn skimmed_files_are_decided_as_read_ones() {
    let read_all = keep_all().compile();
    let dropped = Policy::new(Act::Drop, &[("id", Act::Keep)]).compile();
    let copied = Policy::new(Act::Drop, &[("kept", Act::Keep)]).compile();
    let wrappings: [(&[u8], &[u8], _); 2] = [
        (b"{\"skip\":", b",\"id\":1}", &dropped),
        (b"{\"kept\":[", b"]}", &copied),
    ];
    for (name, bytes) in suite_files() {
        for (before, after, skimming) in &wrappings {
            let doc = [*before, &bytes[..], *after].concat();
            let read = run_whole(&read_all, &doc).map(drop);
            for cuts in [&[][..], &[doc.len() / 2]] {
                let skimmed = run_cuts(skimming, &doc, cuts).map(drop);
                let shown = |r: &Result<(), EngineError>| {
                    r.as_ref()
                        .map_err(|e| (e.offset, e.path.clone(), e.kind.to_string()))
                        .err()
                };
                assert_eq!(
                    shown(&skimmed),
                    shown(&read),
                    "{name} as {}, cut at {cuts:?}",
                    String::from_utf8_lossy(before)
                );
            }
        }
    }
}

#[test]
fn json_test_suite() {
    let files = suite_files();
    let mut problems: Vec<String> = Vec::new();
    let mut i_rows: Vec<IRow> = Vec::new();
    let mut i_found: Vec<(String, Option<String>)> = Vec::new();
    let mut serde_found: Vec<String> = Vec::new();
    let (keep, drop) = (keep_all(), drop_most());

    for (name, bytes) in &files {
        let decision = decide(name, bytes, &mut problems);
        let serde = serde_json::from_slice::<Value>(bytes);
        let serde_validates = serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok();
        let difference = SERDE_DIFFERENCES.iter().find(|d| d.0 == name);
        if decision.result.is_ok() != serde.is_ok() {
            serde_found.push(name.clone());
            if difference.is_none() {
                problems.push(format!(
                    "{name}: engine {}, serde_json {}; not listed in SERDE_DIFFERENCES",
                    if decision.result.is_ok() {
                        "accepts"
                    } else {
                        "refuses"
                    },
                    match &serde {
                        Ok(_) => "accepts".to_string(),
                        Err(e) => format!("refuses ({e})"),
                    }
                ));
            }
        }

        match name.split('_').next() {
            Some("y") if decision.result.is_err() => problems.push(format!(
                "{name}: must be accepted, refused: {:?}",
                decision.result
            )),
            Some("n") if decision.result.is_ok() => {
                problems.push(format!("{name}: must be refused, accepted"))
            }
            Some("i") => {
                i_found.push((name.clone(), decision.result.as_ref().err().map(variant)));
                i_rows.push(IRow {
                    name: name.clone(),
                    bytes: bytes.clone(),
                    engine: decision.result.as_ref().map(|_| ()).map_err(Clone::clone),
                    serde: serde.as_ref().map(|_| ()).map_err(|e| e.to_string()),
                    serde_validates,
                });
            }
            Some("y" | "n") => {}
            _ => problems.push(format!("{name}: not a y_, n_ or i_ file")),
        }

        let Ok((kept, dropped)) = &decision.result else {
            continue;
        };
        if *kept != strip_whitespace(bytes) {
            problems.push(format!(
                "{name} (keep-all): output {:?} is not the input without whitespace",
                String::from_utf8_lossy(kept)
            ));
        }
        match &serde {
            Ok(input) => {
                let kept_value = parse_output(name, "keep-all", kept, &mut problems);
                let dropped_value = parse_output(name, "drop-most", dropped, &mut problems);
                if keep.project_value(input) != *input {
                    problems.push(format!("{name}: the reference does not keep all"));
                }
                if kept_value.as_ref().is_some_and(|v| v != input) {
                    problems.push(format!(
                        "{name} (keep-all): output {kept_value:?}, input {input:?}"
                    ));
                }
                let expected = drop.project_value(input);
                if dropped_value.as_ref().is_some_and(|v| *v != expected) {
                    problems.push(format!(
                        "{name} (drop-most): output {dropped_value:?}, reference {expected:?}"
                    ));
                }
            }
            // serde_json cannot read the input, nor the keep-all output (checked above
            // against the input itself); the drop-most output is given.
            Err(_) => match difference {
                Some((_, _, Some(expected))) => {
                    if dropped.as_slice() != expected.as_bytes() {
                        problems.push(format!(
                            "{name} (drop-most): output {:?}, expected {expected:?}",
                            String::from_utf8_lossy(dropped)
                        ));
                    }
                }
                _ => problems.push(format!(
                    "{name}: accepted where serde_json refuses, and no drop-most output is listed"
                )),
            },
        }
    }

    for (name, ..) in SERDE_DIFFERENCES {
        if !serde_found.contains(&name.to_string()) {
            problems.push(format!(
                "SERDE_DIFFERENCES lists {name}, which agrees (or is gone)"
            ));
        }
    }
    let expected: Vec<(String, Option<String>)> = I_DECISIONS
        .iter()
        .map(|(n, k)| (n.to_string(), k.map(str::to_string)))
        .collect();
    if i_found != expected {
        let mut listing = String::new();
        for (name, kind) in &i_found {
            let _ = writeln!(listing, "    ({name:?}, {kind:?}),");
        }
        problems.push(format!(
            "the i_ decisions changed; if intended, I_DECISIONS is now:\n{listing}"
        ));
    }

    let table = i_table(&i_rows);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(I_TABLE);
    if std::env::var_os(WRITE_TABLE).is_some_and(|v| v == "1") {
        std::fs::write(&path, &table).expect("write the i_ table");
    } else if std::fs::read_to_string(&path).ok().as_deref() != Some(table.as_str()) {
        problems.push(format!(
            "{I_TABLE} is missing or stale: regenerate it with {WRITE_TABLE}=1 cargo test --test json_test_suite"
        ));
    }

    assert!(
        problems.is_empty(),
        "{} problem(s) over {} files:\n{}",
        problems.len(),
        files.len(),
        problems.join("\n")
    );
}

/// A short, Markdown-safe rendering of a test file's bytes.
fn preview(bytes: &[u8]) -> String {
    const LIMIT: usize = 32;
    let mut text = String::new();
    for &b in bytes.iter().take(LIMIT) {
        match b {
            b'|' | b'`' | b'\\' => {
                let _ = write!(text, "\\x{b:02x}");
            }
            0x20..=0x7e => text.push(b as char),
            _ => {
                let _ = write!(text, "\\x{b:02x}");
            }
        }
    }
    if bytes.len() > LIMIT {
        let _ = write!(text, "… ({} bytes)", bytes.len());
    }
    // `\\x5c` is a backslash: keep it readable inside a code span.
    format!("`{}`", text.replace("\\x5c", "\\"))
}

fn i_table(rows: &[IRow]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# JSONTestSuite: the engine's choices on the `i_` (implementation-defined) files\n\n\
         Generated by `tests/json_test_suite.rs` \
         (`{WRITE_TABLE}=1 cargo test --test json_test_suite`); do not edit by hand. \
         The engine runs with the default depth limit ({}); every other file of the suite \
         is decided as the suite requires (`y_` accepted, `n_` refused). Bytes are shown as \
         ASCII with `\\xNN` for the others. The last two columns are serde_json's decisions, \
         parsing into a `serde_json::Value` and only validating (`IgnoredAny`).\n",
        max_depth()
    );
    let accepted = rows.iter().filter(|r| r.engine.is_ok()).count();
    let _ = writeln!(
        out,
        "{accepted} of {} accepted, {} refused.\n",
        rows.len(),
        rows.len() - accepted
    );
    let _ = writeln!(
        out,
        "| File | Input | finalite | Why | serde_json → `Value` | serde_json, validation only |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|");
    for row in rows {
        let name = &row.name;
        let (decision, why) = match &row.engine {
            Ok(()) => ("accepted", String::new()),
            Err(e) => ("**refused**", format!("{} (byte {})", e.kind, e.offset)),
        };
        let mut serde = match &row.serde {
            Ok(()) => "accepted".to_string(),
            Err(e) => format!("refused: {e}"),
        };
        if let Some((_, reason, _)) = SERDE_DIFFERENCES.iter().find(|d| d.0 == name) {
            let _ = write!(serde, " ({reason})");
        }
        let validates = if row.serde_validates {
            "accepted"
        } else {
            "refused"
        };
        let _ = writeln!(
            out,
            "| `{name}` | {} | {decision} | {} | {} | {validates} |",
            preview(&row.bytes),
            why.replace('|', "\\|"),
            serde.replace('|', "\\|")
        );
    }
    out
}
