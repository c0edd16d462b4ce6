//! SMART scopes on the response: every FHIR resource the body holds is sent only when the
//! caller's grants allow it ([`SmartAccess`]), whatever the purpose's field rules say.
//!
//! Under SMART the rules are always typed (by `resourceType`), so every object waits for its
//! type (typed.rs) and every resource is seen before any of it is written: the root, each
//! NDJSON line, each Bundle entry's `resource`, each `contained` element, a Bundle inside a
//! Bundle, any object with a type member. A resource is decided on its type alone when it
//! can be: no grant allows the type, and it is withheld at once; a grant allows every
//! resource of the type, and it goes on at once. Otherwise (a `category` constraint, or a
//! `patient/` grant on `Patient` or a type of the patient compartment) it is held to its
//! end, within `limits.max_type_lookahead_bytes`, and its facts are read from its *own*
//! members (`id`, `category[*].coding[*]`, the `reference` of each compartment element;
//! never those of a resource nested in it): every value of a member given twice counts
//! (any reference to the patient puts it in the compartment; a `Patient` is the patient's
//! only when every `id` it gives is the patient's id). A held resource's bytes, and those
//! of every resource inside it, are then all in hand: each is decided from them when the
//! hold resolves, and the replay only reads the verdicts.
//!
//! What a withheld resource becomes depends on where it stands:
//! - a Bundle entry: the whole entry goes (its `fullUrl`, `search` and `request` would tell
//!   of the resource). An entry is sent only with a granted resource: one without a
//!   `resource`, with one that is not an object or given twice, goes too. Whatever is
//!   withheld, every Bundle's `total` is withheld as well: it is written before the entries
//!   are known, and would tell how many there were;
//! - a `contained` element, or any other typed object: it is left out;
//! - the root of a single document: the response is refused (`ErrorKind::Grant`, answered
//!   with a 403 `resource-not-granted` problem, or a reset once streamed);
//! - the root of an NDJSON line: the line is left out, its newline too (no `null` line).
//!
//! Where a resource is expected, an object without a type is withheld in the same way; a
//! root (or line) that is not an object at all is refused. Arrays are transparent here as
//! in policy paths: an `entry` (or `contained`) given as one object is read as an element.
//! A `Bundle` is an envelope, granted whatever the scopes; each resource in it is decided
//! on its own. The resources withheld are counted by type (`FilterStats::resources`),
//! apart from the fields the purpose's rules withhold.
//!
//! The grants are evaluated in `policy::fhir` (`SmartAccess`, `ResourceFacts`); this file
//! only finds the resources, reads their facts and applies the verdicts.

use std::sync::Arc;

use super::typed::{Hold, Member, Noted, TypeOutcome};
use super::{JsonFilter, Subtree};
use crate::json::error::{EngineError, ErrorKind, GrantErrorKind};
use crate::json::lexer::{plain_value, Event, Framing, Lexer, ScalarKind};
use crate::json::tally::PathCounter;
use crate::policy::action::Action;
use crate::policy::compartment;
use crate::policy::fhir::{ResourceFacts, SmartAccess, TypeVerdict};
use crate::policy::rules::{DEAD, TYPE_MEMBER_RANK};

use super::audit_path::type_segment;

/// The filter's state under SMART scopes.
#[derive(Debug, Clone)]
pub(super) struct SmartState {
    access: Arc<SmartAccess>,
    /// NDJSON: a withheld line's root is left out, its newline too.
    lines: bool,
    /// The line just read was withheld: its newline is not written.
    dropped_line: bool,
    /// The type of each open resource (typed frame), outermost first.
    resources: Vec<Box<[u8]>>,
    /// Resources withheld, by type.
    pub(super) withheld: PathCounter,
}

/// An object's verdict under SMART scopes, once known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum Grant {
    /// Not a resource, or not decided: never sent as a resource.
    #[default]
    Unchecked,
    Granted,
    Withheld,
}

/// What SMART scopes say of an object about to be opened.
#[derive(Debug, Clone, Default)]
pub(super) struct Checked {
    /// The object's own verdict, when it is a resource.
    own: Grant,
    /// The verdict and type of its `resource` member's object (for a Bundle entry).
    resource: Grant,
    resource_type: Option<Box<[u8]>>,
}

impl Checked {
    /// What a noted object's verdicts are; `types` is the list it was noted in.
    pub(super) fn of(noted: &Noted, types: &[Noted]) -> Checked {
        let (resource, resource_type) = member_verdict(noted.resource, types);
        Checked {
            own: noted.grant,
            resource,
            resource_type,
        }
    }
}

/// The verdict of a `resource` member: granted only when it is one object, a resource
/// granted itself.
fn member_verdict(member: Member, types: &[Noted]) -> (Grant, Option<Box<[u8]>>) {
    match member {
        Member::Object(i) => match types.get(i) {
            Some(Noted {
                outcome: TypeOutcome::Typed(name),
                grant,
                ..
            }) => (*grant, Some(name.clone())),
            _ => (Grant::Withheld, None),
        },
        Member::Absent | Member::Other => (Grant::Withheld, None),
    }
}

/// Where an object stands, as far as SMART scopes care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Position {
    /// The root of the document or of an NDJSON line.
    Root,
    /// An element of a Bundle's `entry`.
    Entry,
    /// A Bundle entry's `resource`, or an element of a resource's `contained`.
    Resource,
    /// Anywhere else.
    Other,
}

impl JsonFilter {
    /// The filter, enforcing SMART scopes with `access` on top of the purpose's rules. The
    /// rules must be typed (a SMART policy's always are); if they are not, every write
    /// fails: a SMART response is never filtered without its grants.
    pub fn with_smart(mut self, access: Arc<SmartAccess>) -> JsonFilter {
        if !self.typed {
            self.failed = Some(EngineError {
                offset: 0,
                path: "$".into(),
                kind: ErrorKind::Grant(GrantErrorKind::RulesNotTyped),
            });
        }
        self.smart = Some(Box::new(SmartState {
            access,
            lines: self.lexer.framing() == Framing::Lines,
            dropped_line: false,
            resources: Vec::new(),
            withheld: PathCounter::default(),
        }));
        self
    }

    /// Whether the type `name` is granted only under conditions on a resource's content.
    pub(super) fn needs_facts(&self, name: &[u8]) -> bool {
        self.smart.as_ref().is_some_and(|smart| {
            std::str::from_utf8(name)
                .is_ok_and(|t| smart.access.type_verdict(t) == TypeVerdict::NeedsFacts)
        })
    }

    /// The hold resolves: the verdict of every resource noted inside it, and what is known
    /// of the held object itself. Every object noted lies whole in the held bytes (the hold
    /// ends at the held object's own type member, or at its end), and so does the held
    /// object when its grant depends on its content (it was held to its end).
    pub(super) fn check_held(&self, hold: &mut Hold, outcome: &TypeOutcome) -> Checked {
        let Some(smart) = self.smart.as_ref() else {
            return Checked::default();
        };
        let max_depth = self.lexer.max_depth();
        for i in 0..hold.types.len() {
            let TypeOutcome::Typed(name) = &hold.types[i].outcome else {
                continue;
            };
            let noted = &hold.types[i];
            let grant = decide(&smart.access, name, |t| {
                let from = noted.offset.checked_sub(hold.start)? + 1;
                let to = noted.end.checked_sub(hold.start)?;
                let inner = nested_resources(&hold.types[i + 1..], noted.end);
                let bytes = hold.bytes.get(from as usize..to as usize)?;
                facts(t, &[b"{", bytes], noted.offset, &inner, max_depth)
            });
            hold.types[i].grant = grant;
        }
        let own = match outcome {
            TypeOutcome::Typed(name) => decide(&smart.access, name, |t| {
                let inner = nested_resources(&hold.types, u64::MAX);
                facts(t, &[b"{", &hold.bytes], hold.start - 1, &inner, max_depth)
            }),
            _ => Grant::Unchecked,
        };
        let (resource, resource_type) = member_verdict(hold.resource, &hold.types);
        Checked {
            own,
            resource,
            resource_type,
        }
    }

    /// Withholds the object about to be opened if SMART scopes do not let it through:
    /// `Ok(true)` when it was (the caller is done with it), an error when it is the root of
    /// a single document. `offset` is the object's.
    pub(super) fn smart_withholds(
        &mut self,
        outcome: &TypeOutcome,
        checked: &Checked,
        root: bool,
        offset: u64,
    ) -> Result<bool, EngineError> {
        let (withheld, counted_as) = match outcome {
            TypeOutcome::Typed(name) => (checked.own != Grant::Granted, Some(name.clone())),
            TypeOutcome::Untyped | TypeOutcome::Invalid(_) => match self.position(root) {
                Position::Root | Position::Resource => (true, None),
                Position::Entry => (
                    checked.resource != Grant::Granted,
                    checked.resource_type.clone(),
                ),
                Position::Other => (false, None),
            },
        };
        if !withheld {
            return Ok(false);
        }
        let segment = match (&counted_as, self.rules.typing.as_ref()) {
            (Some(name), Some(typing)) => type_segment(name, typing),
            _ => b"*".to_vec(),
        };
        let smart = self.smart.as_mut().expect("SMART scopes enforced");
        smart.withheld.add(&segment);
        if root {
            if !smart.lines {
                let kind = match counted_as {
                    Some(_) => GrantErrorKind::RootNotGranted,
                    None => GrantErrorKind::RootNotAResource,
                };
                log::debug!("withheld root: {kind}");
                return Err(EngineError {
                    offset,
                    path: "$".into(),
                    kind: ErrorKind::Grant(kind),
                });
            }
            smart.dropped_line = true;
        }
        self.subtree = Subtree::Skip(1);
        self.lexer.skim_container();
        Ok(true)
    }

    /// Where the object about to be opened stands. An array is transparent, as in policy
    /// paths: a Bundle's `entry` given as one object instead of an array of them is an
    /// entry all the same (and `contained` likewise).
    fn position(&self, root: bool) -> Position {
        let n = self.frames.len();
        let Some(smart) = self.smart.as_ref().filter(|_| !root && n > 0) else {
            return Position::Root;
        };
        let in_bundle = || smart.resources.last().is_some_and(|t| **t == *b"Bundle");
        // The key by which frame `i` was entered.
        let entered_by = |i: usize, name: &str| {
            let frame = &self.frames[i];
            key_is(&self.keys[frame.key_start..frame.key_end], name)
        };
        // Whether a value at depth `d` (the frames below it being `self.frames[..d]`), met
        // under the key `key` when its container is an object, is the member `name` of a
        // resource: directly, or as an element of an array that is.
        let member_of_resource = |d: usize, key: Option<&[u8]>, name: &str| -> bool {
            let parent = &self.frames[d - 1];
            if parent.object {
                parent.typed && key.is_some_and(|k| k == name.as_bytes())
            } else {
                d >= 2 && self.frames[d - 2].typed && entered_by(d - 1, name)
            }
        };
        let key = self.frames[n - 1].object.then(|| self.lexer.key());
        if member_of_resource(n, key, "contained") {
            return Position::Resource;
        }
        if in_bundle() && member_of_resource(n, key, "entry") {
            return Position::Entry;
        }
        // A Bundle entry's `resource`: the entry is the parent object, at depth n - 1.
        if key == Some(b"resource".as_slice()) && n >= 2 && in_bundle() {
            let parent_key = self.frames[n - 2]
                .object
                .then(|| &self.keys[self.frames[n - 1].key_start..self.frames[n - 1].key_end]);
            let entry = match parent_key {
                Some(raw) => self.frames[n - 2].typed && key_is(raw, "entry"),
                None => n >= 3 && self.frames[n - 3].typed && entered_by(n - 2, "entry"),
            };
            if entry {
                return Position::Resource;
            }
        }
        Position::Other
    }

    /// A resource of a type the purpose does not list, under a purpose that lists none: its
    /// frame (just pushed, with the enclosing rules) is marked as a resource's.
    pub(super) fn open_resource(&mut self, name: Box<[u8]>) {
        let Some(top) = self.frames.last_mut() else {
            return;
        };
        top.typed = true;
        let enclosing = self.path[..top.path_len.min(self.path.len())].to_vec();
        self.typed_paths.push(enclosing);
        self.smart_resource_opened(name);
    }

    /// A resource's frame is open: its type is known to what is inside.
    pub(super) fn smart_resource_opened(&mut self, name: Box<[u8]>) {
        if let Some(smart) = self.smart.as_mut() {
            smart.resources.push(name);
        }
    }

    /// A resource's frame closes.
    pub(super) fn smart_resource_closed(&mut self) {
        if let Some(smart) = self.smart.as_mut() {
            smart.resources.pop();
        }
    }

    /// A key in a resource, under SMART scopes: a second type member of a resource the
    /// purpose lists no rules for is refused as for listed types, and a Bundle's `total` is
    /// withheld.
    #[inline(never)]
    pub(super) fn smart_key(&mut self) {
        let Some(top) = self.frames.last() else {
            return;
        };
        if !top.typed || self.pending.2 == TYPE_MEMBER_RANK {
            return;
        }
        let key = self.lexer.key();
        let type_key = self.rules.type_key().unwrap_or_default();
        if key == type_key {
            self.count_type_member();
            return;
        }
        let in_bundle = self
            .smart
            .as_ref()
            .and_then(|s| s.resources.last())
            .is_some_and(|t| **t == *b"Bundle");
        if key == b"total" && in_bundle {
            self.pending = (DEAD, Action::Drop, TYPE_MEMBER_RANK);
        }
    }

    /// A value at the root, under SMART scopes: only an object can be a resource.
    #[cold]
    #[inline(never)]
    pub(super) fn smart_root(&mut self, event: Event) -> Result<(), EngineError> {
        let at = match event {
            Event::ArrayStart(at) | Event::ScalarStart(at, _) => at,
            Event::Scalar { start, .. } => start,
            _ => return Ok(()),
        };
        if let Some(smart) = self.smart.as_mut() {
            smart.withheld.add(b"*");
        }
        Err(self
            .lexer
            .error(at, ErrorKind::Grant(GrantErrorKind::RootNotAResource)))
    }

    /// Whether the newline that ends this line is left out (its resource was withheld).
    pub(super) fn line_dropped(&mut self) -> bool {
        self.smart
            .as_mut()
            .is_some_and(|s| std::mem::take(&mut s.dropped_line))
    }
}

/// Whether a key as spelled (without quotes, escapes as written) is `name`.
fn key_is(raw: &[u8], name: &str) -> bool {
    if !raw.contains(&b'\\') {
        return raw == name.as_bytes();
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice::<String>(&quoted).is_ok_and(|key| key == name)
}

/// The verdict on a resource of type `name`, its facts read (by `read`) only when its type
/// alone does not decide it. Facts that cannot be read grant nothing.
fn decide(
    access: &SmartAccess,
    name: &[u8],
    read: impl FnOnce(&str) -> Option<ResourceFacts>,
) -> Grant {
    let Ok(t) = std::str::from_utf8(name) else {
        return Grant::Withheld;
    };
    let granted = match access.type_verdict(t) {
        TypeVerdict::Granted => true,
        TypeVerdict::Withheld => false,
        TypeVerdict::NeedsFacts => read(t).is_some_and(|facts| access.granted(&facts)),
    };
    if granted {
        Grant::Granted
    } else {
        Grant::Withheld
    }
}

/// Where the resources among `noted` that start before `end` start (their `{`), in
/// document order: the resources nested in the one being read, whose members are not its
/// own.
fn nested_resources(noted: &[Noted], end: u64) -> Vec<u64> {
    noted
        .iter()
        .take_while(|n| n.offset < end)
        .filter(|n| matches!(n.outcome, TypeOutcome::Typed(_)))
        .map(|n| n.offset)
        .collect()
}

/// One `category[*].coding[*]` being read.
#[derive(Default)]
struct Coding {
    systems: Vec<String>,
    codes: Vec<String>,
    unreadable: bool,
}

/// What the members read so far say of the resource.
#[derive(Default)]
struct Collected {
    ids: Vec<String>,
    id_unreadable: bool,
    categories: Vec<(Option<String>, String)>,
    references: Vec<String>,
}

/// What a scalar member is to the facts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wanted {
    Id,
    System,
    Code,
    Reference,
}

/// Reads the facts of a resource of type `t` from its bytes (`pieces`, read in order, from
/// its `{` at absolute offset `offset` to its `}`), skipping the resources nested in it
/// (`nested`, where they start). `None` when the bytes cannot be read (they were validated
/// once already: a fault, and the resource is not granted).
fn facts(
    t: &str,
    pieces: &[&[u8]],
    offset: u64,
    nested: &[u64],
    max_depth: u32,
) -> Option<ResourceFacts> {
    let paths: Vec<Vec<&str>> = compartment::reference_paths(t)
        .unwrap_or_default()
        .iter()
        .map(|p| p.split('.').collect())
        .collect();
    let mut lexer = Lexer::with_framing(max_depth, Framing::Single);
    // The keys that lead from the resource to the current container (arrays transparent),
    // and for each open container whether it added one.
    let mut path: Vec<Vec<u8>> = Vec::new();
    let mut opened: Vec<bool> = Vec::new();
    // Whether each open container is an object.
    let mut tops: Vec<bool> = Vec::new();
    let mut key: Vec<u8> = Vec::new();
    let mut skipping = false;
    let mut capturing: Option<Wanted> = None;
    let mut coding: Option<Coding> = None;
    let mut got = Collected::default();
    let is_coding =
        |path: &[Vec<u8>]| path.len() == 2 && path[0] == b"category" && path[1] == b"coding";
    // What a member's scalar value is to the facts (`path`: the keys to its object).
    let wanted = |path: &[Vec<u8>], key: &[u8]| -> Option<Wanted> {
        if path.is_empty() && key == b"id" && t == "Patient" {
            return Some(Wanted::Id);
        }
        if is_coding(path) && key == b"system" {
            return Some(Wanted::System);
        }
        if is_coding(path) && key == b"code" {
            return Some(Wanted::Code);
        }
        if key == b"reference"
            && paths.iter().any(|p| {
                p.len() == path.len() && p.iter().zip(path).all(|(a, b)| a.as_bytes() == &b[..])
            })
        {
            return Some(Wanted::Reference);
        }
        None
    };
    let mut done = false;
    for piece in pieces {
        let mut pos = 0;
        while !done {
            let event = match lexer.next(piece, &mut pos) {
                Ok(Some(event)) => event,
                Ok(None) => break,
                Err(_) => return None,
            };
            let member = tops.last() == Some(&true);
            match event {
                Event::Key => {
                    key.clear();
                    key.extend_from_slice(lexer.key());
                }
                Event::ObjectStart(at) | Event::ArrayStart(at) => {
                    let object = matches!(event, Event::ObjectStart(_));
                    let absolute = offset + lexer.offset(at);
                    // `nested` is in document order.
                    if object && nested.binary_search(&absolute).is_ok() {
                        lexer.skim_container();
                        skipping = true;
                        continue;
                    }
                    // A member's value adds its key to the path; the resource itself and an
                    // array's elements add none.
                    let adds = member;
                    if adds {
                        path.push(std::mem::take(&mut key));
                    }
                    opened.push(adds);
                    tops.push(object);
                    if object && is_coding(&path) {
                        coding = Some(Coding::default());
                    }
                }
                Event::ObjectEnd(_) | Event::ArrayEnd(_) => {
                    if std::mem::take(&mut skipping) {
                        continue;
                    }
                    let object = tops.pop() == Some(true);
                    if object && is_coding(&path) {
                        if let Some(c) = coding.take().filter(|c| !c.unreadable) {
                            for code in &c.codes {
                                if c.systems.is_empty() {
                                    got.categories.push((None, code.clone()));
                                }
                                for system in &c.systems {
                                    got.categories.push((Some(system.clone()), code.clone()));
                                }
                            }
                        }
                    }
                    if opened.pop() == Some(true) {
                        path.pop();
                    }
                    if tops.is_empty() {
                        done = true;
                    }
                }
                Event::ScalarStart(_, kind) => {
                    let want = if member { wanted(&path, &key) } else { None };
                    match want {
                        Some(w) if kind == ScalarKind::String => {
                            lexer.capture_value();
                            capturing = Some(w);
                        }
                        Some(w) => unreadable(w, &mut got, &mut coding),
                        None => lexer.skim_scalar(),
                    }
                }
                Event::ScalarEnd(_) => {
                    if let Some(w) = capturing.take() {
                        let value = String::from_utf8_lossy(lexer.value()).into_owned();
                        collect(w, value, &mut got, &mut coding);
                    }
                }
                Event::Scalar { start, end, kind } => {
                    let want = if member { wanted(&path, &key) } else { None };
                    match want {
                        Some(w) if kind == ScalarKind::String => {
                            let value = plain_value(piece, start, end, kind);
                            collect(
                                w,
                                String::from_utf8_lossy(value).into_owned(),
                                &mut got,
                                &mut coding,
                            );
                        }
                        Some(w) => unreadable(w, &mut got, &mut coding),
                        None => {}
                    }
                }
                Event::Newline => {}
            }
        }
        lexer.end_chunk(piece.len());
    }
    if !done {
        return None;
    }
    let id = match got.ids.split_first() {
        Some((first, rest)) if !got.id_unreadable && rest.iter().all(|i| i == first) => {
            Some(first.clone())
        }
        _ => None,
    };
    Some(ResourceFacts {
        resource_type: t.to_string(),
        id,
        categories: got.categories,
        compartment_references: got.references,
    })
}

fn collect(w: Wanted, value: String, got: &mut Collected, coding: &mut Option<Coding>) {
    match w {
        Wanted::Id => got.ids.push(value),
        Wanted::Reference => got.references.push(value),
        Wanted::System => {
            if let Some(c) = coding {
                c.systems.push(value);
            }
        }
        Wanted::Code => {
            if let Some(c) = coding {
                c.codes.push(value);
            }
        }
    }
}

/// A wanted member whose value is not a string: an id that cannot be the patient's, a
/// coding that matches nothing, a reference that refers to no one.
fn unreadable(w: Wanted, got: &mut Collected, coding: &mut Option<Coding>) {
    match w {
        Wanted::Id => got.id_unreadable = true,
        Wanted::System | Wanted::Code => {
            if let Some(c) = coding {
                c.unreadable = true;
            }
        }
        Wanted::Reference => {}
    }
}

#[cfg(test)]
mod tests;
