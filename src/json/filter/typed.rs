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

use super::audit_path::type_segment;
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
    bytes: Vec<u8>,
    /// Where the held bytes of the current chunk start.
    from: usize,
    /// The absolute offset of the first held byte.
    start: u64,
    /// The containers open inside the held object, itself first.
    levels: Vec<HeldLevel>,
    /// The absolute offset and type of every object that started inside, in order.
    types: Vec<(u64, TypeOutcome)>,
    /// A string value being captured as the type of the object at the top of `levels`.
    capturing: bool,
}

#[derive(Debug, Clone, Copy)]
struct HeldLevel {
    /// The object's index in `types` (`None` for the held object itself and for arrays).
    entry: Option<usize>,
    /// Type members read so far.
    type_members: u8,
    /// Whether the next value is this object's (first) type member's.
    awaiting: bool,
}

/// The types noted while an object was held, read again in order when it is replayed.
#[derive(Debug, Clone, Default)]
pub(super) struct Replay {
    types: Vec<(u64, TypeOutcome)>,
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
                .is_some_and(|(o, _)| *o < offset)
            {
                replay.next += 1;
            }
            let outcome = match replay.types.get(replay.next) {
                Some((o, outcome)) if *o == offset => outcome.clone(),
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
            return self.open_typed_object(decision, (root, at_root), outcome, out);
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
            }],
            types: Vec::new(),
            capturing: false,
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
                self.resolve(chunk, *pos, outcome, out)?;
                return Ok(true);
            }
        }
    }

    /// The held object's refusal: at the first byte past the limit, with the object's path,
    /// wherever the chunks were cut.
    fn lookahead_exceeded(&self) -> EngineError {
        let limit = self.max_lookahead();
        let hold = self.hold.as_ref().expect("holding");
        EngineError {
            offset: hold.start + limit,
            path: hold.lexer.path(),
            kind: ErrorKind::Type(TypeErrorKind::LookaheadExceeded { limit }),
        }
    }

    /// Notes what one event inside the held object says of types; the held object's own
    /// type once known (or `Untyped` at its end).
    fn held_event(
        &mut self,
        event: Event,
        chunk: &[u8],
    ) -> Result<Option<TypeOutcome>, EngineError> {
        let type_key = &self.rules.typing.as_ref().expect("typed rules").key;
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
            }
            Event::ObjectStart(at) | Event::ArrayStart(at) => {
                let object = matches!(event, Event::ObjectStart(_));
                if let Some(top) = hold.levels.last_mut() {
                    if std::mem::take(&mut top.awaiting) {
                        value = Some(Err(at));
                    }
                }
                let entry = object.then(|| {
                    hold.types
                        .push((self.lexer.offset(at), TypeOutcome::Untyped));
                    hold.types.len() - 1
                });
                if value.is_none() {
                    hold.levels.push(HeldLevel {
                        entry,
                        type_members: 0,
                        awaiting: false,
                    });
                } else {
                    // Noted before the level is pushed: the value belongs to the top object.
                    let outcome = self.note_value(value.take().expect("a value"))?;
                    let hold = self.hold.as_mut().expect("holding");
                    hold.levels.push(HeldLevel {
                        entry,
                        type_members: 0,
                        awaiting: false,
                    });
                    return Ok(outcome);
                }
            }
            Event::ObjectEnd(_) | Event::ArrayEnd(_) => {
                hold.levels.pop();
                if hold.levels.is_empty() {
                    return Ok(Some(TypeOutcome::Untyped));
                }
            }
            Event::ScalarStart(at, kind) => {
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
                hold.types[entry].1 = outcome;
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
        let hold = self.hold.take().expect("holding");
        let chunk_start = self.lexer.offset(0);
        self.lexer = hold.lexer;
        self.lexer.start_chunk_at(hold.start);
        self.replay = Some(Replay {
            types: hold.types,
            next: 0,
        });
        let result = self
            .open_typed_object(hold.decision, (hold.root, hold.at_root), outcome, out)
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
    /// whole otherwise.
    fn open_typed_object(
        &mut self,
        (state, action, rank): (StateId, Action, Rank),
        (root, at_root): (bool, bool),
        outcome: TypeOutcome,
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let name = match outcome {
            TypeOutcome::Untyped => {
                self.push_frame(true, state, action, rank, out);
                return Ok(());
            }
            TypeOutcome::Invalid(error) => return Err(*error),
            TypeOutcome::Typed(name) => name,
        };
        let typing = self.rules.typing.as_ref().expect("typed rules");
        let listed = typing.root(&name);
        let segment = type_segment(&name, typing);
        match listed {
            Some(type_root) if at_root || action == Action::Keep => {
                self.push_frame(true, type_root.state, type_root.default, DEFAULT_RANK, out);
                let top = self.frames.last_mut().expect("just pushed");
                top.typed = true;
                top.path_id = crate::json::tally::NO_PATH;
                let mut enclosing = std::mem::replace(&mut self.path, segment);
                enclosing.truncate(top.path_len);
                self.typed_paths.push(enclosing);
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
