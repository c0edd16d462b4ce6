//! Shared code of finalite's fuzz targets.
//!
//! - [`case`]: how `engine_differential` reads its input (a policy from a small vocabulary,
//!   chunk sizes, a document).
//! - [`reference`]: the plain serde_json filter the engine is compared with (feature
//!   `reference`: serde_json with `preserve_order` and `arbitrary_precision`).
//! - [`exercise`]: what `config_load` does with a configuration that loads (shared with
//!   `tests/hostile_config.rs`).

pub mod case;
#[path = "../../tests/common/exercise.rs"]
pub mod exercise;
#[cfg(feature = "reference")]
pub mod reference;
