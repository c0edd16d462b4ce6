//! The response path: which headers go, and whether and how the body is filtered.

use crate::body::BodyFilter;
use crate::config::{AuthRequirement, PolicyMode};
use crate::decision::{Allowed, BodyPlan, Delivery, FailureEffect, FilterSpec, ResponsePlan};
use crate::denial::Problem;
use crate::json::{Framing, JsonFilter};
use crate::media_type::{BodyFormat, ContentEncoding, MediaType};
use crate::policy::CompiledConfig;

/// Response headers that describe the upstream's exact bytes: wrong once filtered, and worse,
/// a digest of the unfiltered body lets a reuser check guesses of what was withheld.
const REPRESENTATION_HEADERS: &[&str] = &[
    "content-length",
    "etag",
    "content-md5",
    "digest",
    "content-digest",
    "repr-digest",
];

/// Whether a response carries upstream data. An error reply the proxy wrote itself (Envoy:
/// `response.code_details` other than `via_upstream`, such as an upstream connection
/// failure's 503) holds none: it passes as is rather than becoming a 502 that would hide the
/// real status. Anything else, including a proxy-written success such as a
/// `direct_response`, is planned as usual.
pub fn carries_upstream_data(status: Option<u16>, code_details: Option<&str>) -> bool {
    let generated = code_details.is_some_and(|d| d != "via_upstream");
    !(generated && status.is_some_and(|s| s >= 400))
}

/// Plans a response from its headers (`end_of_stream`: the response has no body). Under a
/// dry-run policy the plan changes nothing: no header is removed, the body is measured, and
/// a failure is recorded.
pub fn plan(
    config: &CompiledConfig,
    allowed: &Allowed,
    headers: &[(String, String)],
    end_of_stream: bool,
) -> ResponsePlan {
    let policy = &config.policies[allowed.policy];
    let dry_run = policy.mode == PolicyMode::DryRun;
    let on_failure = if dry_run {
        FailureEffect::Record
    } else {
        FailureEffect::Replace
    };
    let Some(purpose) = policy.purposes.get(&allowed.purpose) else {
        return ResponsePlan {
            remove_headers: Vec::new(),
            body: BodyPlan::FailClosed(Problem::not_filterable("the purpose is unknown")),
            set_headers: Vec::new(),
            on_failure,
        };
    };
    let delivery = match (dry_run, purpose.streaming) {
        (true, streamed) => Delivery::Measured { streamed },
        (false, true) => Delivery::Streamed,
        (false, false) => Delivery::Buffered,
    };
    let mut remove_headers: Vec<String> = headers
        .iter()
        .filter(|(name, _)| purpose.headers.removes(name))
        .map(|(name, _)| name.to_ascii_lowercase())
        .collect();
    let header = |wanted: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(wanted))
            .map(|(_, v)| v.as_str())
    };
    let status = header(":status").and_then(|s| s.trim().parse::<u16>().ok());
    let smart_scopes = policy.fhir.as_ref().is_some_and(|f| f.smart_scopes);
    let body = match &purpose.body {
        // A request let through without its grants (not one `request::decide` allowed)
        // cannot have its resources checked: nothing of the body is sent.
        Some(_) if smart_scopes && allowed.smart.is_none() && !end_of_stream => {
            BodyPlan::FailClosed(Problem::not_filterable(
                "the policy enforces SMART scopes and the caller's grants are unknown",
            ))
        }
        // The validators were not sent upstream (`CONDITIONAL_HEADERS`); a 304 anyway would
        // still say that the client's validator matches the unfiltered body.
        Some(_) if status == Some(304) => BodyPlan::FailClosed(Problem::not_filterable(
            "a 304 (not modified) answer cannot be filtered",
        )),
        // A part of a representation (range was not sent upstream, so the upstream chose to
        // answer one): not a document the engine can read, and its range and total length
        // describe the unfiltered bytes.
        Some(_) if status == Some(206) || header("content-range").is_some() => {
            BodyPlan::FailClosed(Problem::not_filterable(
                "a partial response (206, content-range) cannot be filtered",
            ))
        }
        _ if end_of_stream => BodyPlan::Untouched,
        None => BodyPlan::Untouched,
        Some(rules) => {
            let encoding_header = header("content-encoding");
            let media = header("content-type").map(MediaType::parse);
            match (media, ContentEncoding::parse(encoding_header)) {
                (None, _) => {
                    BodyPlan::FailClosed(Problem::not_filterable("it has no content-type"))
                }
                (Some(None), _) => BodyPlan::FailClosed(Problem::not_filterable(
                    "its content-type is not a media type",
                )),
                (Some(Some(media)), _)
                    if purpose
                        .passthrough_media_types
                        .iter()
                        .any(|m| m.essence() == media.essence()) =>
                {
                    BodyPlan::Untouched
                }
                (_, None) => BodyPlan::FailClosed(Problem::not_filterable(format!(
                    "content-encoding {:?} is not supported",
                    encoding_header.unwrap_or_default().trim()
                ))),
                (Some(Some(media)), Some(encoding)) => {
                    let framing = match media.format() {
                        BodyFormat::Json => Some(Framing::Single),
                        BodyFormat::Ndjson => Some(Framing::Lines),
                        BodyFormat::Other => None,
                    };
                    match framing {
                        Some(framing) => BodyPlan::Filter(FilterSpec {
                            rules: rules.clone(),
                            framing,
                            encoding,
                            delivery,
                            smart: allowed.smart.clone(),
                        }),
                        None => BodyPlan::FailClosed(Problem::not_filterable(format!(
                            "the media type {:?} cannot be filtered",
                            media.essence()
                        ))),
                    }
                }
            }
        }
    };
    // A bodiless answer (HEAD, 204) to a purpose with body rules: the upstream's
    // content-length and validators describe its unfiltered bytes, not what this purpose
    // would get from a GET (a filtered body, sent without them); they go too.
    let bodiless_filtered = end_of_stream && purpose.body.is_some();
    if let (BodyPlan::Filter(_), _) | (BodyPlan::Untouched, true) = (&body, bodiless_filtered) {
        let decoded = match &body {
            BodyPlan::Filter(spec) if spec.encoding != ContentEncoding::Identity => {
                Some("content-encoding")
            }
            _ => None,
        };
        for name in REPRESENTATION_HEADERS.iter().copied().chain(decoded) {
            if header(name).is_some() && !remove_headers.iter().any(|h| h == name) {
                remove_headers.push(name.to_string());
            }
        }
    }
    // A shared cache in front of the proxy must not serve one purpose's (or one client's)
    // view to another caller: only open data with a single purpose is the same for all.
    let views_differ = policy.auth != AuthRequirement::None || policy.purposes.len() > 1;
    let mut set_headers = Vec::new();
    if views_differ {
        let upstream: Vec<&str> = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("cache-control"))
            .map(|(_, v)| v.as_str())
            .collect();
        if let Some(value) = private_cache_control(&upstream) {
            set_headers.push(("cache-control", value));
        }
    }
    if dry_run {
        remove_headers.clear();
        set_headers.clear();
    }
    ResponsePlan {
        remove_headers,
        set_headers,
        body,
        on_failure,
    }
}

/// The response trailers to remove: the purpose's header rules apply to trailers as to
/// headers (a trailer is a header sent after the body, and an upstream may send there what
/// it sends as a header elsewhere). Only a body that passes as it is reaches its trailers:
/// a filtered body followed by trailers fails closed. None in a dry run.
pub fn trailers_to_remove(
    config: &CompiledConfig,
    allowed: &Allowed,
    trailers: &[(String, String)],
) -> Vec<String> {
    let policy = &config.policies[allowed.policy];
    if policy.mode == PolicyMode::DryRun {
        return Vec::new();
    }
    match policy.purposes.get(&allowed.purpose) {
        Some(purpose) => trailers
            .iter()
            .filter(|(name, _)| purpose.headers.removes(name))
            .map(|(name, _)| name.to_ascii_lowercase())
            .collect(),
        // Not a purpose of the policy (the plan failed closed already): nothing is kept.
        None => trailers
            .iter()
            .map(|(name, _)| name.to_ascii_lowercase())
            .collect(),
    }
}

/// The `cache-control` that keeps a response out of shared caches, from the upstream's
/// values (all of them: one may say `no-store`): `private` in place of what allowed a shared
/// cache to store it (`public`, `s-maxage`, `proxy-revalidate`), the rest kept; `None` when
/// the upstream's already does (`no-store`, or exactly that).
fn private_cache_control(upstream: &[&str]) -> Option<String> {
    let directives: Vec<&str> = upstream
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    let name = |d: &str| {
        d.split('=')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    };
    if directives.iter().any(|d| name(d) == "no-store") {
        return None;
    }
    let kept = directives.iter().filter(|d| {
        !matches!(
            name(d).as_str(),
            "public" | "private" | "s-maxage" | "proxy-revalidate"
        )
    });
    let value = std::iter::once("private")
        .chain(kept.copied())
        .collect::<Vec<_>>()
        .join(", ");
    (upstream.len() != 1 || upstream[0] != value).then_some(value)
}

// The pipeline is built here, beside the plan that chooses it: the body module only runs
// what it is given, and knows nothing of plans.
impl BodyFilter {
    /// The pipeline a response plan asks for: the purpose's rules, the configuration's depth
    /// and size limits, and the transforms' key (per reuser when so configured). What the
    /// adapter runs in the proxy and `finalite filter` runs on a file.
    ///
    /// `limits.max_body_bytes` bounds what is held: a buffered body, counted both as received
    /// and decoded. A streamed body is filtered and handed on chunk by chunk, never held
    /// whole (large exports are what streaming is for), so its total size is not limited.
    pub fn for_spec(
        spec: &FilterSpec,
        config: &CompiledConfig,
        client: Option<&str>,
    ) -> BodyFilter {
        let mut filter = JsonFilter::with_framing(
            spec.rules.clone(),
            config.max_depth,
            config.transform_context(client),
            spec.framing,
        );
        if let Some(access) = &spec.smart {
            filter = filter.with_smart(access.clone());
        }
        BodyFilter::new(
            filter,
            spec.encoding,
            spec.delivery.size_limit(config.max_body_bytes),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> CompiledConfig {
        CompiledConfig::load(
            br#"{"policies": {"p": {"purposes": {
                "care": {"default": "keep"},
                "billing": {"fields": {"id": "keep"}, "headers": {"remove": ["x-patient-*"]},
                            "passthrough_media_types": ["application/pdf"]}}}}}"#,
            &|_| None,
        )
        .unwrap()
    }

    fn allowed(purpose: &str) -> Allowed {
        Allowed {
            policy: 0,
            purpose: purpose.into(),
            client_id: None,
            smart: None,
        }
    }

    fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn detail(plan: &ResponsePlan) -> String {
        match &plan.body {
            BodyPlan::FailClosed(p) => p.detail.clone(),
            other => panic!("not failed closed: {other:?}"),
        }
    }

    #[test]
    fn json_is_filtered_and_its_length_dropped() {
        let plan = plan(
            &config(),
            &allowed("billing"),
            &headers(&[
                ("content-type", "application/json"),
                ("content-length", "12"),
                ("x-patient-count", "3"),
                ("etag", "\"x\""),
            ]),
            false,
        );
        assert!(matches!(plan.body, BodyPlan::Filter(_)));
        assert_eq!(
            plan.remove_headers,
            vec!["x-patient-count", "content-length", "etag"]
        );
    }

    #[test]
    fn header_rules_apply_to_trailers() {
        let trailers = headers(&[("X-Patient-Secret", "s"), ("x-checksum", "ok")]);
        assert_eq!(
            trailers_to_remove(&config(), &allowed("billing"), &trailers),
            vec!["x-patient-secret"]
        );
        assert!(trailers_to_remove(&config(), &allowed("care"), &trailers).is_empty());
        assert_eq!(
            trailers_to_remove(&config(), &allowed("nope"), &trailers).len(),
            2
        );
        let tried = CompiledConfig::load(
            br#"{"policies": {"p": {"mode": "dry_run", "purposes": {
                "billing": {"headers": {"remove": ["x-patient-*"]}}}}}}"#,
            &|_| None,
        )
        .unwrap();
        assert!(trailers_to_remove(&tried, &allowed("billing"), &trailers).is_empty());
    }

    #[test]
    fn cache_control_keeps_views_out_of_shared_caches() {
        let cases: [(&[&str], Option<&str>); 8] = [
            (&["public, max-age=600"], Some("private, max-age=600")),
            (
                &["max-age=60, s-maxage=600, public"],
                Some("private, max-age=60"),
            ),
            (&[], Some("private")),
            (&["no-store"], None),
            (&["public", "No-Store"], None),
            (&["private, no-cache"], None),
            (
                &["Public, proxy-revalidate, must-revalidate"],
                Some("private, must-revalidate"),
            ),
            (&["max-age=1", "public"], Some("private, max-age=1")),
        ];
        for (upstream, expected) in cases {
            assert_eq!(
                private_cache_control(upstream).as_deref(),
                expected,
                "{upstream:?}"
            );
        }
        // Every purpose of a policy with a caller or several purposes; not open data.
        let public = headers(&[
            ("content-type", "application/json"),
            ("cache-control", "public"),
        ]);
        for purpose in ["care", "billing"] {
            let p = plan(&config(), &allowed(purpose), &public, false);
            assert_eq!(
                p.set_headers,
                vec![("cache-control", "private".to_string())]
            );
        }
        let open = CompiledConfig::load(
            br#"{"policies": {"o": {"auth": "none", "default_purpose": "o",
                 "purposes": {"o": {"fields": {"count": "keep"}}}}}}"#,
            &|_| None,
        )
        .unwrap();
        assert!(plan(&open, &allowed("o"), &public, false)
            .set_headers
            .is_empty());
    }

    #[test]
    fn a_304_is_no_answer_for_a_filtered_purpose() {
        let not_modified = headers(&[(":status", "304"), ("etag", "\"x\"")]);
        assert_eq!(
            detail(&plan(&config(), &allowed("billing"), &not_modified, true)),
            "the upstream response could not be filtered: a 304 (not modified) answer cannot be filtered"
        );
        let p = plan(&config(), &allowed("care"), &not_modified, true);
        assert!(matches!(p.body, BodyPlan::Untouched));
        assert!(p.remove_headers.is_empty());
    }

    #[test]
    fn a_partial_response_fails_closed_for_a_filtered_purpose() {
        let expected = "the upstream response could not be filtered: a partial response (206, content-range) cannot be filtered";
        for head in [
            headers(&[(":status", "206"), ("content-type", "application/json")]),
            headers(&[
                (":status", "200"),
                ("content-type", "application/json"),
                ("Content-Range", "bytes 0-9/20"),
            ]),
            headers(&[(":status", "206"), ("content-type", "application/pdf")]),
        ] {
            assert_eq!(
                detail(&plan(&config(), &allowed("billing"), &head, false)),
                expected
            );
            let p = plan(&config(), &allowed("care"), &head, false);
            assert!(matches!(p.body, BodyPlan::Untouched));
        }
    }

    #[test]
    fn digests_of_the_upstream_body_go_with_it() {
        let upstream = headers(&[
            ("content-type", "application/json"),
            (
                "Digest",
                "sha-256=X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=",
            ),
            (
                "content-digest",
                "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
            ),
            (
                "repr-digest",
                "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:",
            ),
            ("content-md5", "Q2hlY2sgSW50ZWdyaXR5IQ=="),
        ]);
        let p = plan(&config(), &allowed("billing"), &upstream, false);
        assert_eq!(
            p.remove_headers,
            vec!["content-md5", "digest", "content-digest", "repr-digest"]
        );
        let p = plan(&config(), &allowed("care"), &upstream, false);
        assert!(p.remove_headers.is_empty());
    }

    #[test]
    fn bodiless_answers_lose_the_upstream_length_and_validators() {
        // HEAD (or 204): nothing to filter, but content-length and etag describe the
        // unfiltered body.
        let head = headers(&[
            ("content-type", "application/json"),
            ("content-length", "296"),
            ("etag", "\"x\""),
        ]);
        let p = plan(&config(), &allowed("billing"), &head, true);
        assert!(matches!(p.body, BodyPlan::Untouched));
        assert_eq!(p.remove_headers, vec!["content-length", "etag"]);
        // A purpose without body rules sees the upstream's representation as is.
        let p = plan(&config(), &allowed("care"), &head, true);
        assert!(p.remove_headers.is_empty());
    }

    #[test]
    fn keep_all_purposes_are_untouched() {
        let plan = plan(
            &config(),
            &allowed("care"),
            &headers(&[("content-type", "text/plain"), ("content-length", "3")]),
            false,
        );
        assert!(matches!(plan.body, BodyPlan::Untouched));
        assert!(plan.remove_headers.is_empty());
    }

    #[test]
    fn what_cannot_be_read_fails_closed() {
        let c = config();
        let b = allowed("billing");
        assert_eq!(
            detail(&plan(&c, &b, &headers(&[("content-type", "text/html")]), false)),
            "the upstream response could not be filtered: the media type \"text/html\" cannot be filtered"
        );
        assert_eq!(
            detail(&plan(
                &c,
                &b,
                &headers(&[
                    ("content-type", "application/json"),
                    ("content-encoding", "br")
                ]),
                false
            )),
            "the upstream response could not be filtered: content-encoding \"br\" is not supported"
        );
        assert_eq!(
            detail(&plan(&c, &b, &headers(&[]), false)),
            "the upstream response could not be filtered: it has no content-type"
        );
    }

    #[test]
    fn compressed_and_ndjson_bodies_are_decoded_and_filtered() {
        let p = plan(
            &config(),
            &allowed("billing"),
            &headers(&[
                ("content-type", "application/x-ndjson"),
                ("content-encoding", "gzip"),
                ("content-length", "9"),
            ]),
            false,
        );
        match &p.body {
            BodyPlan::Filter(spec) => {
                assert_eq!(spec.framing, Framing::Lines);
                assert_eq!(spec.encoding, ContentEncoding::Gzip);
                assert_eq!(spec.delivery, Delivery::Buffered);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(p.remove_headers, vec!["content-length", "content-encoding"]);
    }

    #[test]
    fn the_delivery_and_the_effect_of_a_failure_follow_the_mode() {
        let config = CompiledConfig::load(
            br#"{"policies": {
                "enforced": {"purposes": {"b": {"fields": {"id": "keep"}, "headers": {"remove": ["x-*"]}},
                                          "s": {"fields": {"id": "keep"}, "streaming": true}}},
                "tried": {"mode": "dry_run", "purposes": {
                    "b": {"fields": {"id": "keep"}, "headers": {"remove": ["x-*"]}},
                    "s": {"fields": {"id": "keep"}, "streaming": true}}}}}"#,
            &|_| None,
        )
        .unwrap();
        let json = headers(&[
            ("content-type", "application/json"),
            ("content-length", "12"),
            ("x-patient", "1"),
        ]);
        let html = headers(&[("content-type", "text/html")]);
        let cases = [
            (0, "b", Delivery::Buffered, FailureEffect::Replace, 2),
            (0, "s", Delivery::Streamed, FailureEffect::Replace, 1),
            (
                1,
                "b",
                Delivery::Measured { streamed: false },
                FailureEffect::Record,
                0,
            ),
            (
                1,
                "s",
                Delivery::Measured { streamed: true },
                FailureEffect::Record,
                0,
            ),
        ];
        for (policy, purpose, delivery, on_failure, removed) in cases {
            let allowed = Allowed {
                policy,
                purpose: purpose.into(),
                client_id: None,
                smart: None,
            };
            let p = plan(&config, &allowed, &json, false);
            match &p.body {
                BodyPlan::Filter(spec) => assert_eq!(spec.delivery, delivery),
                other => panic!("{other:?}"),
            }
            assert_eq!(p.remove_headers.len(), removed, "{:?}", p.remove_headers);
            assert_eq!(p.on_failure, on_failure);
            let p = plan(&config, &allowed, &html, false);
            assert!(matches!(p.body, BodyPlan::FailClosed(_)));
            assert_eq!(p.on_failure, on_failure);
        }
        assert_eq!(Delivery::Buffered.on_failure(), FailureEffect::Replace);
        assert_eq!(Delivery::Streamed.on_failure(), FailureEffect::Reset);
        assert_eq!(
            Delivery::Measured { streamed: true }.on_failure(),
            FailureEffect::Record
        );
        assert_eq!(Delivery::Buffered.size_limit(10), 10);
        assert_eq!(Delivery::Measured { streamed: false }.size_limit(10), 10);
        assert_eq!(Delivery::Streamed.size_limit(10), u64::MAX);
        assert_eq!(
            Delivery::Measured { streamed: true }.size_limit(10),
            u64::MAX
        );
    }

    #[test]
    fn proxy_written_error_replies_are_not_upstream_data() {
        assert!(carries_upstream_data(Some(200), Some("via_upstream")));
        assert!(carries_upstream_data(Some(500), Some("via_upstream")));
        assert!(carries_upstream_data(Some(503), None));
        assert!(!carries_upstream_data(
            Some(503),
            Some("upstream_reset_before_response_started{connection_failure}")
        ));
        assert!(carries_upstream_data(Some(200), Some("direct_response")));
    }

    #[test]
    fn opted_in_media_types_and_empty_bodies_pass() {
        let c = config();
        let b = allowed("billing");
        assert!(matches!(
            plan(
                &c,
                &b,
                &headers(&[("content-type", "application/pdf")]),
                false
            )
            .body,
            BodyPlan::Untouched
        ));
        assert!(matches!(
            plan(&c, &b, &headers(&[("content-type", "text/html")]), true).body,
            BodyPlan::Untouched
        ));
        assert!(matches!(
            plan(
                &c,
                &b,
                &headers(&[
                    ("content-type", "application/json"),
                    ("content-encoding", "identity")
                ]),
                false
            )
            .body,
            BodyPlan::Filter(_)
        ));
    }

    #[test]
    fn smart_scopes_go_with_the_body_or_nothing_of_it_is_sent() {
        use crate::auth::smart;
        use crate::policy::fhir::SmartAccess;
        use std::sync::Arc;
        let config = CompiledConfig::load(
            br#"{"policies": {"f": {"fhir": {"base": "/fhir", "smart_scopes": true},
                 "purposes": {"care": {"default": "keep"}}}}}"#,
            &|_| None,
        )
        .unwrap();
        let json = headers(&[("content-type", "application/fhir+json")]);
        // Allowed without its grants (not as `request::decide` allows): fails closed.
        let without = Allowed {
            policy: 0,
            purpose: "care".into(),
            client_id: None,
            smart: None,
        };
        assert_eq!(
            detail(&plan(&config, &without, &json, false)),
            "the upstream response could not be filtered: the policy enforces SMART scopes and the caller's grants are unknown"
        );
        let access = Arc::new(SmartAccess::new(
            smart::grants(&["user/Observation.rs".to_string()]),
            None,
        ));
        let with = Allowed {
            smart: Some(access.clone()),
            ..without
        };
        let BodyPlan::Filter(spec) = plan(&config, &with, &json, false).body else {
            panic!("not filtered");
        };
        assert_eq!(spec.smart, Some(access));
        // `default: keep` and no rule: read anyway, and each resource decided.
        let mut body = BodyFilter::for_spec(&spec, &config, None);
        body.write(br#"{"resourceType":"Bundle","total":2,"entry":[{"resource":{"resourceType":"Observation","id":"o1"}},{"resource":{"resourceType":"Patient","id":"p1"}}]}"#)
            .unwrap();
        body.finish().unwrap();
        assert_eq!(
            body.take_output(),
            br#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Observation","id":"o1"}}]}"#
        );
        let mut body = BodyFilter::for_spec(&spec, &config, None);
        // Refused as soon as the type is read.
        let error = body
            .write(br#"{"resourceType":"Patient","id":"p1"}"#)
            .unwrap_err();
        let problem = Problem::from_body_error(&error);
        assert_eq!(
            (problem.status, problem.slug),
            (403, "resource-not-granted")
        );
        assert_eq!(
            body.take_stats().resources.unwrap().counts,
            [("Patient".to_string(), 1)]
        );
    }

    const DOC: &[u8] = br#"{"id":"p1","name":"Martin","ssn":"1840375123456"}"#;

    #[test]
    fn for_spec_applies_the_configured_limits() {
        let config = CompiledConfig::load(
            br#"{"limits": {"max_body_bytes": 20, "max_depth": 2},
                 "policies": {"p": {"purposes": {"u": {"fields": {"id": "keep"}}}}}}"#,
            &|_| None,
        )
        .unwrap();
        let spec = FilterSpec {
            rules: config.policies[0].purposes["u"].body.clone().unwrap(),
            framing: Framing::Single,
            encoding: ContentEncoding::Identity,
            delivery: Delivery::Buffered,
            smart: None,
        };
        let mut body = BodyFilter::for_spec(&spec, &config, None);
        body.write(br#"{"id":1,"x":2}"#).unwrap();
        body.finish().unwrap();
        assert_eq!(body.take_output(), br#"{"id":1}"#);
        let mut body = BodyFilter::for_spec(&spec, &config, None);
        assert_eq!(
            body.write(DOC),
            Err(crate::body::BodyError::TooLarge { limit: 20 })
        );
        let mut body = BodyFilter::for_spec(&spec, &config, None);
        assert!(matches!(
            body.write(br#"{"a":{"b":{"c":1}}}"#),
            Err(crate::body::BodyError::Json(_))
        ));
        // Streamed: not held, so not limited in size (the depth limit still applies).
        let streamed = FilterSpec {
            delivery: Delivery::Streamed,
            framing: Framing::Lines,
            ..spec
        };
        let mut body = BodyFilter::for_spec(&streamed, &config, None);
        let mut out = Vec::new();
        for _ in 0..10 {
            body.write(DOC).unwrap();
            body.write(b"\n").unwrap();
            out.extend(body.take_output());
        }
        body.finish().unwrap();
        assert_eq!(out, b"{\"id\":\"p1\"}\n".repeat(10));
        let mut body = BodyFilter::for_spec(&streamed, &config, None);
        assert!(matches!(
            body.write(br#"{"a":{"b":{"c":1}}}"#),
            Err(crate::body::BodyError::Json(_))
        ));
    }
}
