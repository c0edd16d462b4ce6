//! Benchmark baseline: the naive filter inside Envoy. It lets Envoy buffer the whole
//! response body, parses it into a `serde_json::Value`, applies the same rules as finalite's
//! benchmark policy (`benches/common/naive.rs`, the realistic allowlist with one
//! pseudonymised field) and writes the serialised result back.

#[path = "../../common/naive.rs"]
mod naive;

use std::sync::OnceLock;

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

/// The pseudonymisation key; the same test value as the benchmark's finalite policy uses.
const KEY: &[u8] = b"bench-key-0123456789abcdefghijkl";

/// The realistic policy of `benches/common/mod.rs`, restated (that module needs finalite).
const RULES: &[(&str, bool, bool)] = &[
    ("resourceType", false, false),
    ("type", false, false),
    ("total", false, false),
    ("entry.resource.resourceType", false, false),
    ("entry.resource.id", false, true),
    ("entry.resource.meta.lastUpdated", false, false),
    ("entry.resource.gender", false, false),
    ("entry.resource.birthDate", false, false),
    ("entry.resource.address.city", false, false),
    ("entry.resource.address.country", false, false),
    ("entry.resource.condition.code", false, false),
    ("entry.search.mode", false, false),
];

/// The rules, built and keyed once per VM, as finalite compiles its policy once per
/// configuration: the baseline is naive in its handling of the body, not in its set-up.
fn rules() -> &'static naive::NaiveRules {
    static RULES_ONCE: OnceLock<naive::NaiveRules> = OnceLock::new();
    RULES_ONCE.get_or_init(|| naive::NaiveRules::new(false, RULES.iter().copied(), KEY))
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> {
        Box::new(Naive { rules: rules() })
    });
}}

struct Naive {
    rules: &'static naive::NaiveRules,
}

impl Context for Naive {}

impl HttpContext for Naive {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let _purpose = self.get_http_request_header("x-purpose");
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.set_http_response_header("content-length", None);
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause; // Envoy buffers until the end
        }
        let body = self
            .get_http_response_body(0, body_size)
            .unwrap_or_default();
        let out = naive::filter(&body, self.rules).unwrap_or_else(|_| b"null".to_vec());
        self.set_http_response_body(0, body_size, &out);
        Action::Continue
    }
}
