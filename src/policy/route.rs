//! Which policy covers a request.
//!
//! In Envoy the route says it (its metadata, or its name); the path/method matchers are the
//! fallback for hosts that have neither.

/// What the host tells us about the request's route.
#[derive(Debug, Clone, Default)]
pub struct RouteInfo<'a> {
    /// `filter_metadata.finalite.policy` of the matched route.
    pub metadata_policy: Option<&'a str>,
    /// The matched route's `name`.
    pub route_name: Option<&'a str>,
    /// `:path`, query string included (it is ignored).
    pub path: &'a str,
    pub method: &'a str,
}

/// How a request relates to the configured policies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    Policy(usize),
    /// The route names a policy the configuration does not define: an operator mistake.
    UnknownPolicy(String),
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
}

/// One `match` entry of one policy.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub policy: usize,
    pub path: PathMatch,
    /// Upper-case; empty means any method.
    pub methods: Vec<String>,
}

/// Policy names and matchers, compiled once.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub names: Vec<String>,
    pub matchers: Vec<Matcher>,
}

impl RouteTable {
    /// Route metadata first, then route name, then the most specific matcher (an exact path,
    /// else the longest prefix).
    pub fn select(&self, route: &RouteInfo<'_>) -> Selection {
        if let Some(name) = route.metadata_policy {
            return match self.position(name) {
                Some(index) => Selection::Policy(index),
                None => Selection::UnknownPolicy(name.to_string()),
            };
        }
        if let Some(index) = route.route_name.and_then(|name| self.position(name)) {
            return Selection::Policy(index);
        }
        let path = route.path.split(['?', '#']).next().unwrap_or("");
        let mut best: Option<(usize, usize)> = None; // (score, policy)
        for matcher in &self.matchers {
            if !matcher.methods.is_empty()
                && !matcher
                    .methods
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(route.method))
            {
                continue;
            }
            let score = match &matcher.path {
                PathMatch::Exact(p) if p == path => usize::MAX,
                PathMatch::Prefix(p) if path.starts_with(p.as_str()) => p.len(),
                _ => continue,
            };
            if best.is_none_or(|(s, _)| score > s) {
                best = Some((score, matcher.policy));
            }
        }
        match best {
            Some((_, policy)) => Selection::Policy(policy),
            None => Selection::None,
        }
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable {
        RouteTable {
            names: vec!["patients".into(), "admin".into(), "one".into()],
            matchers: vec![
                Matcher {
                    policy: 0,
                    path: PathMatch::Prefix("/patients".into()),
                    methods: vec!["GET".into()],
                },
                Matcher {
                    policy: 1,
                    path: PathMatch::Prefix("/patients/admin".into()),
                    methods: vec![],
                },
                Matcher {
                    policy: 2,
                    path: PathMatch::Exact("/patients/1".into()),
                    methods: vec![],
                },
            ],
        }
    }

    fn select(metadata: Option<&str>, name: Option<&str>, path: &str, method: &str) -> Selection {
        table().select(&RouteInfo {
            metadata_policy: metadata,
            route_name: name,
            path,
            method,
        })
    }

    #[test]
    fn metadata_comes_first() {
        assert_eq!(
            select(Some("admin"), Some("patients"), "/x", "GET"),
            Selection::Policy(1)
        );
        assert_eq!(
            select(Some("nope"), Some("patients"), "/x", "GET"),
            Selection::UnknownPolicy("nope".into())
        );
    }

    #[test]
    fn then_the_route_name() {
        assert_eq!(
            select(None, Some("admin"), "/x", "GET"),
            Selection::Policy(1)
        );
        assert_eq!(
            select(None, Some("unrelated"), "/x", "GET"),
            Selection::None
        );
    }

    #[test]
    fn then_the_most_specific_matcher() {
        assert_eq!(
            select(None, None, "/patients?page=2", "GET"),
            Selection::Policy(0)
        );
        assert_eq!(
            select(None, None, "/patients/admin/x", "GET"),
            Selection::Policy(1)
        );
        assert_eq!(
            select(None, None, "/patients/1", "GET"),
            Selection::Policy(2)
        );
        assert_eq!(select(None, None, "/patients", "POST"), Selection::None);
        assert_eq!(select(None, None, "/other", "GET"), Selection::None);
    }
}
