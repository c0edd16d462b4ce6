//! Benchmark baseline: the contract. A tiny filter making the host calls finalite makes for
//! every filtered request, and doing nothing else: it reads the request's header map and two
//! route properties, sets the four filter-state values the access log reads, reads the
//! response's header map and removes the representation headers a rewritten body
//! invalidates, buffers the body (reads it, writes it back unchanged) and sets two more
//! filter-state values, and at the end reads the time and the status, writes an audit line
//! of about 950 bytes to Envoy's log at info and adds to five counters.
//!
//! What finalite pays beyond this filter is its own work (the policy, the engine, the audit
//! record's contents): the 1 KiB target compares the two.

use std::cell::OnceCell;
use std::time::UNIX_EPOCH;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, LogLevel, MapType, MetricType};

/// The size of finalite's audit line for a 1 KiB request of the benchmark.
const AUDIT_LINE_BYTES: usize = 950;

/// The counters finalite adds to per filtered request: the request by outcome, fields
/// withheld and transformed, bytes in and out.
struct Counters([u32; 5]);

impl Counters {
    fn define() -> Option<Counters> {
        let names = [
            "contract_requests_total;decision=filtered",
            "contract_fields_withheld_total",
            "contract_fields_transformed_total",
            "contract_body_bytes_in_total",
            "contract_body_bytes_out_total",
        ];
        let mut ids = [0; 5];
        for (id, name) in ids.iter_mut().zip(names) {
            *id = hostcalls::define_metric(MetricType::Counter, name).ok()?;
        }
        Some(Counters(ids))
    }
}

thread_local! {
    /// Defined by the first request (the host takes metric definitions from a context), as
    /// finalite defines its counters once per VM.
    static COUNTERS: OnceCell<Option<Counters>> = const { OnceCell::new() };
}

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_http_context(|context_id, _| -> Box<dyn HttpContext> {
        Box::new(Contract { context_id, body_bytes: 0 })
    });
}}

struct Contract {
    context_id: u32,
    body_bytes: usize,
}

fn set_state(name: &str, value: &str) {
    let _ = hostcalls::set_property(vec![name], Some(value.as_bytes()));
}

impl Context for Contract {}

impl HttpContext for Contract {
    fn on_http_request_headers(&mut self, _: usize, _: bool) -> Action {
        let headers = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        let _purpose = headers.iter().find(|(name, _)| name == "x-purpose");
        let _policy = hostcalls::get_property(vec![
            "xds",
            "route_metadata",
            "filter_metadata",
            "finalite",
            "policy",
        ]);
        let _route = hostcalls::get_property(vec!["xds", "route_name"]);
        set_state("finalite_policy", "bundle");
        set_state("finalite_policy_hash", "0123456789abcdef");
        set_state("finalite_purpose", "research");
        set_state("finalite_decision", "filtered");
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _: usize, _: bool) -> Action {
        let headers = hostcalls::get_map_bytes(MapType::HttpResponseHeaders).unwrap_or_default();
        for name in ["content-length", "etag"] {
            if headers.iter().any(|(n, _)| n == name) {
                let _ = hostcalls::set_map_value(MapType::HttpResponseHeaders, name, None);
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause; // Envoy buffers until the end
        }
        let body = hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let _ = hostcalls::set_buffer(BufferType::HttpResponseBody, 0, body_size, &body);
        self.body_bytes = body.len();
        set_state("finalite_withheld", "0");
        set_state("finalite_transformed", "0");
        Action::Continue
    }

    fn on_log(&mut self) {
        let time = hostcalls::get_current_time().unwrap_or(UNIX_EPOCH);
        let status = hostcalls::get_property(vec!["response", "code"])
            .ok()
            .flatten()
            .and_then(|bytes| bytes.get(..8).map(|b| b.to_vec()))
            .map_or(0, |b| u64::from_le_bytes(b.try_into().unwrap_or_default()));
        let millis = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let mut line = format!(
            "{{\"audit\":\"contract\",\"time_ms\":{millis},\"request\":{},\"status\":{status},\
             \"bytes_in\":{},\"bytes_out\":{},\"withheld\":{{",
            self.context_id, self.body_bytes, self.body_bytes
        );
        // Field paths, as the audit record lists what it withheld, up to the record's size.
        let mut n = 0;
        while line.len() < AUDIT_LINE_BYTES - 40 {
            line.push_str(&format!("\"entry.resource.field{n}\":1,"));
            n += 1;
        }
        line.push_str("\"end\":0}}");
        let _ = hostcalls::log(LogLevel::Info, &line);
        COUNTERS.with(|counters| {
            if let Some(Counters(ids)) = counters.get_or_init(Counters::define) {
                let values = [1, n, 0, self.body_bytes, self.body_bytes];
                for (id, value) in ids.iter().zip(values) {
                    if value > 0 {
                        let _ = hostcalls::increment_metric(*id, value as i64);
                    }
                }
            }
        });
    }
}
