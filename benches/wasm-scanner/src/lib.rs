//! Benchmark baseline: the byte scanner inside Envoy. It lets Envoy buffer the whole
//! response body, applies the same rules as finalite's benchmark policy with the scanner of
//! `finalite_bench_common::scanner` (one pass, a byte at a time, nothing validated) and writes
//! the result back: the "simple byte scanner" of the specification's cost notes, measured
//! in the same run as finalite.

use std::sync::OnceLock;

use proxy_wasm::traits::HttpContext;
use proxy_wasm::types::LogLevel;

use finalite_bench_common::whole_body_filter::WholeBodyFilter;
use finalite_bench_common::{scanner, Policy};

/// The rules, built and keyed once per VM, as finalite compiles its policy once per
/// configuration.
fn rules() -> &'static scanner::ScanRules {
    static RULES_ONCE: OnceLock<scanner::ScanRules> = OnceLock::new();
    RULES_ONCE.get_or_init(|| Policy::Realistic.scanner())
}

fn filter(body: &[u8]) -> Option<Vec<u8>> {
    scanner::filter(body, rules()).ok()
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> {
        Box::new(WholeBodyFilter { filter })
    });
}}
