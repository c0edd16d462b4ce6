//! The HTTP context: one per request.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::host::{self, JwtAuthnClaims};
use crate::body::BodyFilter;
use crate::decision::{
    Allowed, BodyPlan, Denial, Problem, RequestDecision, REQUEST_HEADERS_TO_REMOVE,
};
use crate::json::JsonFilter;

use crate::policy::route::RouteInfo;
use crate::policy::CompiledConfig;
use crate::{request, response};

enum Stage {
    /// Nothing to do on the response (denied, unmatched-allowed, or untouched body).
    Done,
    /// Request allowed; the response is planned when its headers arrive.
    Allowed(Allowed),
    /// Filtering the body. Buffered: the response headers are held and `fed` bytes of the
    /// host's growing buffer went through the pipeline, the output kept in `out` until the
    /// end. Streaming: each chunk is replaced by its filtered bytes as it passes.
    Filtering {
        body: Box<BodyFilter>,
        streaming: bool,
        fed: usize,
        out: Vec<u8>,
    },
}

pub struct FinaliteHttp {
    config: Rc<CompiledConfig>,
    stage: Stage,
}

impl FinaliteHttp {
    pub fn new(config: Rc<CompiledConfig>) -> FinaliteHttp {
        FinaliteHttp {
            config,
            stage: Stage::Done,
        }
    }

    fn deny(&mut self, denial: &Denial) -> Action {
        let headers = denial.headers();
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        if let Err(status) =
            hostcalls::send_http_response(denial.status() as u32, headers, Some(&denial.body()))
        {
            log::error!(
                "could not send the {} response: {status:?}",
                denial.status()
            );
        }
        self.stage = Stage::Done;
        Action::Pause
    }

    /// Answers 502 in place of the upstream response; nothing of its body is sent.
    fn fail_closed(&mut self, problem: Problem) -> Action {
        log::warn!("response withheld: {}", problem.detail);
        self.deny(&problem.into())
    }
}

impl Context for FinaliteHttp {}

impl HttpContext for FinaliteHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let path = host::header(MapType::HttpRequestHeaders, ":path").unwrap_or_default();
        let method = host::header(MapType::HttpRequestHeaders, ":method").unwrap_or_default();
        let metadata_policy = host::string_property(vec![
            "xds",
            "route_metadata",
            "filter_metadata",
            "finalite",
            "policy",
        ]);
        let route_name = host::string_property(vec!["xds", "route_name"]);
        let route = RouteInfo {
            metadata_policy: metadata_policy.as_deref(),
            route_name: route_name.as_deref(),
            path: &path,
            method: &method,
        };
        let declared = host::header(MapType::HttpRequestHeaders, &self.config.purpose_header);
        let claims = JwtAuthnClaims {
            metadata_key: &self.config.token.metadata_key,
        };
        match request::decide(&self.config, &route, declared.as_deref(), &claims) {
            RequestDecision::Deny(denial) => self.deny(&denial),
            RequestDecision::PassUnfiltered => {
                self.stage = Stage::Done;
                Action::Continue
            }
            RequestDecision::Allow(allowed) => {
                for name in REQUEST_HEADERS_TO_REMOVE {
                    host::remove_header(MapType::HttpRequestHeaders, name);
                }
                self.stage = Stage::Allowed(allowed);
                Action::Continue
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Stage::Allowed(allowed) = &self.stage else {
            return Action::Continue;
        };
        let headers = host::headers(MapType::HttpResponseHeaders);
        let plan = response::plan(&self.config, allowed, &headers, end_of_stream);
        for name in &plan.remove_headers {
            host::remove_header(MapType::HttpResponseHeaders, name);
        }
        match plan.body {
            BodyPlan::Untouched => {
                self.stage = Stage::Done;
                Action::Continue
            }
            BodyPlan::FailClosed(problem) => self.fail_closed(problem),
            BodyPlan::Filter(spec) => {
                let context = self.config.transform_context(allowed.client_id.as_deref());
                let filter = JsonFilter::with_framing(
                    spec.rules,
                    self.config.max_depth,
                    context,
                    spec.framing,
                );
                let body = BodyFilter::new(filter, spec.encoding, self.config.max_body_bytes);
                self.stage = Stage::Filtering {
                    body: Box::new(body),
                    streaming: spec.streaming,
                    fed: 0,
                    out: Vec::new(),
                };
                if spec.streaming {
                    Action::Continue
                } else {
                    // Held until the body is filtered, so a failure can still become a 502.
                    Action::Pause
                }
            }
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let Stage::Filtering {
            body,
            streaming,
            fed,
            out,
        } = &mut self.stage
        else {
            return Action::Continue;
        };
        if *streaming {
            return match stream_chunk(body, body_size, end_of_stream) {
                Ok(()) => {
                    if end_of_stream {
                        self.stage = Stage::Done;
                    }
                    Action::Continue
                }
                Err(reason) => {
                    // The headers are gone: only a reset keeps the client from taking a cut
                    // body for a complete one.
                    log::warn!("streamed response reset: {reason}");
                    if let Err(status) = hostcalls::reset_http_response() {
                        log::error!("could not reset the stream: {status:?}");
                    }
                    self.stage = Stage::Done;
                    Action::Pause
                }
            };
        }
        // The encoded size counts too: Envoy holds these bytes until the end.
        if body_size as u64 > self.config.max_body_bytes {
            return self.fail_closed(Problem::too_large(self.config.max_body_bytes));
        }
        if body_size > *fed {
            let Some(chunk) = host::response_body(*fed, body_size - *fed) else {
                return self.fail_closed(Problem::not_filterable("the body could not be read"));
            };
            *fed = body_size;
            if let Err(error) = body.write(&chunk) {
                log::warn!("upstream body refused: {error}");
                return self.fail_closed(Problem::from_body_error(&error));
            }
            out.extend(body.take_output());
        }
        if !end_of_stream {
            return Action::Pause;
        }
        if let Err(error) = body.finish() {
            log::warn!("upstream body refused: {error}");
            return self.fail_closed(Problem::from_body_error(&error));
        }
        out.extend(body.take_output());
        let filtered = std::mem::take(out);
        if hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &filtered).is_err() {
            return self.fail_closed(Problem::not_filterable(
                "the filtered body could not be written",
            ));
        }
        self.stage = Stage::Done;
        Action::Continue
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        if matches!(self.stage, Stage::Filtering { .. }) {
            // The body ended without end_of_stream on its last chunk; it cannot be rewritten now.
            return self.fail_closed(Problem::not_filterable(
                "a body followed by trailers cannot be filtered",
            ));
        }
        Action::Continue
    }
}

/// Filters one streamed chunk in place: the host's buffer holds only this chunk.
fn stream_chunk(body: &mut BodyFilter, size: usize, end_of_stream: bool) -> Result<(), String> {
    let chunk = host::response_body(0, size).ok_or("the body could not be read")?;
    body.write(&chunk).map_err(|e| e.to_string())?;
    if end_of_stream {
        body.finish().map_err(|e| e.to_string())?;
    }
    let filtered = body.take_output();
    hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, &filtered)
        .map_err(|status| format!("the filtered chunk could not be written: {status:?}"))
}
