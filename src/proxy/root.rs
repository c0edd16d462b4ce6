//! The root context: loads and compiles the configuration once per VM.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType, MapType};

use super::host::unix_now;
use super::http::FinaliteHttp;
use super::metrics::Metrics;
use crate::auth::verifier::{Verifier, FETCH_TIMEOUT_MS, MAX_JWKS_BYTES, TICK_SECONDS};
use crate::policy::CompiledConfig;

#[derive(Default)]
pub struct FinaliteRoot {
    config: Option<Rc<CompiledConfig>>,
    metrics: Option<Rc<Metrics>>,
    /// Keys for `token.from: "jwks"`, shared with the HTTP contexts of this VM.
    keys: Option<Rc<RefCell<Verifier>>>,
}

impl FinaliteRoot {
    /// Fetches the JWK Set when the cache says it is time (start, refresh, retry, or a token
    /// with an unknown `kid`).
    fn maybe_fetch(&self) {
        let Some(keys) = &self.keys else {
            return;
        };
        let now = unix_now();
        let mut cache = keys.borrow_mut();
        if !cache.needs_fetch(now) {
            return;
        }
        let Some(remote) = cache.remote().cloned() else {
            return;
        };
        cache.fetch_started(now);
        let headers = vec![
            (":method", "GET"),
            (":path", remote.path.as_str()),
            (":authority", remote.authority.as_str()),
            ("accept", "application/json"),
        ];
        let timeout = Duration::from_millis(FETCH_TIMEOUT_MS);
        if let Err(status) =
            hostcalls::dispatch_http_call(&remote.cluster, headers, None, vec![], timeout)
        {
            let report = cache.on_fetch_response(now, None, None);
            log::warn!(
                "JWKS fetch from cluster {} could not start ({status:?}): {report}",
                remote.cluster
            );
        }
    }
}

impl Context for FinaliteRoot {
    fn on_http_call_response(
        &mut self,
        _token_id: u32,
        _num_headers: usize,
        body_size: usize,
        _num_trailers: usize,
    ) {
        let Some(keys) = &self.keys else {
            return;
        };
        let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
            .ok()
            .flatten()
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<u16>().ok());
        // One byte past the limit is enough for the cache to refuse an oversized set.
        let body = if body_size > 0 {
            let len = body_size.min(MAX_JWKS_BYTES + 1);
            hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, len)
                .ok()
                .flatten()
        } else {
            None
        };
        let report = keys
            .borrow_mut()
            .on_fetch_response(unix_now(), status, body.as_deref());
        log::info!("JWKS fetch: {report}");
    }
}

impl RootContext for FinaliteRoot {
    /// Any error refuses the configuration: Envoy then rejects the listener or update.
    fn on_configure(&mut self, size: usize) -> bool {
        let bytes = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size)
            .ok()
            .flatten()
            .unwrap_or_default();
        let env = |name: &str| std::env::var(name).ok();
        match CompiledConfig::load(&bytes, &env) {
            Ok(config) => {
                log::info!(
                    "configuration loaded: {} polic{}",
                    config.policies.len(),
                    if config.policies.len() == 1 {
                        "y"
                    } else {
                        "ies"
                    }
                );
                self.keys = config
                    .token
                    .verification
                    .clone()
                    .map(|verification| Rc::new(RefCell::new(Verifier::new(verification))));
                if let Some(keys) = &self.keys {
                    let remote = keys.borrow().remote().is_some();
                    if remote {
                        let _ = hostcalls::set_tick_period(Duration::from_secs(TICK_SECONDS));
                    }
                }
                self.config = Some(Rc::new(config));
                self.maybe_fetch();
                if self.metrics.is_none() {
                    self.metrics = Metrics::define().map(Rc::new);
                    if self.metrics.is_none() {
                        log::warn!("the host refused to define finalite's metrics");
                    }
                }
                // The memory the configuration took, before any request.
                if let Some(metrics) = &self.metrics {
                    metrics.report_memory();
                }
                true
            }
            Err(error) => {
                log::error!("configuration refused: {error}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        // Without a configuration there is no context: the host refuses rather than passes.
        let config = self.config.clone()?;
        Some(Box::new(FinaliteHttp::new(
            config,
            self.metrics.clone(),
            self.keys.clone(),
        )))
    }

    fn on_tick(&mut self) {
        self.maybe_fetch();
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
