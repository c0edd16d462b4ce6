//! The HTTP context: one per request.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use super::host::{self, JwtAuthnClaims};
use super::metrics::Metrics;
use crate::audit::{Outcome, Trace};
use crate::auth::bearer::BearerClaims;
use crate::auth::claims::ClaimSource;
use crate::auth::key_cache::KeyCache;
use crate::body::BodyFilter;
use crate::decision::{Allowed, BodyPlan, FilterSpec, RequestDecision};
use crate::denial::{Denial, Problem};
use crate::policy::route::RouteInfo;
use crate::policy::CompiledConfig;
use crate::request::{self, Caller};
use crate::response;

/// How a body passes through the pipeline.
enum Delivery {
    /// Response headers held; `fed` bytes of the host's growing buffer went through, the
    /// output kept in `out` until the end.
    Buffered { fed: usize, out: Vec<u8> },
    /// Each chunk replaced by its filtered bytes as it passes.
    Streamed,
    /// Dry run: each chunk measured and passed unchanged.
    Measured,
}

enum Stage {
    /// Nothing more to do for this stream.
    Done,
    /// Request allowed; the response is planned when its headers arrive.
    Allowed(Allowed),
    Filtering {
        body: Box<BodyFilter>,
        delivery: Delivery,
    },
}

pub struct FinaliteHttp {
    config: Rc<CompiledConfig>,
    metrics: Option<Rc<Metrics>>,
    /// Present when finalite verifies tokens itself (`token.from: "jwks"`).
    keys: Option<Rc<RefCell<KeyCache>>>,
    stage: Stage,
    trace: Trace,
    /// TEST ONLY (feature `test-panic`, never in release builds): the request asked for a
    /// panic in the response body callback (tests/envoy/test_panic.py).
    #[cfg(feature = "test-panic")]
    test_panic: bool,
}

impl FinaliteHttp {
    pub fn new(
        config: Rc<CompiledConfig>,
        metrics: Option<Rc<Metrics>>,
        keys: Option<Rc<RefCell<KeyCache>>>,
    ) -> FinaliteHttp {
        FinaliteHttp {
            config,
            metrics,
            keys,
            stage: Stage::Done,
            trace: Trace::default(),
            #[cfg(feature = "test-panic")]
            test_panic: false,
        }
    }

    fn send(&mut self, denial: &Denial) -> Action {
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
        log::warn!(
            "request {}: response withheld: {}",
            self.trace.request_label(),
            problem.detail
        );
        self.set_outcome(Outcome::FailedClosed);
        if self.trace.dry_run {
            self.stage = Stage::Done;
            return Action::Continue;
        }
        self.send(&problem.into())
    }

    fn set_outcome(&mut self, outcome: Outcome) {
        self.trace.outcome = Some(outcome);
        set_state("finalite_decision", outcome.as_str());
    }

    fn start_body(&mut self, spec: FilterSpec, client: Option<&str>) -> Action {
        let body = Box::new(BodyFilter::for_spec(&spec, &self.config, client));
        let (delivery, action) = match (self.trace.dry_run, spec.streaming) {
            (true, _) => (Delivery::Measured, Action::Continue),
            (false, true) => (Delivery::Streamed, Action::Continue),
            // Held until the body is filtered, so a failure can still become a 502.
            (false, false) => (
                Delivery::Buffered {
                    fed: 0,
                    out: Vec::new(),
                },
                Action::Pause,
            ),
        };
        self.stage = Stage::Filtering { body, delivery };
        action
    }

    fn body_done(&mut self, body: &mut BodyFilter, sent: Option<u64>) {
        let (received, _) = body.sizes();
        self.trace.stats = body.take_stats();
        self.trace.sizes = Some((received, sent.unwrap_or(received)));
        set_state(
            "finalite_withheld",
            &self.trace.stats.withheld.total().to_string(),
        );
        set_state(
            "finalite_transformed",
            &self.trace.stats.transformed.total().to_string(),
        );
    }
}

impl Context for FinaliteHttp {}

impl HttpContext for FinaliteHttp {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        // One host call for the whole map: the headers read below, and whether those to
        // remove are there at all.
        let pairs = host::header_pairs(MapType::HttpRequestHeaders);
        let request_headers = pairs.as_deref().unwrap_or_default();
        let header = |name: &str| request::first_header(request_headers, name);
        // TEST ONLY (feature `test-panic`): remember the trigger header.
        #[cfg(feature = "test-panic")]
        {
            self.test_panic = header("x-finalite-test-panic") == Some("1");
        }
        let path = header(":path").unwrap_or_default();
        let method = header(":method").unwrap_or_default();
        let metadata_policy = host::string_property(vec![
            "xds",
            "route_metadata",
            "filter_metadata",
            "finalite",
            "policy",
        ]);
        let route_name = host::string_property(vec!["xds", "route_name"]);
        // Read only when some policy authenticates by client certificate: no other policy
        // looks at it, and each property read crosses into the host.
        let peer = self
            .config
            .uses_mtls()
            .then(|| host::string_property(vec!["connection", "uri_san_peer_certificate"]))
            .flatten();
        let route = RouteInfo {
            metadata_policy: metadata_policy.as_deref(),
            route_name: route_name.as_deref(),
            path,
            method,
        };
        let declared = header(&self.config.purpose_header);
        let jwt_authn = JwtAuthnClaims {
            metadata_key: &self.config.token.metadata_key,
        };
        let keys = self.keys.clone();
        // The token is read here only when finalite verifies it itself (`token.from: jwks`);
        // with jwt_authn, Envoy's verified claims are read instead.
        let authorization = keys.is_some().then(|| header("authorization")).flatten();
        let mut cache = keys.as_ref().map(|k| k.borrow_mut());
        let bearer = cache
            .as_deref_mut()
            .map(|cache| BearerClaims::new(authorization, cache, host::unix_now()));
        let claims: &dyn ClaimSource = match &bearer {
            Some(bearer) => bearer,
            None => &jwt_authn,
        };
        let caller = Caller {
            claims,
            peer_uri_san: peer.as_deref(),
        };
        let verdict = request::decide(&self.config, &route, declared, &caller);
        drop(bearer);
        drop(cache);

        let request_id = header("x-request-id").map(str::to_owned);
        self.trace.record_verdict(&verdict, route_name, request_id);
        if let Some(policy) = verdict.policy.map(|i| &self.config.policies[i]) {
            set_state("finalite_policy", &policy.name);
            set_state("finalite_policy_hash", &policy.hash);
        }
        if let Some(purpose) = &verdict.purpose {
            set_state("finalite_purpose", purpose);
        }
        if let Some(client) = &verdict.client {
            set_state("finalite_client", client);
        }
        if verdict.dry_run {
            set_state("finalite_dry_run", "true");
        }

        match verdict.decision {
            RequestDecision::Deny(denial) => {
                self.set_outcome(Outcome::of(denial.kind()));
                if verdict.dry_run {
                    // The slug, not the detail: the detail may quote client input (an
                    // undeclared purpose name), which stays out of the log.
                    log::info!(
                        "request {}: dry run: would refuse with {} ({})",
                        self.trace.request_label(),
                        denial.status(),
                        denial.problem.slug
                    );
                    self.stage = Stage::Done;
                    return Action::Continue;
                }
                self.send(&denial)
            }
            RequestDecision::PassUnfiltered => {
                self.set_outcome(Outcome::PassedUnfiltered);
                self.stage = Stage::Done;
                Action::Continue
            }
            RequestDecision::Allow(allowed) => {
                self.set_outcome(Outcome::Allowed);
                for name in request::headers_to_remove(pairs.as_deref()) {
                    host::remove_header(MapType::HttpRequestHeaders, name);
                }
                self.stage = Stage::Allowed(allowed);
                Action::Continue
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        let Stage::Allowed(allowed) = std::mem::replace(&mut self.stage, Stage::Done) else {
            return Action::Continue;
        };
        // One host call for the whole map, `:status` included, rather than one more for it.
        let headers = host::headers(MapType::HttpResponseHeaders);
        let status = headers
            .iter()
            .find(|(name, _)| name == ":status")
            .and_then(|(_, value)| value.parse().ok());
        // The details only matter for an error status (a proxy-written error passes as is);
        // any other response carries upstream data whatever they say.
        let details = status
            .is_some_and(|s: u16| s >= 400)
            .then(|| host::string_property(vec!["response", "code_details"]))
            .flatten();
        if !response::carries_upstream_data(status, details.as_deref()) {
            return Action::Continue;
        }
        let plan = response::plan(&self.config, &allowed, &headers, end_of_stream);
        if !self.trace.dry_run {
            for name in &plan.remove_headers {
                host::remove_header(MapType::HttpResponseHeaders, name);
            }
        }
        match plan.body {
            BodyPlan::Untouched => Action::Continue,
            BodyPlan::FailClosed(problem) => self.fail_closed(problem),
            BodyPlan::Filter(spec) => self.start_body(spec, allowed.client_id.as_deref()),
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // TEST ONLY (feature `test-panic`): trap the VM to prove that a panic fails closed.
        #[cfg(feature = "test-panic")]
        if self.test_panic {
            panic!("x-finalite-test-panic: panicking in on_http_response_body, as asked");
        }
        let Stage::Filtering {
            mut body,
            mut delivery,
        } = std::mem::replace(&mut self.stage, Stage::Done)
        else {
            return Action::Continue;
        };
        let result = match &mut delivery {
            Delivery::Streamed => pass_chunk(&mut body, body_size, end_of_stream, true),
            Delivery::Measured => pass_chunk(&mut body, body_size, end_of_stream, false),
            Delivery::Buffered { fed, out } => {
                // What came in so far, none of it out: what the record says if this fails
                // closed (body_done overwrites it once the body is filtered).
                self.trace.sizes = Some((body_size as u64, 0));
                // The encoded size counts too: Envoy holds these bytes until the end.
                if body_size as u64 > self.config.max_body_bytes {
                    return self.fail_closed(Problem::too_large(self.config.max_body_bytes));
                }
                match buffer_chunk(&mut body, fed, out, body_size, end_of_stream) {
                    Ok(Some(filtered)) => {
                        if hostcalls::set_buffer(
                            BufferType::HttpResponseBody,
                            0,
                            body_size,
                            &filtered,
                        )
                        .is_err()
                        {
                            return self.fail_closed(Problem::not_filterable(
                                "the filtered body could not be written",
                            ));
                        }
                        let sent = filtered.len() as u64;
                        self.body_done(&mut body, Some(sent));
                        return Action::Continue;
                    }
                    Ok(None) => {
                        self.stage = Stage::Filtering { body, delivery };
                        return Action::Pause;
                    }
                    Err(problem) => return self.fail_closed(problem),
                }
            }
        };
        match result {
            Ok(()) if end_of_stream => {
                let sent = matches!(delivery, Delivery::Streamed).then(|| body.bytes_out());
                self.body_done(&mut body, sent);
                Action::Continue
            }
            Ok(()) => {
                self.stage = Stage::Filtering { body, delivery };
                Action::Continue
            }
            Err(reason) if matches!(delivery, Delivery::Measured) => {
                log::info!(
                    "request {}: dry run: the body would have failed closed: {reason}",
                    self.trace.request_label()
                );
                self.body_done(&mut body, None);
                self.set_outcome(Outcome::FailedClosed);
                Action::Continue
            }
            Err(reason) => {
                // The headers are gone: only a reset keeps the client from taking a cut body
                // for a complete one.
                log::warn!(
                    "request {}: streamed response reset: {reason}",
                    self.trace.request_label()
                );
                self.body_done(&mut body, None);
                self.set_outcome(Outcome::FailedClosed);
                if let Err(status) = hostcalls::reset_http_response() {
                    log::error!("could not reset the stream: {status:?}");
                }
                Action::Pause
            }
        }
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

    fn on_log(&mut self) {
        if self.trace.outcome.is_none() {
            return;
        }
        let time = hostcalls::get_current_time().unwrap_or(std::time::UNIX_EPOCH);
        let status =
            host::int_property(vec!["response", "code"]).and_then(|c| u16::try_from(c).ok());
        let trace = std::mem::take(&mut self.trace);
        let Some(record) = trace.into_record(time, &self.config, status) else {
            return;
        };
        // Straight to the host at info level (the level the module sets at start): through
        // `log::info!` the SDK's logger would format a second copy of the line.
        if let Err(status) = hostcalls::log(LogLevel::Info, &record.to_json_line()) {
            log::warn!("could not write the audit record: {status:?}");
        }
        if let Some(metrics) = &self.metrics {
            metrics.record(&record);
        }
    }
}

/// Buffered delivery: feeds the new bytes; at the end, returns the whole filtered body.
fn buffer_chunk(
    body: &mut BodyFilter,
    fed: &mut usize,
    out: &mut Vec<u8>,
    body_size: usize,
    end_of_stream: bool,
) -> Result<Option<Vec<u8>>, Problem> {
    if body_size > *fed {
        let chunk = host::response_body(*fed, body_size - *fed)
            .ok_or_else(|| Problem::not_filterable("the body could not be read"))?;
        *fed = body_size;
        body.write(&chunk).map_err(|error| {
            log::warn!("upstream body refused: {error}");
            Problem::from_body_error(&error)
        })?;
        out.extend(body.take_output());
    }
    if !end_of_stream {
        return Ok(None);
    }
    body.finish().map_err(|error| {
        log::warn!("upstream body refused: {error}");
        Problem::from_body_error(&error)
    })?;
    out.extend(body.take_output());
    Ok(Some(std::mem::take(out)))
}

/// Streamed or measured delivery: the host's buffer holds only this chunk; it is replaced
/// by its filtered bytes (`replace`) or left as is (dry run).
fn pass_chunk(
    body: &mut BodyFilter,
    size: usize,
    end_of_stream: bool,
    replace: bool,
) -> Result<(), String> {
    let chunk = host::response_body(0, size).ok_or("the body could not be read")?;
    body.write(&chunk).map_err(|e| e.to_string())?;
    if end_of_stream {
        body.finish().map_err(|e| e.to_string())?;
    }
    let filtered = body.take_output();
    if replace {
        hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, &filtered)
            .map_err(|status| format!("the filtered chunk could not be written: {status:?}"))?;
    }
    Ok(())
}

/// Filter state for access logs: `%FILTER_STATE(wasm.NAME:PLAIN)%`.
fn set_state(name: &str, value: &str) {
    if let Err(status) = hostcalls::set_property(vec![name], Some(value.as_bytes())) {
        log::debug!("could not set {name}: {status:?}");
    }
}
