//! The per-request work of the proxy-wasm adapter, run natively without a host, so that it
//! can be counted in instructions (deterministic, unlike wall-clock time on a shared machine).
//!
//! At 1 KiB the engine is not the cost of a request in Envoy: the work around it is. This replays, for one allowed request, every host-independent call the
//! adapter (`src/proxy/http.rs`, `src/proxy/root.rs`) makes, in the same order: route and
//! caller decision (`request::decide`), response plan, body pipeline on a ~1.7 KB FHIR-like
//! Bundle (the bench's 1 KiB case, `finalite_test_support::bench`), stats, the filter-state strings, the
//! audit record and its JSON line, and the metrics' arithmetic. What the host would hand
//! over (header values, the response header map, the body) is copied into fresh buffers, as
//! the proxy-wasm SDK copies it into the module's memory. Host calls themselves are not
//! modelled, only counted (printed per request).
//!
//! Scenarios (`--scenario`):
//! - `bench` (default): the configuration of `make bench` (benches/bench.py): `auth: none`,
//!   the realistic 12-path allowlist with one pseudonymised field, pseudonyms not per client.
//! - `jwt`: the same rules behind a token verified by Envoy's jwt_authn (claims read from its
//!   metadata, in Envoy's serialised form), a scope requirement, pseudonyms per client.
//!
//! Instructions per request, with callgrind (run twice; the difference divided by 10 leaves
//! out the start-up and the one-off configuration load):
//!
//! ```text
//! cargo build --release --example request_cost
//! valgrind --tool=callgrind --callgrind-out-file=cg.1 target/release/examples/request_cost --iters 1
//! valgrind --tool=callgrind --callgrind-out-file=cg.11 target/release/examples/request_cost --iters 11
//! ```
//!
//! Add `--scenario jwt` to both runs for the token case; `--show` prints the filtered body
//! and the audit line. For names in `callgrind_annotate --inclusive=yes cg.11`, build with
//! `CARGO_PROFILE_RELEASE_DEBUG=true CARGO_PROFILE_RELEASE_STRIP=false`; each callback is a
//! function of its own here (`request_headers`, `on_response_headers`, `response_body`, `log`).

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use finalite::audit::{Outcome, Trace};
use finalite::auth::claims::{decode_envoy_claim, ClaimSource, ClaimValue};
use finalite::body::BodyFilter;
use finalite::decision::{Allowed, BodyPlan, RequestDecision};
use finalite::json::filter::FilterStats;
use finalite::policy::route::RouteInfo;
use finalite::policy::CompiledConfig;
use finalite::request::{self, Caller};
use finalite::response;
use finalite_test_support::bench as common;

/// The bench's pseudonymisation key (benches/bench.py, `finalite_test_support::bench`).
const KEY: &str = "bench-key-0123456789abcdefghijkl";

/// The realistic allowlist of benches/bench.py.
const FIELDS: &str = r#"{
    "resourceType": "keep", "type": "keep", "total": "keep",
    "entry.resource.resourceType": "keep", "entry.resource.id": "pseudonymize",
    "entry.resource.meta.lastUpdated": "keep", "entry.resource.gender": "keep",
    "entry.resource.birthDate": "keep", "entry.resource.address.city": "keep",
    "entry.resource.address.country": "keep", "entry.resource.condition.code": "keep",
    "entry.search.mode": "keep"}"#;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scenario {
    Bench,
    Jwt,
}

fn configuration(scenario: Scenario) -> String {
    match scenario {
        Scenario::Bench => format!(
            r#"{{"purpose_header": "x-purpose",
                "limits": {{"max_body_bytes": 16777216, "max_depth": 64}},
                "pseudonymization": {{"key_env": "FINALITE_PSEUDONYM_KEY", "per_client": false}},
                "policies": {{"bundle": {{"match": [{{"prefix": "/"}}], "auth": "none",
                    "default_purpose": "research", "streaming": false,
                    "purposes": {{"research": {{"fields": {FIELDS}}}}}}}}}}}"#
        ),
        Scenario::Jwt => format!(
            r#"{{"purpose_header": "x-purpose", "unmatched": "deny",
                "limits": {{"max_body_bytes": 1048576, "max_depth": 64}},
                "token": {{"from": "jwt_authn", "jwt_authn": {{"metadata_key": "idp"}},
                           "client_claim": "client_id", "purposes_claim": "purposes"}},
                "pseudonymization": {{"key_env": "FINALITE_PSEUDONYM_KEY", "per_client": true}},
                "policies": {{"patients": {{"match": [{{"prefix": "/patients", "methods": ["GET"]}}],
                    "auth": "required",
                    "scopes": {{"GET": ["patients:read"], "*": ["patients:write"]}},
                    "purposes": {{"care": {{"default": "keep"}},
                                  "research": {{"fields": {FIELDS},
                                                "headers": {{"remove": ["x-patient-*"]}}}}}}}}}}}}"#
        ),
    }
}

/// Envoy's serialised form of a list claim, as `get_property` returns it from jwt_authn's
/// metadata (see `decode_envoy_claim`).
fn envoy_list(items: &[&str]) -> Vec<u8> {
    let mut out = (items.len() as u32).to_le_bytes().to_vec();
    for item in items {
        out.extend((item.len() as u32).to_le_bytes());
        out.extend(0u32.to_le_bytes());
    }
    for item in items {
        out.extend(item.as_bytes());
        out.extend([0, 0]);
    }
    out
}

/// jwt_authn's metadata as the host would serve it: each read copies the bytes into the
/// module and decodes them, as `JwtAuthnClaims` does.
struct Metadata {
    /// The whole payload `has_verified_token` fetches (a serialised protobuf Struct).
    payload: Vec<u8>,
    claims: Vec<(&'static str, Vec<u8>)>,
    host_calls: std::cell::Cell<u32>,
}

impl ClaimSource for Metadata {
    fn has_verified_token(&self) -> bool {
        self.host_calls.set(self.host_calls.get() + 1);
        black_box(self.payload.to_vec());
        true
    }

    fn claim(&self, name: &str) -> Option<ClaimValue> {
        self.host_calls.set(self.host_calls.get() + 1);
        let bytes = self.claims.iter().find(|(n, _)| *n == name)?.1.to_vec();
        decode_envoy_claim(&bytes)
    }
}

/// What the host would return for a header or property: a fresh copy, checked as UTF-8.
fn host_string(value: Option<&str>) -> Option<String> {
    value.and_then(|v| String::from_utf8(v.as_bytes().to_vec()).ok())
}

/// wrk's GET as Envoy hands its header map over to the filter (Envoy has added
/// `x-forwarded-proto` and `x-request-id`).
fn request_header_map(path: &str) -> Vec<(String, Vec<u8>)> {
    [
        (":authority", "127.0.0.1:10000"),
        (":path", path),
        (":method", "GET"),
        (":scheme", "http"),
        ("x-purpose", "research"),
        ("x-forwarded-proto", "http"),
        ("x-request-id", "5f1c0d2e-8a9b-4c3d-9e8f-0a1b2c3d4e5f"),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
    .collect()
}

/// An nginx response to the bench's GET, as Envoy hands its header map over.
fn response_headers(body_len: usize) -> Vec<(String, Vec<u8>)> {
    [
        (":status", "200".to_string()),
        ("server", "nginx/1.26.3".to_string()),
        ("date", "Mon, 23 Nov 2026 13:53:00 GMT".to_string()),
        ("content-type", "application/json".to_string()),
        ("content-length", body_len.to_string()),
        ("last-modified", "Mon, 23 Nov 2026 13:40:00 GMT".to_string()),
        ("etag", "\"6741db40-6a5\"".to_string()),
        ("accept-ranges", "bytes".to_string()),
        ("x-envoy-upstream-service-time", "0".to_string()),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.into_bytes()))
    .collect()
}

struct Fixture {
    scenario: Scenario,
    config: CompiledConfig,
    body: Vec<u8>,
    request_headers: Vec<(String, Vec<u8>)>,
    headers: Vec<(String, Vec<u8>)>,
    metadata: Metadata,
}

/// Host calls of one request, counted as the adapter makes them (not executed here).
#[derive(Default)]
struct HostCalls(u32);

impl HostCalls {
    fn call(&mut self) {
        self.0 += 1;
    }
}

/// What `on_http_request_headers` leaves for later callbacks (the adapter's `Trace` and
/// `Stage::Allowed`).
struct Request {
    allowed: Allowed,
    trace: Trace,
}

/// `on_http_request_headers`: headers and properties read, the decision, the filter state.
#[inline(never)]
fn request_headers(f: &Fixture, calls: &mut HostCalls) -> Request {
    let (metadata_policy, route_name) = match f.scenario {
        Scenario::Bench => (None, None),
        Scenario::Jwt => (Some("patients"), Some("patients")),
    };
    // The request's header map in one call, as the adapter reads it; then two properties.
    let pairs = f.request_headers.clone();
    let header = |name: &str| request::first_header(&pairs, name);
    let path = header(":path").unwrap_or_default();
    let method = header(":method").unwrap_or_default();
    let metadata_policy = host_string(metadata_policy);
    let route_name = host_string(route_name);
    calls.0 += 3;
    // The peer certificate only when a policy uses mTLS; the authorization header only with
    // `token.from: jwks` (neither here).
    let peer = f
        .config
        .uses_mtls()
        .then(|| {
            calls.call();
            host_string(None)
        })
        .flatten();
    let route = RouteInfo {
        metadata_policy: metadata_policy.as_deref(),
        route_name: route_name.as_deref(),
        path,
        method,
    };
    let declared = request::declared_purpose(&pairs, "x-purpose");
    f.metadata.host_calls.set(0);
    let caller = Caller {
        claims: &f.metadata,
        peer_uri_san: peer.as_deref(),
    };
    let verdict = request::decide(&f.config, &route, declared, &caller);
    calls.0 += f.metadata.host_calls.get();
    let request_id = header("x-request-id").map(str::to_owned);
    // set_state: policy and its hash, purpose, client, decision.
    calls.0 += u32::from(verdict.policy.is_some()) * 2
        + u32::from(verdict.purpose.is_some())
        + u32::from(verdict.client.is_some())
        + 1;
    let mut trace = Trace::default();
    trace.record_verdict(&verdict, route_name, request_id);
    trace.outcome = Some(Outcome::Allowed);
    let RequestDecision::Allow(allowed) = verdict.decision else {
        panic!("the harness's request is allowed");
    };
    // The request headers to remove, each only if present (wrk sends neither).
    calls.0 += request::headers_to_remove(&f.config, &allowed, Some(&pairs)).count() as u32;
    Request { allowed, trace }
}

/// `on_http_response_headers`: status, details, the header map, the plan, the pipeline.
#[inline(never)]
fn on_response_headers(f: &Fixture, request: &Request, calls: &mut HostCalls) -> Box<BodyFilter> {
    // The whole map in one call, `:status` from it; the details only for an error status.
    let headers: Vec<(String, String)> = f
        .headers
        .iter()
        .map(|(n, v)| {
            let value = String::from_utf8(v.clone())
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            (n.clone(), value)
        })
        .collect();
    calls.call();
    let status: Option<u16> = headers
        .iter()
        .find(|(name, _)| name == ":status")
        .and_then(|(_, value)| value.parse().ok());
    assert!(response::carries_upstream_data(status, None));
    let plan = response::plan(&f.config, &request.allowed, &headers, false);
    calls.0 += (plan.remove_headers.len() + plan.set_headers.len()) as u32;
    let BodyPlan::Filter(spec) = plan.body else {
        panic!("the harness's response is filtered");
    };
    Box::new(BodyFilter::for_spec(
        &spec,
        &f.config,
        request.allowed.client_id.as_deref(),
    ))
}

/// `on_http_response_body`, buffered: the whole body in one chunk with the end of the
/// stream; the filtered body, the stats, the two filter-state counts.
#[inline(never)]
fn response_body(
    f: &Fixture,
    body: &mut BodyFilter,
    calls: &mut HostCalls,
) -> (Vec<u8>, FilterStats, u64) {
    let chunk = f.body.to_vec();
    calls.call();
    let mut out = Vec::new();
    body.write(&chunk).expect("the bundle is valid JSON");
    out.extend(body.take_output());
    body.finish().expect("the bundle is complete");
    out.extend(body.take_output());
    let filtered = std::mem::take(&mut out);
    calls.call(); // set_buffer
    let (received, _) = body.sizes();
    let stats = body.take_stats();
    black_box(stats.withheld.total().to_string());
    black_box(stats.transformed.total().to_string());
    calls.0 += 2;
    (filtered, stats, received)
}

/// `on_log`: the audit record, its JSON line, the metrics.
#[inline(never)]
fn log(
    f: &Fixture,
    request: Request,
    stats: FilterStats,
    sizes: (u64, u64),
    calls: &mut HostCalls,
) -> String {
    calls.call(); // get_current_time
    calls.call(); // response.code
    let mut trace = request.trace;
    trace.stats = stats;
    trace.sizes = Some(sizes);
    let record = trace
        .into_record(
            UNIX_EPOCH + Duration::from_millis(1_795_430_400_123),
            &f.config,
            Some(200),
        )
        .expect("the request was decided");
    let line = record.to_json_line();
    calls.call(); // the log line
                  // Metrics::record: one increment per non-zero counter.
    let counters = [
        1,
        record.withheld.total(),
        record.transformed.total(),
        record.bytes_in,
        record.bytes_out,
    ];
    calls.0 += counters.iter().filter(|&&c| c > 0).count() as u32;
    line
}

/// One request through the adapter's host-independent work; returns the body sent and the
/// audit line.
fn one_request(f: &Fixture, calls: &mut HostCalls) -> (Vec<u8>, String) {
    let request = request_headers(f, calls);
    let mut body = on_response_headers(f, &request, calls);
    let (filtered, stats, received) = response_body(f, &mut body, calls);
    drop(body);
    let sent = filtered.len() as u64;
    let line = log(f, request, stats, (received, sent), calls);
    (filtered, line)
}

fn fixture(scenario: Scenario) -> Fixture {
    let env = |name: &str| (name == "FINALITE_PSEUDONYM_KEY").then(|| KEY.to_string());
    let config = CompiledConfig::load(configuration(scenario).as_bytes(), &env)
        .expect("the harness's configuration loads");
    let body = common::bundle(1 << 10, 7);
    let headers = response_headers(body.len());
    let request_headers = request_header_map(match scenario {
        Scenario::Bench => "/bundle-1KiB.json",
        Scenario::Jwt => "/patients/bundle-1KiB.json",
    });
    let metadata = Metadata {
        payload: vec![0x0a; 180],
        claims: vec![
            ("scope", b"patients:read purpose:research openid".to_vec()),
            ("purposes", envoy_list(&["research", "care"])),
            ("client_id", b"lab-42".to_vec()),
        ],
        host_calls: std::cell::Cell::new(0),
    };
    Fixture {
        scenario,
        config,
        body,
        request_headers,
        headers,
        metadata,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let iters: u32 = value("--iters").map_or(1, |n| n.parse().expect("--iters N"));
    let scenario = match value("--scenario").as_deref() {
        None | Some("bench") => Scenario::Bench,
        Some("jwt") => Scenario::Jwt,
        Some(other) => panic!("unknown scenario {other:?} (bench, jwt)"),
    };
    let f = fixture(scenario);
    let mut calls = HostCalls::default();
    let mut last = (Vec::new(), String::new());
    for _ in 0..iters {
        calls = HostCalls::default();
        last = black_box(one_request(&f, &mut calls));
    }
    println!(
        "{iters} request(s); body {} -> {} bytes; audit line {} bytes; {} host calls per request",
        f.body.len(),
        last.0.len(),
        last.1.len(),
        calls.0
    );
    if args.iter().any(|a| a == "--show") {
        println!("{}\n{}", String::from_utf8_lossy(&last.0), last.1);
    }
}
