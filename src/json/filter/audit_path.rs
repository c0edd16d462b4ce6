//! Audit-path naming: the field path (policy syntax) of each withheld or transformed value,
//! numbered per container so a field met again is counted without building its path, and
//! written so that a key which is data (an identifier, a name) never reaches the record.

use super::{JsonFilter, PathId};
use crate::json::tally::{FieldKey, KeyWords, NO_PATH, ROOT_PATH};
use crate::policy::rules::FieldRules;
use crate::policy::rules::Typing;

/// A container whose path has no number yet ([`JsonFilter::top_path_id`] gives it one).
pub(super) const UNNUMBERED: PathId = NO_PATH - 1;

impl JsonFilter {
    /// The number of the innermost container's path, numbering the open containers that
    /// have none yet, outermost first.
    #[inline(always)]
    pub(super) fn top_path_id(&mut self) -> PathId {
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
            // The key as spelled names the path as well as the decoded one does. A typed
            // object's path starts anew with its type: counted by path, never numbered.
            let id = if frame.typed {
                NO_PATH
            } else if parent.object {
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
    pub(super) fn tally(&mut self, withheld: bool) {
        self.tally_in(withheld, &[]);
    }

    /// [`JsonFilter::tally`] for a member whose key may lie in `chunk` (`Lexer::key_in`).
    pub(super) fn tally_in(&mut self, withheld: bool, chunk: &[u8]) {
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
                self.lexer.key_in(chunk),
                self.pending_name,
                &self.rules,
            );
        }
        counter.add_field(field, &self.path);
        self.path.truncate(len);
    }

    /// Records the innermost container as withheld.
    pub(super) fn tally_frame(&mut self) {
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
}

/// Appends a decoded key to a field path (`a.b` + `c`), in policy syntax. The audit records
/// paths, never values, but a key can be data too (`{"byId": {"2840375123456": …}}`): a key
/// is written as is only when it looks like a field name, quoted when the policy names it,
/// and as `*` otherwise.
pub(super) fn push_segment(path: &mut Vec<u8>, key: &[u8], field_name: bool, rules: &FieldRules) {
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

/// Whether a key looks like a field name (`given`, `_id`, `birth-date`), as opposed to data
/// used as a key (an identifier, a name, a date): ASCII letters, digits, `_` and `-`, not
/// starting with a digit or `-`, at most 64 bytes.
pub(super) fn is_field_name(key: &[u8]) -> bool {
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

/// The audit path of a typed object: its type, written as is when it looks like a field
/// name, quoted when the purpose lists it, and as `*` otherwise (a type the upstream made up
/// may be data).
pub(super) fn type_segment(name: &[u8], typing: &Typing) -> Vec<u8> {
    if is_field_name(name) {
        name.to_vec()
    } else if typing.root(name).is_some() {
        serde_json::to_string(&String::from_utf8_lossy(name))
            .unwrap_or_else(|_| "*".into())
            .into_bytes()
    } else {
        b"*".to_vec()
    }
}
