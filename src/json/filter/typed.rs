//! Typed rules in the filter: an object's members are decided by the rules of its type, so
//! they wait until its type is known.
//!
//! Member order is not significant in JSON, and the type member is not always first. So an
//! object the rules go into is *held*: its bytes are kept (and validated by the lexer as
//! they come) until its type member is read, or until it ends without one (untyped), and the
//! type of every object that starts inside it is noted on the way. Then the lexer is put back
//! to where it was right after the object's `{`, and the held bytes are read again, this
//! time decided, with the noted types at hand: no object inside is held a second time. The
//! rest of the object follows as usual. Holding is bounded by the lookahead limit; past it,
//! and for a type member that is not a string, the document is refused: a type is never
//! guessed.
//!
//! Under SMART scopes (smart.rs) a hold also notes, for each object inside, where it ends
//! and what its `resource` member is (a Bundle entry's resource), and a resource whose grant
//! depends on its content is held to its end rather than to its type member: when the hold
//! resolves, every resource inside it lies whole in the held bytes and is decided there.

use super::audit_path::type_segment;
use super::smart::{Checked, Grant};
use super::{JsonFilter, Subtree};
use crate::json::error::{EngineError, ErrorKind, TypeErrorKind};
use crate::json::lexer::{plain_value, Event, Lexer, ScalarKind};
use crate::policy::action::Action;
use crate::policy::rules::{Rank, StateId, DEFAULT_RANK};

/// What an object's type member says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TypeOutcome {
    /// No type member.
    Untyped,
    /// The decoded value of its first type member.
    Typed(Box<[u8]>),
    /// A type member that is not a string: refused if the object's members are decided.
    Invalid(Box<EngineError>),
}

/// An object whose members wait for its type.
#[derive(Debug, Clone)]
pub(super) struct Hold {
    /// The lexer as it was right after the object's `{`.
    lexer: Lexer,
    /// The decision for the object itself, taken at its start.
    decision: (StateId, Action, Rank),
    /// Whether the object is the root.
    root: bool,
    /// Whether it stands where the root does: the root, or an element of a root array
    /// (arrays are transparent).
    at_root: bool,
    /// The held bytes (those after `{`) of the chunks before the current one.
    pub(super) bytes: Vec<u8>,
    /// Where the held bytes of the current chunk start.
    from: usize,
    /// The absolute offset of the first held byte.
    pub(super) start: u64,
    /// The containers open inside the held object, itself first.
    levels: Vec<HeldLevel>,
    /// Every object that started inside, in order.
    pub(super) types: Vec<Noted>,
    /// A string value being captured as the type of the object at the top of `levels`.
    capturing: bool,
    /// Under SMART scopes: the held object's `resource` member.
    pub(super) resource: Member,
    /// Under SMART scopes: the held object's type, once read, when its grant depends on its
    /// content: it is then held to its end.
    own: Option<TypeOutcome>,
}

/// An object that started inside a held one.
#[derive(Debug, Clone)]
pub(super) struct Noted {
    /// The absolute offset of its `{`.
    pub(super) offset: u64,
    pub(super) outcome: TypeOutcome,
    /// The absolute offset just past its `}` (0 until read).
    pub(super) end: u64,
    /// Under SMART scopes: its `resource` member, and its own verdict once the hold resolves.
    pub(super) resource: Member,
    pub(super) grant: Grant,
}

/// An object's `resource` member, as far as SMART scopes care (a Bundle entry's resource).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Member {
    Absent,
    /// An object: its index among the noted objects.
    Object(usize),
    /// Not an object, or more than one `resource` member: what a client would read as the
    /// entry's resource is not known, so it is not granted.
    Other,
}

#[derive(Debug, Clone, Copy)]
struct HeldLevel {
    /// The object's index in `types` (`None` for the held object itself and for arrays).
    entry: Option<usize>,
    /// Type members read so far.
    type_members: u8,
    /// Whether the next value is this object's (first) type member's.
    awaiting: bool,
    /// Under SMART scopes: whether the next value is this object's `resource` member's.
    resource_next: bool,
}

/// The types noted while an object was held, read again in order when it is replayed.
#[derive(Debug, Clone, Default)]
pub(super) struct Replay {
    pub(super) types: Vec<Noted>,
    next: usize,
}

impl JsonFilter {
    /// An object the rules go into, under typed rules: decided at once when its type is
    /// already known (it was noted while an enclosing object was held), held otherwise.
    #[inline(never)]
    pub(super) fn start_typed_object(
        &mut self,
        at: usize,
        decision: (StateId, Action, Rank),
        root: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let offset = self.lexer.offset(at);
        if let Some(replay) = self.replay.as_mut() {
            while replay
                .types
                .get(replay.next)
                .is_some_and(|noted| noted.offset < offset)
            {
                replay.next += 1;
            }
            let (outcome, checked) = match replay.types.get(replay.next) {
                Some(noted) if noted.offset == offset => {
                    (noted.outcome.clone(), Checked::of(noted, &replay.types))
                }
                // Every object inside a held one was noted: a miss is a fault of the filter,
                // and refusing is the safe side.
                _ => {
                    return Err(self.lexer.error(
                        at,
                        ErrorKind::Type(TypeErrorKind::LookaheadExceeded {
                            limit: self.max_lookahead(),
                        }),
                    ))
                }
            };
            let at_root = self.frames.iter().all(|frame| !frame.object);
            return self.open_typed_object(
                decision,
                (root, at_root),
                outcome,
                checked,
                offset,
                out,
            );
        }
        let at_root = self.frames.iter().all(|frame| !frame.object);
        self.hold = Some(Box::new(Hold {
            lexer: self.lexer.clone(),
            decision,
            root,
            at_root,
            bytes: Vec::new(),
            from: at + 1,
            start: offset + 1,
            levels: vec![HeldLevel {
                entry: None,
                type_members: 0,
                awaiting: false,
                resource_next: false,
            }],
            types: Vec::new(),
            capturing: false,
            resource: Member::Absent,
            own: None,
        }));
        Ok(())
    }

    fn max_lookahead(&self) -> u64 {
        self.rules.typing.as_ref().map_or(0, |t| t.max_lookahead)
    }

    /// Reads the held object's bytes from `chunk[*pos..]`. `Ok(true)` once its type is known
    /// and what was held has been decided (the caller goes on from `*pos`); `Ok(false)` when
    /// the chunk is spent, its bytes held.
    pub(super) fn hold_events(
        &mut self,
        chunk: &[u8],
        pos: &mut usize,
        out: &mut Vec<u8>,
    ) -> Result<bool, EngineError> {
        loop {
            let Some(event) = self.lexer.next(chunk, pos)? else {
                let limit = self.max_lookahead();
                let hold = self.hold.as_mut().expect("holding");
                hold.bytes.extend_from_slice(&chunk[hold.from..]);
                hold.from = 0;
                if hold.bytes.len() as u64 > limit {
                    return Err(self.lookahead_exceeded());
                }
                return Ok(false);
            };
            if let Some(outcome) = self.held_event(event, chunk)? {
                if let Some(outcome) = self.hold_to_end(outcome) {
                    self.resolve(chunk, *pos, outcome, out)?;
                    return Ok(true);
                }
            }
        }
    }

    /// The held object's refusal: at the first byte past the limit, with the object's path,
    /// wherever the chunks were cut.
    fn lookahead_exceeded(&self) -> EngineError {
        let limit = self.max_lookahead();
        let hold = self.hold.as_ref().expect("holding");
        let kind = if hold.own.is_some() {
            TypeErrorKind::GrantLookaheadExceeded { limit }
        } else {
            TypeErrorKind::LookaheadExceeded { limit }
        };
        EngineError {
            offset: hold.start + limit,
            path: hold.lexer.path(),
            kind: ErrorKind::Type(kind),
        }
    }

    /// The held object's type is known (or its end is reached): the outcome to resolve it
    /// with, or `None` to hold it to its end, because SMART scopes grant its type only
    /// under conditions on its content.
    fn hold_to_end(&mut self, outcome: TypeOutcome) -> Option<TypeOutcome> {
        let needs_facts = match &outcome {
            TypeOutcome::Typed(name) => self.needs_facts(name),
            _ => false,
        };
        let hold = self.hold.as_mut().expect("holding");
        if hold.levels.is_empty() {
            // Kept in the hold: past the limit, the refusal says why it was held.
            return Some(hold.own.clone().unwrap_or(outcome));
        }
        if needs_facts {
            hold.own = Some(outcome);
            return None;
        }
        Some(outcome)
    }

    /// Notes what one event inside the held object says of types; the held object's own
    /// type once known (or `Untyped` at its end).
    fn held_event(
        &mut self,
        event: Event,
        chunk: &[u8],
    ) -> Result<Option<TypeOutcome>, EngineError> {
        let type_key = &self.rules.typing.as_ref().expect("typed rules").key;
        let smart = self.smart.is_some();
        let hold = self.hold.as_mut().expect("holding");
        // The type member's value, when the top object awaits it.
        let mut value: Option<Result<Box<[u8]>, usize>> = None;
        match event {
            Event::Key => {
                let top = hold.levels.last_mut().expect("inside the held object");
                top.awaiting = false;
                if *self.lexer.key() == **type_key {
                    top.type_members = top.type_members.saturating_add(1);
                    top.awaiting = top.type_members == 1;
                }
                top.resource_next = smart && self.lexer.key() == b"resource";
            }
            Event::ObjectStart(at) | Event::ArrayStart(at) => {
                let object = matches!(event, Event::ObjectStart(_));
                if let Some(top) = hold.levels.last_mut() {
                    if std::mem::take(&mut top.awaiting) {
                        value = Some(Err(at));
                    }
                }
                let entry = object.then(|| {
                    hold.types.push(Noted {
                        offset: self.lexer.offset(at),
                        outcome: TypeOutcome::Untyped,
                        end: 0,
                        resource: Member::Absent,
                        grant: Grant::Unchecked,
                    });
                    hold.types.len() - 1
                });
                if hold
                    .levels
                    .last_mut()
                    .is_some_and(|top| std::mem::take(&mut top.resource_next))
                {
                    hold.note_resource(entry.map_or(Member::Other, Member::Object));
                }
                let level = HeldLevel {
                    entry,
                    type_members: 0,
                    awaiting: false,
                    resource_next: false,
                };
                if value.is_none() {
                    hold.levels.push(level);
                } else {
                    // Noted before the level is pushed: the value belongs to the top object.
                    let outcome = self.note_value(value.take().expect("a value"))?;
                    let hold = self.hold.as_mut().expect("holding");
                    hold.levels.push(level);
                    return Ok(outcome);
                }
            }
            Event::ObjectEnd(end) | Event::ArrayEnd(end) => {
                if let Some(entry) = hold.levels.pop().and_then(|level| level.entry) {
                    hold.types[entry].end = self.lexer.offset(end);
                }
                if hold.levels.is_empty() {
                    return Ok(Some(TypeOutcome::Untyped));
                }
            }
            Event::ScalarStart(at, kind) => {
                let top = hold.levels.last_mut().expect("inside the held object");
                if std::mem::take(&mut top.resource_next) {
                    hold.note_resource(Member::Other);
                }
                let top = hold.levels.last_mut().expect("inside the held object");
                if std::mem::take(&mut top.awaiting) {
                    if kind == ScalarKind::String {
                        hold.capturing = true;
                        self.lexer.capture_value();
                    } else {
                        value = Some(Err(at));
                    }
                }
            }
            Event::ScalarEnd(_) => {
                if std::mem::take(&mut hold.capturing) {
                    value = Some(Ok(self.lexer.value().into()));
                }
            }
            Event::Scalar { start, end, kind } => {
                let top = hold.levels.last_mut().expect("inside the held object");
                if std::mem::take(&mut top.resource_next) {
                    hold.note_resource(Member::Other);
                }
                let top = hold.levels.last_mut().expect("inside the held object");
                if std::mem::take(&mut top.awaiting) {
                    value = Some(if kind == ScalarKind::String {
                        Ok(plain_value(chunk, start, end, kind).into())
                    } else {
                        Err(start)
                    });
                }
            }
            Event::Newline => {}
        }
        match value {
            Some(value) => self.note_value(value),
            None => Ok(None),
        }
    }

    /// Notes the value of the top object's first type member (`Err(at)`: not a string);
    /// the held object's own outcome when the top object is the held one.
    fn note_value(
        &mut self,
        value: Result<Box<[u8]>, usize>,
    ) -> Result<Option<TypeOutcome>, EngineError> {
        let outcome = match value {
            Ok(name) => TypeOutcome::Typed(name),
            Err(at) => TypeOutcome::Invalid(Box::new(
                self.lexer
                    .error(at, ErrorKind::Type(TypeErrorKind::NotAString)),
            )),
        };
        let hold = self.hold.as_mut().expect("holding");
        match hold.levels.last().and_then(|top| top.entry) {
            Some(entry) => {
                hold.types[entry].outcome = outcome;
                Ok(None)
            }
            None => match outcome {
                TypeOutcome::Invalid(error) => Err(*error),
                outcome => Ok(Some(outcome)),
            },
        }
    }

    /// The held object's type is known at `p` of the current chunk: decides the object,
    /// reads the held bytes again, decided, and leaves the lexer at `p`.
    fn resolve(
        &mut self,
        chunk: &[u8],
        p: usize,
        outcome: TypeOutcome,
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let hold = self.hold.as_mut().expect("holding");
        hold.bytes.extend_from_slice(&chunk[hold.from..p]);
        if hold.bytes.len() as u64 > self.max_lookahead() {
            return Err(self.lookahead_exceeded());
        }
        let mut hold = self.hold.take().expect("holding");
        let checked = if self.smart.is_some() {
            self.check_held(&mut hold, &outcome)
        } else {
            Checked::default()
        };
        let chunk_start = self.lexer.offset(0);
        self.lexer = hold.lexer;
        self.lexer.start_chunk_at(hold.start);
        self.replay = Some(Replay {
            types: hold.types,
            next: 0,
        });
        let result = self
            .open_typed_object(
                hold.decision,
                (hold.root, hold.at_root),
                outcome,
                checked,
                hold.start - 1,
                out,
            )
            .and_then(|()| self.run_typed(&hold.bytes, out));
        self.replay = None;
        result?;
        self.lexer.start_chunk_at(chunk_start);
        if self.copy_from.is_some() {
            self.copy_from = Some(p);
        }
        Ok(())
    }

    /// Decides an object of known type: its type's rules inside when the type is listed and
    /// the enclosing rules keep the object (or it stands where the root does); withheld
    /// whole otherwise. Under SMART scopes, a resource they do not grant is withheld first
    /// (`checked`; `offset` is the object's, for a refusal), and a resource of a type the
    /// purpose does not list follows the enclosing rules when the purpose lists no types.
    fn open_typed_object(
        &mut self,
        (state, action, rank): (StateId, Action, Rank),
        (root, at_root): (bool, bool),
        outcome: TypeOutcome,
        checked: Checked,
        offset: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        if let TypeOutcome::Invalid(error) = outcome {
            return Err(*error);
        }
        if self.smart.is_some() && self.smart_withholds(&outcome, &checked, root, offset)? {
            return Ok(());
        }
        let name = match outcome {
            TypeOutcome::Untyped | TypeOutcome::Invalid(_) => {
                self.push_frame(true, state, action, rank, out);
                return Ok(());
            }
            TypeOutcome::Typed(name) => name,
        };
        let typing = self.rules.typing.as_ref().expect("typed rules");
        let listed = typing.root(&name);
        let segment = type_segment(&name, typing);
        if listed.is_none() && typing.unlisted_follow_rules {
            self.push_frame(true, state, action, rank, out);
            self.open_resource(name);
            return Ok(());
        }
        match listed {
            Some(type_root) if at_root || action == Action::Keep => {
                self.push_frame(true, type_root.state, type_root.default, DEFAULT_RANK, out);
                let top = self.frames.last_mut().expect("just pushed");
                top.typed = true;
                top.path_id = crate::json::tally::NO_PATH;
                let mut enclosing = std::mem::replace(&mut self.path, segment);
                enclosing.truncate(top.path_len);
                self.typed_paths.push(enclosing);
                if self.smart.is_some() {
                    self.smart_resource_opened(name);
                }
                // A typed object that is sent keeps its type member: written even if the
                // rest is withheld.
                self.open_frames(out);
            }
            _ => {
                if root {
                    out.extend_from_slice(b"null");
                }
                if listed.is_none() {
                    self.stats.withheld.add(&segment);
                } else if !root {
                    self.tally(true);
                }
                self.subtree = Subtree::Skip(1);
                self.lexer.skim_container();
            }
        }
        Ok(())
    }
}

impl Hold {
    /// The value of the `resource` member of the object at the top of `levels` starts: a
    /// second one makes it [`Member::Other`].
    fn note_resource(&mut self, member: Member) {
        let slot = match self.levels.last().and_then(|top| top.entry) {
            Some(entry) => &mut self.types[entry].resource,
            None => &mut self.resource,
        };
        *slot = match *slot {
            Member::Absent => member,
            _ => Member::Other,
        };
    }
}
