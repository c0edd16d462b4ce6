//! The filter's step cache: rule steps already taken, remembered by state and key, so a key
//! met again costs a few comparisons instead of a hash of the whole key.

use super::audit_path::is_field_name;
use crate::json::tally::KeyWords;
use crate::policy::rules::{FieldRules, StateId};

/// Rule steps already taken, by state and key: a step of the rules hashes the whole key and
/// looks it up, which costs more than the rest of handling a member. Four-way; short keys
/// only, held as [`KeyWords`] so that finding one costs a few comparisons, not a `memcmp`.
/// Used only after [`CACHE_STEPS_AFTER`] steps: a small response meets each key about once,
/// and would only pay for the table and its misses.
#[derive(Debug, Clone, Default)]
pub(super) struct StepCache {
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
    pub(super) fn step(
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
