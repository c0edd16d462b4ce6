use super::audit_path::is_field_name;
use super::*;
use crate::json::{LexErrorKind, TypeErrorKind};
use crate::policy::path::FieldPath;
use crate::policy::rules::{Rule, TypeRules};
use std::collections::BTreeMap;

/// A tally's paths and counts, in path order.
fn counts(tally: &PathTally) -> Vec<(&str, u64)> {
    tally.counts.iter().map(|(p, c)| (p.as_str(), *c)).collect()
}

fn rules(default: Action, spec: &[(&str, Action)]) -> Arc<FieldRules> {
    let rules: Vec<Rule> = spec
        .iter()
        .map(|(p, a)| Rule {
            path: FieldPath::parse(p).unwrap(),
            action: *a,
        })
        .collect();
    Arc::new(FieldRules::compile(default, &rules).unwrap())
}

/// What `run` gives with no split, checked to be what it gives at every split of a document
/// of `len` bytes into two chunks, and into three when the document is short.
fn at_every_split<T: PartialEq + std::fmt::Debug>(len: usize, run: impl Fn(&[usize]) -> T) -> T {
    let whole = run(&[]);
    for a in 0..=len {
        assert_eq!(run(&[a]), whole, "split at {a}");
    }
    if len < 80 {
        for a in 0..=len {
            for b in a..=len {
                assert_eq!(run(&[a, b]), whole, "splits at {a}, {b}");
            }
        }
    }
    whole
}

/// Filters `doc` whole and at every split into two and three chunks; all must agree.
fn filter(rules: &Arc<FieldRules>, doc: &str) -> Result<String, EngineError> {
    let run = |splits: &[usize]| -> Result<Vec<u8>, EngineError> {
        let mut f = JsonFilter::new(rules.clone(), 16, TransformContext::default());
        let mut out = Vec::new();
        let mut last = 0;
        for &at in splits.iter().chain(std::iter::once(&doc.len())) {
            f.write(&doc.as_bytes()[last..at], &mut out)?;
            last = at;
        }
        f.finish(&mut out)?;
        Ok(out)
    };
    at_every_split(doc.len(), run).map(|out| String::from_utf8(out).unwrap())
}

const PATIENT: &str = r#"{
  "id": "p1",
  "name": {"family": "Martin", "given": ["Léa", "Anne"]},
  "birthDate": "1984-03-07",
  "ssn": "2840375123456",
  "address": {"line": "3 rue X", "city": "Lyon", "postalCode": "69003"},
  "conditions": [{"code": "E11", "display": "Diabète"}, {"code": "I10", "onset": 2019}],
  "weight": 7.10E+1
}"#;

#[test]
fn allowlist_keeps_only_named_fields_verbatim() {
    let r = rules(
        Action::Drop,
        &[
            ("id", Action::Keep),
            ("name", Action::Keep),
            ("address.city", Action::Keep),
            ("conditions.code", Action::Keep),
            ("weight", Action::Keep),
        ],
    );
    assert_eq!(
        filter(&r, PATIENT).unwrap(),
        r#"{"id":"p1","name":{"family": "Martin", "given": ["Léa", "Anne"]},"address":{"city":"Lyon"},"conditions":[{"code":"E11"},{"code":"I10"}],"weight":7.10E+1}"#
    );
}

#[test]
fn denylist_drops_at_any_depth() {
    let r = rules(
        Action::Keep,
        &[
            ("**.ssn", Action::Drop),
            ("conditions.display", Action::Drop),
        ],
    );
    assert_eq!(
        filter(&r, r#"{"a":{"ssn":1,"b":[{"ssn":2,"c":3}]},"ssn":"x","conditions":[{"code":"E11","display":"D"}]}"#).unwrap(),
        r#"{"a":{"b":[{"c":3}]},"conditions":[{"code":"E11"}]}"#
    );
}

#[test]
fn escaped_keys_are_matched_decoded_and_written_as_spelled() {
    let r = rules(
        Action::Keep,
        &[("ssn", Action::Drop), ("name", Action::Keep)],
    );
    assert_eq!(
        filter(&r, r#"{"s\u0073n":"x","\u006eame":"y","ss\u006E":"z"}"#).unwrap(),
        r#"{"\u006eame":"y"}"#
    );
    let r = rules(Action::Drop, &[("café", Action::Keep)]);
    assert_eq!(
        filter(&r, r#"{"caf\u00e9":1,"cafe":2}"#).unwrap(),
        r#"{"caf\u00e9":1}"#
    );
}

#[test]
fn duplicate_keys_get_the_same_treatment() {
    let r = rules(Action::Keep, &[("ssn", Action::Drop)]);
    assert_eq!(
        filter(&r, r#"{"ssn":1,"a":2,"ssn":3,"s\u0073n":4}"#).unwrap(),
        r#"{"a":2}"#
    );
}

#[test]
fn empty_withheld_containers_leave_no_shell() {
    let r = rules(
        Action::Drop,
        &[
            ("address.city", Action::Keep),
            ("entry.resource.name", Action::Keep),
        ],
    );
    assert_eq!(
        filter(&r, r#"{"address":{"line":"x"},"id":1}"#).unwrap(),
        "{}"
    );
    assert_eq!(
        filter(
            &r,
            r#"{"entry":[{"resource":{"id":1}},{"resource":{"name":"n"}},{"x":2}]}"#
        )
        .unwrap(),
        r#"{"entry":[{"resource":{"name":"n"}}]}"#
    );
}

#[test]
fn kept_containers_stay_even_when_emptied() {
    let r = rules(Action::Keep, &[("a.b", Action::Drop)]);
    assert_eq!(filter(&r, r#"{"a":{"b":1}}"#).unwrap(), r#"{"a":{}}"#);
}

#[test]
fn arrays_are_transparent_at_the_root_and_inside() {
    let r = rules(Action::Drop, &[("id", Action::Keep)]);
    assert_eq!(
        filter(&r, r#"[{"id":1,"n":2},{"n":3},[{"id":4}]]"#).unwrap(),
        r#"[{"id":1},[{"id":4}]]"#
    );
}

#[test]
fn null_replaces_the_value() {
    let r = rules(
        Action::Keep,
        &[("ssn", Action::Null), ("tags", Action::Null)],
    );
    assert_eq!(
        filter(&r, r#"{"ssn":"123","tags":[1,2],"x":1}"#).unwrap(),
        r#"{"ssn":null,"tags":null,"x":1}"#
    );
}

#[test]
fn root_is_always_valid_json() {
    let r = rules(Action::Drop, &[]);
    assert_eq!(filter(&r, r#"{"a":1}"#).unwrap(), "{}");
    assert_eq!(filter(&r, r#"[1,2]"#).unwrap(), "[]");
    assert_eq!(filter(&r, r#""text""#).unwrap(), "null");
    assert_eq!(filter(&r, "12").unwrap(), "null");
    let r = rules(Action::Keep, &[]);
    assert_eq!(filter(&r, " 12 ").unwrap(), "12");
    assert_eq!(filter(&r, r#" {"a" : [ 1 ] } "#).unwrap(), r#"{"a":[ 1 ]}"#);
}

#[test]
fn kept_scalars_keep_their_spelling() {
    let r = rules(Action::Drop, &[("*", Action::Keep)]);
    let doc = r#"{"a":1.0E+2,"b":-0.000,"c":"\u00e9\/\n","d":true,"e":null,"f":1e-7}"#;
    assert_eq!(filter(&r, doc).unwrap(), doc);
}

#[test]
fn invalid_documents_are_refused_even_inside_dropped_values() {
    let r = rules(Action::Drop, &[("id", Action::Keep)]);
    assert_eq!(
        filter(&r, r#"{"id":1,"x":[1,2,}"#).unwrap_err().kind,
        ErrorKind::Lex(LexErrorKind::Unexpected {
            found: b'}',
            expected: "a JSON value"
        })
    );
    assert_eq!(
        filter(&r, r#"{"id":1,"x":"\ud800"}"#).unwrap_err().kind,
        ErrorKind::Lex(LexErrorKind::LoneSurrogate)
    );
    assert_eq!(
        filter(&r, r#"{"id":1"#).unwrap_err().kind,
        ErrorKind::Lex(LexErrorKind::UnexpectedEnd {
            expected: "',' or the end of a container"
        })
    );
    assert_eq!(
        filter(&r, r#"{"id":1}{"#).unwrap_err().kind,
        ErrorKind::Lex(LexErrorKind::TrailingData(b'{'))
    );
}

/// Filters `doc` whole, at every split into two chunks and a byte at a time; all must agree.
fn filter_bytes(rules: &Arc<FieldRules>, doc: &[u8]) -> Result<Vec<u8>, EngineError> {
    let run = |chunks: &[&[u8]]| -> Result<Vec<u8>, EngineError> {
        let mut f = JsonFilter::new(rules.clone(), 16, TransformContext::default());
        let mut out = Vec::new();
        for chunk in chunks {
            f.write(chunk, &mut out)?;
        }
        f.finish(&mut out)?;
        Ok(out)
    };
    let whole = run(&[doc]);
    for at in 0..=doc.len() {
        assert_eq!(run(&[&doc[..at], &doc[at..]]), whole, "split at {at}");
    }
    let bytewise: Vec<&[u8]> = doc.chunks(1).collect();
    assert_eq!(run(&bytewise), whole, "a byte at a time");
    whole
}

/// What may sit in a skimmed string, each followed by `a`s (the string is 62 bytes in all).
const SKIMMED_PIECES: &[&[u8]] = &[
    br#"\""#,
    br"\n",
    br"\\",
    br"\/",
    "é".as_bytes(),
    "€".as_bytes(),
    "😀".as_bytes(),
    br"\u00e9",
    br"\ud83d\ude00",
    b"\x7f ~",
];

/// What a skimmed string may not hold: the piece, the refusal, and how far into the piece
/// the refusal's offset lies.
const REFUSED_PIECES: &[(&[u8], LexErrorKind, u64)] = &[
    (b"\x01", LexErrorKind::ControlCharacterInString(0x01), 0),
    (b"\x1f", LexErrorKind::ControlCharacterInString(0x1f), 0),
    (b"\n", LexErrorKind::ControlCharacterInString(b'\n'), 0),
    (b"\xff", LexErrorKind::InvalidUtf8, 0),
    (b"\x80", LexErrorKind::InvalidUtf8, 0),
    (b"\xc0\xaf", LexErrorKind::InvalidUtf8, 0),
    (b"\xe0\x80\x80", LexErrorKind::InvalidUtf8, 1),
    (b"\xed\xa0\x80", LexErrorKind::InvalidUtf8, 1),
    (b"\xf4\x90\x80\x80", LexErrorKind::InvalidUtf8, 1),
    (b"\xe2\x82", LexErrorKind::InvalidUtf8, 2),
    (br"\x", LexErrorKind::InvalidEscape(b'x'), 1),
    (br"\u12g4", LexErrorKind::InvalidUnicodeEscape, 4),
    (br"\ud800", LexErrorKind::LoneSurrogate, 6),
];

/// The string (62 bytes, `piece` at `at`) in a dropped container, where the skim reads it:
/// an element, a member's value, a key; each with the offset where the string starts.
fn skimmed_documents(piece: &[u8], at: usize) -> [(Vec<u8>, u64); 3] {
    let mut string = vec![b'a'; at];
    string.extend_from_slice(piece);
    string.resize(62, b'a');
    let document = |head: &[u8], tail: &[u8]| {
        let mut doc = head.to_vec();
        doc.extend_from_slice(&string);
        doc.extend_from_slice(tail);
        (doc, head.len() as u64)
    };
    [
        document(br#"{"id":1,"x":[""#, br#""]}"#),
        document(br#"{"id":1,"x":{"k":""#, br#""}}"#),
        document(br#"{"id":1,"x":{""#, br#"":1}}"#),
    ]
}

/// The skim reads strings a block at a time (eight bytes at once): an escape, a
/// multi-byte character or an invalid byte is found wherever in a block it lies, in an
/// element, a member's value or a key of a dropped container, and refused at the offset the
/// byte-by-byte path gives.
#[test]
fn skimmed_strings_are_read_alike_at_every_offset_of_a_block() {
    let r = rules(Action::Drop, &[("id", Action::Keep)]);
    for at in 0..40 {
        for piece in SKIMMED_PIECES {
            for (doc, _) in skimmed_documents(piece, at) {
                assert_eq!(
                    filter_bytes(&r, &doc).as_deref(),
                    Ok(&br#"{"id":1}"#[..]),
                    "{piece:?} at {at}"
                );
            }
        }
        for (piece, kind, into) in REFUSED_PIECES {
            for (doc, start) in skimmed_documents(piece, at) {
                let error = filter_bytes(&r, &doc).unwrap_err();
                assert_eq!(
                    (error.kind, error.offset),
                    (ErrorKind::Lex(kind.clone()), start + at as u64 + into),
                    "{piece:?} at {at}"
                );
            }
        }
    }
}

#[test]
fn depth_limit_applies_inside_dropped_values() {
    let r = rules(Action::Drop, &[]);
    let deep = format!("{{\"x\":{}{}}}", "[".repeat(16), "]".repeat(16));
    assert_eq!(
        filter(&r, &deep).unwrap_err().kind,
        ErrorKind::Lex(LexErrorKind::TooDeep { limit: 16 })
    );
}

#[test]
fn ndjson_filters_each_line_as_a_root() {
    let r = rules(Action::Drop, &[("id", Action::Keep)]);
    let doc = "{\"id\":1,\"n\":\"a\"}\n\n{\"n\":2}\n[{\"id\":3}]\n";
    let whole = |splits: usize| {
        let mut f =
            JsonFilter::with_framing(r.clone(), 8, TransformContext::default(), Framing::Lines);
        let mut out = Vec::new();
        for chunk in doc.as_bytes().chunks(splits) {
            f.write(chunk, &mut out).unwrap();
        }
        f.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    assert_eq!(whole(doc.len()), "{\"id\":1}\n\n{}\n[{\"id\":3}]\n");
    for size in 1..doc.len() {
        assert_eq!(whole(size), whole(doc.len()));
    }
}

#[test]
fn a_broad_keep_below_does_not_undo_a_drop_above() {
    let r = rules(
        Action::Drop,
        &[("entry.**", Action::Keep), ("**.ssn", Action::Drop)],
    );
    assert_eq!(
        filter(
            &r,
            r#"{"entry":{"name":"x","ssn":{"system":"urn:ssn","value":"2840375123456"}}}"#
        )
        .unwrap(),
        r#"{"entry":{"name":"x"}}"#
    );
    let r = rules(
        Action::Keep,
        &[("**", Action::Keep), ("**.ssn", Action::Drop)],
    );
    assert_eq!(
        filter(&r, r#"{"a":{"ssn":{"v":1}},"b":2}"#).unwrap(),
        r#"{"a":{},"b":2}"#
    );
    // A more specific rule below still overrides its ancestor's.
    let r = rules(
        Action::Keep,
        &[("address", Action::Drop), ("address.city", Action::Keep)],
    );
    assert_eq!(
        filter(&r, r#"{"address":{"line":"l","city":"c"}}"#).unwrap(),
        r#"{"address":{"city":"c"}}"#
    );
    let r = rules(
        Action::Keep,
        &[("patient", Action::Drop), ("**.id", Action::Keep)],
    );
    assert_eq!(
        filter(&r, r#"{"patient":{"id":1},"id":2}"#).unwrap(),
        r#"{"id":2}"#
    );
}

#[test]
fn null_and_transforms_on_containers_ignore_unrelated_rules() {
    for extra in [None, Some(("**.x", Action::Drop))] {
        let mut spec = vec![
            ("ssn", Action::Null),
            ("address", Action::Transform(Transform::Truncate(2))),
            ("tags", Action::Null),
        ];
        spec.extend(extra);
        let r = rules(Action::Keep, &spec);
        assert_eq!(
            filter(&r, r#"{"ssn":{"value":"2840375123456","other":[1,2]},"address":{"postalCode":"69003"},"tags":[],"n":1}"#).unwrap(),
            r#"{"ssn":null,"tags":null,"n":1}"#,
            "{extra:?}"
        );
    }
}

#[test]
fn a_transform_applies_to_each_scalar_of_an_array() {
    let r = rules(
        Action::Drop,
        &[
            ("visits", Action::Transform(Transform::Year)),
            ("codes", Action::Transform(Transform::Truncate(1))),
        ],
    );
    assert_eq!(
        filter(
            &r,
            r#"{"visits":["2019-01-02","2020-03-04T10:00Z"],"codes":["E11",{"x":1},["I10"],null]}"#
        )
        .unwrap(),
        r#"{"visits":["2019","2020"],"codes":["E",["I"],null]}"#
    );
}

#[test]
fn a_refused_transform_writes_nothing_of_its_member() {
    let r = rules(
        Action::Drop,
        &[
            ("id", Action::Keep),
            ("visit.born", Action::Transform(Transform::Year)),
        ],
    );
    let mut f = JsonFilter::new(r, 8, TransformContext::default());
    let mut out = Vec::new();
    let refused = f
        .write(br#"{"id":7,"visit":{"born":"in May"}}"#, &mut out)
        .unwrap_err();
    assert!(matches!(refused.kind, ErrorKind::Transform(_)), "{refused}");
    assert_eq!(refused.path, "$.visit.born");
    // Neither the member's key nor its container's opening: only what preceded them.
    assert_eq!(String::from_utf8(out).unwrap(), r#"{"id":7"#);
}

#[test]
fn audit_paths_never_carry_data_keys() {
    let r = rules(Action::Drop, &[("\"a.b\".c", Action::Keep)]);
    let mut f = JsonFilter::new(r, 8, TransformContext::default());
    let mut out = Vec::new();
    let doc = br#"{"byId":{"2840375999001":{"ssn":"v"}},"a.b":{"c":1,"d":2},"Martin L\u00e9a":1}"#;
    f.write(doc, &mut out).unwrap();
    f.finish(&mut out).unwrap();
    let stats = f.stats();
    let withheld: Vec<&str> = stats
        .withheld
        .counts
        .iter()
        .map(|(p, _)| p.as_str())
        .collect();
    assert_eq!(withheld, vec!["\"a.b\".d", "*", "byId"]);
}

#[test]
fn a_spent_filter_keeps_refusing() {
    let r = rules(Action::Keep, &[("a", Action::Drop)]);
    let mut f = JsonFilter::new(r, 8, TransformContext::default());
    let mut out = Vec::new();
    assert!(f.write(b"{]", &mut out).is_err());
    assert!(f.write(b"}", &mut out).is_err());
    assert!(f.finish(&mut out).is_err());
}

#[test]
fn audit_paths_follow_the_policy_syntax() {
    let r = rules(
        Action::Drop,
        &[
            ("entry.resource.id", Action::Keep),
            ("entry.resource.code", Action::Null),
            ("empty.x", Action::Keep),
        ],
    );
    let mut f = JsonFilter::new(r, 8, TransformContext::default());
    let mut out = Vec::new();
    let doc = br#"{"entry":[{"resource":{"id":1,"name":"a","code":"c"}},{"resource":{"id":2,"name":"b"}},{"x":[1,2]}],"empty":{},"ssn":"x"}"#;
    f.write(doc, &mut out).unwrap();
    f.finish(&mut out).unwrap();
    let stats = f.stats();
    let withheld = counts(&stats.withheld);
    assert_eq!(
        withheld,
        vec![
            ("empty", 1),
            ("entry.resource.name", 2),
            ("entry.x", 1),
            ("ssn", 1)
        ]
    );
    let stats = f.stats();
    let transformed = counts(&stats.transformed);
    assert_eq!(transformed, vec![("entry.resource.code", 1)]);
    assert_eq!(f.stats().withheld.total(), 5);
}

#[test]
fn field_names_are_told_from_data_used_as_keys() {
    for name in ["given", "_id", "birth-date", "a1", "Z_9-x"] {
        assert!(is_field_name(name.as_bytes()), "{name}");
    }
    let long = "k".repeat(65);
    for data in [
        "", "1984", "-x", "a b", "a.b", "Lefèvre", "é", "a\"", "a/b", "a:b", &long,
    ] {
        assert!(!is_field_name(data.as_bytes()), "{data}");
    }
    assert!(is_field_name("k".repeat(64).as_bytes()));
    // Every byte after the first: letters, digits, `_` and `-`, nothing else.
    for b in 0..=255u8 {
        let expected = matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-');
        assert_eq!(is_field_name(&[b'a', b]), expected, "byte {b}");
    }
}

#[test]
fn stats_count_withheld_fields_once() {
    let r = rules(
        Action::Drop,
        &[("id", Action::Keep), ("address.city", Action::Keep)],
    );
    let mut f = JsonFilter::new(r, 8, TransformContext::default());
    let mut out = Vec::new();
    let doc = br#"{"id":1,"name":{"a":1,"b":[1,2]},"ssn":"x","address":{"line":"l"}}"#;
    f.write(doc, &mut out).unwrap();
    f.finish(&mut out).unwrap();
    let stats = f.stats();
    let withheld = counts(&stats.withheld);
    assert_eq!(withheld, vec![("address.line", 1), ("name", 1), ("ssn", 1)]);
    assert_eq!(f.stats().bytes_in, doc.len() as u64);
    assert_eq!(f.stats().bytes_out, out.len() as u64);
}

/// The output and statistics of `doc` filtered whole, in one chunk.
fn filtered(rules: &Arc<FieldRules>, doc: &[u8]) -> (Vec<u8>, FilterStats) {
    let mut f = JsonFilter::new(rules.clone(), 16, TransformContext::default());
    let mut out = Vec::new();
    f.write(doc, &mut out).unwrap();
    f.finish(&mut out).unwrap();
    (out, f.stats())
}

#[test]
fn many_entries_are_filtered_and_counted_as_their_entries() {
    // One entry is below CACHE_STEPS_AFTER and REMEMBER_AFTER; past them, rule steps
    // come from the step cache and the counters count a field met again by its
    // container's path number and key: outputs and tallies must not change.
    let r = rules(
        Action::Drop,
        &[
            (
                "entry.resource.id",
                Action::Transform(Transform::Mask { keep_last: 1 }),
            ),
            ("entry.resource.name.given", Action::Keep),
            ("entry.resource.address.city", Action::Keep),
            ("entry.search.mode", Action::Keep),
        ],
    );
    let entry = |n: usize| {
        // Keys that are data (not field names): counted as `*`, short and long.
        let long = format!("{n}{}", "x".repeat(30));
        format!(
            r#"{{"fullUrl":"u{n}","resource":{{"id":"p{n}","active":true,"name":[{{"given":["a"],"family":"f","prefix":[]}}],"address":[{{"city":"c","line":["l"],"\u0075se":"home"}},{{"city":"d","{long}":{n},"{n}":0}}],"byId":{{"{n}":1}},"ssn":"{n}"}},"search":{{"mode":"match","score":{n}}}}}"#
        )
    };
    let doc = |entries: &[String]| format!(r#"{{"total":1,"entry":[{}]}}"#, entries.join(","));
    let entries: Vec<String> = (0..150).map(entry).collect();
    let (whole_out, whole) = filtered(&r, doc(&entries).as_bytes());
    let mut withheld: BTreeMap<String, u64> = BTreeMap::new();
    let mut transformed: BTreeMap<String, u64> = BTreeMap::new();
    let mut kept = Vec::new();
    for one in &entries {
        let (out, stats) = filtered(&r, doc(std::slice::from_ref(one)).as_bytes());
        let out = String::from_utf8(out).unwrap();
        let inner = out
            .strip_prefix(r#"{"entry":["#)
            .and_then(|o| o.strip_suffix("]}"));
        kept.push(inner.expect("one entry kept").to_string());
        // `total` is withheld once per document.
        for (path, count) in stats.withheld.counts {
            *withheld.entry(path).or_default() += count;
        }
        for (path, count) in stats.transformed.counts {
            *transformed.entry(path).or_default() += count;
        }
    }
    *withheld.get_mut("total").unwrap() = 1;
    let expected = format!(r#"{{"entry":[{}]}}"#, kept.join(","));
    assert_eq!(String::from_utf8(whole_out).unwrap(), expected);
    assert_eq!(whole.withheld.counts, Vec::from_iter(withheld));
    assert_eq!(whole.transformed.counts, Vec::from_iter(transformed));
    assert_eq!(whole.withheld.get("entry.resource.ssn"), Some(150));
    assert_eq!(whole.withheld.get("entry.resource.address.use"), Some(150));
    assert_eq!(whole.withheld.get("entry.resource.address.*"), Some(300));
    assert_eq!(whole.transformed.get("entry.resource.id"), Some(150));
    assert_eq!(whole.withheld.overflow, 0);
}

#[test]
fn taken_stats_equal_read_stats_and_leave_the_tallies_empty() {
    let r = rules(
        Action::Drop,
        &[
            ("id", Action::Transform(Transform::Pseudonymize)),
            ("a", Action::Keep),
        ],
    );
    let mut f = JsonFilter::new(r, 8, TransformContext::new(Some(&[7; 32]), None));
    let mut out = Vec::new();
    f.write(br#"{"id":"p","a":1,"b":2,"c":{"d":3},"b":4}"#, &mut out)
        .unwrap();
    f.finish(&mut out).unwrap();
    let read = f.stats();
    assert_eq!(counts(&read.withheld), vec![("b", 2), ("c", 1)]);
    assert_eq!(counts(&read.transformed), vec![("id", 1)]);
    assert_eq!(f.take_stats(), read);
    let after = f.stats();
    assert_eq!((after.withheld.total(), after.transformed.total()), (0, 0));
    assert_eq!(after.bytes_out, read.bytes_out);
}

#[test]
fn lines_after_taken_stats_are_counted_at_their_own_paths() {
    // Many lines, so that members are remembered with the counter entries they count in;
    // the counters emptied, the next lines meet their paths in another order.
    let r = rules(Action::Keep, &[("a", Action::Drop), ("b", Action::Drop)]);
    let mut f = JsonFilter::with_framing(r, 8, TransformContext::default(), Framing::Lines);
    let mut out = Vec::new();
    for _ in 0..100 {
        f.write(b"{\"a\":1,\"b\":2,\"c\":3}\n", &mut out).unwrap();
    }
    let first = f.take_stats();
    assert_eq!(counts(&first.withheld), vec![("a", 100), ("b", 100)]);
    for _ in 0..30 {
        f.write(b"{\"b\":2,\"c\":3}\n", &mut out).unwrap();
    }
    f.write(b"{\"a\":1}\n", &mut out).unwrap();
    f.finish(&mut out).unwrap();
    assert_eq!(counts(&f.stats().withheld), vec![("a", 1), ("b", 30)]);
}

// ---------------------------------------------------------------------------------------
// Typed rules

type TypeSpec<'a> = (&'a str, Action, &'a [(&'a str, Action)]);

fn typed_rules_limited(
    default: Action,
    spec: &[(&str, Action)],
    types: &[TypeSpec],
    limit: u64,
) -> Arc<FieldRules> {
    let parse = |spec: &[(&str, Action)]| -> Vec<Rule> {
        spec.iter()
            .map(|(p, a)| Rule {
                path: FieldPath::parse(p).unwrap(),
                action: *a,
            })
            .collect()
    };
    let types: Vec<TypeRules> = types
        .iter()
        .map(|(name, default, spec)| TypeRules {
            name: name.to_string(),
            default: *default,
            rules: parse(spec),
        })
        .collect();
    Arc::new(
        FieldRules::compile_typed(default, &parse(spec), "resourceType", &types, limit).unwrap(),
    )
}

fn typed_rules(default: Action, spec: &[(&str, Action)], types: &[TypeSpec]) -> Arc<FieldRules> {
    typed_rules_limited(default, spec, types, 1 << 20)
}

/// The research purpose of the typed rules' description, on a searchset.
fn research() -> Arc<FieldRules> {
    typed_rules(
        Action::Drop,
        &[("**.telecom", Action::Drop)],
        &[
            (
                "Bundle",
                Action::Drop,
                &[("type", Action::Keep), ("entry.resource", Action::Keep)],
            ),
            (
                "Patient",
                Action::Drop,
                &[
                    ("id", Action::Transform(Transform::Mask { keep_last: 1 })),
                    ("birthDate", Action::Transform(Transform::Year)),
                    ("gender", Action::Keep),
                ],
            ),
            (
                "Location",
                Action::Drop,
                &[("name", Action::Keep), ("address.city", Action::Keep)],
            ),
            ("Organization", Action::Keep, &[]),
        ],
    )
}

const SEARCHSET: &str = r#"{"resourceType":"Bundle","type":"searchset","total":4,"entry":[{"fullUrl":"p","resource":{"resourceType":"Patient","id":"p1","birthDate":"1984-03-07","gender":"female","address":[{"city":"Lyon"}],"telecom":[{"value":"06"}]}},{"resource":{"name":"Site","address":{"city":"Paris","line":["1 rue"]},"resourceType":"Location"}},{"resource":{"resourceType":"Organization","name":"H","telecom":[{"value":"01"}],"contact":[{"telecom":[{"value":"02"}]}]}},{"resource":{"resourceType":"Practitioner","name":[{"family":"X"}]}}]}"#;

#[test]
fn each_typed_object_is_decided_by_its_types_rules() {
    assert_eq!(
        filter(&research(), SEARCHSET).unwrap(),
        r#"{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"resourceType":"Patient","id":"*1","birthDate":"1984","gender":"female"}},{"resource":{"name":"Site","address":{"city":"Paris"},"resourceType":"Location"}},{"resource":{"resourceType":"Organization","name":"H","contact":[{}]}}]}"#
    );
}

#[test]
fn typed_audit_paths_start_with_the_type() {
    let mut f = JsonFilter::new(research(), 16, TransformContext::default());
    let mut out = Vec::new();
    f.write(SEARCHSET.as_bytes(), &mut out).unwrap();
    f.finish(&mut out).unwrap();
    let stats = f.stats();
    assert_eq!(
        counts(&stats.withheld),
        vec![
            ("Bundle.entry.fullUrl", 1),
            ("Bundle.total", 1),
            ("Location.address.line", 1),
            ("Organization.contact.telecom.value", 1),
            ("Organization.telecom.value", 1),
            ("Patient.address.city", 1),
            ("Patient.telecom.value", 1),
            ("Practitioner", 1),
        ]
    );
    assert_eq!(
        counts(&stats.transformed),
        vec![("Patient.birthDate", 1), ("Patient.id", 1)]
    );
}

#[test]
fn member_order_does_not_change_the_output() {
    let r = research();
    let first = r#"{"resourceType":"Patient","id":"p1","gender":"male","name":[{"family":"F"}]}"#;
    let middle = r#"{"id":"p1","gender":"male","resourceType":"Patient","name":[{"family":"F"}]}"#;
    let last = r#"{"id":"p1","gender":"male","name":[{"family":"F"}],"resourceType":"Patient"}"#;
    assert_eq!(
        filter(&r, first).unwrap(),
        r#"{"resourceType":"Patient","id":"*1","gender":"male"}"#
    );
    assert_eq!(
        filter(&r, middle).unwrap(),
        r#"{"id":"*1","gender":"male","resourceType":"Patient"}"#
    );
    assert_eq!(
        filter(&r, last).unwrap(),
        r#"{"id":"*1","gender":"male","resourceType":"Patient"}"#
    );
}

#[test]
fn escaped_type_members_are_read_decoded_and_written_as_spelled() {
    let r = research();
    assert_eq!(
        filter(
            &r,
            r#"{"id":"p1","resource\u0054ype":"Pati\u0065nt","gender":"male","x":1}"#
        )
        .unwrap(),
        r#"{"id":"*1","resource\u0054ype":"Pati\u0065nt","gender":"male"}"#
    );
}

#[test]
fn a_type_member_that_is_not_a_string_or_a_second_one_is_refused() {
    let r = research();
    for (doc, kind) in [
        (r#"{"resourceType":5,"id":"p"}"#, TypeErrorKind::NotAString),
        (
            r#"{"id":"p","resourceType":{"a":1}}"#,
            TypeErrorKind::NotAString,
        ),
        (
            r#"{"id":"p","resourceType":null}"#,
            TypeErrorKind::NotAString,
        ),
        (
            r#"{"resourceType":"Patient","id":"p","resourceType":"Patient"}"#,
            TypeErrorKind::TwoTypeMembers,
        ),
        (
            r#"{"id":"p","resourceType":"Patient","resource\u0054ype":"Location"}"#,
            TypeErrorKind::TwoTypeMembers,
        ),
        (
            r#"{"resourceType":"Bundle","entry":[{"resource":{"x":[1],"resourceType":true}}]}"#,
            TypeErrorKind::NotAString,
        ),
    ] {
        assert_eq!(
            filter(&r, doc).unwrap_err().kind,
            ErrorKind::Type(kind),
            "{doc}"
        );
    }
}

#[test]
fn an_object_past_the_lookahead_limit_is_refused() {
    let r = typed_rules_limited(Action::Keep, &[], &[("Patient", Action::Keep, &[])], 32);
    let refused = filter(&r, r#"{"id":"0123456789","resourceType":"Patient"}"#).unwrap_err();
    assert_eq!(
        refused.kind,
        ErrorKind::Type(TypeErrorKind::LookaheadExceeded { limit: 32 })
    );
    assert_eq!((refused.offset, refused.path.as_str()), (33, "$"));
    // Untyped objects are held to their end too.
    assert!(filter(&r, r#"{"a":{"id":"0123456789abcdef0123456789"}}"#).is_err());
    // Once the type is known, nothing more is held.
    let doc = r#"{"resourceType":"Patient","id":"0123456789abcdef0123456789"}"#;
    assert_eq!(filter(&r, doc).unwrap(), doc);
}

#[test]
fn enclosing_rules_can_only_be_more_protective() {
    let r = typed_rules(
        Action::Keep,
        &[("data.secret", Action::Drop), ("meta", Action::Null)],
        &[("Patient", Action::Keep, &[("ssn", Action::Drop)])],
    );
    // A broad keep does not send a typed object whole; a withheld or nulled position wins.
    assert_eq!(
        filter(
            &r,
            r#"{"data":[{"resourceType":"Patient","ssn":"1","n":"a"}],"secret":{"resourceType":"Patient"},"meta":{"resourceType":"Patient","n":1},"x":{"y":[1]}}"#
        )
        .unwrap(),
        r#"{"data":[{"resourceType":"Patient","n":"a"}],"secret":{"resourceType":"Patient"},"meta":null,"x":{"y":[1]}}"#
    );
    let r = typed_rules(
        Action::Drop,
        &[("data.id", Action::Keep)],
        &[("Patient", Action::Keep, &[])],
    );
    // Rules of the enclosing purpose reach inside untyped objects only.
    assert_eq!(
        filter(
            &r,
            r#"{"data":[{"resourceType":"Patient","id":"1"},{"id":"2","n":3}]}"#
        )
        .unwrap(),
        r#"{"data":[{"id":"2"}]}"#
    );
}

#[test]
fn an_unlisted_root_type_becomes_null_and_ndjson_lines_are_typed_each() {
    let r = research();
    assert_eq!(
        filter(&r, r#"{"resourceType":"Practitioner","id":"x"}"#).unwrap(),
        "null"
    );
    let doc = "{\"resourceType\":\"Patient\",\"gender\":\"f\",\"id\":\"ab\"}\n{\"id\":\"x\",\"resourceType\":\"Practitioner\"}\n{\"name\":\"L\",\"resourceType\":\"Location\"}\n";
    let run = |size: usize| {
        let mut f =
            JsonFilter::with_framing(r.clone(), 8, TransformContext::default(), Framing::Lines);
        let mut out = Vec::new();
        for chunk in doc.as_bytes().chunks(size) {
            f.write(chunk, &mut out).unwrap();
        }
        f.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    };
    let whole = run(doc.len());
    assert_eq!(
        whole,
        "{\"resourceType\":\"Patient\",\"gender\":\"f\",\"id\":\"*b\"}\nnull\n{\"name\":\"L\",\"resourceType\":\"Location\"}\n"
    );
    for size in 1..doc.len() {
        assert_eq!(run(size), whole, "chunks of {size}");
    }
}

#[test]
fn contained_and_nested_bundles_are_typed_innermost_first() {
    let r = typed_rules(
        Action::Drop,
        &[],
        &[
            (
                "Bundle",
                Action::Drop,
                &[("entry.resource", Action::Keep), ("type", Action::Keep)],
            ),
            (
                "Patient",
                Action::Drop,
                &[("contained", Action::Keep), ("gender", Action::Keep)],
            ),
            ("Organization", Action::Drop, &[("name", Action::Keep)]),
        ],
    );
    assert_eq!(
        filter(
            &r,
            r#"{"type":"batch","entry":[{"resource":{"entry":[{"resource":{"contained":[{"name":"O","id":"o","resourceType":"Organization"},{"resourceType":"Practitioner"}],"gender":"f","id":"p","resourceType":"Patient"}}],"resourceType":"Bundle","type":"searchset"}}],"resourceType":"Bundle"}"#
        )
        .unwrap(),
        r#"{"type":"batch","entry":[{"resource":{"entry":[{"resource":{"contained":[{"name":"O","resourceType":"Organization"}],"gender":"f","resourceType":"Patient"}}],"resourceType":"Bundle","type":"searchset"}}],"resourceType":"Bundle"}"#
    );
}

/// Sibling objects that spell one key order but are decided by different rule states (here
/// their types): a step remembered for one must not decide a member of the other, however
/// often the order repeats (the step cache starts after 64 steps).
#[test]
fn siblings_with_one_key_order_are_each_decided_by_their_own_state() {
    let r = typed_rules(
        Action::Drop,
        &[],
        &[
            ("Bundle", Action::Drop, &[("entry.resource", Action::Keep)]),
            ("Patient", Action::Keep, &[("name", Action::Drop)]),
            ("Group", Action::Keep, &[("id", Action::Drop)]),
        ],
    );
    let entry = |kind: &str| {
        format!(
            r#"{{"resource":{{"resourceType":"{kind}","name":"n","id":"1","tag":{{"name":"t","id":"2"}}}}}}"#
        )
    };
    let sent = |kind: &str| match kind {
        "Patient" => {
            r#"{"resource":{"resourceType":"Patient","id":"1","tag":{"name":"t","id":"2"}}}"#
        }
        _ => r#"{"resource":{"resourceType":"Group","name":"n","tag":{"name":"t","id":"2"}}}"#,
    };
    // Runs of each type, then the two alternating, so that every guess of the next key is
    // met under the other type's state too.
    let kinds: Vec<&str> = (0..200)
        .map(|i| match i {
            0..=59 => "Patient",
            60..=119 => "Group",
            _ if i % 2 == 0 => "Patient",
            _ => "Group",
        })
        .collect();
    let doc = format!(
        r#"{{"resourceType":"Bundle","entry":[{}]}}"#,
        kinds.iter().map(|k| entry(k)).collect::<Vec<_>>().join(",")
    );
    let expected = format!(
        r#"{{"resourceType":"Bundle","entry":[{}]}}"#,
        kinds.iter().map(|k| sent(k)).collect::<Vec<_>>().join(",")
    );
    // Whole and in chunks of a few sizes (every split of a 20 KiB document would be slow).
    for size in [doc.len(), 4096, 97, 7] {
        let mut f = JsonFilter::new(r.clone(), 16, TransformContext::default());
        let mut out = Vec::new();
        for chunk in doc.as_bytes().chunks(size) {
            f.write(chunk, &mut out).unwrap();
        }
        f.finish(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            expected,
            "chunks of {size}"
        );
    }
}

/// What is written before a refusal, and the refusal, at every split into two chunks (and
/// three, for short documents): all must agree.
fn written_before_refusal(rules: &Arc<FieldRules>, doc: &str) -> (String, EngineError) {
    let run = |splits: &[usize]| -> (Vec<u8>, EngineError) {
        let mut f = JsonFilter::new(rules.clone(), 16, TransformContext::default());
        let mut out = Vec::new();
        let mut last = 0;
        for &at in splits.iter().chain(std::iter::once(&doc.len())) {
            if let Err(error) = f.write(&doc.as_bytes()[last..at], &mut out) {
                return (out, error);
            }
            last = at;
        }
        let error = f.finish(&mut out).expect_err("refused");
        (out, error)
    };
    let (out, error) = at_every_split(doc.len(), run);
    (String::from_utf8(out).unwrap(), error)
}

#[test]
fn a_second_type_member_is_refused_at_its_value_with_nothing_of_it_written() {
    let r = research();
    // Read after the object's hold, in a decided typed object; inside a held one, where the
    // object's type was noted; and escaped, where the key is read by the general path.
    for (doc, written, path) in [
        (
            r#"{"resourceType":"Patient","gender":"f","resourceType":"Patient","id":"x"}"#,
            r#"{"resourceType":"Patient","gender":"f""#,
            "$.resourceType",
        ),
        (
            r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","gender":"f","resourceType":"Patient","id":"x"}}]}"#,
            r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","gender":"f""#,
            "$.entry[0].resource.resourceType",
        ),
        (
            r#"{"resourceType":"Patient","gender":"f","resource\u0054ype":"Patient","id":"x"}"#,
            r#"{"resourceType":"Patient","gender":"f""#,
            "$.resourceType",
        ),
        (
            r#"{"gender":"f","resourceType":"Patient","id":"x","resourceType":5}"#,
            r#"{"gender":"f","resourceType":"Patient","id":"x""#,
            "$.resourceType",
        ),
    ] {
        let (out, error) = written_before_refusal(&r, doc);
        assert_eq!(out, written, "{doc}");
        assert_eq!(
            error.kind,
            ErrorKind::Type(TypeErrorKind::TwoTypeMembers),
            "{doc}"
        );
        // At the second type member's value.
        let value = doc.rfind("ype\":").expect("a type member") + 5;
        assert_eq!(
            (error.offset, error.path.as_str()),
            (value as u64, path),
            "{doc}"
        );
    }
}
