//! The core inside a wasm VM: configuration loading and its errors, the
//! streaming engine, scopes and purposes, run on `wasm32-unknown-unknown` inside Node's V8 by
//! wasm-bindgen-test, so the core behaves there as in the native unit tests (hashing, UTF-8,
//! 32-bit `usize`, HMAC and the rest compiled for wasm).
//!
//! `make test-wasm` (part of `make test`) installs the target and the runner, then runs
//! `cargo test --target wasm32-unknown-unknown --test wasm_core`; `.cargo/config.toml` makes
//! `wasm-bindgen-test-runner` the runner of that target. The cases are a representative set
//! of the unit tests in src/ (same inputs, same expectations).

#![cfg(target_arch = "wasm32")]

use std::sync::Arc;

use finalite::auth::claims::{ClaimSource, ClaimValue};
use finalite::body::BodyFilter;
use finalite::decision::{Allowed, RequestDecision};
use finalite::json::{EngineError, ErrorKind, Framing, JsonFilter, LexErrorKind};
use finalite::media_type::ContentEncoding;
use finalite::policy::action::{Action, Transform};
use finalite::policy::path::FieldPath;
use finalite::policy::route::RouteInfo;
use finalite::policy::rules::{FieldRules, Rule};
use finalite::policy::transform::{self, TransformContext};
use finalite::policy::CompiledConfig;
use finalite::request::{self, Caller};
use wasm_bindgen_test::wasm_bindgen_test;

// --- The engine --------------------------------------------------------------------------

fn rules(default: Action, spec: &[(&str, Action)]) -> Arc<FieldRules> {
    let rules: Vec<Rule> = spec
        .iter()
        .map(|(p, a)| Rule {
            path: FieldPath::parse(p).unwrap(),
            action: a.clone(),
        })
        .collect();
    Arc::new(FieldRules::compile(default, &rules).unwrap())
}

fn run(rules: &Arc<FieldRules>, depth: u32, chunks: &[&[u8]]) -> Result<String, EngineError> {
    let mut filter = JsonFilter::new(rules.clone(), depth, TransformContext::default());
    let mut out = Vec::new();
    for chunk in chunks {
        filter.write(chunk, &mut out)?;
    }
    filter.finish(&mut out)?;
    Ok(String::from_utf8(out).unwrap())
}

/// Filters `doc` whole, then at every split into two chunks and a byte at a time: all agree.
fn filter(rules: &Arc<FieldRules>, doc: &str) -> Result<String, EngineError> {
    let bytes = doc.as_bytes();
    let whole = run(rules, 16, &[bytes]);
    for at in 0..=bytes.len() {
        assert_eq!(
            run(rules, 16, &[&bytes[..at], &bytes[at..]]),
            whole,
            "split at {at}"
        );
    }
    let bytewise: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(rules, 16, &bytewise), whole, "a byte at a time");
    whole
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

#[wasm_bindgen_test]
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

#[wasm_bindgen_test]
fn denylist_drops_at_any_depth() {
    let r = rules(
        Action::Keep,
        &[
            ("**.ssn", Action::Drop),
            ("conditions.display", Action::Drop),
        ],
    );
    assert_eq!(
        filter(
            &r,
            r#"{"a":{"ssn":1,"b":[{"ssn":2,"c":3}]},"ssn":"x","conditions":[{"code":"E11","display":"D"}]}"#
        )
        .unwrap(),
        r#"{"a":{"b":[{"c":3}]},"conditions":[{"code":"E11"}]}"#
    );
}

#[wasm_bindgen_test]
fn a_broad_keep_below_does_not_undo_a_drop() {
    let r = rules(
        Action::Drop,
        &[("entry.**", Action::Keep), ("**.ssn", Action::Drop)],
    );
    assert_eq!(
        filter(
            &r,
            r#"{"entry":[{"ssn":1,"id":2,"x":{"ssn":3}}],"other":4}"#
        )
        .unwrap(),
        r#"{"entry":[{"id":2,"x":{}}]}"#
    );
}

#[wasm_bindgen_test]
fn escaped_keys_are_matched_decoded_and_written_as_spelled() {
    let r = rules(
        Action::Keep,
        &[("ssn", Action::Drop), ("name", Action::Keep)],
    );
    assert_eq!(
        filter(&r, r#"{"s\u0073n":"x","\u006eame":"y","ss\u006E":"z"}"#).unwrap(),
        r#"{"\u006eame":"y"}"#
    );
    let r = rules(
        Action::Drop,
        &[("café", Action::Keep), ("😀", Action::Keep)],
    );
    assert_eq!(
        filter(&r, r#"{"caf\u00e9":1,"cafe":2,"\ud83d\ude00":3}"#).unwrap(),
        r#"{"caf\u00e9":1,"\ud83d\ude00":3}"#
    );
}

#[wasm_bindgen_test]
fn duplicate_keys_get_the_same_treatment() {
    let r = rules(Action::Keep, &[("ssn", Action::Drop)]);
    assert_eq!(
        filter(&r, r#"{"ssn":1,"a":2,"ssn":3,"s\u0073n":4}"#).unwrap(),
        r#"{"a":2}"#
    );
}

#[wasm_bindgen_test]
fn withheld_containers_leave_no_shell_and_roots_stay_json() {
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
    let none = rules(Action::Drop, &[]);
    assert_eq!(filter(&none, "[1,2]").unwrap(), "[]");
    assert_eq!(filter(&none, r#""text""#).unwrap(), "null");
}

#[wasm_bindgen_test]
fn numbers_and_strings_keep_their_spelling() {
    let r = rules(Action::Drop, &[("*", Action::Keep)]);
    let doc = r#"{"a":1.0E+2,"b":-0.000,"c":"\u00e9\/\n","d":true,"e":null,"f":1e-7,"g":123456789012345678901234567890}"#;
    assert_eq!(filter(&r, doc).unwrap(), doc);
}

#[wasm_bindgen_test]
fn invalid_documents_are_refused_even_inside_dropped_values() {
    let r = rules(Action::Drop, &[("id", Action::Keep)]);
    let kind = |doc: &str| match filter(&r, doc).unwrap_err().kind {
        ErrorKind::Lex(kind) => kind,
        other => panic!("not a lexing failure: {other}"),
    };
    assert_eq!(
        kind(r#"{"id":1,"x":[1,2,}"#),
        LexErrorKind::Unexpected {
            found: b'}',
            expected: "a JSON value"
        }
    );
    assert_eq!(
        kind(r#"{"id":1,"x":"\ud800"}"#),
        LexErrorKind::LoneSurrogate
    );
    assert_eq!(
        kind("{\"id\":1,\"x\":\"\u{1}\"}"),
        LexErrorKind::ControlCharacterInString(1)
    );
    assert_eq!(
        kind(r#"{"id":1"#),
        LexErrorKind::UnexpectedEnd {
            expected: "',' or the end of a container"
        }
    );
    assert_eq!(kind(r#"{"id":1}{"#), LexErrorKind::TrailingData(b'{'));
    assert!(
        run(&r, 16, &[b"{\"id\":\"\xff\"}"]).is_err(),
        "invalid UTF-8"
    );
    assert!(
        run(&r, 16, &[b"\xef\xbb\xbf{}"]).is_err(),
        "a byte order mark"
    );
    assert_eq!(kind(""), LexErrorKind::Empty);
    // The error names where: byte offset and JSON path.
    let error = filter(&r, r#"{"id":1,"x":[1,{"y":tru}]}"#).unwrap_err();
    assert_eq!(error.path, "$.x[1].y");
}

#[wasm_bindgen_test]
fn depth_limit_applies_inside_dropped_values() {
    let r = rules(Action::Drop, &[]);
    let deep = format!("{{\"x\":{}{}}}", "[".repeat(16), "]".repeat(16));
    assert_eq!(
        filter(&r, &deep).unwrap_err().kind,
        ErrorKind::Lex(LexErrorKind::TooDeep { limit: 16 })
    );
    let ok = format!("{{\"x\":{}{}}}", "[".repeat(15), "]".repeat(15));
    assert_eq!(filter(&r, &ok).unwrap(), "{}");
}

#[wasm_bindgen_test]
fn ndjson_filters_each_line_as_a_root() {
    let r = rules(Action::Drop, &[("id", Action::Keep)]);
    let doc = b"{\"id\":1,\"n\":\"a\"}\n\n{\"n\":2}\n[{\"id\":3}]\n";
    for size in 1..=doc.len() {
        let mut f =
            JsonFilter::with_framing(r.clone(), 8, TransformContext::default(), Framing::Lines);
        let mut out = Vec::new();
        for chunk in doc.chunks(size) {
            f.write(chunk, &mut out).unwrap();
        }
        f.finish(&mut out).unwrap();
        assert_eq!(out, b"{\"id\":1}\n\n{}\n[{\"id\":3}]\n", "chunks of {size}");
    }
}

#[wasm_bindgen_test]
fn transforms_disguise_scalars() {
    let key = [7u8; 32];
    let context = TransformContext::new(Some(&key), Some("partner"));
    let r = rules(
        Action::Drop,
        &[
            ("id", Action::Transform(Transform::Pseudonymize)),
            ("birthDate", Action::Transform(Transform::Year)),
            ("postalCode", Action::Transform(Transform::Truncate(2))),
            ("phone", Action::Transform(Transform::Mask { keep_last: 2 })),
            ("tags", Action::Transform(Transform::Truncate(1))),
            ("ssn", Action::Null),
        ],
    );
    let doc = br#"{"id":"p1","birthDate":"1984-03-07T10:00:00Z","postalCode":"69003","phone":"0612","tags":["ab",{"x":1},"cd"],"ssn":"1","n":1}"#;
    let mut f = JsonFilter::new(r.clone(), 8, context.clone());
    let mut out = Vec::new();
    for chunk in doc.chunks(3) {
        f.write(chunk, &mut out).unwrap();
    }
    f.finish(&mut out).unwrap();
    let pseudonym = transform::apply(&Transform::Pseudonymize, b"p1", true, &context).unwrap();
    let pseudonym = String::from_utf8(pseudonym).unwrap();
    assert_eq!(pseudonym.len(), 45, "43 base64url characters, quoted");
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            r#"{{"id":{pseudonym},"birthDate":"1984","postalCode":"69","phone":"**12","tags":["a","c"],"ssn":null}}"#
        )
    );
    // Per reuser: another client gets another pseudonym; the same one the same.
    let other = TransformContext::new(Some(&key), Some("other"));
    assert_ne!(
        transform::apply(&Transform::Pseudonymize, b"p1", true, &other).unwrap(),
        pseudonym.as_bytes()
    );
    // A transform that cannot apply refuses the document.
    let mut f = JsonFilter::new(r, 8, context);
    let mut out = Vec::new();
    let refused = f
        .write(br#"{"birthDate":"yesterday"}"#, &mut out)
        .and_then(|()| f.finish(&mut out));
    assert!(matches!(refused.unwrap_err().kind, ErrorKind::Transform(_)));
}

#[wasm_bindgen_test]
fn gzip_bodies_are_decoded_then_filtered() {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(br#"{"id":1,"ssn":"x"}"#).unwrap();
    let compressed = gz.finish().unwrap();
    let r = rules(Action::Keep, &[("ssn", Action::Drop)]);
    let filter = JsonFilter::new(r, 8, TransformContext::default());
    let mut body = BodyFilter::new(filter, ContentEncoding::Gzip, 1024);
    for chunk in compressed.chunks(5) {
        body.write(chunk).unwrap();
    }
    body.finish().unwrap();
    assert_eq!(body.take_output(), br#"{"id":1}"#);
}

// --- Configuration -------------------------------------------------------------------------

const DOCUMENTED_EXAMPLE: &str = r#"{
  "purpose_header": "x-purpose", "unmatched": "deny",
  "limits": {"max_body_bytes": 8388608, "max_depth": 64},
  "token": {"from": "jwt_authn", "jwt_authn": {"metadata_key": "idp"},
            "client_claim": "client_id", "purposes_claim": "purposes"},
  "pseudonymization": {"key_env": "FINALITE_PSEUDONYM_KEY", "per_client": true},
  "policies": {"patients": {
    "match": [{"prefix": "/patients", "methods": ["GET"]}],
    "auth": "required",
    "scopes": {"GET": ["patients:read"], "*": ["patients:write"]},
    "default_purpose": null,
    "purposes": {
      "care": {"default": "keep"},
      "billing": {"fields": {"id": "keep", "name": "keep", "insurance": "keep"}},
      "research": {"fields": {"id": "pseudonymize", "birthDate": "year",
                              "address.postalCode": {"truncate": 2},
                              "conditions.code": "keep", "**.ssn": "drop"},
                   "headers": {"remove": ["x-patient-*"]}}}},
    "open": {"auth": "none", "default_purpose": "open-data",
             "purposes": {"open-data": {"fields": {"city": "keep"}}}}}}"#;

fn key_env(name: &str) -> Option<String> {
    (name == "FINALITE_PSEUDONYM_KEY").then(|| "k".repeat(32))
}

fn design() -> CompiledConfig {
    CompiledConfig::load(DOCUMENTED_EXAMPLE.as_bytes(), &key_env).unwrap()
}

#[wasm_bindgen_test]
fn the_design_example_loads() {
    let config = design();
    let policy = &config.policies[1];
    assert_eq!(policy.name, "patients");
    assert!(policy.purposes["care"].body.is_none(), "care reads nothing");
    assert!(policy.purposes["billing"].body.is_some());
    assert!(config.pseudonyms_per_client);
    assert_eq!(config.token.metadata_key, "idp");
    assert_eq!(config.max_depth, 64);
    assert!(policy.purposes["research"].headers.removes("X-Patient-Id"));
}

#[wasm_bindgen_test]
fn configuration_errors_name_the_offending_key() {
    let error = |json: &str| {
        CompiledConfig::load(json.as_bytes(), &|_| None)
            .unwrap_err()
            .to_string()
    };
    let cases = [
        (
            r#"{"policies": {"patients": {"purposes": {"research": {"fields": {"birthDate": "yeer"}}}}}}"#,
            r#"policies.patients.purposes.research.fields."birthDate": unknown action "yeer"; expected"#,
        ),
        (
            r#"{"policies": {"p": {"purposes": {"r": {"fields": {"a..b": "keep"}}}}}}"#,
            r#"policies.p.purposes.r.fields."a..b": bad path: empty segment at character 3"#,
        ),
        (
            r#"{"policies": {"p": {"purposes": {"care": {"defualt": "keep"}}}}}"#,
            "policies.p.purposes.care.defualt: unknown field `defualt`",
        ),
        (
            r#"{"policies": {"p": {"default_purpose": "x", "purposes": {"r": {}}}}}"#,
            r#"policies.p.default_purpose: purpose "x" is not defined"#,
        ),
        (
            r#"{"policies": {"p": {"auth": "none", "scopes": {"GET": ["a"]}, "purposes": {"r": {}}}}}"#,
            "policies.p.scopes.GET: scopes need a token",
        ),
        (
            r#"{"limits": {"max_depth": 0}, "policies": {}}"#,
            "limits.max_depth: must be between 1 and 10000",
        ),
        (
            r#"{"policies": "#,
            "policies: the configuration is not valid JSON",
        ),
    ];
    for (json, expected) in cases {
        let message = error(json);
        assert!(
            message.starts_with(expected),
            "{json}\n got: {message}\nwant: {expected}"
        );
    }
    assert!(
        CompiledConfig::load(DOCUMENTED_EXAMPLE.as_bytes(), &|_| None)
            .unwrap_err()
            .to_string()
            .starts_with("pseudonymization.key_env: the environment variable FINALITE_PSEUDONYM_KEY is not set"),
        "the key comes from the VM's environment"
    );
}

// --- Scopes and purposes -------------------------------------------------------------------

struct Token(Option<Vec<(&'static str, ClaimValue)>>);

impl ClaimSource for Token {
    fn has_verified_token(&self) -> bool {
        self.0.is_some()
    }
    fn claim(&self, name: &str) -> Option<ClaimValue> {
        self.0
            .as_ref()?
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.clone())
    }
}

fn token(scope: &str, purposes: &[&str]) -> Token {
    Token(Some(vec![
        ("scope", ClaimValue::String(scope.into())),
        (
            "purposes",
            ClaimValue::List(purposes.iter().map(|p| p.to_string()).collect()),
        ),
        ("client_id", ClaimValue::String("partner".into())),
    ]))
}

fn decide(
    config: &CompiledConfig,
    path: &str,
    method: &str,
    purpose: Option<&str>,
    token: &Token,
) -> RequestDecision {
    let route = RouteInfo {
        path,
        method,
        ..RouteInfo::default()
    };
    let caller = Caller {
        claims: token,
        peer_uri_san: None,
    };
    request::decide(config, &route, purpose, &caller).decision
}

fn refusal(decision: RequestDecision) -> (u16, &'static str, Option<String>) {
    match decision {
        RequestDecision::Deny(d) => (d.status(), d.problem.slug, d.www_authenticate),
        other => panic!("not denied: {other:?}"),
    }
}

#[wasm_bindgen_test]
fn scopes_and_purposes_allow() {
    let config = design();
    assert_eq!(
        decide(
            &config,
            "/patients/1",
            "GET",
            Some("billing"),
            &token("patients:read", &["billing"])
        ),
        RequestDecision::Allow(Allowed {
            policy: 1,
            purpose: "billing".into(),
            client_id: Some("partner".into()),
            smart: None,
        })
    );
    // A `purpose:NAME` scope authorises the purpose too.
    assert!(matches!(
        decide(
            &config,
            "/patients",
            "GET",
            Some("research"),
            &token("patients:read purpose:research", &[])
        ),
        RequestDecision::Allow(_)
    ));
    // Open data: no token, the default purpose.
    let open = RouteInfo {
        metadata_policy: Some("open"),
        path: "/cities",
        method: "GET",
        ..RouteInfo::default()
    };
    let verdict = request::decide(
        &config,
        &open,
        None,
        &Caller {
            claims: &Token(None),
            peer_uri_san: None,
        },
    );
    assert!(
        matches!(&verdict.decision, RequestDecision::Allow(a) if a.purpose == "open-data"),
        "{verdict:?}"
    );
}

#[wasm_bindgen_test]
fn scopes_and_purposes_refuse() {
    let config = design();
    let cases = [
        (
            decide(&config, "/patients", "GET", Some("care"), &Token(None)),
            (
                401,
                "invalid-token",
                Some("Bearer error=\"invalid_token\"".into()),
            ),
        ),
        (
            decide(
                &config,
                "/patients",
                "GET",
                Some("care"),
                &token("other", &["care"]),
            ),
            (
                403,
                "insufficient-scope",
                Some("Bearer error=\"insufficient_scope\", scope=\"patients:read\"".into()),
            ),
        ),
        (
            decide(
                &config,
                "/patients",
                "GET",
                None,
                &token("patients:read", &["care"]),
            ),
            (403, "purpose-undeclared", None),
        ),
        (
            decide(
                &config,
                "/patients",
                "GET",
                Some("research"),
                &token("patients:read", &["billing"]),
            ),
            (403, "purpose-not-authorised", None),
        ),
        (
            decide(
                &config,
                "/patients",
                "GET",
                Some("marketing"),
                &token("patients:read", &["marketing"]),
            ),
            (403, "purpose-not-accepted", None),
        ),
        (
            decide(
                &config,
                "/elsewhere",
                "GET",
                Some("care"),
                &token("patients:read", &["care"]),
            ),
            (403, "no-policy", None),
        ),
    ];
    for (decision, expected) in cases {
        assert_eq!(refusal(decision), expected);
    }
}
