//! Counting withheld and transformed fields by path, for the audit record.
//!
//! A 1 MiB response can withhold tens of thousands of fields but has only a few distinct
//! paths: the counter looks a path up by a hash of its bytes in a small table and compares
//! the bytes once, instead of walking a sorted map of strings per field. The sorted
//! [`PathTally`] the audit writes is built once, when the statistics are read.

use std::collections::BTreeMap;

/// Distinct field paths kept in a tally; beyond, occurrences are only counted.
pub const MAX_TALLY_PATHS: usize = 64;

/// Field paths (policy syntax: decoded keys joined by `.`, arrays transparent) with how
/// often each occurred. Paths only: never a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PathTally {
    pub counts: BTreeMap<String, u64>,
    /// Occurrences of paths beyond the first [`MAX_TALLY_PATHS`] distinct ones.
    pub overflow: u64,
}

impl PathTally {
    pub fn total(&self) -> u64 {
        self.counts.values().sum::<u64>() + self.overflow
    }
}

/// Slots of the lookup table: a power of two, a few times [`MAX_TALLY_PATHS`].
const SLOTS: usize = 256;

/// The counting side of a [`PathTally`]: the first [`MAX_TALLY_PATHS`] distinct paths in
/// the order met, each with its count, and an open-addressing table of their hashes.
#[derive(Debug, Clone, Default)]
pub struct PathCounter {
    entries: Vec<(Vec<u8>, u64)>,
    /// Index + 1 into `entries` by hash (linear probing); 0 is empty. Allocated at the first
    /// field counted, so a response that withholds nothing costs nothing.
    table: Vec<u8>,
    overflow: u64,
}

impl PathCounter {
    /// Counts one occurrence of `path` (UTF-8: keys are decoded strings).
    pub fn add(&mut self, path: &[u8]) {
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
                        return;
                    }
                }
            }
            slot = (slot + 1) & (SLOTS - 1);
        }
        if self.entries.len() < MAX_TALLY_PATHS {
            self.entries.push((path.to_vec(), 1));
            // At most MAX_TALLY_PATHS (64) entries: the index fits a byte.
            self.table[slot] = self.entries.len() as u8;
        } else {
            self.overflow += 1;
        }
    }

    /// The tally, moving the paths out (no copy): for the end of a body, when the counter
    /// is read once and dropped. The counter is empty afterwards.
    pub fn take_tally(&mut self) -> PathTally {
        self.table.clear();
        PathTally {
            counts: std::mem::take(&mut self.entries)
                .into_iter()
                .map(|(path, count)| {
                    let path = String::from_utf8(path)
                        .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
                    (path, count)
                })
                .collect(),
            overflow: std::mem::take(&mut self.overflow),
        }
    }

    /// The tally as the audit record writes it.
    pub fn tally(&self) -> PathTally {
        PathTally {
            counts: self
                .entries
                .iter()
                .map(|(path, count)| (String::from_utf8_lossy(path).into_owned(), *count))
                .collect(),
            overflow: self.overflow,
        }
    }
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
        assert_eq!(tally.counts["entry.resource.name"], 3);
        assert_eq!(tally.counts["entry.resource.telecom"], 1);
        assert_eq!(tally.counts.len(), MAX_TALLY_PATHS);
        // Two of the first 64 slots went to the paths above: 62 `p` paths fit.
        assert!(tally.counts.contains_key("p61"));
        assert!(!tally.counts.contains_key("p62"));
        assert_eq!(tally.overflow, 7);
        assert_eq!(tally.total(), 3 + 1 + MAX_TALLY_PATHS as u64 + 5);
        // A path already counted is still counted after the overflow starts.
        counter.add(b"entry.resource.name");
        assert_eq!(counter.tally().counts["entry.resource.name"], 4);
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
            assert_eq!(tally.counts[&format!("a.{i}")], i as u64 + 1);
        }
        assert_eq!(tally.overflow, 0);
    }
}
