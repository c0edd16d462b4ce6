//! Members read without events: for a caller walking an object member by member, a key and
//! a scalar that lie whole and plain in the chunk are read by a call each, without the
//! event dispatch of [`Lexer::next`].
//!
//! An object the policy walks into holds mostly members whose fate is decided by the key
//! alone (a scalar kept or left out); each cost two events through the general path. These
//! calls read exactly what that path's one-step reading reads, with the same state changes,
//! and read nothing when it would not, so the general path then goes on from the same
//! position: documents are accepted and refused as before, with the same offsets and paths.

use super::{Event, Expect, Fast, Lexer, ScalarKind, State};

/// A scalar read by [`Lexer::next_scalar`]: its bytes are `chunk[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WholeScalar {
    pub start: usize,
    pub end: usize,
    pub kind: ScalarKind,
}

impl Lexer {
    /// Reads the next key of the innermost object (with the comma before it, if any) when
    /// it lies whole and unescaped in the chunk, as the [`Event::Key`] it stands for. The
    /// key is left where it lies, not copied: the caller reads it with [`Lexer::key_in`],
    /// and the next reading call (or [`Lexer::settle_key`]) copies it. Returns false,
    /// having read nothing, otherwise.
    #[inline(always)]
    pub fn next_key(&mut self, chunk: &[u8], pos: &mut usize) -> bool {
        // A key read replaces the last one wherever it is; otherwise the last one is
        // copied, as every other reading call does.
        if self.next_key_in_place(chunk, pos) {
            return true;
        }
        self.settle_key(chunk);
        false
    }

    #[inline(always)]
    fn next_key_in_place(&mut self, chunk: &[u8], pos: &mut usize) -> bool {
        if self.skim_depth != 0 {
            return false;
        }
        let mut at = *pos;
        match self.state {
            State::Expect(Expect::Key | Expect::KeyOrObjectEnd) => {}
            State::Expect(Expect::CommaOrEnd)
                if chunk.get(at) == Some(&b',') && self.levels.last().is_some_and(|l| l.object) =>
            {
                at += 1;
            }
            _ => return false,
        }
        let Some(&b) = chunk.get(at) else {
            return false;
        };
        match self.whole_key::<true>(b, chunk, &mut at) {
            Fast::Event(Event::Key) => {
                *pos = at;
                true
            }
            _ => false,
        }
    }

    /// Reads the value after the key just read when it is a scalar whole and unescaped in
    /// the chunk, as the [`Event::Scalar`] it stands for. `None`, having read nothing,
    /// otherwise (a container, an escape, a scalar cut by the chunk's end).
    #[inline(always)]
    pub fn next_scalar(&mut self, chunk: &[u8], pos: &mut usize) -> Option<WholeScalar> {
        if self.state != State::Expect(Expect::Value) {
            return None;
        }
        let &b = chunk.get(*pos)?;
        match self.whole_value(b, chunk, pos) {
            Fast::Event(Event::Scalar { start, end, kind }) => {
                Some(WholeScalar { start, end, kind })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(lexer: &mut Lexer, doc: &[u8], pos: &mut usize) -> Option<Event> {
        lexer.next(doc, pos).expect("valid so far")
    }

    #[test]
    fn members_read_whole_are_the_events_they_stand_for() {
        let doc = br#"{"a":1,"b":"x\u00e9","c":"d","e":{}}"#;
        let mut lexer = Lexer::new(8);
        let mut pos = 0;
        assert_eq!(next(&mut lexer, doc, &mut pos), Some(Event::ObjectStart(0)));
        // Right after `{`: no value is expected yet.
        assert_eq!(lexer.next_scalar(doc, &mut pos), None);
        assert!(lexer.next_key(doc, &mut pos));
        assert_eq!(lexer.key_in(doc), b"a");
        let one = lexer.next_scalar(doc, &mut pos);
        assert_eq!(
            one,
            Some(WholeScalar {
                start: 5,
                end: 6,
                kind: ScalarKind::Number
            })
        );
        // The comma is read with the next key.
        assert!(lexer.next_key(doc, &mut pos));
        assert_eq!(lexer.key_in(doc), b"b");
        // An escape: left to the general path, from the same position.
        let at = pos;
        assert_eq!(lexer.next_scalar(doc, &mut pos), None);
        assert_eq!(pos, at);
        assert_eq!(
            next(&mut lexer, doc, &mut pos),
            Some(Event::ScalarStart(at, ScalarKind::String))
        );
        assert!(matches!(
            next(&mut lexer, doc, &mut pos),
            Some(Event::ScalarEnd(_))
        ));
        assert!(lexer.next_key(doc, &mut pos));
        assert_eq!(lexer.key_in(doc), b"c");
        let d = lexer.next_scalar(doc, &mut pos).expect("a plain string");
        assert_eq!(&doc[d.start..d.end], br#""d""#);
        assert!(lexer.next_key(doc, &mut pos));
        // A container: for the general path.
        assert_eq!(lexer.next_scalar(doc, &mut pos), None);
        assert_eq!(
            next(&mut lexer, doc, &mut pos),
            Some(Event::ObjectStart(pos - 1))
        );
        assert!(!lexer.next_key(doc, &mut pos));
        assert!(matches!(
            next(&mut lexer, doc, &mut pos),
            Some(Event::ObjectEnd(_))
        ));
        assert!(!lexer.next_key(doc, &mut pos));
        assert!(matches!(
            next(&mut lexer, doc, &mut pos),
            Some(Event::ObjectEnd(_))
        ));
        assert_eq!(pos, doc.len());
    }

    #[test]
    fn keys_are_not_read_where_none_may_be() {
        let mut lexer = Lexer::new(8);
        let doc = br#"[1,"a":2]"#;
        let mut pos = 0;
        assert_eq!(next(&mut lexer, doc, &mut pos), Some(Event::ArrayStart(0)));
        assert!(matches!(
            next(&mut lexer, doc, &mut pos),
            Some(Event::Scalar { .. })
        ));
        // After an element, a comma leads to a value, not a key.
        assert!(!lexer.next_key(doc, &mut pos));
        assert_eq!(pos, 2);
        // ... so `"a"` is an element, and the colon after it is refused.
        assert!(matches!(
            next(&mut lexer, doc, &mut pos),
            Some(Event::Scalar { start: 3, .. })
        ));
        let refused = lexer.next(doc, &mut pos).unwrap_err();
        assert_eq!(refused.offset, 6);

        // Escaped keys and keys cut by the chunk's end are for the general path too.
        for doc in [&br#"{"a\u0062":1}"#[..], br#"{"ab"#] {
            let mut lexer = Lexer::new(8);
            let mut pos = 0;
            next(&mut lexer, doc, &mut pos);
            assert!(!lexer.next_key(doc, &mut pos), "{doc:?}");
            assert_eq!(pos, 1);
        }

        // A key read without its colon: the value is the general path's, after the colon.
        let doc = br#"{"a" :1}"#;
        let mut lexer = Lexer::new(8);
        let mut pos = 0;
        next(&mut lexer, doc, &mut pos);
        assert!(lexer.next_key(doc, &mut pos));
        assert_eq!(lexer.next_scalar(doc, &mut pos), None);
        assert_eq!(pos, 4);
        assert!(matches!(
            next(&mut lexer, doc, &mut pos),
            Some(Event::Scalar { start: 6, .. })
        ));
    }
}
