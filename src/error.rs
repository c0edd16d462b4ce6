//! Configuration errors, shared by parsing and compilation.

use std::fmt;

/// A configuration mistake, located by the key that holds it
/// (`policies.patients.purposes.research.fields."birthDate"`), so the operator can fix it
/// without reading our source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted path of the offending key; empty for the document as a whole.
    pub key: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Builds key paths the way the error messages print them.
#[derive(Debug, Clone, Default)]
pub struct KeyPath(String);

impl KeyPath {
    pub fn root(name: &str) -> KeyPath {
        KeyPath(name.to_string())
    }

    /// A key the configuration's own schema defines (`purposes`, `fields`).
    pub fn field(&self, name: &str) -> KeyPath {
        if self.0.is_empty() {
            KeyPath(name.to_string())
        } else {
            KeyPath(format!("{}.{}", self.0, name))
        }
    }

    /// A name the operator chose (a policy, a purpose): printed bare when it is a plain
    /// identifier, quoted otherwise so the path stays unambiguous.
    pub fn name(&self, name: &str) -> KeyPath {
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == ':');
        if plain {
            self.field(name)
        } else {
            self.quoted(name)
        }
    }

    /// A field path or header pattern: always quoted, as they may contain dots.
    pub fn quoted(&self, name: &str) -> KeyPath {
        let quoted = serde_json::to_string(name).unwrap_or_else(|_| format!("\"{name}\""));
        self.field(&quoted)
    }

    pub fn index(&self, index: usize) -> KeyPath {
        KeyPath(format!("{}[{}]", self.0, index))
    }

    pub fn error(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::new(self.0.clone(), message)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
