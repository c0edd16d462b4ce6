//! Benchmark reference: the cost of having any wasm filter at all. It reads one request
//! header (as finalite reads the purpose) and sets one response header; the body passes
//! through without entering the VM.

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_http_context(|_, _| -> Box<dyn HttpContext> { Box::new(HeadersOnly) });
}}

struct HeadersOnly;

impl Context for HeadersOnly {}

impl HttpContext for HeadersOnly {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let _purpose = self.get_http_request_header("x-purpose");
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        self.set_http_response_header("x-bench-filter", Some("headers-only"));
        Action::Continue
    }
}
