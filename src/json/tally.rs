//! Counting withheld and transformed fields by path, for the audit record.
//!
//! A 1 MiB response can withhold tens of thousands of fields but has only a few distinct
//! paths: the counter looks a path up by a hash of its bytes in a small table and compares
//! the bytes once, instead of walking a sorted map of strings per field. The sorted
//! [`PathTally`] the audit writes is built once, when the statistics are read.
//!
//! Cheaper still, a field met again is counted without its path being written at all: each
//! open container's path gets a number ([`PathIds`]: the same path, the same number, in
//! every entry of a Bundle), and the counter remembers which of its paths a field
//! (container number, key) stands for ([`FieldKey`]).

/// Distinct field paths kept in a tally; beyond, occurrences are only counted.
pub const MAX_TALLY_PATHS: usize = 64;

/// Field paths (policy syntax: decoded keys joined by `.`, arrays transparent) with how
/// often each occurred. Paths only: never a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathTally {
    /// Sorted by path (byte order, as the audit line lists them), each path once. A sorted
    /// vector rather than a map: built once per response and read once, where a map's nodes
    /// cost a few thousand instructions per request to build and free.
    pub counts: Vec<(String, u64)>,
    /// Occurrences of paths beyond the first [`MAX_TALLY_PATHS`] distinct ones.
    pub overflow: u64,
}

impl PathTally {
    /// A tally from counts in any order, a path met twice counted once with both counts.
    pub fn from_counts(counts: impl IntoIterator<Item = (String, u64)>, overflow: u64) -> Self {
        let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
        counts.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        counts.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                earlier.1 += later.1;
            }
            same
        });
        PathTally { counts, overflow }
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().map(|(_, count)| count).sum::<u64>() + self.overflow
    }

    /// How often `path` occurred, if it is among the counted paths.
    pub fn get(&self, path: &str) -> Option<u64> {
        self.counts
            .binary_search_by(|(counted, _)| counted.as_str().cmp(path))
            .ok()
            .map(|at| self.counts[at].1)
    }
}

/// Slots of the lookup table: a power of two, a few times [`MAX_TALLY_PATHS`].
const SLOTS: usize = 256;

/// The number of an open container's field path; see [`PathIds`].
pub type PathId = u32;
/// The document's root: the empty path.
pub const ROOT_PATH: PathId = 0;
/// A path without a number (under a long key, or once numbers run out): its fields are
/// counted by their path's bytes.
pub const NO_PATH: PathId = PathId::MAX;

/// Keys up to this length are told apart by [`FieldKey`]'s three words.
pub const SHORT_KEY_BYTES: usize = 24;

/// A short key as three words that, with its length, tell it apart from every other key:
/// the first eight bytes, the next eight and the last eight (overlapping when shorter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyWords {
    pub words: [u64; 3],
    /// `u8::MAX`: no key (the container's own path), or one too long to be told apart.
    pub len: u8,
}

impl KeyWords {
    /// The words of `key`; `None` for a key longer than [`SHORT_KEY_BYTES`].
    #[inline(always)]
    pub fn of(key: &[u8]) -> Option<KeyWords> {
        if key.len() > SHORT_KEY_BYTES {
            return None;
        }
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&key[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let words = if key.len() >= 8 {
            let last = key.len() - 8;
            [word(0), word(last.min(8)), word(last)]
        } else {
            [short_word(key), 0, 0]
        };
        Some(KeyWords {
            words,
            len: key.len() as u8,
        })
    }

    /// No key: what stands for a container's own path.
    pub const NONE: KeyWords = KeyWords {
        words: [0; 3],
        len: u8::MAX,
    };

    /// The key with what it is looked up under (a path number, a rule state), hashed for a
    /// table index: not a defence against anything (entries are compared whole).
    #[inline(always)]
    pub fn hash(&self, under: u32) -> u64 {
        (self.words[0]
            ^ self.words[1].rotate_left(17)
            ^ self.words[2].rotate_left(29)
            ^ (u64::from(under) << 40)
            ^ u64::from(self.len))
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// The bytes of a key shorter than eight as a little-endian word, zero above: read as two
/// overlapping fixed-size halves (the overlap ORs a byte with itself), since a copy of a
/// variable length would call `memcpy`, in V8 a `memory.copy` that leaves the module, for
/// nearly every key.
#[inline(always)]
fn short_word(key: &[u8]) -> u64 {
    let n = key.len();
    let u16_at = |at: usize| u64::from(u16::from_le_bytes([key[at], key[at + 1]]));
    let u32_at = |at: usize| {
        u64::from(u32::from_le_bytes([
            key[at],
            key[at + 1],
            key[at + 2],
            key[at + 3],
        ]))
    };
    match n {
        4..=7 => u32_at(0) | (u32_at(n - 4) << (8 * (n - 4))),
        2..=3 => u16_at(0) | (u16_at(n - 2) << (8 * (n - 2))),
        1 => u64::from(key[0]),
        _ => 0,
    }
}

/// A counted field as the counter remembers it: the number of the container's path and the
/// member's key ([`KeyWords::NONE`] for an array's element or the container itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldKey {
    pub parent: PathId,
    pub key: KeyWords,
}

impl FieldKey {
    /// A field counted by its path alone: never remembered.
    pub const UNKNOWN: FieldKey = FieldKey {
        parent: NO_PATH,
        key: KeyWords::NONE,
    };
}

/// Numbers for the field paths of open containers, given by (parent's number, key), so that
/// a path met again (the same field of the next entry) gets the same number without its
/// bytes being read. Two-way and bounded: a path whose slots were taken by others gets
/// a new number, which only costs the counter a miss; a number never stands for two paths.
#[derive(Debug, Clone)]
pub struct PathIds {
    slots: Vec<PathIdSlot>,
    next: PathId,
}

#[derive(Debug, Clone, Copy)]
struct PathIdSlot {
    parent: PathId,
    key: KeyWords,
    id: PathId,
}

const PATH_ID_SLOTS: usize = 256;

impl Default for PathIds {
    fn default() -> PathIds {
        PathIds {
            slots: Vec::new(),
            next: ROOT_PATH + 1,
        }
    }
}

impl PathIds {
    /// The number of the path `parent` + `key`; [`NO_PATH`] without a key or a parent number.
    pub fn child(&mut self, parent: PathId, key: Option<KeyWords>) -> PathId {
        let Some(key) = key else {
            return NO_PATH;
        };
        // The last two numbers are markers ([`NO_PATH`] and the filter's unnumbered).
        if parent == NO_PATH || self.next >= NO_PATH - 1 {
            return NO_PATH;
        }
        if self.slots.is_empty() {
            self.slots = vec![
                PathIdSlot {
                    parent: NO_PATH,
                    key: KeyWords::NONE,
                    id: NO_PATH,
                };
                PATH_ID_SLOTS
            ];
        }
        let set = ((key.hash(parent) >> 56) as usize % PATH_ID_SLOTS) & !1;
        for slot in &self.slots[set..set + 2] {
            if slot.parent == parent && slot.key == key {
                return slot.id;
            }
        }
        let id = self.next;
        self.next += 1;
        self.slots[set + 1] = self.slots[set];
        self.slots[set] = PathIdSlot { parent, key, id };
        id
    }
}

/// Slots of a counter's memo of fields already counted.
const FIELD_SLOTS: usize = 128;

#[derive(Debug, Clone, Copy)]
struct FieldSlot {
    field: FieldKey,
    /// Index into the counter's entries.
    entry: u8,
}

/// The counting side of a [`PathTally`]: the first [`MAX_TALLY_PATHS`] distinct paths in
/// the order met, each with its count, and an open-addressing table of their hashes.
#[derive(Debug, Clone, Default)]
pub struct PathCounter {
    entries: Vec<(Vec<u8>, u64)>,
    /// Index + 1 into `entries` by hash (linear probing); 0 is empty. Allocated at the first
    /// field counted, so a response that withholds nothing costs nothing.
    table: Vec<u8>,
    overflow: u64,
    /// Which entry a field stands for, once counted by its path (two-way).
    fields: Vec<FieldSlot>,
    /// Fields counted so far, up to [`REMEMBER_AFTER`].
    counted: u32,
}

/// Fields counted by path before the counter starts remembering them: a small document
/// (one entry, each field met once) would only pay for the memo's tables.
pub const REMEMBER_AFTER: u32 = 64;

impl PathCounter {
    /// Whether fields are worth counting by [`FieldKey`] yet (see [`REMEMBER_AFTER`]);
    /// until then, count them with [`PathCounter::add`].
    #[inline]
    pub fn remembers(&self) -> bool {
        self.counted >= REMEMBER_AFTER
    }

    /// Counts one occurrence of `field` if the counter knows its path; `false` otherwise,
    /// and the caller counts it with [`PathCounter::add_field`].
    #[inline]
    pub fn add_known(&mut self, field: FieldKey) -> bool {
        if field.parent == NO_PATH || self.fields.is_empty() {
            return false;
        }
        let set = field_set(&field);
        for slot in &self.fields[set..set + 2] {
            if slot.field == field {
                self.entries[usize::from(slot.entry)].1 += 1;
                return true;
            }
        }
        false
    }

    /// Counts one occurrence of `field`, whose path is `path`, and remembers the pair.
    pub fn add_field(&mut self, field: FieldKey, path: &[u8]) {
        let Some(entry) = self.add_entry(path) else {
            return;
        };
        if field.parent == NO_PATH {
            return;
        }
        if self.fields.is_empty() {
            self.fields = vec![
                FieldSlot {
                    field: FieldKey {
                        parent: NO_PATH,
                        key: KeyWords::NONE,
                    },
                    entry: 0,
                };
                FIELD_SLOTS
            ];
        }
        let set = field_set(&field);
        self.fields[set + 1] = self.fields[set];
        self.fields[set] = FieldSlot { field, entry };
    }

    /// Counts one occurrence of `path` (UTF-8: keys are decoded strings).
    pub fn add(&mut self, path: &[u8]) {
        self.add_entry(path);
    }

    /// Counts `path`; the index of its entry, `None` when it is counted as overflow.
    fn add_entry(&mut self, path: &[u8]) -> Option<u8> {
        if self.counted < REMEMBER_AFTER {
            self.counted += 1;
        }
        if self.table.is_empty() {
            self.table = vec![0; SLOTS];
        }
        let mut slot = hash(path) as usize & (SLOTS - 1);
        loop {
            match self.table[slot] {
                0 => break,
                index => {
                    let entry = &mut self.entries[usize::from(index) - 1];
                    if same_bytes(&entry.0, path) {
                        entry.1 += 1;
                        return Some(index - 1);
                    }
                }
            }
            slot = (slot + 1) & (SLOTS - 1);
        }
        if self.entries.len() < MAX_TALLY_PATHS {
            self.entries.push((path.to_vec(), 1));
            // At most MAX_TALLY_PATHS (64) entries: the index fits a byte.
            self.table[slot] = self.entries.len() as u8;
            Some(self.table[slot] - 1)
        } else {
            self.overflow += 1;
            None
        }
    }

    /// The tally, moving the paths out (no copy): for the end of a body, when the counter
    /// is read once and dropped. The counter is empty afterwards.
    pub fn take_tally(&mut self) -> PathTally {
        self.table.clear();
        self.fields.clear();
        self.counted = 0;
        PathTally::from_counts(
            std::mem::take(&mut self.entries)
                .into_iter()
                .map(|(path, count)| {
                    let path = String::from_utf8(path)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                    (path, count)
                }),
            std::mem::take(&mut self.overflow),
        )
    }

    /// The tally as the audit record writes it.
    pub fn tally(&self) -> PathTally {
        PathTally::from_counts(
            self.entries
                .iter()
                .map(|(path, count)| (String::from_utf8_lossy(path).into_owned(), *count)),
            self.overflow,
        )
    }
}

/// The first of the two slots where `field` may be remembered (two ways, so that fields
/// that share a slot by chance do not evict each other at every entry of a Bundle).
#[inline(always)]
fn field_set(field: &FieldKey) -> usize {
    ((field.key.hash(field.parent) >> 57) as usize % FIELD_SLOTS) & !1
}

/// Byte equality eight bytes at a time: in the wasm build a slice comparison calls a
/// `memcmp` that compares byte by byte, and a field's path is compared on every count.
#[inline]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut x, mut y) = (a.chunks_exact(8), b.chunks_exact(8));
    let words_equal = x.by_ref().zip(y.by_ref()).all(|(p, q)| {
        let (mut u, mut v) = ([0u8; 8], [0u8; 8]);
        u.copy_from_slice(p);
        v.copy_from_slice(q);
        u64::from_ne_bytes(u) == u64::from_ne_bytes(v)
    });
    words_equal && x.remainder() == y.remainder()
}

/// FNV-1a over eight bytes at a time: a table index, not a defence (the bytes are compared).
#[inline]
fn hash(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        hash = (hash ^ u64::from_le_bytes(w)).wrapping_mul(0x0000_0100_0000_01b3);
        hash ^= hash >> 29;
    }
    for &b in words.remainder() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash ^ (hash >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_lists_each_path_once_in_byte_order() {
        let tally = PathTally::from_counts(
            [("b", 1), ("B", 2), ("a.é", 3), ("b", 4), ("a.z", 5)].map(|(p, c)| (p.to_string(), c)),
            6,
        );
        let listed: Vec<(&str, u64)> = tally.counts.iter().map(|(p, c)| (p.as_str(), *c)).collect();
        assert_eq!(listed, [("B", 2), ("a.z", 5), ("a.é", 3), ("b", 5)]);
        assert_eq!(tally.get("b"), Some(5));
        assert_eq!(tally.get("a.é"), Some(3));
        assert_eq!(tally.get("c"), None);
        assert_eq!(tally.total(), 21);
    }

    #[test]
    fn a_short_key_is_its_bytes_as_a_word() {
        let bytes = *b"\x01\x02\x83\x04\xf5\x06\x07";
        for n in 0..=bytes.len() {
            let mut padded = [0u8; 8];
            padded[..n].copy_from_slice(&bytes[..n]);
            let words = KeyWords::of(&bytes[..n]).expect("a short key");
            assert_eq!(words.words, [u64::from_le_bytes(padded), 0, 0], "{n} bytes");
            assert_eq!(usize::from(words.len), n);
        }
    }

    #[test]
    fn same_bytes_is_slice_equality() {
        let text = b"entry.resource.address.postalCode";
        for i in 0..=text.len() {
            for j in 0..=text.len() {
                assert_eq!(same_bytes(&text[..i], &text[..j]), i == j);
            }
            let mut other = text[..i].to_vec();
            for k in 0..i {
                other[k] ^= 1;
                assert!(!same_bytes(&text[..i], &other), "differs at {k} of {i}");
                other[k] ^= 1;
            }
            assert!(same_bytes(&text[..i], &other));
        }
    }

    #[test]
    fn counts_each_path_and_overflows_beyond_the_limit() {
        let mut counter = PathCounter::default();
        for _ in 0..3 {
            counter.add(b"entry.resource.name");
        }
        counter.add(b"entry.resource.telecom");
        for i in 0..MAX_TALLY_PATHS + 5 {
            counter.add(format!("p{i}").as_bytes());
        }
        let tally = counter.tally();
        assert_eq!(tally.get("entry.resource.name"), Some(3));
        assert_eq!(tally.get("entry.resource.telecom"), Some(1));
        assert_eq!(tally.counts.len(), MAX_TALLY_PATHS);
        // Two of the first 64 slots went to the paths above: 62 `p` paths fit.
        assert!(tally.get("p61").is_some());
        assert!(tally.get("p62").is_none());
        assert_eq!(tally.overflow, 7);
        assert_eq!(tally.total(), 3 + 1 + MAX_TALLY_PATHS as u64 + 5);
        // A path already counted is still counted after the overflow starts.
        counter.add(b"entry.resource.name");
        assert_eq!(counter.tally().get("entry.resource.name"), Some(4));
    }

    /// Counts fields drawn from `parents` containers times `keys` keys, by number and
    /// key (as the filter does) and by path, and compares the tallies.
    fn count_both_ways(parents: u64, keys: u64, draws: usize) {
        let mut ids = PathIds::default();
        let mut by_field = PathCounter::default();
        let mut by_path = PathCounter::default();
        let mut state = 0x2545_F491_4F6C_DD1D_u64;
        for _ in 0..draws {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let container = format!("entry{}", state % parents);
            // Several open containers, some under a key too long for a number.
            let parent = ids.child(ROOT_PATH, KeyWords::of(container.as_bytes()));
            let key = format!("k{}", (state >> 20) % keys);
            let path = format!("{container}.{key}");
            let field = FieldKey {
                parent,
                key: KeyWords::of(key.as_bytes()).unwrap_or(KeyWords::NONE),
            };
            if !by_field.add_known(field) {
                by_field.add_field(field, path.as_bytes());
            }
            by_path.add(path.as_bytes());
        }
        assert_eq!(by_field.tally(), by_path.tally(), "{parents} x {keys}");
    }

    #[test]
    fn fields_counted_by_number_are_counted_as_by_path() {
        // Few paths; beyond the limit (overflow); more containers than numbers' slots.
        count_both_ways(4, 6, 5000);
        // Many keys of one container: slots shared by fields that differ by key alone.
        count_both_ways(1, 60, 5000);
        count_both_ways(2, 40, 5000);
        count_both_ways(12, 10, 5000);
        count_both_ways(900, 3, 20000);
    }

    #[test]
    fn long_keys_and_containers_have_no_number() {
        let mut ids = PathIds::default();
        let long = [b'x'; SHORT_KEY_BYTES + 1];
        assert_eq!(KeyWords::of(&long), None);
        assert_eq!(ids.child(ROOT_PATH, KeyWords::of(&long)), NO_PATH);
        let a = ids.child(ROOT_PATH, KeyWords::of(b"a"));
        assert_ne!(a, NO_PATH);
        assert_eq!(ids.child(ROOT_PATH, KeyWords::of(b"a")), a);
        assert_ne!(ids.child(ROOT_PATH, KeyWords::of(b"b")), a);
        assert_eq!(ids.child(NO_PATH, KeyWords::of(b"a")), NO_PATH);
        // Keys that share their first, middle or last eight bytes stay apart.
        let words: Vec<KeyWords> = [
            &b"abcdefghijklmnopqrstuvwx"[..],
            b"abcdefghXjklmnopqrstuvwx",
            b"abcdefghijklmnopqrstuvwX",
            b"abcdefghijklmnop",
            b"abcdefgh",
            b"abcdefg",
        ]
        .iter()
        .map(|k| KeyWords::of(k).expect("short"))
        .collect();
        for (i, a) in words.iter().enumerate() {
            for b in &words[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn a_taken_tally_forgets_its_fields() {
        let mut counter = PathCounter::default();
        let field = FieldKey {
            parent: ROOT_PATH,
            key: KeyWords::of(b"ssn").expect("short"),
        };
        counter.add_field(field, b"ssn");
        assert!(counter.add_known(field));
        assert_eq!(counter.take_tally().get("ssn"), Some(2));
        assert!(!counter.add_known(field));
        counter.add_field(field, b"ssn");
        assert_eq!(counter.tally().get("ssn"), Some(1));
    }

    #[test]
    fn colliding_paths_stay_apart() {
        let mut counter = PathCounter::default();
        // More paths than slots can be distinct by hash alone: probing keeps them apart.
        for i in 0..MAX_TALLY_PATHS {
            for _ in 0..=i {
                counter.add(format!("a.{i}").as_bytes());
            }
        }
        let tally = counter.tally();
        for i in 0..MAX_TALLY_PATHS {
            assert_eq!(tally.get(&format!("a.{i}")), Some(i as u64 + 1));
        }
        assert_eq!(tally.overflow, 0);
    }
}
