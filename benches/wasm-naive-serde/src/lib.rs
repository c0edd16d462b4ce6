//! Benchmark baseline: the naive filter inside Envoy. It lets Envoy buffer the whole
//! response body, parses it into a `serde_json::Value`, applies the same rules as finalite's
//! benchmark policy (`benches/common/naive.rs`, the realistic allowlist with one
//! pseudonymised field) and writes the serialised result back.

#[path = "../../common/naive.rs"]
mod naive;
#[path = "../../common/whole_body_filter.rs"]
mod whole_body_filter;

use std::sync::OnceLock;

use proxy_wasm::traits::HttpContext;
use proxy_wasm::types::LogLevel;

use whole_body_filter::{WholeBodyFilter, KEY, REALISTIC};

/// The rules, built and keyed once per VM, as finalite compiles its policy once per
/// configuration: the baseline is naive in its handling of the body, not in its set-up.
fn rules() -> &'static naive::NaiveRules {
    static RULES_ONCE: OnceLock<naive::NaiveRules> = OnceLock::new();
    RULES_ONCE.get_or_init(|| naive::NaiveRules::new(false, REALISTIC.iter().copied(), KEY))
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
