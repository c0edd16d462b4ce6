//! Property tests of the streaming engine (proptest):
//!
//! - (a) split invariance: cut at every single point, at random multi-chunk splits and
//!   into single bytes, a document (valid or corrupted) gives exactly what it gives in one
//!   chunk: the same output and statistics, or the same error at the same offset;
//! - (b) no dropped key ever shows: documents with `ssn` keys spelled with random `\uXXXX`
//!   escapes of their letters, at random depths and inside arrays, under `**.ssn: drop`:
//!   no key of the output decodes to `ssn` and the planted canary never appears;
//! - (c) the output is always JSON when the input is (random values written compact, pretty
//!   and with random spellings: whitespace, escapes), under random policies;
//! - (d) differential: the output, parsed, equals the plain reference projection
//!   (`finalite_test_support::reference`) of the input;
//! - (e) the policy never changes what is refused: the filter refuses a (corrupted)
//!   document exactly when the plain lexer does, with the same offset, path and reason,
//!   though it skims the subtrees it drops or copies whole;
//! - (f) many entries are filtered and counted as each entry alone: an object repeated 65 to
//!   90 times in an array (spelled anew each time) gives each copy's own output and counts
//!   linear in the number of copies, past the thresholds where the filter starts its step
//!   cache and its counters' memo of fields met before;
//! - (g) typed rules: the reference projection at every split, whatever the member order;
//! - (h) SMART scopes: Bundles of resources (nested Bundles, `contained`, the type member
//!   anywhere, escaped spellings) under patient, user and granular scopes give the same
//!   output and the same withheld counts at every split, and whatever the member order;
//!   everything sent is granted (checked by an oracle that reads the output with
//!   serde_json), no Bundle shows its `total`, and the response is refused exactly when
//!   its root resource is not granted.
//!
//! The case counts are kept small so `cargo test` stays fast; `FINALITE_PROPTEST_CASES=N`
//! runs N cases of each property (e.g. 10000 before a release).

mod common;

use std::sync::Arc;

use common::{run_bytewise, run_cuts, run_cuts_with_stats, run_whole};
use finalite::json::lexer::Lexer;
use finalite::json::tally::PathTally;
use finalite::json::EngineError;
use finalite::policy::rules::FieldRules;
use finalite_test_support::reference::{self, Act, Policy, TypeSpec};
use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Map, Value};

const CASES_ENV: &str = "FINALITE_PROPTEST_CASES";

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var(CASES_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------
// Generators

/// Object keys: mostly the vocabulary of the policies, sometimes anything awkward.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "c", "id", "ssn", "x", ""]).prop_map(str::to_string),
        1 => r#"[a-z\x00-\x1f"\\/ é€😀]{0,4}"#,
    ]
}

/// String values: no capital letters, so that only the canary can spell `CANARY`.
fn text() -> impl Strategy<Value = String> {
    r#"[a-z0-9 \x00-\x1f"\\/é€😀\u{2028}]{0,8}"#
}

/// Numbers whose text survives a round trip through `f64`, so a transform of the number's
/// text can be predicted from the parsed value.
fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-100_000i64..100_000).prop_map(|n| Value::from(n as f64 / 64.0)),
    ]
}

fn value_sized(depth: u32, size: u32, items: u32) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(depth, size, items, move |inner| {
        let items = items as usize;
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..items).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..items)
                .prop_map(|members| Value::Object(members.into_iter().collect())),
        ]
    })
}

fn value() -> impl Strategy<Value = Value> {
    value_sized(5, 48, 6)
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        Just(Act::Keep),
        Just(Act::Drop),
        Just(Act::Null),
        Just(Act::Truncate(2)),
        Just(Act::Mask(1)),
    ]
}

/// Paths of one to three segments from a small vocabulary, wildcards included.
fn path() -> impl Strategy<Value = String> {
    // Weighted so that several rules of a policy often reach the same fields.
    let segment = prop_oneof![
        3 => Just("a"),
        1 => Just("b"),
        1 => Just("id"),
        1 => Just("ssn"),
        2 => Just("*"),
        2 => Just("**"),
    ];
    joined(segment)
}

/// One to three segments joined into a path, without `**.**`.
fn joined(segment: impl Strategy<Value = &'static str>) -> impl Strategy<Value = String> {
    prop::collection::vec(segment, 1..=3).prop_map(|mut segments| {
        segments.dedup_by(|a, b| *a == "**" && *b == "**");
        segments.join(".")
    })
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop_oneof![Just(Act::Keep), Just(Act::Drop)],
        prop::collection::vec((path(), act()), 0..5),
    )
        .prop_map(|(default, rules)| {
            let mut policy = Policy::new(default, &[]);
            for (path, act) in rules {
                policy.push(&path, act);
            }
            policy
        })
}

/// How a value is written out.
#[derive(Debug, Clone)]
enum Style {
    Compact,
    Pretty,
    /// Random whitespace between tokens, random escapes in strings (seeded).
    Respelled(u64),
}

fn style() -> impl Strategy<Value = Style> {
    prop_oneof![
        Just(Style::Compact),
        Just(Style::Pretty),
        any::<u64>().prop_map(Style::Respelled),
    ]
}

fn write(value: &Value, style: &Style) -> Vec<u8> {
    match style {
        Style::Compact => serde_json::to_vec(value).unwrap(),
        Style::Pretty => serde_json::to_vec_pretty(value).unwrap(),
        Style::Respelled(seed) => {
            let mut writer = Respeller {
                rng: Rng(*seed),
                out: String::new(),
                literal: None,
            };
            writer.document(value);
            writer.out.into_bytes()
        }
    }
}

/// A damaged copy of a document, to check that refusals too ignore chunk boundaries.
#[derive(Debug, Clone)]
enum Damage {
    None,
    Truncate(Index),
    Replace(Index, u8),
    Insert(Index, u8),
}

fn damage() -> impl Strategy<Value = Damage> {
    let byte = prop::sample::select(vec![
        b'"', b'\\', b'{', b'}', b'[', b']', b',', b':', b'u', b'0', b'-', b'e', b' ', b'\n', 0x00,
        0x80, 0xc3, 0xed, 0xff,
    ]);
    prop_oneof![
        2 => Just(Damage::None),
        1 => any::<Index>().prop_map(Damage::Truncate),
        1 => (any::<Index>(), byte.clone()).prop_map(|(i, b)| Damage::Replace(i, b)),
        1 => (any::<Index>(), byte).prop_map(|(i, b)| Damage::Insert(i, b)),
    ]
}

fn apply(damage: &Damage, mut doc: Vec<u8>) -> Vec<u8> {
    let len = doc.len();
    match damage {
        Damage::None => {}
        Damage::Truncate(i) => doc.truncate(i.index(len + 1)),
        Damage::Replace(i, b) if len > 0 => doc[i.index(len)] = *b,
        Damage::Replace(..) => {}
        Damage::Insert(i, b) => doc.insert(i.index(len + 1), *b),
    }
    doc
}

/// SplitMix64: a seeded, reproducible stream of choices.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn one_in(&mut self, n: u64) -> bool {
        self.below(n) == 0
    }
}

/// Writes JSON with every spelling RFC 8259 allows for the same value (numbers excepted:
/// they are written as serde_json writes them).
struct Respeller {
    rng: Rng,
    out: String,
    /// A string value written exactly as is (the canary), so a leak shows in the bytes.
    literal: Option<String>,
}

impl Respeller {
    fn document(&mut self, value: &Value) {
        self.space();
        self.value(value);
        self.space();
    }

    fn space(&mut self) {
        if self.rng.one_in(3) {
            for _ in 0..=self.rng.below(3) {
                let c = [' ', '\t', '\n', '\r'][self.rng.below(4) as usize];
                self.out.push(c);
            }
        }
    }

    fn value(&mut self, value: &Value) {
        match value {
            Value::Null => self.out.push_str("null"),
            Value::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Value::Number(n) => self.out.push_str(&n.to_string()),
            Value::String(s) if self.literal.as_deref() == Some(s.as_str()) => {
                self.out.push_str(&serde_json::to_string(s).unwrap())
            }
            Value::String(s) => self.string(s, 4),
            Value::Array(items) => {
                self.out.push('[');
                self.space();
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                        self.space();
                    }
                    self.value(item);
                    self.space();
                }
                self.out.push(']');
            }
            Value::Object(map) => {
                self.out.push('{');
                self.space();
                for (i, (key, member)) in map.iter().enumerate() {
                    if i > 0 {
                        self.out.push(',');
                        self.space();
                    }
                    // The key under test gets its letters escaped more often.
                    self.string(key, if key == "ssn" { 2 } else { 4 });
                    self.space();
                    self.out.push(':');
                    self.space();
                    self.value(member);
                    self.space();
                }
                self.out.push('}');
            }
        }
    }

    /// A string; each character that need not be escaped is escaped one time in `one_in`.
    fn string(&mut self, s: &str, one_in: u64) {
        self.out.push('"');
        for c in s.chars() {
            let short = match c {
                '"' => Some("\\\""),
                '\\' => Some("\\\\"),
                '/' => Some("\\/"),
                '\u{8}' => Some("\\b"),
                '\u{c}' => Some("\\f"),
                '\n' => Some("\\n"),
                '\r' => Some("\\r"),
                '\t' => Some("\\t"),
                _ => None,
            };
            let must = c == '"' || c == '\\' || c < ' ';
            if !must && !self.rng.one_in(one_in) {
                self.out.push(c);
            } else if let Some(short) = short.filter(|_| self.rng.one_in(2)) {
                self.out.push_str(short);
            } else {
                let upper = self.rng.one_in(2);
                let mut units = [0u16; 2];
                for &mut unit in c.encode_utf16(&mut units) {
                    if upper {
                        self.out.push_str(&format!("\\u{unit:04X}"));
                    } else {
                        self.out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
            }
        }
        self.out.push('"');
    }
}

/// Cut points for a document of `len` bytes.
fn cuts(indices: &[Index], len: usize) -> Vec<usize> {
    let mut cuts: Vec<usize> = indices.iter().map(|i| i.index(len + 1)).collect();
    cuts.sort_unstable();
    cuts
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---------------------------------------------------------------------------------------
// (a) Split invariance

proptest! {
    #![proptest_config(config(48))]

    #[test]
    fn every_split_gives_the_output_of_one_chunk(
        value in value_sized(4, 24, 5),
        style in style(),
        damage in damage(),
        policy in policy(),
        random_cuts in prop::collection::vec(prop::collection::vec(any::<Index>(), 1..12), 4),
    ) {
        let doc = apply(&damage, write(&value, &style));
        let rules = policy.compile();
        let (whole, whole_stats) = run_cuts_with_stats(&rules, &doc, &[]);
        for at in 0..=doc.len() {
            let (split, stats) = run_cuts_with_stats(&rules, &doc, &[at]);
            prop_assert_eq!(&split, &whole, "split at {} of {:?} ({})", at, show(&doc), policy);
            if whole.is_ok() {
                prop_assert_eq!(&stats, &whole_stats, "stats, split at {}", at);
            }
        }
        let bytewise: Vec<usize> = (1..doc.len()).collect();
        for cuts in random_cuts.iter().map(|i| cuts(i, doc.len())).chain([bytewise]) {
            let (split, stats) = run_cuts_with_stats(&rules, &doc, &cuts);
            prop_assert_eq!(&split, &whole, "cuts {:?} of {:?} ({})", cuts, show(&doc), policy);
            if whole.is_ok() {
                prop_assert_eq!(&stats, &whole_stats, "stats, cuts {:?}", cuts);
            }
        }
    }
}

/// The plain lexer's verdict on `doc` in one chunk: every event read, nothing skimmed.
fn lex_all(doc: &[u8]) -> Result<(), EngineError> {
    let mut lexer = Lexer::new(common::max_depth());
    let mut pos = 0;
    while lexer.next(doc, &mut pos)?.is_some() {}
    lexer.end_chunk(doc.len());
    while lexer.finish()?.is_some() {}
    Ok(())
}

proptest! {
    #![proptest_config(config(96))]

    /// A policy decides what is written, never what is accepted: whatever the filter skims
    /// (dropped subtrees, subtrees copied whole), it refuses a document exactly when the
    /// plain lexer does, with the same offset, path and reason.
    #[test]
    fn refusals_do_not_depend_on_the_policy(
        value in value_sized(4, 24, 5),
        style in style(),
        damage in damage(),
        policy in policy(),
        indices in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let doc = apply(&damage, write(&value, &style));
        let expected = lex_all(&doc);
        let rules = policy.compile();
        for cuts in [Vec::new(), cuts(&indices, doc.len())] {
            let got = run_cuts(&rules, &doc, &cuts).map(|_| ());
            prop_assert_eq!(
                &got, &expected, "cuts {:?} of {:?} ({})", cuts, show(&doc), policy
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// (b) No dropped key in the output, whatever its spelling

const CANARY: &str = "CANARY-4f1d";

fn canary() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(CANARY)),
        Just(json!({ "v": CANARY })),
        Just(json!([1, CANARY])),
        Just(json!({ "ssn": CANARY, "x": [{ "v": CANARY }] })),
    ]
}

/// Every value held by an `ssn` key becomes the canary.
fn plant(value: Value, canary: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if k == "ssn" {
                        canary.clone()
                    } else {
                        plant(v, canary)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| plant(v, canary)).collect()),
        scalar => scalar,
    }
}

/// One level around the planted object: an array (the object at some position among
/// fillers) or an object (the object under some key, next to siblings).
fn wrapper() -> impl Strategy<Value = (bool, String, usize, Value)> {
    (any::<bool>(), key(), 0usize..3, value_sized(2, 6, 3))
}

fn ssn_document() -> impl Strategy<Value = Value> {
    (
        value_sized(4, 24, 5),
        prop::collection::vec(wrapper(), 0..7),
        canary(),
    )
        .prop_map(|(base, wrappers, canary)| {
            let mut doc = Map::new();
            doc.insert("ssn".into(), canary.clone());
            doc.insert("a".into(), plant(base, &canary));
            let mut doc = Value::Object(doc);
            for (array, key, position, sibling) in wrappers {
                let sibling = plant(sibling, &canary);
                doc = if array {
                    let mut items = vec![sibling; position];
                    items.push(doc);
                    items.push(Value::Null);
                    Value::Array(items)
                } else {
                    let mut map = Map::new();
                    map.insert("b".into(), sibling);
                    map.insert(key, doc);
                    Value::Object(map)
                };
            }
            doc
        })
}

fn no_ssn_no_canary(value: &Value) -> Result<(), String> {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == "ssn" {
                    return Err(format!("key ssn in the output: {value}"));
                }
                no_ssn_no_canary(v)?;
            }
            Ok(())
        }
        Value::Array(items) => items.iter().try_for_each(no_ssn_no_canary),
        Value::String(s) if s.contains("CANARY") => Err(format!("canary in the output: {s}")),
        _ => Ok(()),
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn no_dropped_key_under_any_spelling(
        doc in ssn_document(),
        seed in any::<u64>(),
        deny in any::<bool>(),
        indices in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let mut writer = Respeller { rng: Rng(seed), out: String::new(), literal: Some(CANARY.into()) };
        writer.document(&doc);
        let bytes = writer.out.into_bytes();
        prop_assert!(show(&bytes).contains(CANARY));
        // A denylist, and an allowlist that keeps everything else. `**.ssn.**` is not
        // needed: `**` names the fields *inside* an ssn, but the drop they inherit from
        // `**.ssn` ranks higher (see `wildcard_keep_below_a_dropped_field`); it is there so
        // that naming them twice changes nothing either.
        let policy = if deny {
            Policy::new(Act::Keep, &[("**.ssn", Act::Drop)])
        } else {
            Policy::new(
                Act::Drop,
                &[("**", Act::Keep), ("**.ssn", Act::Drop), ("**.ssn.**", Act::Drop)],
            )
        };
        let rules = policy.compile();
        let out = run_whole(&rules, &bytes).map_err(|e| TestCaseError::fail(format!("refused: {e}: {}", show(&bytes))))?;
        prop_assert_eq!(&run_cuts(&rules, &bytes, &cuts(&indices, bytes.len())), &Ok(out.clone()));
        prop_assert!(!show(&out).contains("CANARY"), "canary in {} from {}", show(&out), show(&bytes));
        let parsed: Value = serde_json::from_slice(&out)
            .map_err(|e| TestCaseError::fail(format!("{e}: {}", show(&out))))?;
        no_ssn_no_canary(&parsed).map_err(|e| TestCaseError::fail(format!("{e}\ninput: {}", show(&bytes))))?;
        // Nothing but the ssn fields is lost.
        prop_assert_eq!(parsed, policy.project_value(&serde_json::from_slice(&bytes).unwrap()));
    }
}

// ---------------------------------------------------------------------------------------
// (c) The output is JSON, (d) and it is the reference projection

fn filter_checked(
    rules: &Arc<FieldRules>,
    doc: &[u8],
    indices: &[Index],
) -> Result<Vec<u8>, TestCaseError> {
    let out = run_whole(rules, doc)
        .map_err(|e| TestCaseError::fail(format!("valid input refused: {e}: {}", show(doc))))?;
    prop_assert_eq!(
        run_cuts(rules, doc, &cuts(indices, doc.len())),
        Ok(out.clone())
    );
    Ok(out)
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn output_is_always_json(
        value in value(),
        style in style(),
        policy in policy(),
        indices in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let doc = write(&value, &style);
        let out = filter_checked(&policy.compile(), &doc, &indices)?;
        if let Err(e) = serde_json::from_slice::<Value>(&out) {
            return Err(TestCaseError::fail(format!(
                "output is not JSON ({e}): {}\ninput: {}\npolicy: {policy}", show(&out), show(&doc)
            )));
        }
    }

    #[test]
    fn output_is_the_reference_projection(
        value in value(),
        style in style(),
        policy in policy(),
        indices in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let doc = write(&value, &style);
        let out = filter_checked(&policy.compile(), &doc, &indices)?;
        let parsed: Value = serde_json::from_slice(&out)
            .map_err(|e| TestCaseError::fail(format!("{e}: {}", show(&out))))?;
        let input: Value = serde_json::from_slice(&doc).unwrap();
        prop_assert_eq!(&input, &value);
        let expected = policy.project_value(&input);
        prop_assert_eq!(
            &parsed, &expected,
            "\ninput:  {}\noutput: {}\npolicy: {}", show(&doc), show(&out), policy
        );
    }
}

// ---------------------------------------------------------------------------------------
// (f) Many entries are filtered and counted as each entry alone

/// Below [`MANY`] entries' worth of keys the filter takes every rule step from the rules and
/// counts every withheld field by its path; past a response's first 64 steps it takes them
/// from its step cache, and past 64 counted fields its counters count a field met again by
/// its container's number and key. The other properties' documents are too small to get
/// there, so this one repeats an object, spelled anew each time, as the elements of one
/// array.
const MANY: std::ops::RangeInclusive<usize> = 65..=90;

/// An object of a few members: each entry then has at least one key.
fn entry() -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), value_sized(3, 16, 4)), 1..5)
        .prop_map(|members| Value::Object(members.into_iter().collect()))
}

/// `{"entry":[...]}` around `entries`, the way a Bundle holds them.
fn bundle(entries: &[Vec<u8>]) -> Vec<u8> {
    [br#"{"entry":["#.as_slice(), &entries.join(&b','), b"]}"].concat()
}

/// The count of each path for `n` entries, from the counts for one and for two: a field of
/// the wrapper (the `entry` array withheld whole) is counted once per document, a field of
/// an entry once per entry, so the counts are linear in the number of entries.
fn extrapolate(
    one: &PathTally,
    two: &PathTally,
    n: u64,
) -> Result<(Vec<(String, u64)>, u64), TestCaseError> {
    let paths_one: Vec<&String> = one.counts.iter().map(|(path, _)| path).collect();
    let paths_two: Vec<&String> = two.counts.iter().map(|(path, _)| path).collect();
    prop_assert_eq!(
        paths_one,
        paths_two,
        "one and two entries count other paths"
    );
    let linear = |a: u64, b: u64| a + (n - 1) * (b - a);
    let counts = one
        .counts
        .iter()
        .zip(&two.counts)
        .map(|((path, a), (_, b))| (path.clone(), linear(*a, *b)))
        .collect();
    Ok((counts, linear(one.overflow, two.overflow)))
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn many_entries_are_filtered_and_counted_as_each_alone(
        value in entry(),
        style in style(),
        policy in policy(),
        n in MANY,
        indices in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let rules = policy.compile();
        // Each entry spelled its own way when the style respells: the step cache and the
        // counters' memo key on decoded keys and paths, never on spelling.
        let entries: Vec<Vec<u8>> = (0..n as u64)
            .map(|i| match style {
                Style::Respelled(seed) => write(&value, &Style::Respelled(seed.wrapping_add(i))),
                ref other => write(&value, other),
            })
            .collect();
        let doc = bundle(&entries);
        let (out, stats) = run_cuts_with_stats(&rules, &doc, &cuts(&indices, doc.len()));
        let out = out.map_err(|e| TestCaseError::fail(format!("valid input refused: {e}")))?;

        // The output: what each entry alone gives, inside the same wrapper.
        let alone: Vec<Vec<u8>> = entries
            .iter()
            .map(|entry| run_whole(&rules, &bundle(std::slice::from_ref(entry))))
            .collect::<Result<_, _>>()
            .map_err(|e| TestCaseError::fail(format!("valid entry refused: {e}")))?;
        let inner = |out: &[u8]| {
            out.strip_prefix(br#"{"entry":["#.as_slice())
                .and_then(|o| o.strip_suffix(b"]}".as_slice()))
                .map(<[u8]>::to_vec)
        };
        let expected = match alone.iter().map(|o| inner(o)).collect::<Option<Vec<_>>>() {
            // The array is walked or kept: each entry's output in turn, those that left
            // nothing left out.
            Some(inners) => {
                let written: Vec<Vec<u8>> = inners.into_iter().filter(|i| !i.is_empty()).collect();
                bundle(&written)
            }
            // The array is withheld, nulled or disguised whole: the same for every entry.
            None => {
                prop_assert!(alone.iter().all(|o| o == &alone[0]), "entries differ: {}", show(&doc));
                alone[0].clone()
            }
        };
        prop_assert_eq!(
            show(&out), show(&expected),
            "\ninput:  {}\npolicy: {}", show(&doc), policy
        );

        // The counts: linear in the number of entries.
        let count = |entries: &[Vec<u8>]| run_cuts_with_stats(&rules, &bundle(entries), &[]).1;
        let (one, two) = (count(&entries[..1]), count(&entries[..2]));
        let withheld = extrapolate(&one.withheld, &two.withheld, n as u64)?;
        let transformed = extrapolate(&one.transformed, &two.transformed, n as u64)?;
        prop_assert_eq!(
            (stats.withheld.counts.clone(), stats.withheld.overflow), withheld,
            "withheld\ninput:  {}\npolicy: {}", show(&doc), policy
        );
        prop_assert_eq!(
            (stats.transformed.counts.clone(), stats.transformed.overflow), transformed,
            "transformed\ninput:  {}\npolicy: {}", show(&doc), policy
        );
    }
}

// ---------------------------------------------------------------------------------------
// The reference itself, on the engine's documented examples

#[test]
fn the_reference_follows_the_documented_examples() {
    let cases: &[(Policy, &str, &str)] = &[
        (
            Policy::new(
                Act::Drop,
                &[
                    ("id", Act::Keep),
                    ("name", Act::Keep),
                    ("address.city", Act::Keep),
                    ("conditions.code", Act::Keep),
                ],
            ),
            r#"{"id":"p1","name":{"family":"M","given":["L"]},"ssn":"2","address":{"line":"x","city":"Lyon"},"conditions":[{"code":"E11","display":"D"},{"code":"I10"}]}"#,
            r#"{"id":"p1","name":{"family":"M","given":["L"]},"address":{"city":"Lyon"},"conditions":[{"code":"E11"},{"code":"I10"}]}"#,
        ),
        (
            Policy::new(
                Act::Keep,
                &[("**.ssn", Act::Drop), ("conditions.display", Act::Drop)],
            ),
            r#"{"a":{"ssn":1,"b":[{"ssn":2,"c":3}]},"ssn":"x","conditions":[{"code":"E11","display":"D"}]}"#,
            r#"{"a":{"b":[{"c":3}]},"conditions":[{"code":"E11"}]}"#,
        ),
        (
            Policy::new(
                Act::Drop,
                &[
                    ("address.city", Act::Keep),
                    ("entry.resource.name", Act::Keep),
                ],
            ),
            r#"{"address":{"line":"x"},"id":1,"entry":[{"resource":{"id":1}},{"resource":{"name":"n"}},{"x":2}]}"#,
            r#"{"entry":[{"resource":{"name":"n"}}]}"#,
        ),
        (
            Policy::new(Act::Keep, &[("a.b", Act::Drop)]),
            r#"{"a":{"b":1}}"#,
            r#"{"a":{}}"#,
        ),
        (
            Policy::new(Act::Drop, &[("id", Act::Keep)]),
            r#"[{"id":1,"n":2},{"n":3},[{"id":4}]]"#,
            r#"[{"id":1},[{"id":4}]]"#,
        ),
        (
            Policy::new(Act::Keep, &[("ssn", Act::Null), ("tags", Act::Null)]),
            r#"{"ssn":"123","tags":[1,2],"x":1}"#,
            r#"{"ssn":null,"tags":null,"x":1}"#,
        ),
        (
            Policy::new(
                Act::Drop,
                &[("**.ssn", Act::Drop), ("patient.ssn", Act::Keep)],
            ),
            r#"{"patient":{"ssn":1,"n":2},"other":{"ssn":3}}"#,
            r#"{"patient":{"ssn":1}}"#,
        ),
        (
            Policy::new(
                Act::Keep,
                &[("a.*", Act::Keep), ("*.b", Act::Drop), ("**", Act::Keep)],
            ),
            r#"{"a":{"b":1,"c":2}}"#,
            r#"{"a":{"c":2}}"#,
        ),
        (
            Policy::new(
                Act::Keep,
                &[
                    ("a", Act::Truncate(2)),
                    ("b", Act::Mask(1)),
                    ("c", Act::Truncate(2)),
                ],
            ),
            r#"{"a":"69003","b":-12.5,"c":{"x":"y"},"d":true}"#,
            r#"{"a":"69","b":"****5","d":true}"#,
        ),
        (Policy::new(Act::Drop, &[]), r#""text""#, "null"),
        (Policy::new(Act::Drop, &[]), r#"[1,[2]]"#, "[]"),
        (
            Policy::new(Act::Drop, &[("**", Act::Drop)]),
            r#"{"a":{"b":1}}"#,
            "{}",
        ),
    ];
    for (policy, input, expected) in cases {
        let input_value: Value = serde_json::from_str(input).unwrap();
        let expected: Value = serde_json::from_str(expected).unwrap();
        assert_eq!(
            policy.project_value(&input_value),
            expected,
            "reference, {policy}: {input}"
        );
        let out = run_whole(&policy.compile(), input.as_bytes()).unwrap();
        let out: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(out, expected, "engine, {policy}: {input}");
    }
}

// ---------------------------------------------------------------------------------------
// Precedence questions once open, now decided and asserted

/// `**.ssn: drop` means "no ssn ever", as a data protection officer reads it: an `ssn`
/// object under `entry.**: keep` is withheld whole, though `entry.**` names its members,
/// because the drop the members inherit ranks higher than the broad keep (README,
/// "Precedence"). The engine once opened such an object and sent its members.
#[test]
fn wildcard_keep_below_a_dropped_field() {
    let policy = Policy::new(Act::Drop, &[("entry.**", Act::Keep), ("**.ssn", Act::Drop)]);
    let doc = r#"{"entry":{"name":"x","ssn":{"system":"urn:ssn","value":"2840375123456"}}}"#;
    let out = run_whole(&policy.compile(), doc.as_bytes()).unwrap();
    assert_eq!(show(&out), r#"{"entry":{"name":"x"}}"#);
}

/// `null` replaces an object or array whole and a transform withholds an object, whatever
/// other rules the purpose has: an unrelated `**.x: drop` once turned `ssn: null` into the
/// object's shape with every leaf `null`.
#[test]
fn null_and_transforms_on_containers_ignore_unrelated_rules() {
    let doc =
        r#"{"ssn":{"value":"2840375123456","other":[1,2]},"address":{"postalCode":"69003"},"n":1}"#;
    let alone = Policy::new(
        Act::Keep,
        &[("ssn", Act::Null), ("address", Act::Truncate(2))],
    );
    let mut with_unrelated = alone.clone();
    with_unrelated.push("**.x", Act::Drop);
    let out = |p: &Policy| show(&run_whole(&p.compile(), doc.as_bytes()).unwrap());
    assert_eq!(out(&alone), r#"{"ssn":null,"n":1}"#);
    assert_eq!(out(&with_unrelated), out(&alone));
}

// ---------------------------------------------------------------------------------------
// (g) Typed rules: the type member decides, wherever it stands and however it is spelled

/// A document with member order of its own (serde_json's `Value` sorts keys): objects are
/// member lists, typed ones carry `resourceType` somewhere among their members.
#[derive(Debug, Clone)]
enum Doc {
    Scalar(Value),
    Arr(Vec<Doc>),
    Obj(Vec<(String, Doc)>),
}

const TYPES: [&str; 4] = ["Bundle", "Patient", "Location", "Practitioner"];

/// The type member's value: mostly a type (listed or not), sometimes not a string.
fn type_value() -> impl Strategy<Value = Doc> {
    prop_oneof![
        12 => prop::sample::select(TYPES.to_vec()).prop_map(|t| Doc::Scalar(json!(t))),
        1 => Just(Doc::Scalar(json!(7))),
        1 => Just(Doc::Arr(vec![Doc::Scalar(json!("Patient"))])),
    ]
}

fn doc() -> impl Strategy<Value = Doc> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (0i64..100).prop_map(Value::from),
        "[a-z0-9é]{0,6}".prop_map(Value::String),
    ]
    .prop_map(Doc::Scalar);
    let key = prop::sample::select(vec!["id", "a", "b", "name", "city", "telecom", "entry"]);
    leaf.prop_recursive(4, 40, 5, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Doc::Arr),
            (
                prop::collection::vec((key.clone(), inner), 0..5),
                // 0: untyped; 1..=4: typed, the type member at that place; 5: twice.
                0..6usize,
                type_value(),
                any::<prop::sample::Index>(),
            )
                .prop_map(|(members, typed, value, at)| {
                    let mut members: Vec<(String, Doc)> = members
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect();
                    members.sort_by(|a, b| a.0.cmp(&b.0));
                    members.dedup_by(|a, b| a.0 == b.0);
                    if typed > 0 {
                        let place = at.index(members.len() + 1);
                        members.insert(place, ("resourceType".into(), value.clone()));
                        if typed == 5 {
                            members.push(("resourceType".into(), value));
                        }
                    }
                    Doc::Obj(members)
                }),
        ]
    })
}

/// Writes `doc`: members rotated by `turn` (0: as generated), and, with `escapes`, some
/// letters of keys and strings written as `\u` escapes (decided by `seed`).
fn write_doc(doc: &Doc, turn: usize, escapes: bool, seed: u64) -> Vec<u8> {
    fn string(text: &str, out: &mut String, rng: &mut Rng, escapes: bool) {
        out.push('"');
        for c in text.chars() {
            if escapes && c.is_ascii_alphabetic() && rng.one_in(3) {
                out.push_str(&format!("\\u{:04x}", c as u32));
            } else {
                out.push_str(
                    serde_json::to_string(&c.to_string())
                        .unwrap()
                        .trim_matches('"'),
                );
            }
        }
        out.push('"');
    }
    fn write(doc: &Doc, turn: usize, escapes: bool, rng: &mut Rng, out: &mut String) {
        match doc {
            Doc::Scalar(Value::String(s)) => string(s, out, rng, escapes),
            Doc::Scalar(v) => out.push_str(&v.to_string()),
            Doc::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, turn, escapes, rng, out);
                }
                out.push(']');
            }
            Doc::Obj(members) => {
                out.push('{');
                let n = members.len().max(1);
                for i in 0..members.len() {
                    let (key, value) = &members[(i + turn) % n];
                    if i > 0 {
                        out.push(',');
                    }
                    string(key, out, rng, escapes);
                    out.push(':');
                    write(value, turn, escapes, rng, out);
                }
                out.push('}');
            }
        }
    }
    let mut out = String::new();
    write(doc, turn, escapes, &mut Rng(seed), &mut out);
    out.into_bytes()
}

/// Typed research-like rules over the generated vocabulary.
fn typed_policy() -> impl Strategy<Value = Policy> {
    (
        prop_oneof![Just(Act::Keep), Just(Act::Drop)],
        prop::collection::vec((path(), act()), 0..3),
        prop::collection::vec(
            (
                prop::sample::select(TYPES[..3].to_vec()),
                prop_oneof![Just(Act::Keep), Just(Act::Drop)],
                prop::collection::vec((typed_path(), act()), 0..4),
            ),
            0..3,
        ),
    )
        .prop_map(|(default, rules, types)| {
            let mut policy = Policy::new(default, &[]);
            for (path, act) in rules {
                policy.push(&path, act);
            }
            let mut types = types;
            types.sort_by(|a, b| a.0.cmp(b.0));
            types.dedup_by(|a, b| a.0 == b.0);
            let paths: Vec<Vec<(&str, Act)>> = types
                .iter()
                .map(|(_, _, rules)| rules.iter().map(|(p, a)| (p.as_str(), a.clone())).collect())
                .collect();
            let spec: Vec<TypeSpec> = types
                .iter()
                .zip(&paths)
                .map(|((name, default, _), rules)| (*name, default.clone(), rules.as_slice()))
                .collect();
            policy.typed("resourceType", &spec)
        })
}

fn typed_path() -> impl Strategy<Value = String> {
    let segment = prop_oneof![
        3 => Just("id"),
        2 => Just("name"),
        2 => Just("entry"),
        1 => Just("city"),
        1 => Just("resourceType"),
        1 => Just("*"),
        1 => Just("**"),
    ];
    joined(segment)
}

/// The engine's output parsed without regard to member order; `None` when refused.
fn unordered(out: &Result<Vec<u8>, EngineError>) -> Option<Value> {
    out.as_ref()
        .ok()
        .map(|bytes| serde_json::from_slice(bytes).expect("the output is JSON"))
}

proptest! {
    #![proptest_config(config(192))]

    #[test]
    fn typed_rules_give_the_reference_projection_at_every_split(
        doc in doc(),
        policy in typed_policy(),
        escapes in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let bytes = write_doc(&doc, 0, escapes, seed);
        let rules = policy.compile();
        let whole = run_whole(&rules, &bytes);
        for at in 0..=bytes.len() {
            prop_assert_eq!(&run_cuts(&rules, &bytes, &[at]), &whole, "split at {} of {}", at, show(&bytes));
        }
        prop_assert_eq!(&run_bytewise(&rules, &bytes), &whole);
        let expected = policy.project(&bytes, &Default::default());
        match (&whole, &expected) {
            (Ok(out), Ok(expected)) => {
                let got = reference::parse(out).expect("the output is JSON");
                prop_assert_eq!(&got, expected, "\ninput:  {}\noutput: {}\npolicy: {}", show(&bytes), show(out), policy);
            }
            (Err(_), Err(_)) => {}
            _ => prop_assert!(false, "engine {:?}, reference {:?}\ninput: {}\npolicy: {}", whole, expected, show(&bytes), policy),
        }
    }

    #[test]
    fn member_order_and_spelling_do_not_change_what_is_sent(
        doc in doc(),
        policy in typed_policy(),
        turn in 1..5usize,
        seed in any::<u64>(),
    ) {
        let rules = policy.compile();
        let plain = run_whole(&rules, &write_doc(&doc, 0, false, seed));
        let other = run_whole(&rules, &write_doc(&doc, turn, true, seed));
        prop_assert_eq!(plain.is_ok(), other.is_ok(), "{:?} / {:?}", plain, other);
        prop_assert_eq!(unordered(&plain), unordered(&other));
    }
}

// ---------------------------------------------------------------------------------------
// (h) SMART scopes: what is sent is granted, wherever the chunks are cut

const SMART_TYPES: [&str; 4] = ["Observation", "Condition", "Patient", "Practitioner"];

/// A typed object: `members` with `resourceType` inserted at `place` (modulo its length),
/// or without it when `untyped`.
fn typed_obj(t: &str, mut members: Vec<(String, Doc)>, place: usize, untyped: bool) -> Doc {
    if !untyped {
        let at = place % (members.len() + 1);
        members.insert(at, ("resourceType".into(), Doc::Scalar(json!(t))));
    }
    Doc::Obj(members)
}

fn reference(patient: &str) -> Doc {
    Doc::Obj(vec![(
        "reference".into(),
        Doc::Scalar(json!(format!("Patient/{patient}"))),
    )])
}

/// A resource of the generated vocabulary: its id, subject and category drawn from small
/// sets, so that grants and the patient compartment go either way.
fn smart_leaf() -> impl Strategy<Value = Doc> {
    (
        prop::sample::select(SMART_TYPES.to_vec()),
        prop::sample::select(vec!["example", "pat2"]),
        prop::option::of(prop::sample::select(vec!["example", "pat2"])),
        prop::option::of(prop::sample::select(vec!["laboratory", "vital-signs"])),
        any::<usize>(),
        0..16u8,
    )
        .prop_map(|(t, id, subject, category, place, odd)| {
            let mut members = vec![("id".to_string(), Doc::Scalar(json!(id)))];
            if let Some(patient) = subject {
                members.push(("subject".into(), reference(patient)));
            }
            if let Some(code) = category {
                let coding = Doc::Obj(vec![
                    (
                        "system".into(),
                        Doc::Scalar(json!(
                            "http://terminology.hl7.org/CodeSystem/observation-category"
                        )),
                    ),
                    ("code".into(), Doc::Scalar(json!(code))),
                ]);
                members.push((
                    "category".into(),
                    Doc::Arr(vec![Doc::Obj(vec![(
                        "coding".into(),
                        Doc::Arr(vec![coding]),
                    )])]),
                ));
            }
            members.push((
                "note".into(),
                Doc::Arr(vec![Doc::Obj(vec![(
                    "text".into(),
                    Doc::Scalar(json!("n")),
                )])]),
            ));
            typed_obj(t, members, place, odd == 0)
        })
}

/// Resources, Bundles of them (entries with `fullUrl` and `search`), and resources that
/// contain others.
fn smart_resource() -> impl Strategy<Value = Doc> {
    smart_leaf().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            (
                prop::collection::vec(inner.clone(), 0..4),
                any::<usize>(),
                any::<bool>()
            )
                .prop_map(|(resources, place, total)| {
                    let entries: Vec<Doc> = resources
                        .into_iter()
                        .map(|r| {
                            Doc::Obj(vec![
                                (
                                    "fullUrl".into(),
                                    Doc::Scalar(json!("https://fhir.example/x")),
                                ),
                                ("resource".into(), r),
                                (
                                    "search".into(),
                                    Doc::Obj(vec![("mode".into(), Doc::Scalar(json!("match")))]),
                                ),
                            ])
                        })
                        .collect();
                    let mut members = vec![("type".to_string(), Doc::Scalar(json!("searchset")))];
                    if total {
                        members.push(("total".into(), Doc::Scalar(json!(entries.len()))));
                    }
                    members.push(("entry".into(), Doc::Arr(entries)));
                    typed_obj("Bundle", members, place, false)
                }),
            (smart_leaf(), prop::collection::vec(inner, 1..3)).prop_map(|(outer, contained)| {
                match outer {
                    Doc::Obj(mut members) => {
                        members.push(("contained".into(), Doc::Arr(contained)));
                        Doc::Obj(members)
                    }
                    other => other,
                }
            }),
        ]
    })
}

/// Scopes and a launch patient: user, patient and granular grants, v1 and v2.
fn smart_access() -> impl Strategy<Value = (Vec<&'static str>, Option<&'static str>)> {
    prop::sample::select(vec![
        (vec!["user/Observation.rs"], None),
        (vec!["patient/*.rs"], Some("example")),
        (
            vec!["patient/Observation.read", "user/Practitioner.r"],
            Some("example"),
        ),
        (vec!["user/*.rs?category=laboratory"], None),
        (
            vec![
                "patient/Observation.rs?category=vital-signs",
                "patient/Patient.s",
            ],
            Some("pat2"),
        ),
        (vec!["user/Condition.rs", "patient/Patient.r"], None),
        (vec![], None),
    ])
}

fn smart_rules() -> Arc<FieldRules> {
    let config = br#"{"policies": {"f": {"fhir": {"base": "/fhir", "smart_scopes": true},
        "purposes": {"p": {"default": "keep"}}}}}"#;
    let loaded = finalite::policy::CompiledConfig::load(config, &|_| None).unwrap();
    loaded.policies[0].purposes["p"].body.clone().unwrap()
}

fn run_smart(
    access: &Arc<finalite::policy::fhir::SmartAccess>,
    doc: &[u8],
    cuts: &[usize],
) -> (Result<Vec<u8>, EngineError>, Option<PathTally>) {
    let mut filter = finalite::json::JsonFilter::new(smart_rules(), 64, Default::default())
        .with_smart(access.clone());
    let mut out = Vec::new();
    let mut last = 0;
    let mut result = Ok(());
    for &at in cuts.iter().chain(std::iter::once(&doc.len())) {
        result = result.and_then(|()| filter.write(&doc[last..at], &mut out));
        last = at;
    }
    let result = result.and_then(|()| filter.finish(&mut out));
    (result.map(|()| out), filter.take_stats().resources)
}

/// A resource's facts as serde_json reads them from its own members.
fn oracle_facts(t: &str, resource: &Map<String, Value>) -> finalite::policy::fhir::ResourceFacts {
    let mut categories = Vec::new();
    for category in resource
        .get("category")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for coding in category
            .get("coding")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(code) = coding.get("code").and_then(Value::as_str) {
                let system = coding
                    .get("system")
                    .and_then(Value::as_str)
                    .map(str::to_string);
                categories.push((system, code.to_string()));
            }
        }
    }
    let mut references = Vec::new();
    for path in finalite::policy::compartment::reference_paths(t).unwrap_or_default() {
        let mut at: Vec<&Value> = resource
            .get(path.split('.').next().unwrap_or_default())
            .into_iter()
            .collect();
        for segment in path.split('.').skip(1) {
            at = at
                .into_iter()
                .flat_map(|v| match v {
                    Value::Array(items) => items.iter().collect::<Vec<_>>(),
                    other => vec![other],
                })
                .filter_map(|v| v.get(segment))
                .collect();
        }
        for v in at.into_iter().flat_map(|v| match v {
            Value::Array(items) => items.iter().collect::<Vec<_>>(),
            other => vec![other],
        }) {
            if let Some(r) = v.get("reference").and_then(Value::as_str) {
                references.push(r.to_string());
            }
        }
    }
    finalite::policy::fhir::ResourceFacts {
        resource_type: t.to_string(),
        id: (t == "Patient")
            .then(|| {
                resource
                    .get("id")
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .flatten(),
        categories,
        compartment_references: references,
    }
}

/// Checks everything in `value` that SMART scopes decide: each resource granted, no
/// Bundle `total`, each entry with a resource, each contained element a resource.
fn all_granted(value: &Value, access: &finalite::policy::fhir::SmartAccess) -> Result<(), String> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|v| all_granted(v, access)),
        Value::Object(members) => {
            if let Some(t) = members.get("resourceType").and_then(Value::as_str) {
                if !access.granted(&oracle_facts(t, members)) {
                    return Err(format!("sent but not granted: {value}"));
                }
                if t == "Bundle" {
                    if members.contains_key("total") {
                        return Err(format!("a Bundle's total: {value}"));
                    }
                    for entry in members
                        .get("entry")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if entry
                            .get("resource")
                            .and_then(|r| r.get("resourceType"))
                            .is_none()
                        {
                            return Err(format!("an entry without a resource: {entry}"));
                        }
                    }
                }
                for item in members
                    .get("contained")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if item.get("resourceType").is_none() {
                        return Err(format!("a contained object without a type: {item}"));
                    }
                }
            }
            members.values().try_for_each(|v| all_granted(v, access))
        }
        _ => Ok(()),
    }
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn smart_scopes_send_only_what_they_grant_at_every_split(
        doc in smart_resource(),
        (scopes, patient) in smart_access(),
        escapes in any::<bool>(),
        turn in 0..4usize,
        seed in any::<u64>(),
    ) {
        let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
        let access = Arc::new(finalite::policy::fhir::SmartAccess::new(
            finalite::auth::smart::grants(&scopes),
            patient.map(str::to_string),
        ));
        let bytes = write_doc(&doc, 0, escapes, seed);
        let whole = run_smart(&access, &bytes, &[]);
        for at in 0..=bytes.len() {
            prop_assert_eq!(&run_smart(&access, &bytes, &[at]), &whole, "split at {} of {}", at, show(&bytes));
        }
        let bytewise: Vec<usize> = (1..bytes.len()).collect();
        prop_assert_eq!(&run_smart(&access, &bytes, &bytewise), &whole);
        // Member order does not change what is sent, nor what is counted.
        let turned = run_smart(&access, &write_doc(&doc, turn, escapes, seed), &[]);
        prop_assert_eq!(unordered(&whole.0), unordered(&turned.0));
        prop_assert_eq!(&whole.1, &turned.1);
        // Refused exactly when the root is not granted; otherwise all sent is granted.
        let input: Value = serde_json::from_slice(&bytes).expect("generated JSON");
        let root_granted = match &input {
            Value::Object(m) => m
                .get("resourceType")
                .and_then(Value::as_str)
                .is_some_and(|t| access.granted(&oracle_facts(t, m))),
            _ => false,
        };
        match &whole.0 {
            Ok(out) => {
                prop_assert!(root_granted, "sent a root not granted: {}", show(&bytes));
                let sent: Value = serde_json::from_slice(out).expect("the output is JSON");
                if let Err(why) = all_granted(&sent, &access) {
                    prop_assert!(false, "{}\ninput: {}\nscopes: {:?} {:?}", why, show(&bytes), scopes, patient);
                }
            }
            Err(error) => {
                prop_assert!(!root_granted, "refused a granted root: {} {}", error, show(&bytes));
                prop_assert!(matches!(error.kind, finalite::json::ErrorKind::Grant(_)), "{}", error);
            }
        }
    }
}
