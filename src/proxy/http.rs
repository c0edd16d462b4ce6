//! The HTTP context: one per request.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};

use super::host::{self, JwtAuthnClaims};
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
    /// Filtering a buffered body: `fed` bytes of the host's buffer went through the engine.
    Filtering {
        filter: Box<JsonFilter>,
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
            BodyPlan::Filter(rules) => {
                let context = self.config.transform_context(allowed.client_id.as_deref());
                let filter = JsonFilter::new(rules, self.config.max_depth, context);
                self.stage = Stage::Filtering {
                    filter: Box::new(filter),
                    fed: 0,
                    out: Vec::new(),
                };
                // Held until the body is filtered, so a failure can still become a 502.
                Action::Pause
            }
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        let max = self.config.max_body_bytes;
        let Stage::Filtering { filter, fed, out } = &mut self.stage else {
            return Action::Continue;
        };
        if body_size as u64 > max {
            return self.fail_closed(Problem::too_large(max));
        }
        if body_size > *fed {
            let Some(chunk) = host::response_body(*fed, body_size - *fed) else {
                return self.fail_closed(Problem::not_filterable("the body could not be read"));
            };
            *fed = body_size;
            if let Err(error) = filter.write(&chunk, out) {
                log::warn!("upstream body refused: {error}");
                return self.fail_closed(Problem::from_engine_error(&error));
            }
        }
        if !end_of_stream {
            return Action::Pause;
        }
        if let Err(error) = filter.finish(out) {
            log::warn!("upstream body refused: {error}");
            return self.fail_closed(Problem::from_engine_error(&error));
        }
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
