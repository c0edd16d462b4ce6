//! A purpose's field rules compiled into a deterministic automaton over object keys.
//!
//! The engine walks the document one key at a time; each step here is a hash lookup and a
//! table read, whatever the number of rules or wildcards. All the work of resolving `*`,
//! `**` and precedence happens once, at load.

use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use super::action::Action;
use super::path::{FieldPath, Segment};

/// Index of an automaton state.
pub type StateId = u32;

/// The state reached by a key that no rule can ever match below.
pub const DEAD: StateId = 0;
/// The state of the document root.
pub const ROOT: StateId = 1;

/// Beyond this many states the rules are almost certainly a mistake (many `**` crossing).
pub const MAX_STATES: usize = 10_000;

/// One rule: a path and what it does.
#[derive(Debug, Clone)]
pub struct Rule {
    pub path: FieldPath,
    pub action: Action,
}

#[derive(Debug, Clone)]
struct State {
    /// The winning action of the rules that name this field itself, if any.
    own: Option<usize>,
    /// Whether a rule may still match a field below this one.
    may_descend: bool,
}

/// Typed rules (a policy's `type_key`, a purpose's `types`): which member gives an object
/// its type, and where the rules of each type start in the automaton.
#[derive(Debug, Clone)]
pub struct Typing {
    /// The type member's name, decoded.
    pub key: Box<[u8]>,
    /// Type name (decoded) → the state its rules start from, and its default.
    types: HashMap<Box<[u8]>, TypeRoot>,
    /// Most bytes of one object held while its type member is not yet read.
    pub max_lookahead: u64,
    /// Whether an object of a type no rules are listed for follows the enclosing rules
    /// rather than being withheld: typed objects are then found (for SMART scopes, which
    /// decide each resource) without the purpose having rules by type.
    pub unlisted_follow_rules: bool,
}

/// Where the rules of one type start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TypeRoot {
    pub state: StateId,
    /// The type's `default`: what its members no rule names get.
    pub default: Action,
}

impl Typing {
    /// The rules of the type named `name` (decoded); `None` for a type the purpose does not
    /// list, whose objects are withheld whole.
    pub fn root(&self, name: &[u8]) -> Option<TypeRoot> {
        self.types.get(name).copied()
    }
}

/// One type's rules, for [`FieldRules::compile_typed`].
#[derive(Debug, Clone)]
pub struct TypeRules {
    pub name: String,
    pub default: Action,
    /// Paths relative to the typed object.
    pub rules: Vec<Rule>,
}

/// The rank of the type member inside a typed object: above every rule, so that the member
/// is kept in every typed object sent, whatever the rules say of it.
pub const TYPE_MEMBER_RANK: Rank = Rank::MAX;

/// Compiled rules of one purpose.
#[derive(Debug, Clone)]
pub struct FieldRules {
    /// Action for a field no rule reaches (the purpose's `default`).
    pub default: Action,
    actions: Vec<Action>,
    /// The rank of each entry of `actions`, as an ordinal (see [`Rank`]).
    ranks: Vec<Rank>,
    /// Decoded key → symbol; symbol 0 stands for every key no rule names.
    symbols: HashMap<Box<[u8]>, u32, BuildHasherDefault<KeyHasher>>,
    longest_symbol: usize,
    symbol_count: usize,
    states: Vec<State>,
    /// `transitions[state * symbol_count + symbol]`.
    transitions: Vec<StateId>,
    /// With typed rules: the type member and the roots of the types' rules.
    pub typing: Option<Box<Typing>>,
}

/// How strongly a rule holds, for precedence: its path's specificity (more named keys,
/// then more `*`, then fewer `**`), then how protective its action is. A field's own rule
/// applies only if it ranks at least as high as the rule it inherits from its ancestors, so
/// a broad `entry.**: keep` cannot undo a `**.ssn: drop` below it, while `address.city: keep`
/// does override `address: drop`. The purpose's default ranks below every rule.
///
/// Compared once per field by the engine, so it is the ordinal of the rule's
/// [`Strength`] among the purpose's rules (1 for the weakest), not the tuple itself.
pub type Rank = u32;

/// The rank of the purpose's default.
pub const DEFAULT_RANK: Rank = 0;

/// A rule's strength as the rules' precedence orders it: (named keys, `*`s, minus `**`s,
/// protection of the action).
type Strength = (usize, usize, isize, u8);

/// The hash of the keys the rules name, looked up for every key of a response not already
/// in the engine's step cache. SipHash (the standard map's) resists keys chosen to collide,
/// which this map does not need: it holds only the policy's own keys, so colliding response
/// keys can at worst be compared with each of them. Eight bytes at a time, multiply-mixed.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut words = bytes.chunks_exact(8);
        for word in &mut words {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            self.mix(u64::from_le_bytes(w));
        }
        let mut last = [0u8; 8];
        last[..words.remainder().len()].copy_from_slice(words.remainder());
        self.mix(u64::from_le_bytes(last) ^ ((words.remainder().len() as u64) << 59));
    }

    fn finish(&self) -> u64 {
        self.0 ^ (self.0 >> 29)
    }
}

impl KeyHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Too many states: the message says what to simplify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooComplex;

type Position = (u32, u32); // (rule, segment index)

impl FieldRules {
    /// Builds the automaton by subset construction over rule positions.
    pub fn compile(default: Action, rules: &[Rule]) -> Result<FieldRules, TooComplex> {
        FieldRules::compile_roots(default, rules, &[], None)
    }

    /// Builds the automaton of typed rules: the purpose's own rules from [`ROOT`], for what
    /// lies outside every typed object, and each type's rules from a root of its own, with
    /// the purpose's rules that start with `**` (they reach inside typed objects) and the
    /// type member, kept above every rule ([`TYPE_MEMBER_RANK`]).
    pub fn compile_typed(
        default: Action,
        rules: &[Rule],
        type_key: &str,
        types: &[TypeRules],
        max_lookahead: u64,
    ) -> Result<FieldRules, TooComplex> {
        let reaching: Vec<&Rule> = rules
            .iter()
            .filter(|r| r.path.segments.first() == Some(&Segment::AnyDepth))
            .collect();
        let mut all: Vec<Rule> = rules.to_vec();
        let mut roots = Vec::new();
        for typed in types {
            let start = all.len();
            all.extend(typed.rules.iter().cloned());
            all.extend(reaching.iter().map(|r| (*r).clone()));
            all.push(Rule {
                path: FieldPath {
                    segments: vec![Segment::Key(type_key.to_string())],
                },
                action: Action::Keep,
            });
            roots.push((start, all.len()));
        }
        let typing = Typing {
            key: type_key.as_bytes().into(),
            types: HashMap::new(),
            max_lookahead,
            unlisted_follow_rules: false,
        };
        let mut compiled = FieldRules::compile_roots(default, &all, &roots, Some(typing))?;
        if let Some(typing) = compiled.typing.as_mut() {
            for (i, typed) in types.iter().enumerate() {
                let state = ROOT + 1 + i as StateId;
                typing.types.insert(
                    typed.name.as_bytes().into(),
                    TypeRoot {
                        state,
                        default: typed.default,
                    },
                );
            }
        }
        Ok(compiled)
    }

    /// Typed rules without rules by type: objects are typed by `type_key`, and each follows
    /// the purpose's `rules` as if untyped. What SMART scopes need of a purpose that lists no
    /// types: every resource found and decided, its fields as the purpose says.
    pub fn compile_resources(
        default: Action,
        rules: &[Rule],
        type_key: &str,
        max_lookahead: u64,
    ) -> Result<FieldRules, TooComplex> {
        let mut compiled = FieldRules::compile_typed(default, rules, type_key, &[], max_lookahead)?;
        if let Some(typing) = compiled.typing.as_mut() {
            typing.unlisted_follow_rules = true;
        }
        Ok(compiled)
    }

    /// The automaton of `rules`: from [`ROOT`], the rules before the first of `roots`;
    /// from `ROOT + 1 + i`, the rules in `roots[i]` (a range of `rules` whose last rule is
    /// the type member's). Every root's rules are its own, so no state mixes two roots.
    fn compile_roots(
        default: Action,
        rules: &[Rule],
        roots: &[(usize, usize)],
        typing: Option<Typing>,
    ) -> Result<FieldRules, TooComplex> {
        let outer = roots.first().map_or(rules.len(), |r| r.0);
        let type_members: Vec<usize> = roots.iter().map(|r| r.1 - 1).collect();
        let mut symbols: HashMap<Box<[u8]>, u32, BuildHasherDefault<KeyHasher>> =
            HashMap::default();
        for rule in rules {
            for segment in &rule.path.segments {
                if let Segment::Key(key) = segment {
                    let next = symbols.len() as u32 + 1;
                    symbols.entry(key.as_bytes().into()).or_insert(next);
                }
            }
        }
        let symbol_count = symbols.len() + 1;
        let mut names: Vec<Option<&[u8]>> = vec![None; symbol_count];
        for (key, &id) in &symbols {
            names[id as usize] = Some(key);
        }
        let longest_symbol = symbols.keys().map(|k| k.len()).max().unwrap_or(0);

        let mut actions: Vec<Action> = Vec::new();
        let mut strengths: Vec<Strength> = Vec::new();
        let mut states: Vec<State> = Vec::new();
        let mut transitions: Vec<StateId> = Vec::new();
        let mut index: HashMap<BTreeSet<Position>, StateId> = HashMap::new();
        let mut queue: Vec<BTreeSet<Position>> = Vec::new();

        let mut intern = |set: BTreeSet<Position>,
                          states: &mut Vec<State>,
                          actions: &mut Vec<Action>,
                          queue: &mut Vec<BTreeSet<Position>>|
         -> Result<StateId, TooComplex> {
            if let Some(&id) = index.get(&set) {
                return Ok(id);
            }
            if states.len() >= MAX_STATES {
                return Err(TooComplex);
            }
            let id = states.len() as StateId;
            let own = winner(rules, &set, &type_members).map(|r| {
                actions.push(rules[r].action);
                strengths.push(if type_members.contains(&r) {
                    TYPE_MEMBER_STRENGTH
                } else {
                    strength(&rules[r])
                });
                actions.len() - 1
            });
            let may_descend = set
                .iter()
                .any(|&(r, i)| (i as usize) < rules[r as usize].path.segments.len());
            states.push(State { own, may_descend });
            index.insert(set.clone(), id);
            queue.push(set);
            Ok(id)
        };

        let dead = intern(BTreeSet::new(), &mut states, &mut actions, &mut queue)?;
        debug_assert_eq!(dead, DEAD);
        // A root is not a field: no rule names it, even `**`.
        let start = |range: std::ops::Range<usize>| -> BTreeSet<Position> {
            closure(rules, range.map(|r| (r as u32, 0)))
                .into_iter()
                .filter(|&(r, i)| (i as usize) < rules[r as usize].path.segments.len())
                .collect()
        };
        let start_without_matches = start(0..outer);
        let root = if start_without_matches.is_empty() {
            // Keep ROOT a distinct state even when no rule exists.
            states.push(State {
                own: None,
                may_descend: false,
            });
            queue.push(BTreeSet::new());
            (states.len() - 1) as StateId
        } else {
            intern(start_without_matches, &mut states, &mut actions, &mut queue)?
        };
        debug_assert_eq!(root, ROOT);
        for (i, &(from, to)) in roots.iter().enumerate() {
            // Never empty (the type member's rule), and no other root's: a state of its own.
            let id = intern(start(from..to), &mut states, &mut actions, &mut queue)?;
            debug_assert_eq!(id, ROOT + 1 + i as StateId);
        }

        let mut done = 0;
        while done < queue.len() {
            let set = queue[done].clone();
            done += 1;
            for name in names.iter() {
                let next = step(rules, &set, *name);
                let id = intern(next, &mut states, &mut actions, &mut queue)?;
                transitions.push(id);
            }
        }

        // Equal strengths get equal ranks: an own rule that only equals the inherited one
        // still applies.
        let mut order = strengths.clone();
        order.sort_unstable();
        order.dedup();
        let ranks = strengths
            .iter()
            .map(|s| {
                if *s == TYPE_MEMBER_STRENGTH {
                    TYPE_MEMBER_RANK
                } else {
                    DEFAULT_RANK + 1 + order.partition_point(|o| o < s) as Rank
                }
            })
            .collect();

        Ok(FieldRules {
            default,
            actions,
            ranks,
            symbols,
            longest_symbol,
            symbol_count,
            states,
            transitions,
            typing: typing.map(Box::new),
        })
    }

    /// The state of the field named `key` (decoded) inside the field in `state`.
    #[inline]
    pub fn step(&self, state: StateId, key: &[u8]) -> StateId {
        if state == DEAD {
            return DEAD;
        }
        let symbol = if key.len() > self.longest_symbol {
            0
        } else {
            self.symbols.get(key).copied().unwrap_or(0)
        };
        self.transitions[state as usize * self.symbol_count + symbol as usize]
    }

    /// The action of the rule that names this field, if one does.
    #[inline]
    pub fn own_action(&self, state: StateId) -> Option<&Action> {
        self.states[state as usize].own.map(|i| &self.actions[i])
    }

    /// Whether some rule names this key literally.
    pub fn names_key(&self, key: &[u8]) -> bool {
        self.symbols.contains_key(key)
    }

    /// Whether these rules list the type `name` (under typed rules).
    pub fn names_type(&self, name: &[u8]) -> bool {
        self.typing
            .as_ref()
            .is_some_and(|t| t.types.contains_key(name))
    }

    /// The member that types objects, under typed rules.
    pub fn type_key(&self) -> Option<&[u8]> {
        self.typing.as_ref().map(|t| &*t.key)
    }

    /// The rule that names this field, with its rank, if one does.
    #[inline]
    pub fn own_rule(&self, state: StateId) -> Option<(&Action, Rank)> {
        self.states[state as usize]
            .own
            .map(|i| (&self.actions[i], self.ranks[i]))
    }

    /// Whether some rule may still apply below this field.
    #[inline]
    pub fn may_descend(&self, state: StateId) -> bool {
        self.states[state as usize].may_descend
    }

    /// Whether the whole document passes untouched, so the body need not be read at all.
    pub fn keeps_everything(&self) -> bool {
        self.typing.is_none()
            && self.default == Action::Keep
            && self.actions.iter().all(|a| *a == Action::Keep)
    }

    pub fn state_count(&self) -> usize {
        self.states.len()
    }
}

/// Adds the positions reachable by letting each `**` match zero keys.
fn closure(rules: &[Rule], seeds: impl Iterator<Item = Position>) -> BTreeSet<Position> {
    let mut set = BTreeSet::new();
    for (r, mut i) in seeds {
        let segments = &rules[r as usize].path.segments;
        loop {
            set.insert((r, i));
            if segments.get(i as usize) == Some(&Segment::AnyDepth) {
                i += 1;
            } else {
                break;
            }
        }
    }
    set
}

/// Positions after reading one key (`None`: a key no rule names).
fn step(rules: &[Rule], set: &BTreeSet<Position>, key: Option<&[u8]>) -> BTreeSet<Position> {
    let mut next = Vec::new();
    for &(r, i) in set {
        match rules[r as usize].path.segments.get(i as usize) {
            Some(Segment::Key(k)) if Some(k.as_bytes()) == key => next.push((r, i + 1)),
            Some(Segment::AnyKey) => next.push((r, i + 1)),
            Some(Segment::AnyDepth) => next.push((r, i)),
            _ => {}
        }
    }
    closure(rules, next.into_iter())
}

/// Among the rules that name the field, the most specific wins; at equal specificity, the
/// most protective action.
fn strength(rule: &Rule) -> Strength {
    let (keys, any, deep) = rule.path.specificity();
    (keys, any, deep, rule.action.protection_rank())
}

/// The strength of the type member's own rule: above every rule's.
const TYPE_MEMBER_STRENGTH: Strength = (usize::MAX, 0, 0, 0);

/// The index of the rule that wins among those naming the field.
fn winner(rules: &[Rule], set: &BTreeSet<Position>, type_members: &[usize]) -> Option<usize> {
    set.iter()
        .filter(|&&(r, i)| i as usize == rules[r as usize].path.segments.len())
        .map(|&(r, _)| r as usize)
        .max_by_key(|&r| {
            if type_members.contains(&r) {
                TYPE_MEMBER_STRENGTH
            } else {
                strength(&rules[r])
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::action::Transform;

    fn rules(default: Action, spec: &[(&str, Action)]) -> FieldRules {
        let rules: Vec<Rule> = spec
            .iter()
            .map(|(p, a)| Rule {
                path: FieldPath::parse(p).unwrap(),
                action: *a,
            })
            .collect();
        FieldRules::compile(default, &rules).unwrap()
    }

    fn walk(rules: &FieldRules, path: &[&str]) -> StateId {
        path.iter().fold(ROOT, |s, k| rules.step(s, k.as_bytes()))
    }

    #[test]
    fn literal_paths() {
        let r = rules(Action::Drop, &[("address.city", Action::Keep)]);
        let address = walk(&r, &["address"]);
        assert_eq!(r.own_action(address), None);
        assert!(r.may_descend(address));
        assert_eq!(
            r.own_action(walk(&r, &["address", "city"])),
            Some(&Action::Keep)
        );
        assert_eq!(walk(&r, &["address", "street"]), DEAD);
        assert_eq!(walk(&r, &["name"]), DEAD);
    }

    #[test]
    fn any_depth_matches_zero_or_more_keys() {
        let r = rules(Action::Keep, &[("**.ssn", Action::Drop)]);
        assert_eq!(r.own_action(walk(&r, &["ssn"])), Some(&Action::Drop));
        assert_eq!(
            r.own_action(walk(&r, &["a", "b", "ssn"])),
            Some(&Action::Drop)
        );
        assert_eq!(r.own_action(walk(&r, &["a", "b"])), None);
        assert!(r.may_descend(walk(&r, &["a", "b"])));
    }

    #[test]
    fn trailing_any_depth_names_the_field_and_everything_below() {
        let r = rules(Action::Keep, &[("a.**", Action::Drop)]);
        assert_eq!(r.own_action(walk(&r, &["a"])), Some(&Action::Drop));
        assert_eq!(
            r.own_action(walk(&r, &["a", "x", "y"])),
            Some(&Action::Drop)
        );
        assert_eq!(r.own_action(walk(&r, &["b"])), None);
    }

    #[test]
    fn any_key_matches_exactly_one() {
        let r = rules(Action::Drop, &[("*.id", Action::Keep)]);
        assert_eq!(r.own_action(walk(&r, &["x", "id"])), Some(&Action::Keep));
        assert_eq!(r.own_action(walk(&r, &["id"])), None);
        assert_eq!(walk(&r, &["x", "y", "id"]), DEAD);
    }

    #[test]
    fn most_specific_rule_wins() {
        let r = rules(
            Action::Drop,
            &[("**.ssn", Action::Drop), ("patient.ssn", Action::Keep)],
        );
        assert_eq!(
            r.own_action(walk(&r, &["patient", "ssn"])),
            Some(&Action::Keep)
        );
        assert_eq!(
            r.own_action(walk(&r, &["other", "ssn"])),
            Some(&Action::Drop)
        );
    }

    #[test]
    fn drop_wins_at_equal_specificity() {
        let r = rules(
            Action::Keep,
            &[("a.*", Action::Keep), ("*.b", Action::Drop)],
        );
        assert_eq!(r.own_action(walk(&r, &["a", "b"])), Some(&Action::Drop));
        let r = rules(
            Action::Keep,
            &[
                ("a.*", Action::Transform(Transform::Year)),
                ("*.b", Action::Keep),
            ],
        );
        assert_eq!(
            r.own_action(walk(&r, &["a", "b"])),
            Some(&Action::Transform(Transform::Year))
        );
    }

    #[test]
    fn keys_are_compared_exactly() {
        let r = rules(Action::Drop, &[("name", Action::Keep)]);
        assert_eq!(walk(&r, &["Name"]), DEAD);
        assert_eq!(walk(&r, &["names"]), DEAD);
        assert_eq!(walk(&r, &["nam"]), DEAD);
    }

    #[test]
    fn the_root_is_not_a_field() {
        let r = rules(Action::Keep, &[("**", Action::Drop)]);
        assert_eq!(r.own_action(ROOT), None);
        assert_eq!(r.own_action(walk(&r, &["a"])), Some(&Action::Drop));
    }

    #[test]
    fn no_rules_at_all() {
        let r = rules(Action::Keep, &[]);
        assert!(r.keeps_everything());
        assert!(!r.may_descend(ROOT));
        assert_eq!(walk(&r, &["a"]), DEAD);
        assert!(!rules(Action::Drop, &[]).keeps_everything());
    }

    #[test]
    fn crossing_wildcards_stay_small() {
        let r = rules(
            Action::Drop,
            &[
                ("**.a.**.b", Action::Keep),
                ("**.b.**.a", Action::Keep),
                ("**.c", Action::Drop),
                ("*.*.d", Action::Null),
            ],
        );
        assert!(r.state_count() < 64, "{}", r.state_count());
        assert_eq!(
            r.own_action(walk(&r, &["x", "a", "y", "b"])),
            Some(&Action::Keep)
        );
        assert_eq!(
            r.own_action(walk(&r, &["x", "y", "d"])),
            Some(&Action::Null)
        );
    }
}
