//! The proxy-wasm adapter: maps host callbacks onto the core and core decisions onto host
//! calls. It holds no policy logic; every decision it acts on is a value the core returned.
//!
//! Host calls go through `proxy_wasm::hostcalls`, which return `Result`, never through the
//! SDK's trait helpers that panic on an unexpected host answer: a panic is an outage.

mod host;
mod http;
mod metrics;
mod root;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::FinaliteRoot::default())
    });
}}
