//! Benchmark baseline: the naive filter inside Envoy. It lets Envoy buffer the whole
//! response body, parses it into a `serde_json::Value`, applies the same rules as finalite's
//! benchmark policy (`finalite_bench_common::naive`, the realistic allowlist with one
//! pseudonymised field) and writes the serialised result back.

use std::sync::OnceLock;

use proxy_wasm::traits::HttpContext;
use proxy_wasm::types::LogLevel;

use finalite_bench_common::whole_body_filter::WholeBodyFilter;
use finalite_bench_common::{naive, Policy};

/// The rules, built and keyed once per VM, as finalite compiles its policy once per
/// configuration: the baseline is naive in its handling of the body, not in its set-up.
fn rules() -> &'static naive::NaiveRules {
    static RULES_ONCE: OnceLock<naive::NaiveRules> = OnceLock::new();
    RULES_ONCE.get_or_init(|| Policy::Realistic.naive())
}

fn filter(body: &[u8]) -> Option<Vec<u8>> {
    naive::filter(body, rules()).ok()
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> {
        Box::new(WholeBodyFilter { filter })
    });
}}
