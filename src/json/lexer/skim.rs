//! Skimming: reading a container whose inside nobody will look at (a dropped subtree, or one
//! kept whole and copied as spelled) as fast as validation allows.
//!
//! Such a container is most of a response under a tight purpose, and reading it token by
//! token through [`Lexer::next`] costs an event, a copy of every key and a return to the
//! caller per token, all for nothing. The loop here reads the tokens that lie whole in the
//! chunk (keys without escapes, since error paths show them decoded; values with any escape
//! but a surrogate), keeping only what an error message or the byte-by-byte path needs (the
//! nesting, the keys that lead to it, array indices); it hands anything else (an escaped
//! key, a surrogate escape, a token cut by the end of the chunk, anything invalid) to the
//! byte-by-byte path at the same position and in the same state, so documents are accepted
//! and refused exactly as before, with the same offsets and paths.

use super::scan::{scan_number, scan_plain_string, scan_skimmed_string, scan_word};
use super::{Event, Expect, Framing, Lexer, State, MAX_KEY_BYTES};

impl Lexer {
    /// Reads the skimmed container's tokens from `chunk[*pos..]` while they are whole and
    /// plain. Returns the container's end event once it closes; `None` when the rest is for
    /// the byte-by-byte path (or the chunk is spent).
    pub(super) fn skim_whole(&mut self, chunk: &[u8], pos: &mut usize) -> Option<Event> {
        let State::Expect(mut expect) = self.state else {
            return None;
        };
        let lines = self.framing == Framing::Lines;
        let mut i = *pos;
        // The last key read here, as a range of the chunk: copied to `key_raw` only on the
        // way out, since skimming itself needs a key only when a container opens under it.
        let mut key: Option<(usize, usize)> = None;
        // Levels from `floor` up were opened here; the keys that lead to them (in
        // `skim_spans`) are written to `path_keys` only on the way out: most close before.
        let mut floor = self.levels.len();
        self.skim_spans.clear();
        let end = loop {
            let Some(&b) = chunk.get(i) else {
                break None;
            };
            if b <= b' ' {
                if b == b' ' || b == b'\t' || b == b'\r' || (b == b'\n' && !lines) {
                    i += 1;
                    continue;
                }
                break None;
            }
            match expect {
                Expect::Value | Expect::ValueOrArrayEnd => {
                    if b == b']' && expect == Expect::ValueOrArrayEnd {
                        i += 1;
                        if let Some(event) = self.skim_close(false, i, &mut expect, &mut floor) {
                            break Some(event);
                        }
                        continue;
                    }
                    let scalar_end = match b {
                        b'{' | b'[' if (self.levels.len() as u32) < self.max_depth => {
                            self.count_element();
                            let key_start = self.path_keys.len();
                            let in_object = self.levels.last().is_some_and(|l| l.object);
                            match key {
                                Some(span) if in_object => self.skim_spans.push(span),
                                // An element: no key.
                                _ if !in_object => self.skim_spans.push((i, i)),
                                // A member whose key was read before this call, so of an
                                // object opened before it too: nothing was opened here yet.
                                // Its key is written now, like those of the levels below.
                                _ => {
                                    debug_assert!(self.skim_spans.is_empty());
                                    let spelled = if self.key_escaped {
                                        &self.key
                                    } else {
                                        &self.key_raw
                                    };
                                    self.path_keys.extend_from_slice(spelled);
                                    floor = self.levels.len() + 1;
                                }
                            }
                            expect = self.push_level(b == b'{', key_start);
                            i += 1;
                            continue;
                        }
                        _ => skim_scalar(chunk, i),
                    };
                    let Some(scalar_end) = scalar_end else {
                        break None;
                    };
                    let object = match self.levels.last_mut() {
                        Some(level) if !level.object => {
                            level.index += 1;
                            false
                        }
                        _ => true,
                    };
                    (i, expect) = after_scalar(chunk, scalar_end, object);
                }
                Expect::KeyOrObjectEnd | Expect::Key => {
                    if b == b'}' && expect == Expect::KeyOrObjectEnd {
                        i += 1;
                        if let Some(event) = self.skim_close(true, i, &mut expect, &mut floor) {
                            break Some(event);
                        }
                        continue;
                    }
                    if b != b'"' {
                        break None;
                    }
                    let Some(end) = scan_plain_string(chunk, i + 1) else {
                        break None;
                    };
                    if end - i - 1 > MAX_KEY_BYTES {
                        break None;
                    }
                    key = Some((i + 1, end));
                    self.key_fresh = true;
                    if chunk.get(end + 1) != Some(&b':') {
                        i = end + 1;
                        expect = Expect::Colon;
                        continue;
                    }
                    i = end + 2;
                    // A scalar value right after the colon, and the comma after it, in the
                    // same step: most members.
                    (i, expect) = match skim_scalar(chunk, i) {
                        Some(scalar_end) => after_scalar(chunk, scalar_end, true),
                        None => (i, Expect::Value),
                    };
                }
                Expect::Colon if b == b':' => {
                    i += 1;
                    expect = Expect::Value;
                }
                Expect::CommaOrEnd => {
                    let object = self.levels.last().is_some_and(|l| l.object);
                    match (b, object) {
                        (b',', true) => expect = Expect::Key,
                        (b',', false) => expect = Expect::Value,
                        (b'}', true) | (b']', false) => {
                            i += 1;
                            if let Some(event) = self.skim_close(object, i, &mut expect, &mut floor)
                            {
                                break Some(event);
                            }
                            continue;
                        }
                        _ => break None,
                    }
                    i += 1;
                }
                // Not inside a container, or not the expected byte: for the byte-by-byte path.
                _ => break None,
            }
        };
        self.state = State::Expect(expect);
        *pos = i;
        for (at, &(from, to)) in self.skim_spans.iter().enumerate() {
            let level = floor + at;
            self.levels[level].key_start = self.path_keys.len();
            if self.levels[level - 1].object {
                self.path_keys.extend_from_slice(&chunk[from..to]);
            }
        }
        if let Some((from, to)) = key {
            self.key_raw.clear();
            self.key_raw.extend_from_slice(&chunk[from..to]);
            self.key_escaped = false;
        }
        end
    }

    /// A value starts in the innermost container: an array counts it, for error paths.
    #[inline(always)]
    fn count_element(&mut self) {
        if let Some(level) = self.levels.last_mut() {
            if !level.object {
                level.index += 1;
            }
        }
    }

    /// Closes the innermost container (its last byte ends before `end`); the end event when
    /// it is the skimmed one.
    #[inline(always)]
    fn skim_close(
        &mut self,
        object: bool,
        end: usize,
        expect: &mut Expect,
        floor: &mut usize,
    ) -> Option<Event> {
        if let Some(level) = self.levels.pop() {
            self.path_keys.truncate(level.key_start);
        }
        if self.levels.len() >= *floor {
            // Opened here: its key was never written.
            self.skim_spans.pop();
        } else {
            *floor = self.levels.len();
        }
        self.key_fresh = false;
        *expect = if self.levels.is_empty() {
            Expect::Done
        } else {
            Expect::CommaOrEnd
        };
        if self.levels.len() >= self.skim_depth {
            return None;
        }
        self.skim_depth = 0;
        Some(if object {
            Event::ObjectEnd(end)
        } else {
            Event::ArrayEnd(end)
        })
    }
}

/// The end of the scalar at `chunk[i]` when it lies whole in the chunk and skimming can
/// validate it alone; `None` for anything else (a container, a surrogate escape, an error).
#[inline(always)]
fn skim_scalar(chunk: &[u8], i: usize) -> Option<usize> {
    match *chunk.get(i)? {
        b'"' => scan_skimmed_string(chunk, i + 1).map(|end| end + 1),
        b'-' | b'0'..=b'9' => scan_number(chunk, i),
        b't' => scan_word(chunk, i, b"true"),
        b'f' => scan_word(chunk, i, b"false"),
        b'n' => scan_word(chunk, i, b"null"),
        _ => None,
    }
}

/// Where reading goes on after a scalar ending at `end` in an object (`object`) or array:
/// past the comma that follows it, if it does, expecting the next member or element.
#[inline(always)]
fn after_scalar(chunk: &[u8], end: usize, object: bool) -> (usize, Expect) {
    match chunk.get(end) {
        Some(b',') if object => (end + 1, Expect::Key),
        Some(b',') => (end + 1, Expect::Value),
        _ => (end, Expect::CommaOrEnd),
    }
}
