//! What finalite's tests, fuzz targets and benchmarks share.
//!
//! - [`reference`]: the reference model of the engine, a whole-document projection written
//!   plainly on serde_json, which the property tests, the JSONTestSuite conformance test and
//!   the differential fuzz target compare the streaming engine with;
//! - [`bench`]: the benchmark bodies (a FHIR-like Bundle generator) and policies, and the
//!   engine run as the proxy runs it;
//! - [`naive`] and [`scanner`]: the two baselines that do the engine's job another way;
//! - [`exercise`]: everything the request path does with a loaded configuration, for the
//!   hostile-configuration test and fuzz target.

pub mod bench;
pub mod exercise;
pub mod reference;

pub use finalite_bench_common::{naive, scanner};
