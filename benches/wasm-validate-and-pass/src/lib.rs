//! Benchmark baseline: validation alone inside Envoy. It lets Envoy buffer the whole response
//! body, validates it with serde_json (`IgnoredAny`: no tree built) and writes it back
//! unchanged (`finalite_bench_common::validate_and_pass`). The least a filter that refuses
//! malformed JSON pays for the body: finalite validates as much and also filters, so its
//! Envoy CPU over this one is what filtering adds.

use proxy_wasm::traits::HttpContext;
use proxy_wasm::types::LogLevel;

use finalite_bench_common::validate_and_pass;
use finalite_bench_common::whole_body_filter::WholeBodyFilter;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> {
        Box::new(WholeBodyFilter { filter: validate_and_pass })
    });
}}
