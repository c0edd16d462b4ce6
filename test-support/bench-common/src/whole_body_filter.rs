//! The proxy-wasm side of the Envoy baseline filters (`wasm-naive-serde`, `wasm-scanner`):
//! let Envoy buffer the whole response body, filter it in one call, write the result back.
//! The policy they apply is the benchmark's realistic one ([`crate::Policy`]).

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

/// An HTTP context that hands the whole response body to `filter`; `filter` answers
/// `None` for a body it cannot read, which is replaced by `null`.
pub struct WholeBodyFilter {
    pub filter: fn(&[u8]) -> Option<Vec<u8>>,
}

impl Context for WholeBodyFilter {}

impl HttpContext for WholeBodyFilter {
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
        let out = (self.filter)(&body).unwrap_or_else(|| b"null".to_vec());
        self.set_http_response_body(0, body_size, &out);
        Action::Continue
    }
}
