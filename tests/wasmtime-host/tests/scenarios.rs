//! The release module under Wasmtime, with the shipped configuration (envoy/envoy.yaml) and
//! the sample API's data: a subset of the Envoy tests' scenarios, with the answers Envoy
//! gives (the same bytes, byte for byte).

use std::sync::OnceLock;

use finalite_wasmtime_host::{
    Claim, Compiled, Exchange, Plugin, Request, Upstream, repository, shipped_configuration,
};
use proxy_wasm_host::abi::v0_2_1::types::LogLevel;

/// The compose file's demo key (any key of 32 bytes or more would do).
const KEY: &str = "DEMO-ONLY-public-pseudonym-key-0001";

/// HMAC-SHA-256 pseudonyms of the sample ids for the client research-lab under KEY, as the
/// Envoy tests' independent implementation computes them.
const PSEUDONYM_1: &str = "1lAlpm26MVhd3MQP6OqMIyw485doCncHdf2TkRj1N3E";
const PSEUDONYM_2: &str = "ivEFSaq4-FuehSl6d7nZLDlbxciCoQoFbuwxuQ2ya2s";
const PSEUDONYM_3: &str = "gESE6fLlKCXKOKNQyM6N4tVhbczBowltaovAdFFVrJk";

const BILLING_VIEW: &str = r#"{"id":"1","name":{"family": "Martin", "given": ["Claire", "L\u00e9a"]},"insurance":{"provider": "Mutuelle Exemple", "number": "MX-0001"}}"#;

fn research_view() -> String {
    format!(
        r#"{{"id":"{PSEUDONYM_1}","birthDate":"1984","address":{{"postalCode":"69"}},"conditions":[{{"code":"E11","onset":"2015"}},{{"code":"I10","onset":"2019"}}]}}"#
    )
}

fn compiled() -> &'static Compiled {
    static COMPILED: OnceLock<Compiled> = OnceLock::new();
    COMPILED.get_or_init(|| Compiled::release().unwrap_or_else(|e| panic!("{e}")))
}

fn plugin() -> Plugin {
    let configuration = shipped_configuration().unwrap_or_else(|e| panic!("{e}"));
    Plugin::start(
        compiled(),
        &configuration,
        &[("FINALITE_PSEUDONYM_KEY", KEY)],
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn sample(path: &str) -> Vec<u8> {
    let file = repository().join("envoy/sample-data").join(path);
    std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

fn patient_1() -> Upstream {
    Upstream::json(&sample("patients/1.json"))
        .header("x-patient-count", "1")
        .header("etag", "\"p1\"")
}

fn token(client: &str, scope: &str, purposes: &[&str]) -> Vec<(String, Claim)> {
    let mut claims = vec![
        ("iss".to_string(), Claim::Str("https://idp.example".into())),
        ("aud".to_string(), Claim::Str("patients-api".into())),
        ("exp".to_string(), Claim::Number(4_102_444_800.0)),
        ("client_id".to_string(), Claim::Str(client.into())),
        ("scope".to_string(), Claim::Str(scope.into())),
    ];
    if !purposes.is_empty() {
        claims.push((
            "purposes".into(),
            Claim::List(purposes.iter().map(|p| p.to_string()).collect()),
        ));
    }
    claims
}

fn billing() -> Vec<(String, Claim)> {
    token(
        "billing-partner",
        "patients:read appointments:read",
        &["billing"],
    )
}

fn research() -> Vec<(String, Claim)> {
    token(
        "research-lab",
        "patients:read exports:read purpose:research",
        &[],
    )
}

fn patients(purpose: &str, claims: Vec<(String, Claim)>) -> Request {
    Request::get("/patients/1")
        .route("patients", "patients")
        .header("x-purpose", purpose)
        .claims(claims)
}

fn run(plugin: &mut Plugin, request: &Request, upstream: &Upstream) -> Exchange {
    plugin
        .exchange(request, upstream)
        .unwrap_or_else(|e| panic!("{e}"))
}

fn assert_problem(exchange: &Exchange, status: u16, body: &str) {
    assert_eq!(exchange.status, status, "{}", exchange.text());
    assert_eq!(
        exchange.header("content-type"),
        Some("application/problem+json")
    );
    assert_eq!(exchange.header("cache-control"), Some("no-store"));
    assert_eq!(exchange.text(), body);
}

// --- Purpose views --------------------------------------------------------------------

#[test]
fn billing_sees_identity_and_insurance_byte_for_byte() {
    let mut p = plugin();
    // Chunks of 7 bytes: the module holds the headers and buffers until the end.
    let r = run(
        &mut p,
        &patients("billing", billing()),
        &patient_1().chunked(7),
    );
    assert_eq!(r.status, 200);
    assert!(
        r.held_headers,
        "the response headers are held until the body is filtered"
    );
    assert_eq!(r.text(), BILLING_VIEW);
    // The filtered body's length and validators are the upstream's no more.
    assert_eq!(r.header("content-length"), None);
    assert_eq!(r.header("etag"), None);
    assert_eq!(r.header("x-patient-count"), Some("1"));
    assert_eq!(r.header("content-type"), Some("application/json"));
}

#[test]
fn research_sees_a_pseudonym_years_and_codes_and_no_patient_headers() {
    let mut p = plugin();
    let r = run(
        &mut p,
        &patients("research", research()),
        &patient_1().chunked(100),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), research_view());
    assert_eq!(r.header("x-patient-count"), None);
}

#[test]
fn care_sees_everything_untouched() {
    let mut p = plugin();
    let care = token("care-team", "patients:read", &["care"]);
    let r = run(&mut p, &patients("care", care), &patient_1());
    assert_eq!(r.body, sample("patients/1.json"));
}

#[test]
fn open_data_needs_no_token() {
    let mut p = plugin();
    let request = Request::get("/open/admissions").route("open-data", "open-data");
    let r = run(
        &mut p,
        &request,
        &Upstream::json(&sample("open-admissions.json")).chunked(50),
    );
    assert_eq!(
        r.text(),
        concat!(
            r#"[{"service":"cardiology","year":2025,"admissions":1243,"averageStay":4.2},"#,
            r#"{"service":"endocrinology","year":2025,"admissions":512,"averageStay":2.8},"#,
            r#"{"service":"pulmonology","year":2025,"admissions":377,"averageStay":5.1}]"#
        )
    );
}

#[test]
fn the_route_name_selects_the_policy_without_metadata() {
    let mut p = plugin();
    let mut request = patients("billing", billing());
    request.route_policy = None;
    let r = run(&mut p, &request, &patient_1());
    assert_eq!(r.text(), BILLING_VIEW);
}

#[test]
fn the_upstream_request_asks_for_whole_uncompressed_documents() {
    let mut p = plugin();
    let request = patients("billing", billing())
        .header("accept-encoding", "gzip, br")
        .header("range", "bytes=0-10")
        .header("x-keep", "yes");
    let r = run(&mut p, &request, &patient_1());
    let sent = r.upstream_request.expect("the request was forwarded");
    let names: Vec<&str> = sent.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        !names.contains(&"accept-encoding") && !names.contains(&"range"),
        "{names:?}"
    );
    assert!(names.contains(&"x-keep"), "{names:?}");
}

#[test]
fn the_audit_record_and_filter_state() {
    let mut p = plugin();
    let id = "0b7e2e4c-4d0f-4b7a-9d1e-2f3a4b5c6d7e";
    let request = patients("research", research()).header("x-request-id", id);
    let r = run(&mut p, &request, &patient_1().chunked(64));
    assert_eq!(r.text(), research_view());
    let records: Vec<serde_json::Value> = p
        .take_log()
        .into_iter()
        .filter(|(level, line)| {
            *level == LogLevel::Info && line.starts_with(r#"{"audit":"finalite""#)
        })
        .map(|(_, line)| serde_json::from_str(&line).expect("an audit record is JSON"))
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let mut record = records[0].clone();
    let fields = record.as_object_mut().expect("an object");
    let time = fields.remove("time").expect("time");
    assert!(
        time.as_str()
            .is_some_and(|t| t.len() == 24 && t.ends_with('Z')),
        "{time}"
    );
    let hash = fields.remove("policy_hash").expect("policy_hash");
    assert!(hash.as_str().is_some_and(|h| h.len() == 12), "{hash}");
    assert_eq!(
        record,
        serde_json::json!({
            "audit": "finalite", "bytes_in": 506, "bytes_out": research_view().len(),
            "client": "research-lab", "decision": "allowed", "dry_run": false,
            "policy": "patients", "purpose": "research", "request_id": id,
            "route": "patients", "status": 200,
            "transformed": {"count": 5, "more": 0, "paths": {
                "address.postalCode": 1, "birthDate": 1, "conditions.onset": 2, "id": 1}},
            // Keys no rule of the policy names are written `*`: a record holds no body key.
            "withheld": {"count": 11, "more": 0, "paths": {
                "*": 1, "address.*": 2, "conditions.*": 2, "insurance.*": 2, "name.*": 3,
                "ssn": 1}},
        })
    );
    assert_eq!(
        r.filter_state.get("finalite_policy").map(String::as_str),
        Some("patients")
    );
    assert_eq!(
        r.filter_state.get("finalite_purpose").map(String::as_str),
        Some("research")
    );
    assert_eq!(
        r.filter_state.get("finalite_client").map(String::as_str),
        Some("research-lab")
    );
    assert_eq!(
        r.filter_state.get("finalite_decision").map(String::as_str),
        Some("allowed")
    );
    assert_eq!(
        r.filter_state.get("finalite_withheld").map(String::as_str),
        Some("11")
    );
    assert_eq!(
        r.filter_state
            .get("finalite_transformed")
            .map(String::as_str),
        Some("5")
    );
}

// --- Refusals ------------------------------------------------------------------------------

#[test]
fn no_token_is_401() {
    let mut p = plugin();
    let request = Request::get("/patients/1")
        .route("patients", "patients")
        .header("x-purpose", "billing");
    let r = run(&mut p, &request, &patient_1());
    assert_problem(
        &r,
        401,
        r#"{"detail":"this route requires a valid bearer token","status":401,"title":"Unauthorized","type":"urn:finalite:problem:invalid-token"}"#,
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="invalid_token""#)
    );
    assert!(
        r.upstream_request.is_none(),
        "a refused request never reaches the upstream"
    );
}

#[test]
fn a_missing_scope_is_403_with_the_scope_named() {
    let mut p = plugin();
    let claims = token("billing-partner", "appointments:read", &["billing"]);
    let r = run(&mut p, &patients("billing", claims), &patient_1());
    assert_problem(
        &r,
        403,
        r#"{"detail":"the caller lacks the scope this request needs: patients:read","status":403,"title":"Forbidden","type":"urn:finalite:problem:insufficient-scope"}"#,
    );
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Bearer error="insufficient_scope", scope="patients:read""#)
    );
}

#[test]
fn a_purpose_the_token_does_not_list_is_403() {
    let mut p = plugin();
    let r = run(&mut p, &patients("research", billing()), &patient_1());
    assert_problem(
        &r,
        403,
        r#"{"detail":"the caller is not authorised for the purpose \"research\"","status":403,"title":"Forbidden","type":"urn:finalite:problem:purpose-not-authorised"}"#,
    );
}

#[test]
fn a_route_no_policy_covers_is_403() {
    let mut p = plugin();
    let request = Request::get("/admin")
        .header("x-purpose", "billing")
        .claims(billing());
    let mut unlisted = request.clone();
    unlisted.route_name = Some("unlisted".into());
    let r = run(&mut p, &unlisted, &patient_1());
    assert_problem(
        &r,
        403,
        r#"{"detail":"no policy covers this route","status":403,"title":"Forbidden","type":"urn:finalite:problem:no-policy"}"#,
    );
}

// --- Fail closed ---------------------------------------------------------------------------

const CANARY: &str = "CANARY-2840375999001";

#[test]
fn malformed_json_is_a_502_with_none_of_the_body() {
    let mut p = plugin();
    // The error comes after several chunks, in a field billing would drop.
    let body =
        format!(r#"{{"id":"1","name":{{"family":"Martin"}},"ssn":"{CANARY}","phone":[1,2,}}"#);
    let upstream = Upstream::json(body.as_bytes()).chunked(8);
    let r = run(&mut p, &patients("billing", billing()), &upstream);
    assert_problem(
        &r,
        502,
        r#"{"detail":"the upstream response could not be filtered: the body is not valid JSON","status":502,"title":"Bad Gateway","type":"urn:finalite:problem:response-not-filterable"}"#,
    );
    assert!(!r.text().contains(CANARY) && !r.text().contains("Martin"));
    assert!(
        r.held_headers,
        "the 502 replaces headers that were held, not sent"
    );
    assert!(!r.reset);
}

#[test]
fn a_media_type_it_cannot_read_is_a_502() {
    let mut p = plugin();
    let upstream =
        Upstream::json(format!("<p>{CANARY}</p>").as_bytes()).header("content-type", "text/html");
    let r = run(&mut p, &patients("billing", billing()), &upstream);
    assert_problem(
        &r,
        502,
        r#"{"detail":"the upstream response could not be filtered: the media type \"text/html\" cannot be filtered","status":502,"title":"Bad Gateway","type":"urn:finalite:problem:response-not-filterable"}"#,
    );
    assert!(!r.text().contains(CANARY));
}

#[test]
fn a_body_over_the_limit_is_a_502() {
    let mut p = plugin();
    // The shipped limits.max_body_bytes is 1 MiB.
    let big = format!(r#"{{"id":"1","padding":"{}"}}"#, "x".repeat(1 << 20));
    let r = run(
        &mut p,
        &patients("billing", billing()),
        &Upstream::json(big.as_bytes()).chunked(64 * 1024),
    );
    assert_problem(
        &r,
        502,
        r#"{"detail":"the upstream response could not be filtered: the body is larger than the limit of 1048576 bytes","status":502,"title":"Bad Gateway","type":"urn:finalite:problem:response-not-filterable"}"#,
    );
    assert!(!r.text().contains("xxxx"));
}

// --- Streaming and NDJSON ----------------------------------------------------------------

const EXPORT: &str = concat!(
    r#"{"id": "1", "name": {"family": "Martin"}, "birthDate": "1984-03-12", "ssn": "2840375999001", "address": {"city": "Lyon", "postalCode": "69003"}, "conditions": [{"code": "E11", "display": "Type 2 diabetes mellitus", "onset": "2015-06-01"}]}"#,
    "\n",
    r#"{"id": "2", "name": {"family": "Dubois"}, "birthDate": "1991-07-30", "ssn": "1910733999002", "address": {"city": "Bordeaux", "postalCode": "33000"}, "conditions": []}"#,
    "\n",
    r#"{"id": "3", "name": {"family": "Nguyen"}, "birthDate": "1958-01-05", "ssn": "2580159999003", "address": {"city": "Lille", "postalCode": "59000"}, "conditions": [{"code": "M81", "onset": "2012-09-03"}, {"code": "H25", "onset": "2021-04-22"}]}"#,
    "\n",
);

fn export_view() -> String {
    format!(
        "{}\n{}\n{}\n",
        format_args!(
            r#"{{"id":"{PSEUDONYM_1}","birthDate":"1984","address":{{"postalCode":"69"}},"conditions":[{{"code":"E11","onset":"2015"}}]}}"#
        ),
        // An emptied container the policy reaches inside leaves no shell.
        format_args!(
            r#"{{"id":"{PSEUDONYM_2}","birthDate":"1991","address":{{"postalCode":"33"}}}}"#
        ),
        format_args!(
            r#"{{"id":"{PSEUDONYM_3}","birthDate":"1958","address":{{"postalCode":"59"}},"conditions":[{{"code":"M81","onset":"2012"}},{{"code":"H25","onset":"2021"}}]}}"#
        ),
    )
}

fn export(body: &[u8], chunk: usize) -> (Request, Upstream) {
    let request = Request::get("/exports/patients")
        .route("exports", "exports")
        .header("x-purpose", "research")
        .claims(research());
    let upstream = Upstream::json(body)
        .header("content-type", "application/x-ndjson")
        .chunked(chunk);
    (request, upstream)
}

#[test]
fn an_ndjson_export_is_streamed_chunk_by_chunk() {
    for chunk in [1, 13, 64, 4096] {
        let mut p = plugin();
        let (request, upstream) = export(EXPORT.as_bytes(), chunk);
        let r = run(&mut p, &request, &upstream);
        assert!(!r.held_headers, "streaming sends the headers at once");
        assert_eq!(r.header("content-length"), None);
        assert!(!r.reset);
        assert_eq!(r.text(), export_view(), "chunks of {chunk} bytes");
    }
}

#[test]
fn a_bad_record_mid_stream_resets_the_stream() {
    let mut p = plugin();
    let body = format!("{}{{\"id\": \"4\", \"ssn\": \"{CANARY}\", }}\n", EXPORT);
    let (request, upstream) = export(body.as_bytes(), 64);
    let r = run(&mut p, &request, &upstream);
    assert_eq!(r.status, 200, "the headers went out before the error");
    assert!(r.reset, "the client must see the stream fail");
    assert!(!r.text().contains(CANARY));
    // What went out before the error is filtered, and is a prefix of the good export.
    assert!(export_view().starts_with(&r.text()), "{}", r.text());
}

#[test]
fn ndjson_in_a_buffered_purpose_is_filtered_line_by_line() {
    let mut p = plugin();
    let upstream = Upstream::json(EXPORT.as_bytes())
        .header("content-type", "application/x-ndjson")
        .chunked(17);
    let r = run(&mut p, &patients("research", research()), &upstream);
    assert!(r.held_headers);
    assert_eq!(r.text(), export_view());
}

// --- What a host must provide -------------------------------------------------------------

#[test]
fn a_host_that_refuses_filter_state_traps_the_vm() {
    // The Rust SDK's set_property traps on any answer but OK: such a host fails closed
    // (an outage), it never passes the response through.
    let mut p = plugin();
    let mut request = patients("billing", billing());
    request.no_filter_state = true;
    let error = p
        .exchange(&request, &patient_1())
        .expect_err("the VM traps");
    assert!(error.to_string().contains("the guest trapped"), "{error}");
    // The SDK's panic message, logged before the trap: set_property's NOT_FOUND (1).
    let log = p.take_log();
    assert!(
        log.iter().any(|(level, line)| *level == LogLevel::Critical
            && line.contains("hostcalls.rs")
            && line.ends_with("unexpected status: 1")),
        "{log:?}"
    );
}

// --- Configuration -------------------------------------------------------------------------

#[test]
fn a_bad_configuration_is_refused_with_the_key_named() {
    let configuration = shipped_configuration()
        .unwrap_or_else(|e| panic!("{e}"))
        .replacen(r#""birthDate": "year""#, r#""birthDate": "yeer""#, 1);
    let refused = Plugin::start(
        compiled(),
        &configuration,
        &[("FINALITE_PSEUDONYM_KEY", KEY)],
    );
    let Err(error) = refused else {
        panic!("a bad configuration must be refused")
    };
    let message = error.to_string();
    assert!(
        message.contains(
            r#"policies.patients.purposes.research.fields."birthDate": unknown action "yeer""#
        ),
        "{message}"
    );
}

#[test]
fn a_missing_pseudonym_key_is_refused() {
    let configuration = shipped_configuration().unwrap_or_else(|e| panic!("{e}"));
    assert!(Plugin::start(compiled(), &configuration, &[]).is_err());
}
