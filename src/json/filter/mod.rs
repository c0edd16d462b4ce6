//! Applies a purpose's compiled rules to a JSON document as it streams through.
//!
//! One pass, no tree. A value a rule keeps whole is copied byte for byte from the input; a
//! value it drops is read (and validated) but never written. An object or array that a rule
//! reaches *inside* is opened and rewritten member by member, compactly; when its own action
//! is not `keep`, it is written only once one of its members survives, so a withheld
//! container leaves no empty shell behind. Whatever is dropped, the output is valid JSON.

mod audit_path;
mod smart;
mod step_cache;
mod typed;

use std::sync::Arc;

use super::error::{EngineError, ErrorKind};
use super::lexer::{plain_value, Event, Framing, Lexer, ScalarKind, WholeScalar};
use super::tally::{KeyWords, PathCounter, PathId, PathIds, ROOT_PATH};
use crate::policy::action::{Action, Transform};
use crate::policy::rules::{FieldRules, Rank, StateId, DEFAULT_RANK, ROOT, TYPE_MEMBER_RANK};
use crate::policy::transform::{self, TransformContext};
use audit_path::{push_segment, UNNUMBERED};
use step_cache::StepCache;
use typed::{Hold, Replay};

pub use super::tally::{PathTally, MAX_TALLY_PATHS};

/// What the filter did, for the audit record and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterStats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Fields (members or elements) withheld, each counted once however large.
    pub withheld: PathTally,
    pub transformed: PathTally,
    /// Under SMART scopes, the resources withheld because no scope grants them, by type
    /// (`*` for an object without a type where a resource stands); `None` otherwise.
    pub resources: Option<PathTally>,
}

/// The filter's running counts, from which [`FilterStats`] is built when read.
#[derive(Debug, Clone, Default)]
struct Counts {
    bytes_in: u64,
    bytes_out: u64,
    withheld: PathCounter,
    transformed: PathCounter,
}

#[derive(Debug, Clone)]
struct Frame {
    object: bool,
    state: StateId,
    /// Action inherited by members whose own rule (if any) ranks lower.
    action: Action,
    rank: Rank,
    /// Whether `{`/`[` (and the member key) has been written.
    opened: bool,
    /// Members or elements written so far.
    written: u32,
    /// This container's key, as spelled in the input, in `keys`.
    key_start: usize,
    key_end: usize,
    /// The length of `path` before this container's key was added to it.
    path_len: usize,
    /// Members or elements read, written or not.
    seen: u32,
    /// The number of this container's field path, for the tallies.
    path_id: PathId,
    /// Whether this is a typed object decided by its type's rules.
    typed: bool,
    /// Type members met in a typed object (a second one is refused).
    type_members: u8,
}

/// What a scalar's bytes are for, once its action has been applied.
enum ScalarUse {
    /// Written as they are.
    Copy,
    /// Read and validated, not written (what replaces the scalar, if anything, is written).
    Skip,
    /// Written disguised: the transform needs the decoded value.
    Disguise(Transform),
}

/// A whole subtree being copied or skipped: only its nesting is followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Subtree {
    None,
    Copy(u32),
    Skip(u32),
}

/// The streaming filter for one document.
#[derive(Debug, Clone)]
pub struct JsonFilter {
    rules: Arc<FieldRules>,
    context: TransformContext,
    lexer: Lexer,
    frames: Vec<Frame>,
    keys: Vec<u8>,
    /// The field path (policy syntax, UTF-8) of the innermost container, kept as containers
    /// open and close, so the audit's tallies build no string per field.
    path: Vec<u8>,
    subtree: Subtree,
    /// Start, in the current chunk, of bytes being copied verbatim.
    copy_from: Option<usize>,
    /// Decision for the value that follows the last key.
    pending: (StateId, Action, Rank),
    transform: Option<(Transform, ScalarKind)>,
    failed: Option<EngineError>,
    stats: Counts,
    steps: StepCache,
    /// How many frames, outermost first, have been written (`Frame::opened`): opening the
    /// rest is then a comparison when they already are.
    opened_depth: usize,
    /// How many frames, outermost first, have their path numbered (`Frame::path_id`).
    numbered_depth: usize,
    /// Whether the last key looks like a field name (written as is in audit paths).
    pending_name: bool,
    /// The last key as words, when short: for the step cache and the tallies.
    pending_key: Option<KeyWords>,
    /// Numbers of the open containers' field paths.
    path_ids: PathIds,
    /// Whether the rules are typed: objects the rules go into wait for their type.
    typed: bool,
    /// The object whose members wait for its type.
    hold: Option<Box<Hold>>,
    /// While a held object is read again: the types noted inside it.
    replay: Option<Replay>,
    /// Set when a typed object meets a second type member.
    type_error: bool,
    /// The enclosing field paths of the open typed objects, whose own paths start anew.
    typed_paths: Vec<Vec<u8>>,
    /// Under SMART scopes (smart.rs): the caller's grants, and what they withheld.
    smart: Option<Box<smart::SmartState>>,
}

impl JsonFilter {
    pub fn new(rules: Arc<FieldRules>, max_depth: u32, context: TransformContext) -> JsonFilter {
        JsonFilter::with_framing(rules, max_depth, context, Framing::Single)
    }

    /// A filter for a body of several documents (NDJSON: each line is filtered as a root).
    pub fn with_framing(
        rules: Arc<FieldRules>,
        max_depth: u32,
        context: TransformContext,
        framing: Framing,
    ) -> JsonFilter {
        let default = rules.default;
        let typed = rules.typing.is_some();
        JsonFilter {
            typed,
            hold: None,
            replay: None,
            type_error: false,
            typed_paths: Vec::new(),
            smart: None,
            rules,
            context,
            lexer: Lexer::with_framing(max_depth, framing),
            frames: Vec::with_capacity(16),
            keys: Vec::with_capacity(256),
            path: Vec::with_capacity(256),
            subtree: Subtree::None,
            copy_from: None,
            pending: (ROOT, default, DEFAULT_RANK),
            transform: None,
            failed: None,
            stats: Counts::default(),
            steps: StepCache::default(),
            opened_depth: 0,
            numbered_depth: 0,
            pending_name: false,
            pending_key: None,
            path_ids: PathIds::default(),
        }
    }

    /// What the filter did so far (the tallies are sorted by path here, once).
    pub fn stats(&self) -> FilterStats {
        FilterStats {
            bytes_in: self.stats.bytes_in,
            bytes_out: self.stats.bytes_out,
            withheld: self.stats.withheld.tally(),
            transformed: self.stats.transformed.tally(),
            resources: self.smart.as_ref().map(|s| s.withheld.tally()),
        }
    }

    /// What the filter did, with the tallies moved out rather than copied: for the end of
    /// a document, when they are read once. Later calls find the tallies empty.
    pub fn take_stats(&mut self) -> FilterStats {
        FilterStats {
            bytes_in: self.stats.bytes_in,
            bytes_out: self.stats.bytes_out,
            withheld: self.stats.withheld.take_tally(),
            transformed: self.stats.transformed.take_tally(),
            resources: self.smart.as_mut().map(|s| s.withheld.take_tally()),
        }
    }

    /// Bytes written so far.
    pub fn bytes_out(&self) -> u64 {
        self.stats.bytes_out
    }

    /// Filters the next chunk, appending what may be sent to `out`. After an error the
    /// filter is spent: every later call returns the same error.
    pub fn write(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), EngineError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let before = out.len();
        let result = self.run(chunk, out);
        self.stats.bytes_in += chunk.len() as u64;
        self.stats.bytes_out += (out.len() - before) as u64;
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    /// Ends the document; an incomplete document is an error.
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), EngineError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let before = out.len();
        let result = match self.lexer.finish() {
            Ok(Some(event)) => self.on_event(event, &[], out),
            Ok(None) => Ok(()),
            Err(error) => Err(error),
        };
        self.stats.bytes_out += (out.len() - before) as u64;
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    fn run(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), EngineError> {
        if self.typed {
            return self.run_typed(chunk, out);
        }
        let mut pos = 0;
        loop {
            if self.subtree == Subtree::None && self.frames.last().is_some_and(|top| top.object) {
                self.read_members(chunk, &mut pos, out)?;
            }
            let Some(event) = self.lexer.next(chunk, &mut pos)? else {
                break;
            };
            self.on_event(event, chunk, out)?;
        }
        self.chunk_done(chunk, out);
        Ok(())
    }

    /// The chunk is read: a value being copied goes on in the next one.
    #[inline(always)]
    fn chunk_done(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if let Some(from) = self.copy_from {
            out.extend_from_slice(&chunk[from..]);
            self.copy_from = Some(0);
        }
        self.lexer.end_chunk(chunk.len());
    }

    /// [`JsonFilter::run`] under typed rules: objects wait for their type (typed.rs), and
    /// members are read through the events only, so that a second type member is refused
    /// before anything after it is written.
    #[inline(never)]
    fn run_typed(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), EngineError> {
        let mut pos = 0;
        loop {
            if self.hold.is_some() {
                if self.hold_events(chunk, &mut pos, out)? {
                    continue;
                }
                break;
            }
            let Some(event) = self.lexer.next(chunk, &mut pos)? else {
                break;
            };
            if self.type_error {
                // At the second type member's value, which no split moves.
                let at = match event {
                    Event::ObjectStart(at) | Event::ArrayStart(at) | Event::ScalarStart(at, _) => {
                        at
                    }
                    Event::Scalar { start, .. } => start,
                    _ => pos,
                };
                return Err(self.lexer.error(
                    at,
                    ErrorKind::Type(crate::json::error::TypeErrorKind::TwoTypeMembers),
                ));
            }
            if self.smart.is_some() && self.frames.is_empty() && self.subtree == Subtree::None {
                self.smart_root(event)?;
            }
            self.on_event(event, chunk, out)?;
            // Only a typed object's own type member has this rank.
            if event == Event::Key && self.pending.2 == TYPE_MEMBER_RANK {
                self.count_type_member();
            } else if event == Event::Key && self.smart.is_some() {
                self.smart_key();
            }
        }
        self.chunk_done(chunk, out);
        Ok(())
    }

    fn on_event(
        &mut self,
        event: Event,
        chunk: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        match self.subtree {
            Subtree::None => {}
            Subtree::Copy(depth) | Subtree::Skip(depth) => {
                let depth = match event {
                    Event::ObjectStart(_) | Event::ArrayStart(_) => depth + 1,
                    Event::ObjectEnd(end) | Event::ArrayEnd(end) => {
                        if depth == 1 {
                            if let Some(from) = self.copy_from.take() {
                                out.extend_from_slice(&chunk[from..end]);
                            }
                            self.subtree = Subtree::None;
                            return Ok(());
                        }
                        depth - 1
                    }
                    _ => depth,
                };
                self.subtree = match self.subtree {
                    Subtree::Copy(_) => Subtree::Copy(depth),
                    _ => Subtree::Skip(depth),
                };
                return Ok(());
            }
        }
        match event {
            Event::Newline => {
                if !self.line_dropped() {
                    out.push(b'\n')
                }
            }
            Event::Key => self.on_key(chunk),
            Event::ObjectStart(at) | Event::ArrayStart(at) => {
                self.count_seen();
                let object = matches!(event, Event::ObjectStart(_));
                let (state, action, rank) = self.decision();
                let root = self.frames.is_empty();
                // `null` replaces a container whole; a transform disguises each scalar of an
                // array and withholds an object; keep and drop go inside only when a rule
                // may apply there.
                // Under typed rules, a kept container is gone into too: a typed object inside
                // it is decided by its type's rules, never sent whole.
                let descend = root
                    || match action {
                        Action::Null => false,
                        Action::Transform(_) => !object,
                        Action::Keep => self.rules.may_descend(state) || self.typed,
                        Action::Drop => self.rules.may_descend(state),
                    };
                if descend {
                    if self.typed && object {
                        return self.start_typed_object(at, (state, action, rank), root, out);
                    }
                    self.push_frame(object, state, action, rank, out);
                } else {
                    match action {
                        Action::Keep => {
                            self.begin_item(chunk, out);
                            self.copy_from = Some(at);
                            self.subtree = Subtree::Copy(1);
                        }
                        Action::Null => {
                            self.begin_item(chunk, out);
                            out.extend_from_slice(b"null");
                            self.tally(false);
                            self.subtree = Subtree::Skip(1);
                        }
                        Action::Drop | Action::Transform(_) => {
                            self.tally(true);
                            self.subtree = Subtree::Skip(1);
                        }
                    }
                    // Nothing inside matters but its end: the lexer validates it without
                    // reporting events.
                    self.lexer.skim_container();
                }
            }
            Event::ObjectEnd(_) | Event::ArrayEnd(_) => {
                if let Some(&Frame {
                    object,
                    opened,
                    seen,
                    key_start,
                    path_len,
                    typed,
                    ..
                }) = self.frames.last()
                {
                    if opened {
                        out.push(if object { b'}' } else { b']' });
                    } else if seen == 0 {
                        // An empty container withheld as such; one whose members were all
                        // withheld is already accounted for by them.
                        self.tally_frame();
                    }
                    self.frames.pop();
                    self.opened_depth = self.opened_depth.min(self.frames.len());
                    self.numbered_depth = self.numbered_depth.min(self.frames.len());
                    self.keys.truncate(key_start);
                    if typed {
                        self.end_typed_path();
                    } else {
                        self.path.truncate(path_len);
                    }
                }
            }
            Event::ScalarStart(at, kind) => match self.start_scalar(kind, chunk, out) {
                ScalarUse::Copy => self.copy_from = Some(at),
                ScalarUse::Skip => self.lexer.skim_scalar(),
                ScalarUse::Disguise(transform) => {
                    self.lexer.capture_value();
                    self.transform = Some((transform, kind));
                }
            },
            Event::ScalarEnd(end) => {
                if let Some(from) = self.copy_from.take() {
                    out.extend_from_slice(&chunk[from..end]);
                }
                if let Some((transform, kind)) = self.transform.take() {
                    // The lexer's captured value, moved out so the transform may read it
                    // while the filter writes.
                    let value = std::mem::take(self.lexer.value_mut());
                    let result = self.write_transformed(&transform, &value, kind, end, out);
                    *self.lexer.value_mut() = value;
                    result?;
                }
            }
            Event::Scalar { start, end, kind } => {
                self.on_scalar(WholeScalar { start, end, kind }, chunk, out)?
            }
        }
        Ok(())
    }

    /// The decision for the member whose key was just read (in `chunk`, or held by the
    /// lexer: [`Lexer::key_in`]).
    #[inline(always)]
    fn on_key(&mut self, chunk: &[u8]) {
        if let Some(top) = self.frames.last() {
            let key = self.lexer.key_in(chunk);
            let short = KeyWords::of(key);
            let (state, name) = self.steps.step(&self.rules, top.state, key, short);
            self.pending_name = name;
            self.pending_key = short;
            // The field's own rule applies unless the rule it inherits ranks higher:
            // a broad `entry.**: keep` does not undo a `**.ssn: drop` above it.
            self.pending = match self.rules.own_rule(state) {
                Some((action, rank)) if rank >= top.rank => (state, *action, rank),
                _ => (state, top.action, top.rank),
            };
        }
    }

    /// A typed object ends: the path of what encloses it is the path again.
    #[cold]
    #[inline(never)]
    fn end_typed_path(&mut self) {
        self.path = self.typed_paths.pop().unwrap_or_default();
        self.smart_resource_closed();
    }

    /// A typed object's type member: the first is its type, a second makes it ambiguous.
    #[cold]
    #[inline(never)]
    fn count_type_member(&mut self) {
        if let Some(top) = self.frames.last_mut() {
            top.type_members = top.type_members.saturating_add(1);
            self.type_error |= top.type_members > 1;
        }
    }

    /// A scalar read whole: written, left out or disguised.
    #[inline(always)]
    fn on_scalar(
        &mut self,
        scalar: WholeScalar,
        chunk: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let WholeScalar { start, end, kind } = scalar;
        match self.start_scalar(kind, chunk, out) {
            ScalarUse::Copy => out.extend_from_slice(&chunk[start..end]),
            ScalarUse::Skip => {}
            ScalarUse::Disguise(transform) => {
                // The key out of the chunk, for the error path a refused transform reports.
                self.lexer.settle_key(chunk);
                let value = plain_value(chunk, start, end, kind);
                self.write_transformed(&transform, value, kind, end, out)?;
            }
        }
        Ok(())
    }

    /// Reads the members of the object being walked while their keys and scalar values lie
    /// whole and plain in the chunk, without the events of the general path: most members
    /// of a walked object are scalars whose fate the key decides. Anything else (a
    /// container, an escape, a token cut by the chunk's end) is left to the general path,
    /// at the same position. A function of its own: inlined into the chunk loop, the
    /// state it carries made V8's code for the whole loop slower (benches/HISTORY.md).
    #[inline(never)]
    fn read_members(
        &mut self,
        chunk: &[u8],
        pos: &mut usize,
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        while self.lexer.next_key(chunk, pos) {
            self.on_key(chunk);
            let Some(scalar) = self.lexer.next_scalar(chunk, pos) else {
                break;
            };
            // A kept member spelled `"key":value` (the key still in the chunk, the value
            // right after its colon) is written as one range of the input.
            if let (Action::Keep, Some((key_start, key_end))) =
                (self.pending.1, self.lexer.key_span())
            {
                if key_end + 2 == scalar.start {
                    self.keep_member(chunk, key_start - 1, scalar.end, out);
                    continue;
                }
            }
            self.on_scalar(scalar, chunk, out)?;
        }
        Ok(())
    }

    /// Writes a kept member whose key and value lie together in the chunk, `"key":value`
    /// from `start` to `end`, after what opens its object and its separator.
    #[inline(always)]
    fn keep_member(&mut self, chunk: &[u8], start: usize, end: usize, out: &mut Vec<u8>) {
        self.count_seen();
        self.begin_separated(out);
        out.extend_from_slice(&chunk[start..end]);
    }

    /// Applies the action of the scalar that starts now: writes what replaces it (`null`)
    /// or what precedes it (separator and key), counts it, and says what its bytes are for.
    #[inline(always)]
    fn start_scalar(&mut self, kind: ScalarKind, chunk: &[u8], out: &mut Vec<u8>) -> ScalarUse {
        self.count_seen();
        let (_, action, _) = self.decision();
        let root = self.frames.is_empty();
        match action {
            Action::Keep => {
                self.begin_item(chunk, out);
                return ScalarUse::Copy;
            }
            // The root cannot be left out: it becomes `null`.
            Action::Drop if root => out.extend_from_slice(b"null"),
            Action::Drop => self.tally_in(true, chunk),
            Action::Null => {
                self.begin_item(chunk, out);
                out.extend_from_slice(b"null");
                self.tally_in(false, chunk);
            }
            Action::Transform(transform) => match kind {
                ScalarKind::String | ScalarKind::Number => return ScalarUse::Disguise(transform),
                // Nothing to disguise in a null; a boolean cannot be disguised.
                ScalarKind::Null => {
                    self.begin_item(chunk, out);
                    out.extend_from_slice(b"null");
                }
                ScalarKind::True | ScalarKind::False if root => out.extend_from_slice(b"null"),
                ScalarKind::True | ScalarKind::False => self.tally_in(true, chunk),
            },
        }
        ScalarUse::Skip
    }

    /// Writes a scalar's disguise in place of its value (decoded, for a string).
    fn write_transformed(
        &mut self,
        transform: &Transform,
        value: &[u8],
        kind: ScalarKind,
        end: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), EngineError> {
        let string = kind == ScalarKind::String;
        // Written in place; on a refusal, `out` is left as it was (the filter is then spent).
        let before = out.len();
        self.begin_item(&[], out);
        if let Err(message) = transform::apply_into(transform, value, string, &self.context, out) {
            out.truncate(before);
            return Err(self.lexer.error(end, ErrorKind::Transform(message)));
        }
        self.tally(false);
        Ok(())
    }

    /// The rule state and action of the value that starts now.
    fn decision(&self) -> (StateId, Action, Rank) {
        match self.frames.last() {
            None => (ROOT, self.rules.default, DEFAULT_RANK),
            Some(frame) if frame.object => self.pending,
            // Arrays are transparent: elements are the field that holds the array.
            Some(frame) => (frame.state, frame.action, frame.rank),
        }
    }

    // Inlined into the event loop, as before typed rules called it from elsewhere too: a
    // call per container showed in the instruction counts.
    #[inline(always)]
    fn push_frame(
        &mut self,
        object: bool,
        state: StateId,
        action: Action,
        rank: Rank,
        out: &mut Vec<u8>,
    ) {
        let key_start = self.keys.len();
        let path_len = self.path.len();
        // Numbered when a field inside is first counted: most containers never are.
        let path_id = if self.frames.is_empty() {
            ROOT_PATH
        } else {
            UNNUMBERED
        };
        if self.frames.last().is_some_and(|f| f.object) {
            self.keys.extend_from_slice(self.lexer.key_raw());
            push_segment(
                &mut self.path,
                self.lexer.key(),
                self.pending_name,
                &self.rules,
            );
        }
        let root = self.frames.is_empty();
        let eager = root || action == Action::Keep;
        self.frames.push(Frame {
            object,
            state,
            action,
            rank,
            opened: false,
            written: 0,
            key_start,
            key_end: self.keys.len(),
            path_len,
            seen: 0,
            path_id,
            typed: false,
            type_members: 0,
        });
        if eager {
            self.open_frames(out);
        }
    }

    fn count_seen(&mut self) {
        if let Some(top) = self.frames.last_mut() {
            top.seen += 1;
        }
    }

    /// Writes the openings of every container not yet written, outermost first.
    #[inline(always)]
    fn open_frames(&mut self, out: &mut Vec<u8>) {
        if self.opened_depth != self.frames.len() {
            self.open_pending_frames(out);
        }
    }

    #[inline(never)]
    fn open_pending_frames(&mut self, out: &mut Vec<u8>) {
        let first = self.opened_depth;
        self.opened_depth = self.frames.len();
        for i in first..self.frames.len() {
            if i > 0 {
                let parent = &mut self.frames[i - 1];
                if parent.written > 0 {
                    out.push(b',');
                }
                parent.written += 1;
                if parent.object {
                    let frame = &self.frames[i];
                    out.push(b'"');
                    out.extend_from_slice(&self.keys[frame.key_start..frame.key_end]);
                    out.extend_from_slice(b"\":");
                }
            }
            let frame = &mut self.frames[i];
            out.push(if frame.object { b'{' } else { b'[' });
            frame.opened = true;
        }
    }

    /// Writes what precedes a value in the innermost container: separator and key (in
    /// `chunk`, or held by the lexer: [`Lexer::key_in`]).
    #[inline(always)]
    fn begin_item(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        if self.begin_separated(out) {
            out.push(b'"');
            out.extend_from_slice(self.lexer.key_raw_in(chunk));
            out.extend_from_slice(b"\":");
        }
    }

    /// Writes the openings not yet written and the separator before a value in the
    /// innermost container; says whether that container is an object (its key comes next).
    #[inline(always)]
    fn begin_separated(&mut self, out: &mut Vec<u8>) -> bool {
        self.open_frames(out);
        match self.frames.last_mut() {
            Some(top) => {
                if top.written > 0 {
                    out.push(b',');
                }
                top.written += 1;
                top.object
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests;
