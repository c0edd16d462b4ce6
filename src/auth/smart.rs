//! SMART App Launch scopes (v1 and v2) read into grants: which interactions a token allows
//! on which resource types, in which context, under which constraints.
//!
//! Health APIs authorise reusers with these scopes; finalite enforces them on the request
//! and on what the API returns, independently of the FHIR server. Reading is strict: a scope
//! that starts like a resource scope (`patient/`, `user/`, `system/`) but does not parse
//! grants nothing, and so does a constraint finalite cannot evaluate: a grant is never
//! wider than what the scope says.

use std::fmt;

/// The launch context a scope applies in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Context {
    /// Only the launch patient's compartment.
    Patient,
    /// What the user may see.
    User,
    /// A backend service, no user.
    System,
}

impl Context {
    pub fn as_str(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }
}

/// One of SMART v2's permission letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// `c`: create.
    Create,
    /// `r`: read, vread, instance history.
    Read,
    /// `u`: update, patch.
    Update,
    /// `d`: delete.
    Delete,
    /// `s`: search, type history.
    Search,
}

impl Permission {
    /// In the order SMART v2 requires them in a scope (`cruds`).
    pub const ALL: [Permission; 5] = [
        Permission::Create,
        Permission::Read,
        Permission::Update,
        Permission::Delete,
        Permission::Search,
    ];

    pub fn letter(self) -> char {
        match self {
            Permission::Create => 'c',
            Permission::Read => 'r',
            Permission::Update => 'u',
            Permission::Delete => 'd',
            Permission::Search => 's',
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Permissions(u8);

impl Permissions {
    pub fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    fn with(self, permission: Permission) -> Permissions {
        Permissions(self.0 | permission.bit())
    }

    fn of(list: &[Permission]) -> Permissions {
        list.iter().fold(Permissions::default(), |p, &q| p.with(q))
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for permission in Permission::ALL {
            if self.contains(permission) {
                write!(f, "{}", permission.letter())?;
            }
        }
        Ok(())
    }
}

/// A granular constraint (`?category=system|code`) finalite evaluates on a resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CategoryConstraint {
    /// `None` when the scope gives a code alone (any system matches).
    pub system: Option<String>,
    pub code: String,
}

/// One resource scope, read.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ScopeGrant {
    pub context: Context,
    /// `None` for `*` (every type).
    pub resource_type: Option<String>,
    pub permissions: Permissions,
    /// Every constraint must hold (SMART: parameters are ANDed); at most `category`.
    pub categories: Vec<CategoryConstraint>,
}

impl ScopeGrant {
    /// Whether this grant concerns `resource_type` and includes `permission`.
    pub fn allows(&self, resource_type: &str, permission: Permission) -> bool {
        self.permissions.contains(permission)
            && self
                .resource_type
                .as_deref()
                .is_none_or(|t| t == resource_type)
    }
}

/// Why a scope that looks like a SMART resource scope grants nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeRefusal {
    /// Not `context/type.permissions`.
    Malformed,
    /// A resource type that is not a FHIR type name (letters, starting upper case) or `*`.
    BadResourceType,
    /// Neither v1 (`read`, `write`, `*`) nor v2 letters in the order `cruds`, once each.
    BadPermissions,
    /// A granular parameter other than `category`, or a query that does not parse: a grant
    /// finalite cannot evaluate would be wider than the scope, so it grants nothing.
    UnsupportedConstraint,
}

impl fmt::Display for ScopeRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ScopeRefusal::Malformed => "not of the form context/Type.permissions",
            ScopeRefusal::BadResourceType => "the resource type is not a FHIR type name or *",
            ScopeRefusal::BadPermissions => {
                "the permissions are neither read, write, * nor letters of cruds in order"
            }
            ScopeRefusal::UnsupportedConstraint => {
                "a granular parameter other than category cannot be evaluated"
            }
        })
    }
}

/// Reads one scope. `Ok(None)` for a scope that is not a SMART resource scope at all
/// (`openid`, `launch/patient`, `patients:read`): it is for other checks, not for these.
pub fn parse_scope(scope: &str) -> Result<Option<ScopeGrant>, ScopeRefusal> {
    let Some((context, rest)) = scope.split_once('/') else {
        return Ok(None);
    };
    let context = match context {
        "patient" => Context::Patient,
        "user" => Context::User,
        "system" => Context::System,
        _ => return Ok(None),
    };
    let (body, query) = match rest.split_once('?') {
        Some((body, query)) => (body, Some(query)),
        None => (rest, None),
    };
    let (resource_type, permissions) = body.rsplit_once('.').ok_or(ScopeRefusal::Malformed)?;
    let resource_type = match resource_type {
        "*" => None,
        name if is_type_name(name) => Some(name.to_string()),
        _ => return Err(ScopeRefusal::BadResourceType),
    };
    let permissions = parse_permissions(permissions).ok_or(ScopeRefusal::BadPermissions)?;
    let categories = match query {
        None => Vec::new(),
        Some(query) => parse_constraints(query)?,
    };
    Ok(Some(ScopeGrant {
        context,
        resource_type,
        permissions,
        categories,
    }))
}

/// Every SMART resource scope among `scopes` that parses; the others grant nothing.
pub fn grants(scopes: &[String]) -> Vec<ScopeGrant> {
    scopes
        .iter()
        .filter_map(|scope| parse_scope(scope).ok().flatten())
        .collect()
}

/// A FHIR resource type name: an ASCII letter in upper case, then letters or digits.
pub fn is_type_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_uppercase()) && bytes.all(|b| b.is_ascii_alphanumeric())
}

fn parse_permissions(text: &str) -> Option<Permissions> {
    use Permission::*;
    match text {
        // SMART v1, as SMART v2 maps them.
        "read" => return Some(Permissions::of(&[Read, Search])),
        "write" => return Some(Permissions::of(&[Create, Update, Delete])),
        "*" => return Some(Permissions::of(&Permission::ALL)),
        _ => {}
    }
    let mut permissions = Permissions::default();
    let mut next = 0;
    for letter in text.chars() {
        let at = Permission::ALL[next..]
            .iter()
            .position(|p| p.letter() == letter)?;
        permissions = permissions.with(Permission::ALL[next + at]);
        next += at + 1;
    }
    (permissions != Permissions::default()).then_some(permissions)
}

fn parse_constraints(query: &str) -> Result<Vec<CategoryConstraint>, ScopeRefusal> {
    let mut categories = Vec::new();
    for pair in query.split('&') {
        let (name, value) = pair
            .split_once('=')
            .ok_or(ScopeRefusal::UnsupportedConstraint)?;
        if name != "category" {
            return Err(ScopeRefusal::UnsupportedConstraint);
        }
        let value = percent_decode(value).ok_or(ScopeRefusal::UnsupportedConstraint)?;
        // A token search value: `system|code`, `|code` (no system), or `code`. A comma
        // would mean "any of": not a form SMART's examples use, and refused rather than
        // read as something wider or narrower than meant.
        if value.is_empty() || value.contains(',') {
            return Err(ScopeRefusal::UnsupportedConstraint);
        }
        let constraint = match value.split_once('|') {
            Some((system, code)) if !code.is_empty() && !code.contains('|') => CategoryConstraint {
                system: Some(system.to_string()),
                code: code.to_string(),
            },
            Some(_) => return Err(ScopeRefusal::UnsupportedConstraint),
            None => CategoryConstraint {
                system: None,
                code: value,
            },
        };
        categories.push(constraint);
    }
    Ok(categories)
}

/// `%XX` escapes decoded (scopes travel in URLs); `None` for a bad escape or bad UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use Permission::*;

    fn grant(scope: &str) -> ScopeGrant {
        parse_scope(scope)
            .unwrap_or_else(|e| panic!("{scope}: {e}"))
            .unwrap_or_else(|| panic!("{scope}: not a resource scope"))
    }

    fn letters(scope: &str) -> String {
        grant(scope).permissions.to_string()
    }

    #[test]
    fn v2_forms_of_the_specification() {
        // The scopes of SMART App Launch 2.x's quick start and examples.
        assert_eq!(letters("patient/*.rs"), "rs");
        assert_eq!(letters("user/*.cruds"), "cruds");
        assert_eq!(letters("patient/Observation.rs"), "rs");
        assert_eq!(letters("user/Appointment.cruds"), "cruds");
        assert_eq!(letters("system/Patient.rs"), "rs");
        assert_eq!(letters("patient/Observation.c"), "c");
        assert_eq!(letters("user/Observation.ud"), "ud");
        let g = grant("patient/Observation.rs");
        assert_eq!(g.context, Context::Patient);
        assert_eq!(g.resource_type.as_deref(), Some("Observation"));
        assert!(g.categories.is_empty());
        assert_eq!(grant("user/*.rs").resource_type, None);
        assert_eq!(grant("system/*.rs").context, Context::System);
    }

    #[test]
    fn v1_forms_map_as_v2_says() {
        assert_eq!(letters("patient/Observation.read"), "rs");
        assert_eq!(letters("user/Encounter.write"), "cud");
        assert_eq!(letters("user/*.*"), "cruds");
        assert_eq!(letters("patient/*.read"), "rs");
    }

    #[test]
    fn granular_category_constraints() {
        let g = grant(
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        );
        assert_eq!(
            g.categories,
            vec![CategoryConstraint {
                system: Some("http://terminology.hl7.org/CodeSystem/observation-category".into()),
                code: "laboratory".into()
            }]
        );
        let g = grant("user/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category%7Cencounter-diagnosis");
        assert_eq!(g.categories[0].code, "encounter-diagnosis");
        let g = grant("patient/Observation.rs?category=vital-signs");
        assert_eq!(g.categories[0].system, None);
        // Two constraints, both required.
        let g = grant("patient/Observation.rs?category=a|x&category=b|y");
        assert_eq!(g.categories.len(), 2);
    }

    #[test]
    fn other_parameters_grant_nothing() {
        for scope in [
            "patient/Observation.rs?code=http://loinc.org|1234-5",
            "patient/Observation.rs?category=a|x&code=b",
            "patient/Observation.rs?category",
            "patient/Observation.rs?category=",
            "patient/Observation.rs?category=a,b",
            "patient/Observation.rs?category=a|b|c",
            "patient/Observation.rs?category=a|",
            "patient/Observation.rs?category=%zz",
            "patient/Observation.rs?",
        ] {
            assert_eq!(
                parse_scope(scope),
                Err(ScopeRefusal::UnsupportedConstraint),
                "{scope}"
            );
        }
    }

    #[test]
    fn malformed_scopes_grant_nothing() {
        for (scope, why) in [
            ("patient/Observation", ScopeRefusal::Malformed),
            ("patient/.rs", ScopeRefusal::BadResourceType),
            ("patient/observation.rs", ScopeRefusal::BadResourceType),
            ("patient/Obs-ervation.rs", ScopeRefusal::BadResourceType),
            ("patient/Observation.sr", ScopeRefusal::BadPermissions),
            ("patient/Observation.rr", ScopeRefusal::BadPermissions),
            ("patient/Observation.", ScopeRefusal::BadPermissions),
            ("patient/Observation.x", ScopeRefusal::BadPermissions),
            ("patient/Observation.Read", ScopeRefusal::BadPermissions),
            ("patient/Observation.rs.rs", ScopeRefusal::BadResourceType),
            ("user/*.reads", ScopeRefusal::BadPermissions),
        ] {
            assert_eq!(parse_scope(scope), Err(why), "{scope}");
        }
        let scopes: Vec<String> = ["patient/Observation.sr", "user/Patient.rs", "openid"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(grants(&scopes), vec![grant("user/Patient.rs")]);
    }

    #[test]
    fn other_scopes_are_not_resource_scopes() {
        for scope in [
            "openid",
            "fhirUser",
            "launch",
            "launch/patient",
            "offline_access",
            "patients:read",
            "purpose:research",
            "Patient/Observation.rs",
        ] {
            assert_eq!(parse_scope(scope), Ok(None), "{scope}");
        }
    }

    #[test]
    fn allows_by_type_and_letter() {
        let g = grant("patient/Observation.rs");
        assert!(g.allows("Observation", Read) && g.allows("Observation", Search));
        assert!(!g.allows("Observation", Create) && !g.allows("Condition", Read));
        let any = grant("user/*.r");
        assert!(any.allows("Condition", Read) && !any.allows("Condition", Search));
    }
}
