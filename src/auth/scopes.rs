//! Scopes a request needs, per HTTP method.

use std::collections::BTreeMap;

/// All of `all_of`, and at least one of `any_of` when it is not empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeRequirement {
    pub all_of: Vec<String>,
    pub any_of: Vec<String>,
}

impl ScopeRequirement {
    pub fn is_met_by(&self, granted: &[String]) -> bool {
        let has = |scope: &String| granted.iter().any(|g| g == scope);
        self.all_of.iter().all(has) && (self.any_of.is_empty() || self.any_of.iter().any(has))
    }

    /// The `scope` attribute of RFC 6750's `insufficient_scope` challenge.
    pub fn challenge(&self) -> String {
        self.all_of
            .iter()
            .chain(&self.any_of)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The `scopes` of a policy.
#[derive(Debug, Clone, Default)]
pub struct ScopeTable {
    by_method: BTreeMap<String, ScopeRequirement>,
    other_methods: Option<ScopeRequirement>,
}

/// What a request's method needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MethodScopes<'a> {
    /// The policy requires no scope.
    None,
    Required(&'a ScopeRequirement),
    /// The policy lists scopes, but not for this method: nothing can authorise it.
    MethodNotCovered,
}

impl ScopeTable {
    pub fn insert(&mut self, method: &str, requirement: ScopeRequirement) {
        if method == "*" {
            self.other_methods = Some(requirement);
        } else {
            self.by_method
                .insert(method.to_ascii_uppercase(), requirement);
        }
    }

    /// HEAD reads what GET reads: unless the table names HEAD, it needs GET's scopes.
    pub fn for_method(&self, method: &str) -> MethodScopes<'_> {
        if self.by_method.is_empty() && self.other_methods.is_none() {
            return MethodScopes::None;
        }
        let method = method.to_ascii_uppercase();
        let head_as_get = if method == "HEAD" {
            self.by_method.get("GET")
        } else {
            None
        };
        match self
            .by_method
            .get(&method)
            .or(head_as_get)
            .or(self.other_methods.as_ref())
        {
            Some(requirement) => MethodScopes::Required(requirement),
            None => MethodScopes::MethodNotCovered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn all_of_and_any_of() {
        let r = ScopeRequirement {
            all_of: scopes(&["a"]),
            any_of: scopes(&["b", "c"]),
        };
        assert!(r.is_met_by(&scopes(&["a", "c"])));
        assert!(!r.is_met_by(&scopes(&["a"])));
        assert!(!r.is_met_by(&scopes(&["b", "c"])));
        assert_eq!(r.challenge(), "a b c");
    }

    #[test]
    fn per_method_with_a_fallback() {
        let mut t = ScopeTable::default();
        assert_eq!(t.for_method("GET"), MethodScopes::None);
        let read = ScopeRequirement {
            all_of: scopes(&["read"]),
            any_of: vec![],
        };
        t.insert("GET", read.clone());
        assert_eq!(t.for_method("get"), MethodScopes::Required(&read));
        assert_eq!(t.for_method("POST"), MethodScopes::MethodNotCovered);
        let write = ScopeRequirement {
            all_of: scopes(&["write"]),
            any_of: vec![],
        };
        t.insert("*", write.clone());
        assert_eq!(t.for_method("POST"), MethodScopes::Required(&write));
        assert_eq!(t.for_method("HEAD"), MethodScopes::Required(&read));
        t.insert("HEAD", write.clone());
        assert_eq!(t.for_method("head"), MethodScopes::Required(&write));
    }
}
