//! Applies a purpose's compiled rules to a JSON document as it streams through.
//!
//! One pass, no tree. A value a rule keeps whole is copied byte for byte from the input; a
//! value it drops is read (and validated) but never written. An object or array that a rule
//! reaches *inside* is opened and rewritten member by member, compactly; when its own action
//! is not `keep`, it is written only once one of its members survives, so a withheld
//! container leaves no empty shell behind. Whatever is dropped, the output is valid JSON.

use std::sync::Arc;

use super::lexer::{
    plain_value, ErrorKind, Event, Framing, LexError, Lexer, ScalarKind, WholeScalar,
};
use super::tally::{FieldKey, KeyWords, PathCounter, PathId, PathIds, NO_PATH, ROOT_PATH};
use crate::policy::action::{Action, Transform};
use crate::policy::rules::{FieldRules, Rank, StateId, DEFAULT_RANK, ROOT};
use crate::policy::transform::{self, TransformContext};

pub use super::tally::{PathTally, MAX_TALLY_PATHS};

/// What the filter did, for the audit record and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterStats {
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Fields (members or elements) withheld, each counted once however large.
    pub withheld: PathTally,
    pub transformed: PathTally,
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
    failed: Option<LexError>,
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
}

/// Rule steps already taken, by state and key: a step of the rules hashes the whole key and
/// looks it up, which costs more than the rest of handling a member. Four-way; short keys
/// only, held as [`KeyWords`] so that finding one costs a few comparisons, not a `memcmp`.
/// Used only after [`CACHE_STEPS_AFTER`] steps: a small response meets each key about once,
/// and would only pay for the table and its misses.
#[derive(Debug, Clone, Default)]
struct StepCache {
    /// Empty until the cache is used.
    slots: Vec<StepSlot>,
    /// Steps taken so far, up to [`CACHE_STEPS_AFTER`].
    taken: u32,
}

#[derive(Debug, Clone, Copy)]
struct StepSlot {
    /// `StateId::MAX`: empty.
    from: StateId,
    to: StateId,
    /// [`is_field_name`] of the key, remembered with the step.
    name: bool,
    key: KeyWords,
}

const STEP_SLOTS: usize = 128;
const STEP_WAYS: usize = 4;

/// Steps taken straight from the rules before the cache starts: a 1 KiB response (one
/// Bundle entry) takes about 40, each with a key of its own.
const CACHE_STEPS_AFTER: u32 = 64;

/// A container whose path has no number yet ([`JsonFilter::top_path_id`] gives it one).
const UNNUMBERED: PathId = NO_PATH - 1;

impl StepCache {
    /// Allocates the table, once per response, out of the way of the lookups.
    #[cold]
    #[inline(never)]
    fn start(&mut self) {
        self.slots = vec![
            StepSlot {
                from: StateId::MAX,
                to: 0,
                name: false,
                key: KeyWords::NONE,
            };
            STEP_SLOTS
        ];
    }

    #[inline]
    /// The state after `key` (of which `short` are the words, when it is short), and
    /// whether `key` looks like a field name.
    fn step(
        &mut self,
        rules: &FieldRules,
        from: StateId,
        key: &[u8],
        short: Option<KeyWords>,
    ) -> (StateId, bool) {
        let Some(short) = short else {
            return (rules.step(from, key), is_field_name(key));
        };
        if self.slots.is_empty() {
            if self.taken < CACHE_STEPS_AFTER {
                self.taken += 1;
                return (rules.step(from, key), is_field_name(key));
            }
            self.start();
        }
        // Four ways: keys that share a set by chance do not evict each other per entry.
        let set = ((short.hash(from) >> 57) as usize % STEP_SLOTS) & !(STEP_WAYS - 1);
        for slot in &self.slots[set..set + STEP_WAYS] {
            if slot.from == from && slot.key == short {
                return (slot.to, slot.name);
            }
        }
        let to = rules.step(from, key);
        let name = is_field_name(key);
        // The newest first; the oldest of the set is forgotten.
        self.slots.copy_within(set..set + STEP_WAYS - 1, set + 1);
        self.slots[set] = StepSlot {
            from,
            to,
            name,
            key: short,
        };
        (to, name)
    }
}

/// Whether a key looks like a field name (`given`, `_id`, `birth-date`), as opposed to data
/// used as a key (an identifier, a name, a date): ASCII letters, digits, `_` and `-`, not
/// starting with a digit or `-`, at most 64 bytes.
fn is_field_name(key: &[u8]) -> bool {
    // A table lookup per byte: the first 64 keys of every response are tested here (later
    // ones come with their step from the cache), and three range tests per byte cost more.
    !key.is_empty()
        && key.len() <= 64
        && (key[0].is_ascii_alphabetic() || key[0] == b'_')
        && key.iter().all(|&b| FIELD_NAME_BYTES[usize::from(b)])
}

/// The bytes a field name may contain after its first: ASCII letters, digits, `_` and `-`.
const FIELD_NAME_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
        b += 1;
    }
    table
};

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
        JsonFilter {
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
        }
    }

    /// Bytes written so far.
    pub fn bytes_out(&self) -> u64 {
        self.stats.bytes_out
    }

    /// Filters the next chunk, appending what may be sent to `out`. After an error the
    /// filter is spent: every later call returns the same error.
    pub fn write(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), LexError> {
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
    pub fn finish(&mut self, out: &mut Vec<u8>) -> Result<(), LexError> {
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

    fn run(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), LexError> {
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
        if let Some(from) = self.copy_from {
            out.extend_from_slice(&chunk[from..]);
            self.copy_from = Some(0);
        }
        self.lexer.end_chunk(chunk.len());
        Ok(())
    }

    fn on_event(&mut self, event: Event, chunk: &[u8], out: &mut Vec<u8>) -> Result<(), LexError> {
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
            Event::Newline => out.push(b'\n'),
            Event::Key => self.on_key(),
            Event::ObjectStart(at) | Event::ArrayStart(at) => {
                self.count_seen();
                let object = matches!(event, Event::ObjectStart(_));
                let (state, action, rank) = self.decision();
                let root = self.frames.is_empty();
                // `null` replaces a container whole; a transform disguises each scalar of an
                // array and withholds an object; keep and drop go inside only when a rule
                // may apply there.
                let descend = root
                    || match action {
                        Action::Null => false,
                        Action::Transform(_) => !object,
                        Action::Keep | Action::Drop => self.rules.may_descend(state),
                    };
                if descend {
                    self.push_frame(object, state, action, rank, out);
                } else {
                    match action {
                        Action::Keep => {
                            self.begin_item(out);
                            self.copy_from = Some(at);
                            self.subtree = Subtree::Copy(1);
                        }
                        Action::Null => {
                            self.begin_item(out);
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
                    self.path.truncate(path_len);
                }
            }
            Event::ScalarStart(at, kind) => match self.start_scalar(kind, out) {
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

    /// The decision for the member whose key was just read.
    #[inline(always)]
    fn on_key(&mut self) {
        if let Some(top) = self.frames.last() {
            let key = self.lexer.key();
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

    /// A scalar read whole: written, left out or disguised.
    #[inline(always)]
    fn on_scalar(
        &mut self,
        scalar: WholeScalar,
        chunk: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), LexError> {
        let WholeScalar { start, end, kind } = scalar;
        match self.start_scalar(kind, out) {
            ScalarUse::Copy => out.extend_from_slice(&chunk[start..end]),
            ScalarUse::Skip => {}
            ScalarUse::Disguise(transform) => {
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
    /// at the same position.
    fn read_members(
        &mut self,
        chunk: &[u8],
        pos: &mut usize,
        out: &mut Vec<u8>,
    ) -> Result<(), LexError> {
        while self.lexer.next_key(chunk, pos) {
            self.on_key();
            let Some(scalar) = self.lexer.next_scalar(chunk, pos) else {
                break;
            };
            self.on_scalar(scalar, chunk, out)?;
        }
        Ok(())
    }

    /// Applies the action of the scalar that starts now: writes what replaces it (`null`)
    /// or what precedes it (separator and key), counts it, and says what its bytes are for.
    #[inline(always)]
    fn start_scalar(&mut self, kind: ScalarKind, out: &mut Vec<u8>) -> ScalarUse {
        self.count_seen();
        let (_, action, _) = self.decision();
        let root = self.frames.is_empty();
        match action {
            Action::Keep => {
                self.begin_item(out);
                return ScalarUse::Copy;
            }
            // The root cannot be left out: it becomes `null`.
            Action::Drop if root => out.extend_from_slice(b"null"),
            Action::Drop => self.tally(true),
            Action::Null => {
                self.begin_item(out);
                out.extend_from_slice(b"null");
                self.tally(false);
            }
            Action::Transform(transform) => match kind {
                ScalarKind::String | ScalarKind::Number => return ScalarUse::Disguise(transform),
                // Nothing to disguise in a null; a boolean cannot be disguised.
                ScalarKind::Null => {
                    self.begin_item(out);
                    out.extend_from_slice(b"null");
                }
                ScalarKind::True | ScalarKind::False if root => out.extend_from_slice(b"null"),
                ScalarKind::True | ScalarKind::False => self.tally(true),
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
    ) -> Result<(), LexError> {
        let string = kind == ScalarKind::String;
        // Written in place; on a refusal, `out` is left as it was (the filter is then spent).
        let before = out.len();
        self.begin_item(out);
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

    /// The number of the innermost container's path, numbering the open containers that
    /// have none yet, outermost first.
    #[inline(always)]
    fn top_path_id(&mut self) -> PathId {
        match self.frames.last() {
            Some(top) if self.numbered_depth == self.frames.len() => top.path_id,
            _ => self.number_frames(),
        }
    }

    #[inline(never)]
    fn number_frames(&mut self) -> PathId {
        // The root is numbered when pushed.
        let numbered = self.numbered_depth.max(1);
        self.numbered_depth = self.frames.len();
        for i in numbered..self.frames.len() {
            let parent = &self.frames[i - 1];
            let frame = &self.frames[i];
            // The key as spelled names the path as well as the decoded one does.
            let id = if parent.object {
                let key = KeyWords::of(&self.keys[frame.key_start..frame.key_end]);
                self.path_ids.child(parent.path_id, key)
            } else {
                // Arrays are transparent: an element's path is the array's.
                parent.path_id
            };
            self.frames[i].path_id = id;
        }
        self.frames.last().map_or(ROOT_PATH, |top| top.path_id)
    }

    /// Records the value that starts now as withheld (or transformed): by its container's
    /// path number and key when the counter knows them, by its path otherwise.
    fn tally(&mut self, withheld: bool) {
        let remembers = if withheld {
            self.stats.withheld.remembers()
        } else {
            self.stats.transformed.remembers()
        };
        let member = self.frames.last().is_some_and(|top| top.object);
        let field = match (remembers, member, self.pending_key) {
            // Counted by path only: no number, no memo.
            (false, ..) | (true, true, None) => FieldKey::UNKNOWN,
            (true, true, Some(key)) => FieldKey {
                parent: self.top_path_id(),
                key,
            },
            // An element is counted as its array; the root as itself.
            (true, false, _) => FieldKey {
                parent: self.top_path_id(),
                key: KeyWords::NONE,
            },
        };
        let counter = if withheld {
            &mut self.stats.withheld
        } else {
            &mut self.stats.transformed
        };
        if counter.add_known(field) {
            return;
        }
        let len = self.path.len();
        if member {
            push_segment(
                &mut self.path,
                self.lexer.key(),
                self.pending_name,
                &self.rules,
            );
        }
        counter.add_field(field, &self.path);
        self.path.truncate(len);
    }

    /// Records the innermost container as withheld.
    fn tally_frame(&mut self) {
        let field = if self.stats.withheld.remembers() {
            FieldKey {
                parent: self.top_path_id(),
                key: KeyWords::NONE,
            }
        } else {
            FieldKey::UNKNOWN
        };
        if !self.stats.withheld.add_known(field) {
            self.stats.withheld.add_field(field, &self.path);
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

    /// Writes what precedes a value in the innermost container: separator and key.
    #[inline(always)]
    fn begin_item(&mut self, out: &mut Vec<u8>) {
        self.open_frames(out);
        if let Some(top) = self.frames.last_mut() {
            if top.written > 0 {
                out.push(b',');
            }
            top.written += 1;
            if top.object {
                out.push(b'"');
                out.extend_from_slice(self.lexer.key_raw());
                out.extend_from_slice(b"\":");
            }
        }
    }
}

/// Appends a decoded key to a field path (`a.b` + `c`), in policy syntax. The audit records
/// paths, never values, but a key can be data too (`{"byId": {"2840375123456": …}}`): a key
/// is written as is only when it looks like a field name, quoted when the policy names it,
/// and as `*` otherwise.
fn push_segment(path: &mut Vec<u8>, key: &[u8], field_name: bool, rules: &FieldRules) {
    if !path.is_empty() {
        path.push(b'.');
    }
    if field_name {
        path.extend_from_slice(key);
    } else if rules.names_key(key) {
        let text = String::from_utf8_lossy(key);
        path.extend_from_slice(
            serde_json::to_string(&text)
                .unwrap_or_else(|_| "*".into())
                .as_bytes(),
        );
    } else {
        path.push(b'*');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::path::FieldPath;
    use crate::policy::rules::Rule;
    use std::collections::BTreeMap;

    /// A tally's paths and counts, in path order.
    fn counts(tally: &PathTally) -> Vec<(&str, u64)> {
        tally.counts.iter().map(|(p, c)| (p.as_str(), *c)).collect()
    }

    fn rules(default: Action, spec: &[(&str, Action)]) -> Arc<FieldRules> {
        let rules: Vec<Rule> = spec
            .iter()
            .map(|(p, a)| Rule {
                path: FieldPath::parse(p).unwrap(),
                action: *a,
            })
            .collect();
        Arc::new(FieldRules::compile(default, &rules).unwrap())
    }

    /// Filters `doc` whole and at every split into two and three chunks; all must agree.
    fn filter(rules: &Arc<FieldRules>, doc: &str) -> Result<String, LexError> {
        let run = |splits: &[usize]| -> Result<Vec<u8>, LexError> {
            let mut f = JsonFilter::new(rules.clone(), 16, TransformContext::default());
            let mut out = Vec::new();
            let mut last = 0;
            for &at in splits.iter().chain(std::iter::once(&doc.len())) {
                f.write(&doc.as_bytes()[last..at], &mut out)?;
                last = at;
            }
            f.finish(&mut out)?;
            Ok(out)
        };
        let whole = run(&[]);
        for a in 0..=doc.len() {
            assert_eq!(run(&[a]), whole, "split at {a}");
        }
        if doc.len() < 80 {
            for a in 0..=doc.len() {
                for b in a..=doc.len() {
                    assert_eq!(run(&[a, b]), whole, "splits at {a}, {b}");
                }
            }
        }
        whole.map(|out| String::from_utf8(out).unwrap())
    }

    const PATIENT: &str = r#"{
  "id": "p1",
  "name": {"family": "Martin", "given": ["Léa", "Anne"]},
  "birthDate": "1984-03-07",
  "ssn": "2840375123456",
  "address": {"line": "3 rue X", "city": "Lyon", "postalCode": "69003"},
  "conditions": [{"code": "E11", "display": "Diabète"}, {"code": "I10", "onset": 2019}],
  "weight": 7.10E+1
}"#;

    #[test]
    fn allowlist_keeps_only_named_fields_verbatim() {
        let r = rules(
            Action::Drop,
            &[
                ("id", Action::Keep),
                ("name", Action::Keep),
                ("address.city", Action::Keep),
                ("conditions.code", Action::Keep),
                ("weight", Action::Keep),
            ],
        );
        assert_eq!(
            filter(&r, PATIENT).unwrap(),
            r#"{"id":"p1","name":{"family": "Martin", "given": ["Léa", "Anne"]},"address":{"city":"Lyon"},"conditions":[{"code":"E11"},{"code":"I10"}],"weight":7.10E+1}"#
        );
    }

    #[test]
    fn denylist_drops_at_any_depth() {
        let r = rules(
            Action::Keep,
            &[
                ("**.ssn", Action::Drop),
                ("conditions.display", Action::Drop),
            ],
        );
        assert_eq!(
            filter(&r, r#"{"a":{"ssn":1,"b":[{"ssn":2,"c":3}]},"ssn":"x","conditions":[{"code":"E11","display":"D"}]}"#).unwrap(),
            r#"{"a":{"b":[{"c":3}]},"conditions":[{"code":"E11"}]}"#
        );
    }

    #[test]
    fn escaped_keys_are_matched_decoded_and_written_as_spelled() {
        let r = rules(
            Action::Keep,
            &[("ssn", Action::Drop), ("name", Action::Keep)],
        );
        assert_eq!(
            filter(&r, r#"{"s\u0073n":"x","\u006eame":"y","ss\u006E":"z"}"#).unwrap(),
            r#"{"\u006eame":"y"}"#
        );
        let r = rules(Action::Drop, &[("café", Action::Keep)]);
        assert_eq!(
            filter(&r, r#"{"caf\u00e9":1,"cafe":2}"#).unwrap(),
            r#"{"caf\u00e9":1}"#
        );
    }

    #[test]
    fn duplicate_keys_get_the_same_treatment() {
        let r = rules(Action::Keep, &[("ssn", Action::Drop)]);
        assert_eq!(
            filter(&r, r#"{"ssn":1,"a":2,"ssn":3,"s\u0073n":4}"#).unwrap(),
            r#"{"a":2}"#
        );
    }

    #[test]
    fn empty_withheld_containers_leave_no_shell() {
        let r = rules(
            Action::Drop,
            &[
                ("address.city", Action::Keep),
                ("entry.resource.name", Action::Keep),
            ],
        );
        assert_eq!(
            filter(&r, r#"{"address":{"line":"x"},"id":1}"#).unwrap(),
            "{}"
        );
        assert_eq!(
            filter(
                &r,
                r#"{"entry":[{"resource":{"id":1}},{"resource":{"name":"n"}},{"x":2}]}"#
            )
            .unwrap(),
            r#"{"entry":[{"resource":{"name":"n"}}]}"#
        );
    }

    #[test]
    fn kept_containers_stay_even_when_emptied() {
        let r = rules(Action::Keep, &[("a.b", Action::Drop)]);
        assert_eq!(filter(&r, r#"{"a":{"b":1}}"#).unwrap(), r#"{"a":{}}"#);
    }

    #[test]
    fn arrays_are_transparent_at_the_root_and_inside() {
        let r = rules(Action::Drop, &[("id", Action::Keep)]);
        assert_eq!(
            filter(&r, r#"[{"id":1,"n":2},{"n":3},[{"id":4}]]"#).unwrap(),
            r#"[{"id":1},[{"id":4}]]"#
        );
    }

    #[test]
    fn null_replaces_the_value() {
        let r = rules(
            Action::Keep,
            &[("ssn", Action::Null), ("tags", Action::Null)],
        );
        assert_eq!(
            filter(&r, r#"{"ssn":"123","tags":[1,2],"x":1}"#).unwrap(),
            r#"{"ssn":null,"tags":null,"x":1}"#
        );
    }

    #[test]
    fn root_is_always_valid_json() {
        let r = rules(Action::Drop, &[]);
        assert_eq!(filter(&r, r#"{"a":1}"#).unwrap(), "{}");
        assert_eq!(filter(&r, r#"[1,2]"#).unwrap(), "[]");
        assert_eq!(filter(&r, r#""text""#).unwrap(), "null");
        assert_eq!(filter(&r, "12").unwrap(), "null");
        let r = rules(Action::Keep, &[]);
        assert_eq!(filter(&r, " 12 ").unwrap(), "12");
        assert_eq!(filter(&r, r#" {"a" : [ 1 ] } "#).unwrap(), r#"{"a":[ 1 ]}"#);
    }

    #[test]
    fn kept_scalars_keep_their_spelling() {
        let r = rules(Action::Drop, &[("*", Action::Keep)]);
        let doc = r#"{"a":1.0E+2,"b":-0.000,"c":"\u00e9\/\n","d":true,"e":null,"f":1e-7}"#;
        assert_eq!(filter(&r, doc).unwrap(), doc);
    }

    #[test]
    fn invalid_documents_are_refused_even_inside_dropped_values() {
        let r = rules(Action::Drop, &[("id", Action::Keep)]);
        assert_eq!(
            filter(&r, r#"{"id":1,"x":[1,2,}"#).unwrap_err().kind,
            ErrorKind::Unexpected {
                found: b'}',
                expected: "a JSON value"
            }
        );
        assert_eq!(
            filter(&r, r#"{"id":1,"x":"\ud800"}"#).unwrap_err().kind,
            ErrorKind::LoneSurrogate
        );
        assert_eq!(
            filter(&r, r#"{"id":1"#).unwrap_err().kind,
            ErrorKind::UnexpectedEnd {
                expected: "',' or the end of a container"
            }
        );
        assert_eq!(
            filter(&r, r#"{"id":1}{"#).unwrap_err().kind,
            ErrorKind::TrailingData(b'{')
        );
    }

    #[test]
    fn depth_limit_applies_inside_dropped_values() {
        let r = rules(Action::Drop, &[]);
        let deep = format!("{{\"x\":{}{}}}", "[".repeat(16), "]".repeat(16));
        assert_eq!(
            filter(&r, &deep).unwrap_err().kind,
            ErrorKind::TooDeep { limit: 16 }
        );
    }

    #[test]
    fn ndjson_filters_each_line_as_a_root() {
        let r = rules(Action::Drop, &[("id", Action::Keep)]);
        let doc = "{\"id\":1,\"n\":\"a\"}\n\n{\"n\":2}\n[{\"id\":3}]\n";
        let whole = |splits: usize| {
            let mut f =
                JsonFilter::with_framing(r.clone(), 8, TransformContext::default(), Framing::Lines);
            let mut out = Vec::new();
            for chunk in doc.as_bytes().chunks(splits) {
                f.write(chunk, &mut out).unwrap();
            }
            f.finish(&mut out).unwrap();
            String::from_utf8(out).unwrap()
        };
        assert_eq!(whole(doc.len()), "{\"id\":1}\n\n{}\n[{\"id\":3}]\n");
        for size in 1..doc.len() {
            assert_eq!(whole(size), whole(doc.len()));
        }
    }

    #[test]
    fn a_broad_keep_below_does_not_undo_a_drop_above() {
        let r = rules(
            Action::Drop,
            &[("entry.**", Action::Keep), ("**.ssn", Action::Drop)],
        );
        assert_eq!(
            filter(
                &r,
                r#"{"entry":{"name":"x","ssn":{"system":"urn:ssn","value":"2840375123456"}}}"#
            )
            .unwrap(),
            r#"{"entry":{"name":"x"}}"#
        );
        let r = rules(
            Action::Keep,
            &[("**", Action::Keep), ("**.ssn", Action::Drop)],
        );
        assert_eq!(
            filter(&r, r#"{"a":{"ssn":{"v":1}},"b":2}"#).unwrap(),
            r#"{"a":{},"b":2}"#
        );
        // A more specific rule below still overrides its ancestor's.
        let r = rules(
            Action::Keep,
            &[("address", Action::Drop), ("address.city", Action::Keep)],
        );
        assert_eq!(
            filter(&r, r#"{"address":{"line":"l","city":"c"}}"#).unwrap(),
            r#"{"address":{"city":"c"}}"#
        );
        let r = rules(
            Action::Keep,
            &[("patient", Action::Drop), ("**.id", Action::Keep)],
        );
        assert_eq!(
            filter(&r, r#"{"patient":{"id":1},"id":2}"#).unwrap(),
            r#"{"id":2}"#
        );
    }

    #[test]
    fn null_and_transforms_on_containers_ignore_unrelated_rules() {
        for extra in [None, Some(("**.x", Action::Drop))] {
            let mut spec = vec![
                ("ssn", Action::Null),
                ("address", Action::Transform(Transform::Truncate(2))),
                ("tags", Action::Null),
            ];
            spec.extend(extra);
            let r = rules(Action::Keep, &spec);
            assert_eq!(
                filter(&r, r#"{"ssn":{"value":"2840375123456","other":[1,2]},"address":{"postalCode":"69003"},"tags":[],"n":1}"#).unwrap(),
                r#"{"ssn":null,"tags":null,"n":1}"#,
                "{extra:?}"
            );
        }
    }

    #[test]
    fn a_transform_applies_to_each_scalar_of_an_array() {
        let r = rules(
            Action::Drop,
            &[
                ("visits", Action::Transform(Transform::Year)),
                ("codes", Action::Transform(Transform::Truncate(1))),
            ],
        );
        assert_eq!(
            filter(&r, r#"{"visits":["2019-01-02","2020-03-04T10:00Z"],"codes":["E11",{"x":1},["I10"],null]}"#).unwrap(),
            r#"{"visits":["2019","2020"],"codes":["E",["I"],null]}"#
        );
    }

    #[test]
    fn a_refused_transform_writes_nothing_of_its_member() {
        let r = rules(
            Action::Drop,
            &[
                ("id", Action::Keep),
                ("visit.born", Action::Transform(Transform::Year)),
            ],
        );
        let mut f = JsonFilter::new(r, 8, TransformContext::default());
        let mut out = Vec::new();
        let refused = f
            .write(br#"{"id":7,"visit":{"born":"in May"}}"#, &mut out)
            .unwrap_err();
        assert!(matches!(refused.kind, ErrorKind::Transform(_)), "{refused}");
        assert_eq!(refused.path, "$.visit.born");
        // Neither the member's key nor its container's opening: only what preceded them.
        assert_eq!(String::from_utf8(out).unwrap(), r#"{"id":7"#);
    }

    #[test]
    fn audit_paths_never_carry_data_keys() {
        let r = rules(Action::Drop, &[("\"a.b\".c", Action::Keep)]);
        let mut f = JsonFilter::new(r, 8, TransformContext::default());
        let mut out = Vec::new();
        let doc =
            br#"{"byId":{"2840375999001":{"ssn":"v"}},"a.b":{"c":1,"d":2},"Martin L\u00e9a":1}"#;
        f.write(doc, &mut out).unwrap();
        f.finish(&mut out).unwrap();
        let stats = f.stats();
        let withheld: Vec<&str> = stats
            .withheld
            .counts
            .iter()
            .map(|(p, _)| p.as_str())
            .collect();
        assert_eq!(withheld, vec!["\"a.b\".d", "*", "byId"]);
    }

    #[test]
    fn a_spent_filter_keeps_refusing() {
        let r = rules(Action::Keep, &[("a", Action::Drop)]);
        let mut f = JsonFilter::new(r, 8, TransformContext::default());
        let mut out = Vec::new();
        assert!(f.write(b"{]", &mut out).is_err());
        assert!(f.write(b"}", &mut out).is_err());
        assert!(f.finish(&mut out).is_err());
    }

    #[test]
    fn audit_paths_follow_the_policy_syntax() {
        let r = rules(
            Action::Drop,
            &[
                ("entry.resource.id", Action::Keep),
                ("entry.resource.code", Action::Null),
                ("empty.x", Action::Keep),
            ],
        );
        let mut f = JsonFilter::new(r, 8, TransformContext::default());
        let mut out = Vec::new();
        let doc = br#"{"entry":[{"resource":{"id":1,"name":"a","code":"c"}},{"resource":{"id":2,"name":"b"}},{"x":[1,2]}],"empty":{},"ssn":"x"}"#;
        f.write(doc, &mut out).unwrap();
        f.finish(&mut out).unwrap();
        let stats = f.stats();
        let withheld = counts(&stats.withheld);
        assert_eq!(
            withheld,
            vec![
                ("empty", 1),
                ("entry.resource.name", 2),
                ("entry.x", 1),
                ("ssn", 1)
            ]
        );
        let stats = f.stats();
        let transformed = counts(&stats.transformed);
        assert_eq!(transformed, vec![("entry.resource.code", 1)]);
        assert_eq!(f.stats().withheld.total(), 5);
    }

    #[test]
    fn field_names_are_told_from_data_used_as_keys() {
        for name in ["given", "_id", "birth-date", "a1", "Z_9-x"] {
            assert!(is_field_name(name.as_bytes()), "{name}");
        }
        let long = "k".repeat(65);
        for data in [
            "", "1984", "-x", "a b", "a.b", "Lefèvre", "é", "a\"", "a/b", "a:b", &long,
        ] {
            assert!(!is_field_name(data.as_bytes()), "{data}");
        }
        assert!(is_field_name("k".repeat(64).as_bytes()));
        // Every byte after the first: letters, digits, `_` and `-`, nothing else.
        for b in 0..=255u8 {
            let expected = matches!(b, b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-');
            assert_eq!(is_field_name(&[b'a', b]), expected, "byte {b}");
        }
    }

    #[test]
    fn stats_count_withheld_fields_once() {
        let r = rules(
            Action::Drop,
            &[("id", Action::Keep), ("address.city", Action::Keep)],
        );
        let mut f = JsonFilter::new(r, 8, TransformContext::default());
        let mut out = Vec::new();
        let doc = br#"{"id":1,"name":{"a":1,"b":[1,2]},"ssn":"x","address":{"line":"l"}}"#;
        f.write(doc, &mut out).unwrap();
        f.finish(&mut out).unwrap();
        let stats = f.stats();
        let withheld = counts(&stats.withheld);
        assert_eq!(withheld, vec![("address.line", 1), ("name", 1), ("ssn", 1)]);
        assert_eq!(f.stats().bytes_in, doc.len() as u64);
        assert_eq!(f.stats().bytes_out, out.len() as u64);
    }

    /// The output and statistics of `doc` filtered whole, in one chunk.
    fn filtered(rules: &Arc<FieldRules>, doc: &[u8]) -> (Vec<u8>, FilterStats) {
        let mut f = JsonFilter::new(rules.clone(), 16, TransformContext::default());
        let mut out = Vec::new();
        f.write(doc, &mut out).unwrap();
        f.finish(&mut out).unwrap();
        (out, f.stats())
    }

    #[test]
    fn many_entries_are_filtered_and_counted_as_their_entries() {
        // One entry is below CACHE_STEPS_AFTER and REMEMBER_AFTER; past them, rule steps
        // come from the step cache and the counters count a field met again by its
        // container's path number and key: outputs and tallies must not change.
        let r = rules(
            Action::Drop,
            &[
                (
                    "entry.resource.id",
                    Action::Transform(Transform::Mask { keep_last: 1 }),
                ),
                ("entry.resource.name.given", Action::Keep),
                ("entry.resource.address.city", Action::Keep),
                ("entry.search.mode", Action::Keep),
            ],
        );
        let entry = |n: usize| {
            // Keys that are data (not field names): counted as `*`, short and long.
            let long = format!("{n}{}", "x".repeat(30));
            format!(
                r#"{{"fullUrl":"u{n}","resource":{{"id":"p{n}","active":true,"name":[{{"given":["a"],"family":"f","prefix":[]}}],"address":[{{"city":"c","line":["l"],"\u0075se":"home"}},{{"city":"d","{long}":{n},"{n}":0}}],"byId":{{"{n}":1}},"ssn":"{n}"}},"search":{{"mode":"match","score":{n}}}}}"#
            )
        };
        let doc = |entries: &[String]| format!(r#"{{"total":1,"entry":[{}]}}"#, entries.join(","));
        let entries: Vec<String> = (0..150).map(entry).collect();
        let (whole_out, whole) = filtered(&r, doc(&entries).as_bytes());
        let mut withheld: BTreeMap<String, u64> = BTreeMap::new();
        let mut transformed: BTreeMap<String, u64> = BTreeMap::new();
        let mut kept = Vec::new();
        for one in &entries {
            let (out, stats) = filtered(&r, doc(std::slice::from_ref(one)).as_bytes());
            let out = String::from_utf8(out).unwrap();
            let inner = out
                .strip_prefix(r#"{"entry":["#)
                .and_then(|o| o.strip_suffix("]}"));
            kept.push(inner.expect("one entry kept").to_string());
            // `total` is withheld once per document.
            for (path, count) in stats.withheld.counts {
                *withheld.entry(path).or_default() += count;
            }
            for (path, count) in stats.transformed.counts {
                *transformed.entry(path).or_default() += count;
            }
        }
        *withheld.get_mut("total").unwrap() = 1;
        let expected = format!(r#"{{"entry":[{}]}}"#, kept.join(","));
        assert_eq!(String::from_utf8(whole_out).unwrap(), expected);
        assert_eq!(whole.withheld.counts, Vec::from_iter(withheld));
        assert_eq!(whole.transformed.counts, Vec::from_iter(transformed));
        assert_eq!(whole.withheld.get("entry.resource.ssn"), Some(150));
        assert_eq!(whole.withheld.get("entry.resource.address.use"), Some(150));
        assert_eq!(whole.withheld.get("entry.resource.address.*"), Some(300));
        assert_eq!(whole.transformed.get("entry.resource.id"), Some(150));
        assert_eq!(whole.withheld.overflow, 0);
    }

    #[test]
    fn taken_stats_equal_read_stats_and_leave_the_tallies_empty() {
        let r = rules(
            Action::Drop,
            &[
                ("id", Action::Transform(Transform::Pseudonymize)),
                ("a", Action::Keep),
            ],
        );
        let mut f = JsonFilter::new(r, 8, TransformContext::new(Some(&[7; 32]), None));
        let mut out = Vec::new();
        f.write(br#"{"id":"p","a":1,"b":2,"c":{"d":3},"b":4}"#, &mut out)
            .unwrap();
        f.finish(&mut out).unwrap();
        let read = f.stats();
        assert_eq!(counts(&read.withheld), vec![("b", 2), ("c", 1)]);
        assert_eq!(counts(&read.transformed), vec![("id", 1)]);
        assert_eq!(f.take_stats(), read);
        let after = f.stats();
        assert_eq!((after.withheld.total(), after.transformed.total()), (0, 0));
        assert_eq!(after.bytes_out, read.bytes_out);
    }
}
