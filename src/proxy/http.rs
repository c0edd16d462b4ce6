//! The HTTP context: one per request.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType};

use super::host::{self, JwtAuthnClaims, NoToken};
use super::metrics::Metrics;
use crate::audit::{Outcome, Trace};
use crate::auth::bearer::BearerClaims;
use crate::auth::claims::ClaimSource;
use crate::auth::verifier::Verifier;
use crate::body::{BodyError, BodyFilter};
use crate::config::TokenSource;
use crate::decision::{Allowed, BodyPlan, Delivery, FailureEffect, FilterSpec};
use crate::denial::{Denial, Problem};
use crate::policy::route::RouteInfo;
use crate::policy::CompiledConfig;
use crate::request::{self, Caller, RequestAction};
use crate::response;

/// A buffered body's place in the host's growing buffer: `fed` bytes of it went through the
/// filter, whose output is kept in `out` until the end.
#[derive(Default)]
struct Held {
    fed: usize,
    out: Vec<u8>,
}

enum Stage {
    /// Nothing more to do for this stream.
    Done,
    /// Request allowed; the response is planned when its headers arrive.
    Allowed(Allowed),
    /// The body passes as it is; its trailers, if any, get the purpose's header rules.
    Passing(Allowed),
    Filtering {
        body: Box<BodyFilter>,
        delivery: Delivery,
        held: Held,
    },
}

pub struct FinaliteHttp {
    config: Rc<CompiledConfig>,
    metrics: Option<Rc<Metrics>>,
    /// Present when finalite verifies tokens itself (`token.from: "jwks"`).
    keys: Option<Rc<RefCell<Verifier>>>,
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
        keys: Option<Rc<RefCell<Verifier>>>,
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

    /// The response could not be filtered: `effect`, as the core decided it (a 502 in its
    /// place, a reset, or in a dry run only the record).
    fn fail_closed(&mut self, problem: Problem, effect: FailureEffect) -> Action {
        log::warn!(
            "request {}: response withheld: {}",
            self.trace.request_label(),
            problem.detail
        );
        // A 502, or a refusal of what the response is (a resource SMART scopes do not grant).
        self.set_outcome(Outcome::of(problem.kind));
        match effect {
            FailureEffect::Replace => self.send(&problem.into()),
            FailureEffect::Reset => self.reset(),
            FailureEffect::Record => {
                self.stage = Stage::Done;
                Action::Continue
            }
        }
    }

    /// A body passed chunk by chunk failed: the record says so (`outcome`: failed closed, or
    /// denied when the body is a resource SMART scopes do not grant), and `effect` is
    /// carried out. `sent_before`: the filtered bytes of the chunks already passed, all the
    /// client gets of a reset response (a dry run sends the body as it came).
    fn body_failed(
        &mut self,
        body: &mut BodyFilter,
        effect: FailureEffect,
        (reason, outcome): (&str, Outcome),
        sent_before: u64,
    ) -> Action {
        let label = self.trace.request_label();
        match effect {
            FailureEffect::Record => {
                log::info!("request {label}: dry run: the body would have failed closed: {reason}")
            }
            // The headers are gone: only a reset keeps the client from taking a cut body for
            // a complete one.
            FailureEffect::Reset | FailureEffect::Replace => {
                log::warn!("request {label}: streamed response reset: {reason}")
            }
        }
        let sent = match effect {
            FailureEffect::Record => None,
            FailureEffect::Reset | FailureEffect::Replace => Some(sent_before),
        };
        self.body_done(body, sent);
        self.set_outcome(outcome);
        match effect {
            FailureEffect::Record => Action::Continue,
            FailureEffect::Reset | FailureEffect::Replace => self.reset(),
        }
    }

    fn reset(&mut self) -> Action {
        if let Err(status) = hostcalls::reset_http_response() {
            log::error!("could not reset the stream: {status:?}");
        }
        self.stage = Stage::Done;
        Action::Pause
    }

    fn set_outcome(&mut self, outcome: Outcome) {
        self.trace.outcome = Some(outcome);
        set_state("finalite_decision", outcome.as_str());
    }

    fn start_body(&mut self, spec: FilterSpec, client: Option<&str>) -> Action {
        let body = Box::new(BodyFilter::for_spec(&spec, &self.config, client));
        let delivery = spec.delivery;
        self.stage = Stage::Filtering {
            body,
            delivery,
            held: Held::default(),
        };
        if delivery.holds_headers() {
            Action::Pause
        } else {
            Action::Continue
        }
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
        let declared = request::declared_purpose(request_headers, &self.config.purpose_header);
        let jwt_authn = JwtAuthnClaims {
            metadata_key: &self.config.token.metadata_key,
        };
        // The token is read here only when finalite verifies it itself (`token.from: jwks`);
        // with jwt_authn, Envoy's verified claims are read instead.
        let own_tokens = self.config.token.source == TokenSource::Jwks;
        let authorization = own_tokens.then(|| header("authorization")).flatten();
        let keys = self.keys.clone().filter(|_| own_tokens);
        let mut cache = keys.as_ref().map(|k| k.borrow_mut());
        let bearer = cache
            .as_deref_mut()
            .map(|cache| BearerClaims::new(authorization, cache, host::unix_now()));
        let claims: &dyn ClaimSource = match (&bearer, own_tokens) {
            (Some(bearer), _) => bearer,
            (None, false) => &jwt_authn,
            // Keys are made with the configuration: without them no token is verified.
            (None, true) => &NoToken,
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

        self.set_outcome(Outcome::of_decision(&verdict.decision));
        match verdict.action() {
            RequestAction::Refuse(denial) => self.send(denial),
            RequestAction::RecordRefusal(denial) => {
                // The type, not the detail: the detail may quote client input (an
                // undeclared purpose name), which stays out of the log.
                log::info!(
                    "request {}: dry run: would refuse with {} ({})",
                    self.trace.request_label(),
                    denial.status(),
                    denial.problem.slug
                );
                self.stage = Stage::Done;
                Action::Continue
            }
            RequestAction::Pass => {
                self.stage = Stage::Done;
                Action::Continue
            }
            RequestAction::Filter(allowed) => {
                for name in request::headers_to_remove(&self.config, allowed, pairs.as_deref()) {
                    host::remove_header(MapType::HttpRequestHeaders, name);
                }
                self.stage = Stage::Allowed(allowed.clone());
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
        for name in &plan.remove_headers {
            host::remove_header(MapType::HttpResponseHeaders, name);
        }
        for (name, value) in &plan.set_headers {
            host::set_header(MapType::HttpResponseHeaders, name, value);
        }
        match plan.body {
            BodyPlan::Untouched => {
                self.stage = Stage::Passing(allowed);
                Action::Continue
            }
            BodyPlan::FailClosed(problem) => self.fail_closed(problem, plan.on_failure),
            BodyPlan::Filter(spec) => self.start_body(spec, allowed.client_id.as_deref()),
        }
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        // TEST ONLY (feature `test-panic`): trap the VM to prove that a panic fails closed.
        #[cfg(feature = "test-panic")]
        if self.test_panic {
            panic!("x-finalite-test-panic: panicking in on_http_response_body, as asked");
        }
        if !matches!(self.stage, Stage::Filtering { .. }) {
            return Action::Continue;
        }
        let Stage::Filtering {
            mut body,
            delivery,
            mut held,
        } = std::mem::replace(&mut self.stage, Stage::Done)
        else {
            return Action::Continue;
        };
        if delivery.holds_headers() {
            // What came in so far, none of it out: what the record says if this fails
            // closed (body_done overwrites it once the body is filtered).
            self.trace.sizes = Some((body_size as u64, 0));
            return match buffer_chunk(&mut body, &mut held, body_size, end_of_stream) {
                Ok(Some(filtered)) => {
                    if hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &filtered)
                        .is_err()
                    {
                        return self.fail_closed(
                            Problem::not_filterable("the filtered body could not be written"),
                            delivery.on_failure(),
                        );
                    }
                    let sent = filtered.len() as u64;
                    self.body_done(&mut body, Some(sent));
                    Action::Continue
                }
                Ok(None) => {
                    self.stage = Stage::Filtering {
                        body,
                        delivery,
                        held,
                    };
                    Action::Pause
                }
                Err(problem) => {
                    // What SMART scopes withheld before the body failed (the root refused).
                    self.trace.stats.resources = body.take_stats().resources;
                    self.fail_closed(problem, delivery.on_failure())
                }
            };
        }
        let sent_before = body.bytes_out();
        match pass_chunk(
            &mut body,
            body_size,
            end_of_stream,
            delivery.replaces_chunks(),
        ) {
            Ok(()) if end_of_stream => {
                let sent = delivery.replaces_chunks().then(|| body.bytes_out());
                self.body_done(&mut body, sent);
                Action::Continue
            }
            Ok(()) => {
                self.stage = Stage::Filtering {
                    body,
                    delivery,
                    held,
                };
                Action::Continue
            }
            Err((reason, outcome)) => self.body_failed(
                &mut body,
                delivery.on_failure(),
                (&reason, outcome),
                sent_before,
            ),
        }
    }

    fn on_http_response_trailers(&mut self, _num_trailers: usize) -> Action {
        match std::mem::replace(&mut self.stage, Stage::Done) {
            // The body ended without end_of_stream on its last chunk; it cannot be rewritten
            // now.
            Stage::Filtering { delivery, .. } => self.fail_closed(
                Problem::not_filterable("a body followed by trailers cannot be filtered"),
                delivery.on_failure(),
            ),
            Stage::Passing(allowed) => {
                let trailers = host::headers(MapType::HttpResponseTrailers);
                for name in response::trailers_to_remove(&self.config, &allowed, &trailers) {
                    host::remove_header(MapType::HttpResponseTrailers, &name);
                }
                Action::Continue
            }
            Stage::Done | Stage::Allowed(_) => Action::Continue,
        }
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
    held: &mut Held,
    body_size: usize,
    end_of_stream: bool,
) -> Result<Option<Vec<u8>>, Problem> {
    let Held { fed, out } = held;
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
/// by its filtered bytes (`replace`) or left as is (measured). A failure comes with its
/// reason and the outcome the record gives it (the core's, for a refused body).
fn pass_chunk(
    body: &mut BodyFilter,
    size: usize,
    end_of_stream: bool,
    replace: bool,
) -> Result<(), (String, Outcome)> {
    let failed = |reason: String| (reason, Outcome::FailedClosed);
    let refused = |error: BodyError| {
        let outcome = Outcome::of(Problem::from_body_error(&error).kind);
        (error.to_string(), outcome)
    };
    let chunk = host::response_body(0, size)
        .ok_or_else(|| failed("the body could not be read".to_string()))?;
    body.write(&chunk).map_err(refused)?;
    if end_of_stream {
        body.finish().map_err(refused)?;
    }
    let filtered = body.take_output();
    if replace {
        hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, &filtered).map_err(
            |status| {
                failed(format!(
                    "the filtered chunk could not be written: {status:?}"
                ))
            },
        )?;
    }
    Ok(())
}

/// Filter state for access logs: `%FILTER_STATE(wasm.NAME:PLAIN)%`.
fn set_state(name: &str, value: &str) {
    if let Err(status) = hostcalls::set_property(vec![name], Some(value.as_bytes())) {
        log::debug!("could not set {name}: {status:?}");
    }
}
