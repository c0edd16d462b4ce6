//! Everything the proxy does at request time with a loaded configuration, driven from one
//! configuration, for the hostile-configuration checks: configuration is validated once, at
//! load, and nothing per request, so no configuration accepted at load may make the filter
//! panic at request time.
//!
//! Shared by `tests/hostile_config.rs` (proptest-generated configurations, stable Rust) and
//! the fuzz target `config_load` (fuzz/, arbitrary bytes). Refusals are fine; a panic, an
//! out-of-bounds index or an arithmetic overflow (debug builds) is the failure.
//!
//! The bodies run through each purpose are derived from the configuration's own field paths
//! (with every kind of leaf, keys spelled plainly and as `\u` escapes), plus a fixed set.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use finalite::audit::{AuditRecord, Outcome};
use finalite::auth::claims::{ClaimSource, ClaimValue};
use finalite::body::BodyFilter;
use finalite::config::Config;
use finalite::decision::{BodyPlan, RequestDecision};
use finalite::json::{Framing, JsonFilter};
use finalite::policy::path::{FieldPath, Segment};
use finalite::policy::route::{PathMatch, RouteInfo};
use finalite::policy::rules::FieldRules;
use finalite::policy::CompiledConfig;
use finalite::request::{self, Caller};
use finalite::response;
use serde_json::{json, Map, Value};

/// The environment of the VM: every variable holds a usable pseudonymisation key, so
/// configurations that pseudonymise load and their transforms run.
pub fn env(_name: &str) -> Option<String> {
    Some("k".repeat(32))
}

/// Bounds on the work done for one configuration (fuzzing wants many per second).
const MAX_POLICIES: usize = 6;
const MAX_PURPOSES: usize = 6;
const MAX_PATHS: usize = 8;
/// Fixed documents, then per path: the leaves in an array (keys escaped), each leaf, one
/// array of records.
const FIXED: usize = 18;
const DOCS_PER_PATH: usize = 13;

/// Loads `bytes` as the host would hand them over and, when they load, runs requests and
/// responses through every policy and purpose. Returns whether the configuration loaded.
pub fn exercise(bytes: &[u8]) -> bool {
    let Ok(config) = CompiledConfig::load(bytes, &env) else {
        return false;
    };
    // What the operator wrote, for the field paths and scopes (it parsed, since it loaded).
    let raw = Config::from_host_bytes(bytes).expect("a loaded configuration parses");
    let bodies = Bodies::new(&raw);

    // Every purpose's rules, directly, as JSON and NDJSON.
    for policy in config.policies.iter().take(MAX_POLICIES) {
        for purpose in policy.purposes.values().take(MAX_PURPOSES) {
            if let Some(rules) = &purpose.body {
                let client = config.pseudonyms_per_client.then_some("client-a");
                bodies.run_engine(rules, &config, client);
            }
        }
    }

    // The request path, then the response path of whatever is allowed. Denials and audit
    // records are rendered once per kind of verdict.
    let mut planned = BTreeSet::new();
    let mut rendered = BTreeSet::new();
    let callers = callers(&config, &raw);
    for (route, method) in routes(&config, &raw) {
        let route = RouteInfo {
            metadata_policy: route.0.as_deref(),
            route_name: route.1.as_deref(),
            path: &route.2,
            method,
        };
        for declared in declared_purposes(&config) {
            for (token, san) in &callers {
                let caller = Caller {
                    claims: token,
                    peer_uri_san: san.as_deref(),
                };
                let verdict = request::decide(&config, &route, declared.as_deref(), &caller);
                let kind = match &verdict.decision {
                    RequestDecision::Deny(denial) => denial.problem.slug,
                    RequestDecision::PassUnfiltered => "pass",
                    RequestDecision::Allow(_) => "allow",
                };
                if rendered.insert((verdict.policy, kind, verdict.dry_run)) {
                    audit(&config, &verdict);
                    if let RequestDecision::Deny(denial) = &verdict.decision {
                        let _ = (denial.status(), denial.headers(), denial.body());
                    }
                }
                if let RequestDecision::Allow(allowed) = &verdict.decision {
                    let key = (
                        allowed.policy,
                        allowed.purpose.clone(),
                        allowed.client_id.clone(),
                    );
                    if planned.insert(key) {
                        respond(&config, allowed, &bodies);
                    }
                }
            }
        }
    }
    true
}

/// The response path for one allowed request: header rules, the body plan for several
/// response heads, and the planned body filter over every body.
fn respond(config: &CompiledConfig, allowed: &finalite::decision::Allowed, bodies: &Bodies) {
    let heads: [&[(&str, &str)]; 7] = [
        &[
            ("content-type", "application/json"),
            ("content-length", "12"),
        ],
        &[
            ("Content-Type", "application/fhir+json; charset=utf-8"),
            ("x-patient-id", "1"),
        ],
        &[("content-type", "application/x-ndjson")],
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        &[
            ("content-type", "application/json"),
            ("content-encoding", "br"),
        ],
        &[("content-type", "text/csv"), (":status", "200")],
        &[("content-type", "not a media type"), ("etag", "\"x\"")],
    ];
    for head in heads {
        let headers: Vec<(String, String)> = head
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        for end_of_stream in [false, true] {
            let plan = response::plan(config, allowed, &headers, end_of_stream);
            let _ = &plan.remove_headers;
            match plan.body {
                BodyPlan::Untouched => {}
                BodyPlan::FailClosed(problem) => {
                    let _ = problem.body();
                }
                BodyPlan::Filter(spec) => {
                    // The engine already met every body (run_engine): a sample suffices.
                    for body in bodies.sample() {
                        let mut filter =
                            BodyFilter::for_spec(&spec, config, allowed.client_id.as_deref());
                        let mut result = Ok(());
                        for chunk in body.chunks(7) {
                            result = filter.write(chunk);
                            let _ = filter.take_output();
                            if result.is_err() {
                                break;
                            }
                        }
                        let result = result.and_then(|()| filter.finish());
                        let _ = filter.take_output();
                        if let Err(error) = result {
                            let _ = finalite::decision::Problem::from_body_error(&error).body();
                        }
                    }
                }
            }
        }
    }
    let purpose = &config.policies[allowed.policy].purposes[&allowed.purpose];
    for name in [
        "content-type",
        "X-Patient-Id",
        "x-",
        ":status",
        "set-cookie",
        "a-very-long-header-name-made-of-many-parts-to-try-the-wildcards-on-it",
    ] {
        let _ = purpose.headers.removes(name);
    }
}

fn audit(config: &CompiledConfig, verdict: &request::Verdict) {
    let mut record = AuditRecord::new(UNIX_EPOCH + Duration::from_secs(1_700_000_000), {
        match &verdict.decision {
            RequestDecision::Deny(denial) => Outcome::of(denial.kind()),
            RequestDecision::PassUnfiltered => Outcome::PassedUnfiltered,
            RequestDecision::Allow(_) => Outcome::Allowed,
        }
    });
    if let Some(policy) = verdict.policy.map(|i| &config.policies[i]) {
        record.policy = Some(policy.name.clone());
        record.policy_hash = Some(policy.hash.clone());
    }
    record.client = verdict.client.clone();
    record.purpose = verdict.purpose.clone();
    record.dry_run = verdict.dry_run;
    let _ = record.to_json_line();
}

type Route = (Option<String>, Option<String>, String);

/// Routes naming each policy by metadata and by route name, an unknown policy, and the
/// paths of the matchers; with a few methods.
fn routes(config: &CompiledConfig, raw: &Config) -> Vec<(Route, &'static str)> {
    let mut routes: Vec<Route> = vec![
        (Some("no-such-policy".into()), None, "/".into()),
        (None, None, "/".into()),
        (None, Some("no-such-route".into()), "/x?y#z".into()),
    ];
    for name in raw.policies.keys().take(MAX_POLICIES) {
        routes.push((Some(name.clone()), None, "/".into()));
    }
    if let Some(name) = raw.policies.keys().next() {
        routes.push((None, Some(name.clone()), "/".into()));
    }
    for matcher in config.routes.matchers.iter().take(MAX_POLICIES) {
        let (PathMatch::Prefix(path) | PathMatch::Exact(path)) = &matcher.path;
        routes.push((None, None, path.clone()));
        routes.push((None, None, format!("{path}/1?q=2")));
    }
    let mut out = Vec::new();
    for route in routes {
        for method in ["GET", "patch"] {
            out.push((route.clone(), method));
        }
    }
    out
}

fn declared_purposes(config: &CompiledConfig) -> Vec<Option<String>> {
    let mut names: BTreeSet<&str> = BTreeSet::new();
    for policy in config.policies.iter().take(MAX_POLICIES) {
        names.extend(
            policy
                .purposes
                .keys()
                .take(MAX_PURPOSES)
                .map(String::as_str),
        );
    }
    let mut out = vec![None, Some(" unknown".into())];
    for name in names.into_iter().take(MAX_PURPOSES) {
        out.push(Some(name.to_string()));
    }
    if let Some(Some(first)) = out.get(2).cloned() {
        out.push(Some(format!(" {first}\t")));
    }
    out
}

/// A verified token's claims, or none.
pub struct Token(Option<Vec<(String, ClaimValue)>>);

impl ClaimSource for Token {
    fn has_verified_token(&self) -> bool {
        self.0.is_some()
    }
    fn claim(&self, name: &str) -> Option<ClaimValue> {
        self.0
            .as_ref()?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }
}

/// No token; a token granting every scope and purpose the configuration names (under the
/// configured claim names and the standard ones); an empty token; each with and without
/// the peer certificate of a configured mTLS client.
fn callers(config: &CompiledConfig, raw: &Config) -> Vec<(Token, Option<String>)> {
    let mut scopes = BTreeSet::new();
    let mut purposes = BTreeSet::new();
    let mut sans = vec![None, Some(String::new())];
    for policy in raw.policies.values().take(MAX_POLICIES) {
        for requirement in policy.scopes.values() {
            match requirement {
                finalite::config::ScopeRequirementConfig::AllOfList(list) => {
                    scopes.extend(list.iter().cloned())
                }
                finalite::config::ScopeRequirementConfig::Explicit(explicit) => {
                    scopes.extend(explicit.all_of.iter().cloned());
                    scopes.extend(explicit.any_of.iter().cloned());
                }
            }
        }
        purposes.extend(policy.purposes.keys().take(MAX_PURPOSES).cloned());
        if let Some(client) = policy.clients.keys().next() {
            sans.push(Some(client.clone()));
        }
    }
    let scope_text = scopes
        .iter()
        .cloned()
        .chain(purposes.iter().map(|p| format!("purpose:{p}")))
        .collect::<Vec<_>>()
        .join(" ");
    let everything = || {
        Token(Some(vec![
            ("scope".into(), ClaimValue::String(scope_text.clone())),
            (
                "scp".into(),
                ClaimValue::List(scopes.iter().cloned().collect()),
            ),
            (
                config.token.claims.purposes_claim.clone(),
                ClaimValue::List(purposes.iter().cloned().collect()),
            ),
            (
                config.token.claims.client_claim.clone(),
                ClaimValue::String("client-a".into()),
            ),
        ]))
    };
    let odd = || {
        Token(Some(vec![
            ("scope".into(), ClaimValue::List(vec![String::new()])),
            (
                config.token.claims.purposes_claim.clone(),
                ClaimValue::String(format!(" {} ", scope_text)),
            ),
            (
                config.token.claims.client_claim.clone(),
                ClaimValue::List(vec![]),
            ),
            ("sub".into(), ClaimValue::String(String::new())),
        ]))
    };
    let mut out = vec![(Token(None), None), (odd(), None)];
    for san in sans.into_iter().take(4) {
        out.push((everything(), san));
    }
    out
}

/// The bodies every purpose is tried on.
pub struct Bodies {
    /// JSON documents.
    json: Vec<Vec<u8>>,
    /// NDJSON bodies.
    lines: Vec<Vec<u8>>,
}

/// Leaves put at the end of every configured path: each kind of value every action meets.
fn leaves() -> Vec<Value> {
    vec![
        json!("1984-03-07"),
        json!("2024-02-29T23:59:60.5+01:00"),
        json!("texte accentué 漢字 🙂"),
        json!(""),
        json!(69003),
        serde_json::from_str("-1.5e300").unwrap(),
        json!(true),
        json!(null),
        json!({"k": "v", "n": [1, {"m": "2000"}]}),
        json!([]),
        json!([["1999"], {"x": null}]),
    ]
}

impl Bodies {
    pub fn new(raw: &Config) -> Bodies {
        let mut json: Vec<Vec<u8>> = [
            &b"{}"[..],
            b"[]",
            b"null",
            b"\"1984-03-07\"",
            b"-0.0e+0",
            b"true",
            br#"{"id":"p1","name":{"family":"Martin","given":["L\u00e9a"]},"birthDate":"1984-03-07","ssn":"2840375123456","address":{"city":"Lyon","postalCode":"69003"},"conditions":[{"code":"E11"}],"entry":[{"resource":{"id":1}}]}"#,
            br#"[{"a":{"b":{"c":[1,2,{"d":"e"}]}}},{"a":[]},"x",[[[]]]]"#,
            b"{\"a\":1,\"a\":{\"a\":[\"a\"]},\"\":\"\"}",
            // Refused: malformed, truncated, a lone surrogate, too deep for the defaults.
            br#"{"a":[1,}"#,
            br#"{"a":"#,
            br#"{"a":"\ud800"}"#,
            // Typed objects (type member first, last, escaped, nested, contained), and the
            // refusals of typed rules: a type that is not a string, two type members.
            br#"{"resourceType":"Bundle","type":"searchset","entry":[{"resource":{"id":"1","resourceType":"Patient","name":[{"family":"M"}]}},{"resource":{"resource\u0054ype":"Location","address":{"city":"Lyon"}}}]}"#,
            br#"{"t":"a","contained":[{"t":"b","x":{"t":"c"}}],"t2":{"id":1,"type":"x","t":"d"}}"#,
            br#"{"resourceType":5,"t":["a"],"type":null}"#,
            br#"[{"resourceType":"Patient","resourceType":"Patient","t":"a","t":"b"},{"id":1}]"#,
            br#"{"kind":"Observation","code":{"coding":[{"code":"1"}]},"resourceType":"Observation"}"#,
        ]
        .iter()
        .map(|b| b.to_vec())
        .collect();
        json.push(format!("{}1{}", "[{\"a\":".repeat(40), "}]".repeat(40)).into_bytes());
        debug_assert_eq!(json.len(), FIXED);

        // Each configured path; a type's paths with the type member (`Some((key, type))`)
        // put in the object they start from.
        let mut paths: Vec<(FieldPath, Option<(String, String)>)> = Vec::new();
        'outer: for policy in raw.policies.values().take(MAX_POLICIES) {
            for purpose in policy.purposes.values().take(MAX_PURPOSES) {
                let typed = purpose.types.iter().flatten().flat_map(|(name, rules)| {
                    let typing = policy.type_key.clone().map(|key| (key, name.clone()));
                    rules.fields.keys().map(move |text| (text, typing.clone()))
                });
                for (text, typing) in purpose.fields.keys().map(|t| (t, None)).chain(typed) {
                    if paths.len() >= MAX_PATHS {
                        break 'outer;
                    }
                    if let Ok(path) = FieldPath::parse(text) {
                        paths.push((path, typing));
                    }
                }
            }
        }
        let leaves = leaves();
        for (path, typing) in &paths {
            let nest = |leaf: Value| {
                let mut doc = nest(&path.segments, leaf);
                if let (Some((key, name)), Value::Object(map)) = (typing, &mut doc) {
                    map.insert(key.clone(), json!(name));
                }
                doc
            };
            let mut docs = Vec::new();
            for leaf in &leaves {
                docs.push(nest(leaf.clone()));
            }
            let all = nest(json!("1999"));
            docs.push(Value::Array(vec![all.clone(), json!({"other": 1}), all]));
            // All leaves at once, in an array, keys spelled as escapes.
            json.push(escape_keys(&nest(Value::Array(leaves.clone()))).into_bytes());
            for doc in docs {
                json.push(serde_json::to_vec(&doc).unwrap());
            }
        }

        let mut lines = vec![b"\n\n".to_vec(), b"{\"a\":1}\r\n[2]\n\n null \n".to_vec()];
        let mut record = Vec::new();
        for doc in json.iter().take(20) {
            record.extend_from_slice(doc);
            record.push(b'\n');
        }
        lines.push(record);
        Bodies { json, lines }
    }

    /// The fixed documents, one derived from each path and the NDJSON bodies.
    fn sample(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.json
            .iter()
            .take(FIXED)
            .chain(self.json.iter().skip(FIXED).step_by(DOCS_PER_PATH))
            .chain(&self.lines)
    }

    /// Each body through the engine, whole and (when short) a byte at a time.
    fn run_engine(&self, rules: &Arc<FieldRules>, config: &CompiledConfig, client: Option<&str>) {
        for (framing, bodies) in [(Framing::Single, &self.json), (Framing::Lines, &self.lines)] {
            for body in bodies {
                let sizes: &[usize] = if body.len() <= 64 {
                    &[usize::MAX, 1]
                } else {
                    &[usize::MAX]
                };
                for &size in sizes {
                    let mut filter = JsonFilter::with_framing(
                        rules.clone(),
                        config.max_depth,
                        config.transform_context(client),
                        framing,
                    );
                    let mut out = Vec::new();
                    let mut result = Ok(());
                    for chunk in body.chunks(size.min(body.len().max(1))) {
                        result = filter.write(chunk, &mut out);
                        if result.is_err() {
                            break;
                        }
                    }
                    let result = result.and_then(|()| filter.finish(&mut out));
                    let stats = filter.stats();
                    let _ = (stats.withheld.total(), stats.transformed.total());
                    if let Err(error) = result {
                        let _ = (
                            error.to_string(),
                            finalite::decision::Problem::from_engine_error(&error).body(),
                        );
                    }
                }
            }
        }
    }
}

/// A document in which `leaf` sits at a field the path reaches (`*` becomes a key of its
/// own, `**` one level of nesting).
fn nest(segments: &[Segment], leaf: Value) -> Value {
    let Some((first, rest)) = segments.split_first() else {
        return leaf;
    };
    let inner = nest(rest, leaf);
    let key = match first {
        Segment::Key(key) => key.clone(),
        Segment::AnyKey => "any".into(),
        Segment::AnyDepth => "deep".into(),
    };
    let mut map = Map::new();
    map.insert(key, inner);
    Value::Object(map)
}

/// The JSON text of `value` with every key spelled as `\u` escapes (surrogate pairs
/// beyond the BMP): the engine matches decoded keys.
fn escape_keys(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let members: Vec<String> = map
                .iter()
                .map(|(k, v)| {
                    let mut key = String::new();
                    for unit in k.encode_utf16() {
                        key.push_str(&format!("\\u{unit:04x}"));
                    }
                    format!("\"{key}\":{}", escape_keys(v))
                })
                .collect();
            format!("{{{}}}", members.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(escape_keys).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}
