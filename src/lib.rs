//! finalite: purpose limitation and data minimisation for personal-data APIs, at the proxy.
//!
//! The crate is a pure core (configuration, policies, the streaming JSON engine, tokens,
//! scopes, purposes, decisions) that knows nothing of proxies and is tested natively, and a
//! thin proxy-wasm adapter, compiled only for wasm32-wasi, that maps host callbacks onto it.
//! Dependencies point one way: `proxy` uses the core, never the reverse.
//!
//! The public surface is what the command-line tool, the tests, the fuzz targets and the
//! benchmarks drive the core through: the modules below marked `pub`, each exporting only
//! the types of its concept. Modules that only the crate itself uses (the refusal
//! catalogue, token verification, SMART and FHIR request checks, protobuf decoding, the
//! schema descriptions) are private; what callers need of them is re-exported.

pub mod audit;
pub mod auth;
pub mod body;
pub mod config;
pub mod decision;
mod denial;
pub mod error;
pub mod json;
pub mod media_type;
pub mod policy;
mod protobuf_struct;
pub mod request;
pub mod response;
/// Schema-only descriptions of the configuration's raw values (native only).
#[cfg(not(target_arch = "wasm32"))]
mod schema;

// wasm32-wasip1 only: on wasm32-unknown-unknown (the core's tests in V8, tests/wasm_core.rs)
// the adapter's host imports would be unresolvable.
#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod proxy;
