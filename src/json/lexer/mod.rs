//! A push lexer for JSON: fed chunk by chunk at any split point, it validates strictly
//! (RFC 8259, UTF-8, no lone surrogates) and reports structure as events whose positions
//! refer to the chunk being read, so the filter can copy kept bytes verbatim.
//!
//! Memory is the nesting stack, the current key, and a captured scalar when the filter asks
//! for one: never the document.

mod error;
mod member;
mod scan;
mod skim;

pub use error::LexErrorKind;
pub use member::WholeScalar;

use crate::json::error::{EngineError, ErrorKind};
use scan::{scan_number, scan_plain, scan_plain_string, scan_word, utf8_lead};

/// Longest object key accepted; longer keys are refused rather than buffered without bound.
pub const MAX_KEY_BYTES: usize = 64 * 1024;
/// Longest scalar the filter may ask to capture (for a transform).
pub const MAX_CAPTURE_BYTES: usize = 64 * 1024;

/// What the lexer found. Positions are byte offsets in the current chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// `{` at this position.
    ObjectStart(usize),
    /// `}` ends just before this position.
    ObjectEnd(usize),
    ArrayStart(usize),
    ArrayEnd(usize),
    /// A complete object key; read it with [`Lexer::key`] and [`Lexer::key_raw`].
    Key,
    /// A string, number or literal starts at this position.
    ScalarStart(usize, ScalarKind),
    /// The scalar ends just before this position (0 when it ended with the previous chunk).
    ScalarEnd(usize),
    /// A line feed between two NDJSON records (or of a blank line).
    Newline,
    /// A whole scalar in this chunk, from `start` to just before `end`, without escapes: its
    /// value is its spelling ([`plain_value`]). Stands for a [`Event::ScalarStart`] and
    /// [`Event::ScalarEnd`] pair, so a value asked for with [`Lexer::capture_value`] is
    /// never needed for it.
    Scalar {
        start: usize,
        end: usize,
        kind: ScalarKind,
    },
}

/// The value of an [`Event::Scalar`]: a string without its quotes (it has no escape, so its
/// spelling is its value), a number or literal as spelled.
pub fn plain_value(chunk: &[u8], start: usize, end: usize, kind: ScalarKind) -> &[u8] {
    match kind {
        ScalarKind::String => &chunk[start + 1..end - 1],
        _ => &chunk[start..end],
    }
}

/// How documents follow one another in a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// One JSON text (RFC 8259).
    Single,
    /// Newline-delimited JSON: one JSON text per line, blank lines allowed; a record may
    /// not contain a raw line feed.
    Lines,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    String,
    Number,
    True,
    False,
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The document's single root value.
    Root,
    Value,
    /// Right after `[`.
    ValueOrArrayEnd,
    /// Right after `{`.
    KeyOrObjectEnd,
    /// After a `,` in an object.
    Key,
    Colon,
    CommaOrEnd,
    /// The root value is complete: only whitespace may follow.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    Backslash,
    Hex {
        digits: u8,
        value: u32,
    },
    /// A high surrogate was read: `\` must follow.
    LowBackslash,
    /// ... then `u`.
    LowU,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Number {
    Start,
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    E,
    ESign,
    Exp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Expect(Expect),
    String {
        key: bool,
        escape: Escape,
    },
    Number(Number),
    /// `true`, `false` or `null` (by its kind), of which `matched` bytes were read.
    Literal {
        kind: ScalarKind,
        matched: u8,
    },
}

#[derive(Debug, Clone, Copy)]
struct Level {
    object: bool,
    /// Elements seen so far (arrays), for error paths.
    index: u64,
    /// Where, in `path_keys`, the key that leads to this level starts.
    key_start: usize,
}

/// The lexer; one per document (or per NDJSON stream).
#[derive(Debug, Clone)]
pub struct Lexer {
    state: State,
    levels: Vec<Level>,
    max_depth: u32,
    /// Bytes of all previous chunks.
    consumed: u64,
    /// The decoded key, only once the key has an escape; until then it is `key_raw`.
    key: Vec<u8>,
    key_raw: Vec<u8>,
    /// Where the last key lies in the chunk being read, when [`Lexer::next_key`] read it
    /// without copying it to `key_raw`; `None` once `key_raw` holds it.
    key_span: Option<(usize, usize)>,
    /// Whether the current key has an escape (and so a decoding of its own in `key`).
    key_escaped: bool,
    /// While non-zero, events are not reported until the container opened at this depth
    /// closes (see [`Lexer::skim_container`]).
    skim_depth: usize,
    /// Whether the [`Event::ScalarEnd`] of the scalar that just started is not wanted.
    skim_scalar: bool,
    /// While skimming, the keys (ranges of the chunk) of the levels opened (see skim.rs).
    skim_spans: Vec<(usize, usize)>,
    path_keys: Vec<u8>,
    capture: bool,
    value: Vec<u8>,
    high_surrogate: u32,
    utf8_need: u8,
    utf8_lo: u8,
    utf8_hi: u8,
    saw_root: bool,
    framing: Framing,
    /// Whether `key` belongs to the innermost object (for error paths); the key itself is
    /// kept after `{` so the caller can still read the member that opened the object.
    key_fresh: bool,
}

/// What the one-step path did with the token at hand.
enum Fast {
    Event(Event),
    /// Read a separator: go on from the new state.
    Again,
    /// Not the common case: the byte-by-byte path reads it, from the same position.
    Slow,
}

/// What the reading functions return; a refusal is boxed so the common result stays small.
type Step = Result<Option<Event>, Box<EngineError>>;

impl Lexer {
    pub fn new(max_depth: u32) -> Lexer {
        Lexer::with_framing(max_depth, Framing::Single)
    }

    pub fn with_framing(max_depth: u32, framing: Framing) -> Lexer {
        Lexer {
            framing,
            key_fresh: false,
            state: State::Expect(Expect::Root),
            levels: Vec::with_capacity(16),
            max_depth,
            consumed: 0,
            key: Vec::new(),
            key_raw: Vec::with_capacity(64),
            key_span: None,
            key_escaped: false,
            skim_depth: 0,
            skim_scalar: false,
            skim_spans: Vec::with_capacity(16),
            path_keys: Vec::with_capacity(256),
            capture: false,
            value: Vec::new(),
            high_surrogate: 0,
            utf8_need: 0,
            utf8_lo: 0x80,
            utf8_hi: 0xBF,
            saw_root: false,
        }
    }

    /// The decoded key of the last [`Event::Key`]. Not for a key just read by
    /// [`Lexer::next_key`] (see [`Lexer::key_in`]) until the lexer reads on.
    pub fn key(&self) -> &[u8] {
        debug_assert!(self.key_span.is_none(), "a key read in place: key_in");
        if self.key_escaped {
            &self.key
        } else {
            &self.key_raw
        }
    }

    /// Asks the lexer to read the container that just started (its [`Event::ObjectStart`] or
    /// [`Event::ArrayStart`] was the last event) to its end without reporting what is inside:
    /// the next event is its [`Event::ObjectEnd`] or [`Event::ArrayEnd`]. Everything inside
    /// is validated exactly as usual; only the events are spared.
    pub fn skim_container(&mut self) {
        self.skim_depth = self.levels.len();
    }

    /// Asks the lexer not to report the end of the scalar that just started (its
    /// [`Event::ScalarStart`] was the last event); it is still read and validated.
    pub fn skim_scalar(&mut self) {
        self.skim_scalar = true;
    }

    /// The key exactly as the document spells it, without the quotes. Not for a key just
    /// read by [`Lexer::next_key`] (see [`Lexer::key_in`]) until the lexer reads on.
    pub fn key_raw(&self) -> &[u8] {
        debug_assert!(self.key_span.is_none(), "a key read in place: key_in");
        &self.key_raw
    }

    /// The key of the last [`Event::Key`], as the document spells it and decoded (the same
    /// bytes, unless the key has an escape), wherever it is held: `chunk` is the chunk being
    /// read, where [`Lexer::next_key`] leaves a key instead of copying it.
    #[inline(always)]
    pub fn key_in<'a>(&'a self, chunk: &'a [u8]) -> &'a [u8] {
        match self.key_span {
            Some((start, end)) => &chunk[start..end],
            None if self.key_escaped => &self.key,
            None => &self.key_raw,
        }
    }

    /// The key as the document spells it (see [`Lexer::key_in`]).
    #[inline(always)]
    pub fn key_raw_in<'a>(&'a self, chunk: &'a [u8]) -> &'a [u8] {
        match self.key_span {
            Some((start, end)) => &chunk[start..end],
            None => &self.key_raw,
        }
    }

    /// Where the key just read by [`Lexer::next_key`] lies in the chunk, without its quotes,
    /// while it is left there; `None` once it is copied.
    #[inline(always)]
    pub fn key_span(&self) -> Option<(usize, usize)> {
        self.key_span
    }

    /// Copies a key left in the chunk by [`Lexer::next_key`] to the lexer's own buffer, so
    /// that it outlives the chunk and names error paths. Every reading call but
    /// [`Lexer::next_scalar`] does this first; a caller that reports an error or ends the
    /// chunk right after [`Lexer::next_key`] calls it.
    #[inline(always)]
    pub fn settle_key(&mut self, chunk: &[u8]) {
        // A test and a branch on every reading call; the copy out of line.
        if self.key_span.is_some() {
            self.settle_key_from(chunk);
        }
    }

    #[cold]
    #[inline(never)]
    fn settle_key_from(&mut self, chunk: &[u8]) {
        if let Some((start, end)) = self.key_span.take() {
            self.key_raw.clear();
            self.key_raw.extend_from_slice(&chunk[start..end]);
        }
    }

    /// Asks the lexer to keep the scalar that just started (decoded, for strings), for a
    /// transform; read it with [`Lexer::value`] at [`Event::ScalarEnd`].
    pub fn capture_value(&mut self) {
        self.capture = true;
        self.value.clear();
    }

    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The captured value, for a caller that takes it out while it writes and puts it back.
    pub fn value_mut(&mut self) -> &mut Vec<u8> {
        &mut self.value
    }

    /// How documents follow one another in what this lexer reads.
    pub fn framing(&self) -> Framing {
        self.framing
    }

    /// The deepest nesting this lexer accepts.
    pub fn max_depth(&self) -> u32 {
        self.max_depth
    }

    /// Current nesting depth (0 outside any container).
    pub fn depth(&self) -> usize {
        self.levels.len()
    }

    /// Total bytes fed so far, including the current chunk up to `pos`.
    pub fn offset(&self, pos: usize) -> u64 {
        self.consumed + pos as u64
    }

    /// Call once the current chunk has been fully read.
    pub fn end_chunk(&mut self, len: usize) {
        debug_assert!(
            self.key_span.is_none(),
            "a key left in the chunk: settle_key"
        );
        self.consumed += len as u64;
    }

    /// Says that the chunk being read starts at absolute offset `offset`: for a caller that
    /// reads bytes again from a saved lexer (a held object replayed), so that offsets stay
    /// those of the document.
    pub fn start_chunk_at(&mut self, offset: u64) {
        self.consumed = offset;
    }

    /// An error at `pos` of the current chunk, with the path of where it happened.
    pub fn error(&self, pos: usize, kind: ErrorKind) -> EngineError {
        debug_assert!(
            self.key_span.is_none(),
            "a key left in the chunk: settle_key"
        );
        EngineError {
            offset: self.offset(pos),
            path: self.path(),
            kind,
        }
    }

    #[cold]
    #[inline(never)]
    fn fail(&self, pos: usize, kind: LexErrorKind) -> Box<EngineError> {
        Box::new(self.error(pos, ErrorKind::Lex(kind)))
    }

    /// The JSON path of the current position, for error messages.
    pub fn path(&self) -> String {
        let mut path = String::from("$");
        for (i, level) in self.levels.iter().enumerate() {
            if i > 0 {
                let parent = &self.levels[i - 1];
                if parent.object {
                    let end = self
                        .levels
                        .get(i + 1)
                        .map_or(self.path_keys.len(), |l| l.key_start);
                    push_key(&mut path, &self.path_keys[level.key_start..end]);
                } else {
                    path.push_str(&format!("[{}]", parent.index.saturating_sub(1)));
                }
            }
        }
        if let Some(last) = self.levels.last() {
            let in_key = matches!(self.state, State::String { key: true, .. });
            if last.object && self.key_fresh && !in_key {
                push_key(&mut path, self.key());
            } else if !last.object && last.index > 0 {
                path.push_str(&format!("[{}]", last.index - 1));
            }
        }
        path
    }

    /// Reads from `chunk[*pos..]` up to the next event; `Ok(None)` when the chunk is spent.
    #[inline]
    pub fn next(&mut self, chunk: &[u8], pos: &mut usize) -> Result<Option<Event>, EngineError> {
        self.next_boxed(chunk, pos).map_err(|error| *error)
    }

    #[inline(always)]
    fn next_boxed(&mut self, chunk: &[u8], pos: &mut usize) -> Step {
        self.settle_key(chunk);
        if self.skim_depth == 0 {
            if !self.skim_scalar {
                return self.next_event(chunk, pos);
            }
            let event = self.next_event(chunk, pos)?;
            if !matches!(event, Some(Event::ScalarEnd(_))) {
                return Ok(event);
            }
            self.skim_scalar = false;
            return self.next_event(chunk, pos);
        }
        loop {
            if let Some(end) = self.skim_whole(chunk, pos) {
                return Ok(Some(end));
            }
            match self.next_event(chunk, pos)? {
                Some(event @ (Event::ObjectEnd(_) | Event::ArrayEnd(_)))
                    if self.levels.len() < self.skim_depth =>
                {
                    self.skim_depth = 0;
                    return Ok(Some(event));
                }
                Some(_) => {}
                None => return Ok(None),
            }
        }
    }

    #[inline(always)]
    fn next_event(&mut self, chunk: &[u8], pos: &mut usize) -> Step {
        loop {
            match self.state {
                // Compact JSON: no whitespace before most tokens (all of it is <= b' ').
                State::Expect(expect) if chunk.get(*pos).is_some_and(|&b| b > b' ') => {
                    match self.whole_token(expect, chunk, pos) {
                        Fast::Event(event) => return Ok(Some(event)),
                        Fast::Again => {}
                        Fast::Slow => {
                            if let Some(event) = self.structure(expect, chunk, pos)? {
                                return Ok(Some(event));
                            }
                        }
                    }
                }
                State::Expect(expect) => {
                    let lines = self.framing == Framing::Lines;
                    // Indentation: eight spaces at a time.
                    while chunk.get(*pos) == Some(&b' ')
                        && chunk.get(*pos..*pos + 8).is_some_and(|w| w == b"        ")
                    {
                        *pos += 8;
                    }
                    while *pos < chunk.len() && matches!(chunk[*pos], b' ' | b'\t' | b'\n' | b'\r')
                    {
                        if lines && chunk[*pos] == b'\n' {
                            if !self.levels.is_empty()
                                || !matches!(expect, Expect::Root | Expect::Done)
                            {
                                return Err(self.fail(*pos, LexErrorKind::NewlineInRecord));
                            }
                            *pos += 1;
                            self.state = State::Expect(Expect::Root);
                            return Ok(Some(Event::Newline));
                        }
                        *pos += 1;
                    }
                    if *pos == chunk.len() {
                        return Ok(None);
                    }
                    match self.whole_token(expect, chunk, pos) {
                        Fast::Event(event) => return Ok(Some(event)),
                        Fast::Again => continue,
                        Fast::Slow => {}
                    }
                    if let Some(event) = self.structure(expect, chunk, pos)? {
                        return Ok(Some(event));
                    }
                }
                State::String { key, escape } => {
                    if let Some(event) = self.string(key, escape, chunk, pos)? {
                        return Ok(Some(event));
                    }
                    if *pos == chunk.len() {
                        return Ok(None);
                    }
                }
                State::Number(number) => {
                    if let Some(event) = self.number(number, chunk, pos)? {
                        return Ok(Some(event));
                    }
                    if *pos == chunk.len() {
                        return Ok(None);
                    }
                }
                State::Literal { kind, matched } => {
                    let word = literal(kind);
                    let mut matched = matched as usize;
                    while matched < word.len() {
                        let Some(&b) = chunk.get(*pos) else {
                            self.state = State::Literal {
                                kind,
                                matched: matched as u8,
                            };
                            return Ok(None);
                        };
                        if b != word[matched] {
                            return Err(self.fail(
                                *pos,
                                LexErrorKind::Unexpected {
                                    found: b,
                                    expected: "a JSON value",
                                },
                            ));
                        }
                        if self.capture {
                            self.value.push(b);
                        }
                        matched += 1;
                        *pos += 1;
                    }
                    self.value_done();
                    return Ok(Some(Event::ScalarEnd(*pos)));
                }
            }
        }
    }

    /// The common case in one step: a comma, a key (with the colon right after it) or a
    /// scalar that lies whole in this chunk and has no escape. Anything else (an escape, a
    /// token cut by the end of the chunk, an error) is left untouched for the byte-by-byte path,
    /// which reads it from the same position and reports the same events and errors.
    #[inline(always)]
    fn whole_token(&mut self, expect: Expect, chunk: &[u8], pos: &mut usize) -> Fast {
        let b = chunk[*pos];
        match expect {
            // A comma and what follows it in one step: the member's key, the next element.
            Expect::CommaOrEnd if b == b',' => {
                let object = self.levels.last().is_some_and(|l| l.object);
                *pos += 1;
                let next = if object { Expect::Key } else { Expect::Value };
                self.state = State::Expect(next);
                // Anything else is read again from the new state.
                let fast = match chunk.get(*pos) {
                    Some(&b) if b > b' ' && object => self.whole_key::<false>(b, chunk, pos),
                    Some(&b) if b > b' ' => self.whole_value(b, chunk, pos),
                    _ => Fast::Again,
                };
                match fast {
                    Fast::Slow => Fast::Again,
                    fast => fast,
                }
            }
            Expect::Key | Expect::KeyOrObjectEnd => self.whole_key::<false>(b, chunk, pos),
            Expect::Root | Expect::Value | Expect::ValueOrArrayEnd => {
                self.whole_value(b, chunk, pos)
            }
            _ => Fast::Slow,
        }
    }

    /// A key without escapes, whole in the chunk, with the colon right after it if present;
    /// `IN_PLACE`: left in the chunk (`key_span`) rather than copied to `key_raw`.
    #[inline(always)]
    fn whole_key<const IN_PLACE: bool>(&mut self, b: u8, chunk: &[u8], pos: &mut usize) -> Fast {
        let at = *pos;
        if b != b'"' {
            return Fast::Slow;
        }
        let Some(end) = scan_plain_string(chunk, at + 1) else {
            return Fast::Slow;
        };
        if end - at - 1 > MAX_KEY_BYTES {
            return Fast::Slow;
        }
        if IN_PLACE {
            self.key_span = Some((at + 1, end));
        } else {
            self.key_raw.clear();
            self.key_raw.extend_from_slice(&chunk[at + 1..end]);
        }
        self.key_escaped = false;
        self.key_fresh = true;
        if chunk.get(end + 1) == Some(&b':') {
            *pos = end + 2;
            self.state = State::Expect(Expect::Value);
        } else {
            *pos = end + 1;
            self.state = State::Expect(Expect::Colon);
        }
        Fast::Event(Event::Key)
    }

    /// A scalar without escapes, whole in the chunk.
    #[inline(always)]
    fn whole_value(&mut self, b: u8, chunk: &[u8], pos: &mut usize) -> Fast {
        let at = *pos;
        let scanned = match b {
            b'"' => scan_plain_string(chunk, at + 1).map(|end| (end + 1, ScalarKind::String)),
            b'-' | b'0'..=b'9' => scan_number(chunk, at).map(|end| (end, ScalarKind::Number)),
            b't' => scan_word(chunk, at, b"true").map(|end| (end, ScalarKind::True)),
            b'f' => scan_word(chunk, at, b"false").map(|end| (end, ScalarKind::False)),
            b'n' => scan_word(chunk, at, b"null").map(|end| (end, ScalarKind::Null)),
            _ => None,
        };
        let Some((end, kind)) = scanned else {
            return Fast::Slow;
        };
        self.saw_root = true;
        if let Some(level) = self.levels.last_mut() {
            if !level.object {
                level.index += 1;
            }
        }
        self.capture = false;
        self.value_done();
        *pos = end;
        Fast::Event(Event::Scalar {
            start: at,
            end,
            kind,
        })
    }

    /// Ends the document: completes a trailing root number and checks nothing is missing.
    pub fn finish(&mut self) -> Result<Option<Event>, EngineError> {
        match self.finish_boxed().map_err(|error| *error)? {
            Some(Event::ScalarEnd(_)) if std::mem::take(&mut self.skim_scalar) => Ok(None),
            event => Ok(event),
        }
    }

    fn finish_boxed(&mut self) -> Step {
        match self.state {
            State::Expect(Expect::Done) => Ok(None),
            State::Expect(Expect::Root) if self.framing == Framing::Lines => Ok(None),
            State::Expect(Expect::Root) if !self.saw_root => Err(self.fail(0, LexErrorKind::Empty)),
            State::Number(Number::Zero | Number::Int | Number::Frac | Number::Exp) => {
                if self.levels.is_empty() {
                    self.value_done();
                    Ok(Some(Event::ScalarEnd(0)))
                } else {
                    Err(self.fail(
                        0,
                        LexErrorKind::UnexpectedEnd {
                            expected: describe(Expect::CommaOrEnd),
                        },
                    ))
                }
            }
            State::Number(_) => Err(self.fail(0, LexErrorKind::InvalidNumber)),
            State::String { .. } => Err(self.fail(
                0,
                LexErrorKind::UnexpectedEnd {
                    expected: "the end of a string",
                },
            )),
            State::Literal { .. } => Err(self.fail(
                0,
                LexErrorKind::UnexpectedEnd {
                    expected: "the rest of a literal",
                },
            )),
            State::Expect(expect) => Err(self.fail(
                0,
                LexErrorKind::UnexpectedEnd {
                    expected: describe(expect),
                },
            )),
        }
    }

    #[inline(always)]
    fn structure(&mut self, expect: Expect, chunk: &[u8], pos: &mut usize) -> Step {
        let at = *pos;
        let b = chunk[at];
        match expect {
            Expect::Root | Expect::Value | Expect::ValueOrArrayEnd => {
                if expect == Expect::ValueOrArrayEnd && b == b']' {
                    *pos += 1;
                    return Ok(Some(self.close(false, *pos)));
                }
                self.saw_root = true;
                if let Some(level) = self.levels.last_mut() {
                    if !level.object {
                        level.index += 1;
                    }
                }
                self.capture = false;
                match b {
                    b'{' | b'[' => {
                        if self.levels.len() as u32 >= self.max_depth {
                            return Err(self.fail(
                                at,
                                LexErrorKind::TooDeep {
                                    limit: self.max_depth,
                                },
                            ));
                        }
                        let key_start = self.path_keys.len();
                        if self.levels.last().is_some_and(|l| l.object) {
                            let key = if self.key_escaped {
                                &self.key
                            } else {
                                &self.key_raw
                            };
                            self.path_keys.extend_from_slice(key);
                        }
                        let object = b == b'{';
                        self.state = State::Expect(self.push_level(object, key_start));
                        *pos += 1;
                        Ok(Some(if object {
                            Event::ObjectStart(at)
                        } else {
                            Event::ArrayStart(at)
                        }))
                    }
                    b'"' => {
                        *pos += 1;
                        self.state = State::String {
                            key: false,
                            escape: Escape::None,
                        };
                        Ok(Some(Event::ScalarStart(at, ScalarKind::String)))
                    }
                    b'-' | b'0'..=b'9' => {
                        self.state = State::Number(Number::Start);
                        Ok(Some(Event::ScalarStart(at, ScalarKind::Number)))
                    }
                    b't' | b'f' | b'n' => {
                        let kind = match b {
                            b't' => ScalarKind::True,
                            b'f' => ScalarKind::False,
                            _ => ScalarKind::Null,
                        };
                        self.state = State::Literal { kind, matched: 0 };
                        Ok(Some(Event::ScalarStart(at, kind)))
                    }
                    _ => Err(self.fail(
                        at,
                        LexErrorKind::Unexpected {
                            found: b,
                            expected: describe(expect),
                        },
                    )),
                }
            }
            Expect::KeyOrObjectEnd | Expect::Key => {
                if b == b'"' {
                    *pos += 1;
                    self.key_raw.clear();
                    self.key_escaped = false;
                    self.state = State::String {
                        key: true,
                        escape: Escape::None,
                    };
                    Ok(None)
                } else if b == b'}' && expect == Expect::KeyOrObjectEnd {
                    *pos += 1;
                    Ok(Some(self.close(true, *pos)))
                } else {
                    Err(self.fail(
                        at,
                        LexErrorKind::Unexpected {
                            found: b,
                            expected: describe(expect),
                        },
                    ))
                }
            }
            Expect::Colon => {
                if b == b':' {
                    *pos += 1;
                    self.state = State::Expect(Expect::Value);
                    Ok(None)
                } else {
                    Err(self.fail(
                        at,
                        LexErrorKind::Unexpected {
                            found: b,
                            expected: describe(expect),
                        },
                    ))
                }
            }
            Expect::CommaOrEnd => {
                let object = self.levels.last().is_some_and(|l| l.object);
                match (b, object) {
                    (b',', true) => {
                        *pos += 1;
                        self.state = State::Expect(Expect::Key);
                        Ok(None)
                    }
                    (b',', false) => {
                        *pos += 1;
                        self.state = State::Expect(Expect::Value);
                        Ok(None)
                    }
                    (b'}', true) | (b']', false) => {
                        *pos += 1;
                        Ok(Some(self.close(object, *pos)))
                    }
                    _ => Err(self.fail(
                        at,
                        LexErrorKind::Unexpected {
                            found: b,
                            expected: if object { "',' or '}'" } else { "',' or ']'" },
                        },
                    )),
                }
            }
            Expect::Done => Err(self.fail(at, LexErrorKind::TrailingData(b))),
        }
    }

    /// Enters the container just opened (its key, if any, starts at `key_start` in
    /// `path_keys`); returns what may follow its opening.
    #[inline(always)]
    fn push_level(&mut self, object: bool, key_start: usize) -> Expect {
        self.levels.push(Level {
            object,
            index: 0,
            key_start,
        });
        self.key_fresh = false;
        if object {
            Expect::KeyOrObjectEnd
        } else {
            Expect::ValueOrArrayEnd
        }
    }

    fn close(&mut self, object: bool, end: usize) -> Event {
        if let Some(level) = self.levels.pop() {
            self.path_keys.truncate(level.key_start);
        }
        self.key_fresh = false;
        self.value_done();
        if object {
            Event::ObjectEnd(end)
        } else {
            Event::ArrayEnd(end)
        }
    }

    /// A value is complete: what may follow depends on where we are.
    fn value_done(&mut self) {
        self.state = State::Expect(if self.levels.is_empty() {
            Expect::Done
        } else {
            Expect::CommaOrEnd
        });
    }

    fn keep(&mut self, key: bool, bytes: &[u8]) -> Result<(), LexErrorKind> {
        if key {
            if self.key_raw.len() + bytes.len() > MAX_KEY_BYTES {
                return Err(LexErrorKind::KeyTooLong);
            }
            self.key_raw.extend_from_slice(bytes);
            if self.key_escaped {
                self.key.extend_from_slice(bytes);
            }
        } else if self.capture {
            if self.value.len() + bytes.len() > MAX_CAPTURE_BYTES {
                return Err(LexErrorKind::ValueTooLong);
            }
            self.value.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn keep_raw(&mut self, key: bool, bytes: &[u8]) {
        if key {
            if !self.key_escaped {
                // The first escape: from here on, the decoded key differs from the raw one.
                self.key_escaped = true;
                self.key.clear();
                self.key.extend_from_slice(&self.key_raw);
            }
            self.key_raw.extend_from_slice(bytes);
        }
    }

    fn keep_decoded(&mut self, key: bool, c: char) -> Result<(), LexErrorKind> {
        let mut buf = [0u8; 4];
        let bytes = c.encode_utf8(&mut buf).as_bytes();
        if key {
            self.key.extend_from_slice(bytes);
        } else if self.capture {
            if self.value.len() + bytes.len() > MAX_CAPTURE_BYTES {
                return Err(LexErrorKind::ValueTooLong);
            }
            self.value.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// Reads string content from `start` up to the first quote, backslash or control
    /// character (or the end of the chunk), validating UTF-8 on the way; returns where it
    /// stopped. A multi-byte character split across chunks is carried in `utf8_need`.
    #[inline(always)]
    fn scan_string(&mut self, chunk: &[u8], start: usize) -> Result<usize, Box<EngineError>> {
        let mut i = start;
        // The rest of a character that began in the previous chunk.
        while self.utf8_need > 0 {
            let Some(&b) = chunk.get(i) else {
                return Ok(i);
            };
            if b < self.utf8_lo || b > self.utf8_hi {
                return Err(self.fail(i, LexErrorKind::InvalidUtf8));
            }
            self.utf8_need -= 1;
            self.utf8_lo = 0x80;
            self.utf8_hi = 0xBF;
            i += 1;
        }
        loop {
            i = scan_plain(chunk, i);
            let Some(&b) = chunk.get(i) else {
                return Ok(i);
            };
            if b < 0x80 {
                return Ok(i); // a quote, a backslash or a control character
            }
            let Some((need, lo, hi)) = utf8_lead(b) else {
                return Err(self.fail(i, LexErrorKind::InvalidUtf8));
            };
            i += 1;
            let mut need: u8 = need;
            let (mut lo, mut hi) = (lo, hi);
            while need > 0 {
                let Some(&c) = chunk.get(i) else {
                    // Split by the end of the chunk: the rest is checked in the next one.
                    self.utf8_need = need;
                    self.utf8_lo = lo;
                    self.utf8_hi = hi;
                    return Ok(i);
                };
                if c < lo || c > hi {
                    return Err(self.fail(i, LexErrorKind::InvalidUtf8));
                }
                need -= 1;
                lo = 0x80;
                hi = 0xBF;
                i += 1;
            }
        }
    }

    fn string(&mut self, key: bool, mut escape: Escape, chunk: &[u8], pos: &mut usize) -> Step {
        loop {
            if *pos == chunk.len() {
                self.state = State::String { key, escape };
                return Ok(None);
            }
            match escape {
                Escape::None => {
                    let start = *pos;
                    let i = self.scan_string(chunk, start)?;
                    self.keep(key, &chunk[start..i])
                        .map_err(|k| self.fail(i, k))?;
                    *pos = i;
                    if i == chunk.len() {
                        continue;
                    }
                    let b = chunk[i];
                    *pos = i + 1;
                    match b {
                        b'"' => {
                            if key {
                                self.key_fresh = true;
                                self.state = State::Expect(Expect::Colon);
                                return Ok(Some(Event::Key));
                            }
                            self.value_done();
                            return Ok(Some(Event::ScalarEnd(i + 1)));
                        }
                        b'\\' => {
                            self.keep_raw(key, b"\\");
                            escape = Escape::Backslash;
                        }
                        _ => return Err(self.fail(i, LexErrorKind::ControlCharacterInString(b))),
                    }
                }
                Escape::Backslash => {
                    let b = chunk[*pos];
                    let decoded = match b {
                        b'"' => '"',
                        b'\\' => '\\',
                        b'/' => '/',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'u' => {
                            self.keep_raw(key, b"u");
                            *pos += 1;
                            escape = Escape::Hex {
                                digits: 0,
                                value: 0,
                            };
                            continue;
                        }
                        _ => return Err(self.fail(*pos, LexErrorKind::InvalidEscape(b))),
                    };
                    self.keep_raw(key, &[b]);
                    self.keep_decoded(key, decoded)
                        .map_err(|k| self.fail(*pos, k))?;
                    *pos += 1;
                    escape = Escape::None;
                }
                Escape::Hex { digits, value } => {
                    let b = chunk[*pos];
                    let digit = match b {
                        b'0'..=b'9' => b - b'0',
                        b'a'..=b'f' => b - b'a' + 10,
                        b'A'..=b'F' => b - b'A' + 10,
                        _ => return Err(self.fail(*pos, LexErrorKind::InvalidUnicodeEscape)),
                    };
                    self.keep_raw(key, &[b]);
                    *pos += 1;
                    let value = value * 16 + digit as u32;
                    if digits < 3 {
                        escape = Escape::Hex {
                            digits: digits + 1,
                            value,
                        };
                        continue;
                    }
                    escape = Escape::None;
                    let code = if self.high_surrogate != 0 {
                        let high = std::mem::take(&mut self.high_surrogate);
                        if !(0xDC00..=0xDFFF).contains(&value) {
                            return Err(self.fail(*pos, LexErrorKind::LoneSurrogate));
                        }
                        0x10000 + ((high - 0xD800) << 10) + (value - 0xDC00)
                    } else if (0xD800..=0xDBFF).contains(&value) {
                        self.high_surrogate = value;
                        escape = Escape::LowBackslash;
                        continue;
                    } else if (0xDC00..=0xDFFF).contains(&value) {
                        return Err(self.fail(*pos, LexErrorKind::LoneSurrogate));
                    } else {
                        value
                    };
                    let c = char::from_u32(code)
                        .ok_or_else(|| self.fail(*pos, LexErrorKind::LoneSurrogate))?;
                    self.keep_decoded(key, c).map_err(|k| self.fail(*pos, k))?;
                }
                Escape::LowBackslash | Escape::LowU => {
                    let b = chunk[*pos];
                    let wanted = if escape == Escape::LowBackslash {
                        b'\\'
                    } else {
                        b'u'
                    };
                    if b != wanted {
                        return Err(self.fail(*pos, LexErrorKind::LoneSurrogate));
                    }
                    self.keep_raw(key, &[b]);
                    *pos += 1;
                    escape = if escape == Escape::LowBackslash {
                        Escape::LowU
                    } else {
                        Escape::Hex {
                            digits: 0,
                            value: 0,
                        }
                    };
                }
            }
        }
    }

    fn number(&mut self, mut number: Number, chunk: &[u8], pos: &mut usize) -> Step {
        while let Some(&b) = chunk.get(*pos) {
            if b.is_ascii_digit() && matches!(number, Number::Int | Number::Frac | Number::Exp) {
                // A run of digits that changes nothing but the length.
                let start = *pos;
                let end = start
                    + 1
                    + chunk[start + 1..]
                        .iter()
                        .position(|c| !c.is_ascii_digit())
                        .unwrap_or(chunk.len() - start - 1);
                if self.capture {
                    let room = MAX_CAPTURE_BYTES.saturating_sub(self.value.len());
                    if end - start > room {
                        return Err(self.fail(start + room, LexErrorKind::ValueTooLong));
                    }
                    self.value.extend_from_slice(&chunk[start..end]);
                }
                *pos = end;
                continue;
            }
            let next = match (number, b) {
                (Number::Start, b'-') => Number::Minus,
                (Number::Start | Number::Minus, b'0') => Number::Zero,
                (Number::Start | Number::Minus, b'1'..=b'9') => Number::Int,
                (Number::Int, b'0'..=b'9') => Number::Int,
                (Number::Zero | Number::Int, b'.') => Number::Dot,
                (Number::Dot | Number::Frac, b'0'..=b'9') => Number::Frac,
                (Number::Zero | Number::Int | Number::Frac, b'e' | b'E') => Number::E,
                (Number::E, b'+' | b'-') => Number::ESign,
                (Number::E | Number::ESign | Number::Exp, b'0'..=b'9') => Number::Exp,
                (Number::Zero | Number::Int | Number::Frac | Number::Exp, _) => {
                    // The delimiter belongs to what follows; it is read again there.
                    if matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}') {
                        self.value_done();
                        return Ok(Some(Event::ScalarEnd(*pos)));
                    }
                    return Err(self.fail(*pos, LexErrorKind::InvalidNumber));
                }
                _ => return Err(self.fail(*pos, LexErrorKind::InvalidNumber)),
            };
            if self.capture {
                if self.value.len() >= MAX_CAPTURE_BYTES {
                    return Err(self.fail(*pos, LexErrorKind::ValueTooLong));
                }
                self.value.push(b);
            }
            number = next;
            *pos += 1;
        }
        self.state = State::Number(number);
        Ok(None)
    }
}

/// The spelling of a literal.
fn literal(kind: ScalarKind) -> &'static [u8] {
    match kind {
        ScalarKind::True => b"true",
        ScalarKind::False => b"false",
        _ => b"null",
    }
}

fn describe(expect: Expect) -> &'static str {
    match expect {
        Expect::Root | Expect::Value => "a JSON value",
        Expect::ValueOrArrayEnd => "a JSON value or ']'",
        Expect::KeyOrObjectEnd => "a key or '}'",
        Expect::Key => "a key",
        Expect::Colon => "':'",
        Expect::CommaOrEnd => "',' or the end of a container",
        Expect::Done => "the end of the document",
    }
}

fn push_key(path: &mut String, key: &[u8]) {
    let text = String::from_utf8_lossy(key);
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !text.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        path.push('.');
        path.push_str(&text);
    } else {
        path.push('[');
        path.push_str(&serde_json::to_string(&text).unwrap_or_default());
        path.push(']');
    }
}

#[cfg(test)]
mod tests;
