//! The root context: loads and compiles the configuration once per VM.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{BufferType, ContextType};

use super::http::FinaliteHttp;
use super::metrics::Metrics;
use crate::policy::CompiledConfig;

#[derive(Default)]
pub struct FinaliteRoot {
    config: Option<Rc<CompiledConfig>>,
    metrics: Option<Rc<Metrics>>,
}

impl Context for FinaliteRoot {}

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
                self.config = Some(Rc::new(config));
                if self.metrics.is_none() {
                    self.metrics = Metrics::define().map(Rc::new);
                    if self.metrics.is_none() {
                        log::warn!("the host refused to define finalite's metrics");
                    }
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
        Some(Box::new(FinaliteHttp::new(config, self.metrics.clone())))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}
