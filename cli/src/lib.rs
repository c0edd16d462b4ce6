//! The `finalite` command-line tool, for policy authors: the pieces `main.rs` wires to its
//! subcommands. Everything that decides what a purpose sees is finalite's core, called as
//! the filter calls it; this crate only reads files and prints.

pub mod explain;
pub mod render;
pub mod schema;
pub mod source;
pub mod token;

use std::cell::RefCell;
use std::path::Path;

use finalite::config::Config;
use finalite::policy::{compile, CompiledConfig};

/// A configuration read, parsed and compiled as the filter does at load.
pub struct Loaded {
    pub label: String,
    pub config: Config,
    pub compiled: CompiledConfig,
}

/// Stands in for a pseudonymisation key that the environment of this process lacks, so
/// that `check` and `explain` work on a policy author's machine. Never used by `filter`.
pub const STAND_IN_KEY: &str = "finalite-explain-stand-in-key-not-a-secret";

/// How configurations read the environment (for the pseudonymisation key).
pub enum Env {
    /// This process's environment, as the filter reads the VM's.
    Real,
    /// The same, with a stand-in for a missing variable; each stand-in is noted.
    StandIn(RefCell<Vec<String>>),
}

impl Env {
    pub fn stand_in() -> Env {
        Env::StandIn(RefCell::new(Vec::new()))
    }

    fn lookup(&self, name: &str) -> Option<String> {
        let value = std::env::var(name).ok();
        match self {
            Env::Real => value,
            Env::StandIn(missing) => value.or_else(|| {
                if !missing.borrow().iter().any(|n| n == name) {
                    missing.borrow_mut().push(name.to_string());
                }
                Some(STAND_IN_KEY.to_string())
            }),
        }
    }

    /// Notes for stderr about variables that were stood in for.
    pub fn notes(&self) -> Vec<String> {
        match self {
            Env::Real => Vec::new(),
            Env::StandIn(missing) => missing
                .borrow()
                .iter()
                .map(|name| {
                    format!(
                        "note: {name} is not set here: used a stand-in key. Envoy refuses this \
                         configuration unless its VM has {name} (vm_config.environment_variables)"
                    )
                })
                .collect(),
        }
    }
}

/// Parses and compiles one plugin configuration exactly as the filter's `on_configure`
/// does; the error is the filter's own message, naming the key.
pub fn load_bytes(
    label: &str,
    bytes: &[u8],
    env: &Env,
) -> Result<Loaded, finalite::error::ConfigError> {
    let lookup = |name: &str| env.lookup(name);
    // The same two steps as CompiledConfig::load, keeping the parsed Config for `explain`.
    let config = Config::from_host_bytes(bytes)?;
    let compiled = compile(&config, &lookup)?;
    Ok(Loaded {
        label: label.to_string(),
        config,
        compiled,
    })
}

/// The single configuration of a file (`explain`, `filter`): several in one YAML file must
/// be told apart by the user.
pub fn read_one(path: &Path) -> Result<source::PluginConfig, String> {
    let mut found = source::read(path)?;
    if found.len() > 1 {
        let labels: Vec<String> = found.iter().map(|f| f.label.clone()).collect();
        return Err(format!(
            "{} holds {} finalite configurations ({}); give a file with one",
            path.display(),
            found.len(),
            labels.join(", ")
        ));
    }
    Ok(found.remove(0))
}
