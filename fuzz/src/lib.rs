//! Shared code of finalite's fuzz targets.
//!
//! - [`case`]: how `engine_differential` reads its input (a policy from a small vocabulary,
//!   chunk sizes, a document).
//! - the reference model `engine_differential` compares the engine with, and what
//!   `config_load` does with a configuration that loads, are in `finalite-test-support`
//!   (shared with the tests).

pub mod case;
