//! The filter's step cache: rule steps already taken, so a key met again costs a few
//! comparisons instead of a hash of the whole key and the rule lookups after it.
//!
//! Under untyped rules a member is remembered by its container's path number and its key
//! ([`MemberSlot`]): the path decides the rule state, the inherited action and the audit
//! path, so one lookup gives the member's decision, its child container's path number and
//! the tally entries it counts in. Under typed rules an object's state comes from its type,
//! not its path: steps are remembered by rule state and key ([`StepCache::step`]), as they
//! are, under any rules, below a key too long to be remembered.

use super::audit_path::is_field_name;
use crate::json::tally::{KeyWords, PathId};
use crate::policy::action::Action;
use crate::policy::rules::{FieldRules, Rank, StateId};

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
    /// Members by container path and key; empty until [`CACHE_STEPS_AFTER`] steps.
    members: Vec<MemberSlot>,
}

/// A member met under a numbered container path: what the filter needs of it, so that
/// meeting it again (the same field of the next entry) costs one lookup.
#[derive(Debug, Clone, Copy)]
pub(super) struct MemberSlot {
    /// The container's path number; [`PathId::MAX`]: empty.
    parent: PathId,
    pub key: KeyWords,
    /// The member's decision: rule state, action and rank (its own rule's, or inherited).
    pub state: StateId,
    pub action: Action,
    pub rank: Rank,
    /// [`is_field_name`] of the key.
    pub name: bool,
    /// The path number of a container that is this member's value, once one was opened;
    /// [`PathId::MAX`] - 1 (the filter's unnumbered) until then.
    pub child: PathId,
    /// The entry (+1; 0: not yet known) of the withheld and transformed counters that this
    /// member's path counts in.
    pub withheld: u8,
    pub transformed: u8,
}

/// A member slot's index; [`NO_MEMBER`]: the member was not looked up by path.
pub(super) type MemberIndex = u32;
pub(super) const NO_MEMBER: MemberIndex = MemberIndex::MAX;

const MEMBER_SLOTS: usize = 256;
const MEMBER_WAYS: usize = 4;

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
    /// Whether members are looked up by path yet (after [`CACHE_STEPS_AFTER`] steps).
    #[inline(always)]
    pub(super) fn remembers_members(&self) -> bool {
        !self.members.is_empty()
    }

    /// The slot of the member `key` under the container numbered `parent`, if remembered.
    #[inline(always)]
    pub(super) fn find_member(&self, parent: PathId, key: KeyWords) -> Option<MemberIndex> {
        let set = member_set(parent, &key);
        (set..set + MEMBER_WAYS)
            .find(|&at| self.members[at].parent == parent && self.members[at].key == key)
            .map(|at| at as MemberIndex)
    }

    /// Remembers a member met for the first time (or forgotten), the newest of its set.
    #[cold]
    #[inline(never)]
    #[allow(clippy::too_many_arguments)]
    pub(super) fn add_member(
        &mut self,
        parent: PathId,
        key: KeyWords,
        state: StateId,
        action: Action,
        rank: Rank,
        name: bool,
        unnumbered: PathId,
    ) -> MemberIndex {
        let set = member_set(parent, &key);
        self.members
            .copy_within(set..set + MEMBER_WAYS - 1, set + 1);
        self.members[set] = MemberSlot {
            parent,
            key,
            state,
            action,
            rank,
            name,
            child: unnumbered,
            withheld: 0,
            transformed: 0,
        };
        set as MemberIndex
    }

    #[inline(always)]
    pub(super) fn member(&self, at: MemberIndex) -> &MemberSlot {
        &self.members[at as usize]
    }

    #[inline(always)]
    pub(super) fn member_mut(&mut self, at: MemberIndex) -> &mut MemberSlot {
        &mut self.members[at as usize]
    }

    /// Forgets which tally entries members count in: the counters were emptied.
    pub(super) fn forget_tally_entries(&mut self) {
        for slot in &mut self.members {
            slot.withheld = 0;
            slot.transformed = 0;
        }
    }

    /// Allocates the tables, once per response, out of the way of the lookups.
    #[cold]
    #[inline(never)]
    fn start(&mut self) {
        self.members = vec![
            MemberSlot {
                parent: PathId::MAX,
                key: KeyWords::NONE,
                state: 0,
                action: Action::Drop,
                rank: 0,
                name: false,
                child: PathId::MAX,
                withheld: 0,
                transformed: 0,
            };
            MEMBER_SLOTS
        ];
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

/// The first slot of the set where the member `key` under `parent` is remembered.
#[inline(always)]
fn member_set(parent: PathId, key: &KeyWords) -> usize {
    ((key.hash(parent) >> 56) as usize % MEMBER_SLOTS) & !(MEMBER_WAYS - 1)
}
