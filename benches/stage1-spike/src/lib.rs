//! Stage 1 of a structural-index JSON reader, as a measurement for issue 7: per 64-byte
//! block, SIMD128 comparisons give bit masks of quotes, backslashes, structural characters
//! and control characters; escaped quotes are removed (odd runs of backslashes), the
//! inside of strings is the prefix XOR of the remaining quotes, and the structurals are the
//! operators outside strings plus the quotes that open and close them. Control characters
//! inside strings are flagged (RFC 8259). Not done here, and needed by a real reader: UTF-8
//! validation, the scalars' grammar, the tail shorter than a block.
//!
//! `stage1(len, flatten)`: with `flatten`, every structural's offset is written to an index
//! array (what a stage 2 would walk); without, they are only counted (what skipping a subtree
//! by bracket counting needs).
//!
//! `skim` and `skim2` add what a validating skim needs on top: UTF-8 (the lookup method of
//! Keiser and Lemire, SIMD128), escapes, the scalars' grammar, and a stage 2 that checks the
//! order of the structurals (a state machine and a stack of container kinds). `check.mjs`
//! runs them against JSONTestSuite; `run.mjs` times them.

use core::arch::wasm32::*;

static mut INPUT: Vec<u8> = Vec::new();
static mut INDEX: Vec<u32> = Vec::new();

/// Room for a document of `len` bytes; returns where to write it.
#[no_mangle]
pub extern "C" fn alloc(len: usize) -> *mut u8 {
    // SAFETY: single-threaded module; the buffers are only used by the exports below.
    unsafe {
        INPUT = vec![b' '; len + 64];
        INDEX = vec![0u32; len + 64];
        (*core::ptr::addr_of_mut!(INPUT)).as_mut_ptr()
    }
}

/// Masks of one 16-byte lane: quotes, backslashes, operators `{}[]:,`, control characters.
#[inline(always)]
fn lane_masks(v: v128) -> [u64; 4] {
    let quote = i8x16_bitmask(i8x16_eq(v, u8x16_splat(b'"')));
    let backslash = i8x16_bitmask(i8x16_eq(v, u8x16_splat(b'\\')));
    // `{` 0x7b and `[` 0x5b differ by 0x20, as do `}` 0x7d and `]` 0x5d.
    let folded = v128_or(v, u8x16_splat(0x20));
    let brackets = v128_or(
        i8x16_eq(folded, u8x16_splat(b'{')),
        i8x16_eq(folded, u8x16_splat(b'}')),
    );
    let separators = v128_or(
        i8x16_eq(v, u8x16_splat(b':')),
        i8x16_eq(v, u8x16_splat(b',')),
    );
    let operators = i8x16_bitmask(v128_or(brackets, separators));
    let control = i8x16_bitmask(u8x16_lt(v, u8x16_splat(0x20)));
    [quote, backslash, operators, control].map(u64::from)
}

#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

const EVEN_BITS: u64 = 0x5555_5555_5555_5555;

/// The characters escaped by a backslash (odd runs of backslashes escape what follows),
/// carrying a run that crosses into the next block.
#[inline(always)]
fn escaped(backslash: u64, carry: &mut u64) -> u64 {
    let backslash = backslash & !*carry;
    let follows = backslash << 1 | *carry;
    let odd_starts = backslash & !EVEN_BITS & !follows;
    let (even_starts, overflow) = odd_starts.overflowing_add(backslash);
    *carry = u64::from(overflow);
    (EVEN_BITS ^ (even_starts << 1)) & follows
}

/// The number of structurals in the whole 64-byte blocks of the document, or `u32::MAX` if
/// a string holds a control character.
#[no_mangle]
pub extern "C" fn stage1(len: usize, flatten: u32) -> u32 {
    // SAFETY: `alloc(len)` made both buffers at least `len + 64` long.
    let (input, index) = unsafe {
        (
            &*core::ptr::addr_of!(INPUT),
            &mut *core::ptr::addr_of_mut!(INDEX),
        )
    };
    let (mut count, mut in_string_carry, mut escape_carry, mut bad) = (0usize, 0u64, 0u64, 0u64);
    let mut at = 0;
    while at + 64 <= len {
        let mut masks = [0u64; 4];
        for lane in 0..4 {
            // SAFETY: at + 64 <= len <= input.len(); v128_load has no alignment requirement.
            let v = unsafe { v128_load(input.as_ptr().add(at + 16 * lane) as *const v128) };
            for (mask, bits) in masks.iter_mut().zip(lane_masks(v)) {
                *mask |= bits << (16 * lane);
            }
        }
        let [quote, backslash, operators, control] = masks;
        let quote = quote & !escaped(backslash, &mut escape_carry);
        let in_string = prefix_xor(quote) ^ in_string_carry;
        in_string_carry = ((in_string as i64) >> 63) as u64;
        bad |= control & in_string;
        let structurals = (operators & !in_string) | quote;
        if flatten != 0 {
            let mut bits = structurals;
            while bits != 0 {
                index[count] = at as u32 + bits.trailing_zeros();
                count += 1;
                bits &= bits - 1;
            }
        } else {
            count += structurals.count_ones() as usize;
        }
        at += 64;
    }
    if bad != 0 {
        u32::MAX
    } else {
        count as u32
    }
}

// ---- UTF-8 validation, Keiser & Lemire's lookup method, 16 bytes at a time. ----

const TOO_SHORT: u8 = 1 << 0;
const TOO_LONG: u8 = 1 << 1;
const OVERLONG_3: u8 = 1 << 2;
const TOO_LARGE: u8 = 1 << 3;
const SURROGATE: u8 = 1 << 4;
const OVERLONG_2: u8 = 1 << 5;
const TOO_LARGE_1000: u8 = 1 << 6;
const OVERLONG_4: u8 = 1 << 6;
const TWO_CONTS: u8 = 1 << 7;
const CARRY: u8 = TOO_SHORT | TOO_LONG | TWO_CONTS;

const BYTE_1_HIGH: [u8; 16] = [
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    TOO_LONG,
    TWO_CONTS,
    TWO_CONTS,
    TWO_CONTS,
    TWO_CONTS,
    TOO_SHORT | OVERLONG_2,
    TOO_SHORT,
    TOO_SHORT | OVERLONG_3 | SURROGATE,
    TOO_SHORT | TOO_LARGE | TOO_LARGE_1000 | OVERLONG_4,
];
const BYTE_1_LOW: [u8; 16] = [
    CARRY | OVERLONG_3 | OVERLONG_2 | OVERLONG_4,
    CARRY | OVERLONG_2,
    CARRY,
    CARRY,
    CARRY | TOO_LARGE,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    CARRY | TOO_LARGE | TOO_LARGE_1000 | SURROGATE,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
    CARRY | TOO_LARGE | TOO_LARGE_1000,
];
const BYTE_2_HIGH: [u8; 16] = [
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_LONG | OVERLONG_2 | TWO_CONTS | OVERLONG_3 | TOO_LARGE_1000 | OVERLONG_4,
    TOO_LONG | OVERLONG_2 | TWO_CONTS | OVERLONG_3 | TOO_LARGE,
    TOO_LONG | OVERLONG_2 | TWO_CONTS | SURROGATE | TOO_LARGE,
    TOO_LONG | OVERLONG_2 | TWO_CONTS | SURROGATE | TOO_LARGE,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
    TOO_SHORT,
];

#[inline(always)]
fn table(t: &[u8; 16]) -> v128 {
    // SAFETY: 16 bytes, unaligned load allowed.
    unsafe { v128_load(t.as_ptr() as *const v128) }
}

/// The error bits of the 16 bytes `cur`, given the 16 before them (`prev`).
#[inline(always)]
fn utf8_errors(prev: v128, cur: v128) -> v128 {
    let prev1 =
        i8x16_shuffle::<15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30>(prev, cur);
    let prev2 =
        i8x16_shuffle::<14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29>(prev, cur);
    let prev3 =
        i8x16_shuffle::<13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28>(prev, cur);
    let low = u8x16_splat(0x0f);
    let b1h = i8x16_swizzle(table(&BYTE_1_HIGH), u8x16_shr(prev1, 4));
    let b1l = i8x16_swizzle(table(&BYTE_1_LOW), v128_and(prev1, low));
    let b2h = i8x16_swizzle(table(&BYTE_2_HIGH), u8x16_shr(cur, 4));
    let special = v128_and(v128_and(b1h, b1l), b2h);
    let third = u8x16_sub_sat(prev2, u8x16_splat(0xe0 - 0x80));
    let fourth = u8x16_sub_sat(prev3, u8x16_splat(0xf0 - 0x80));
    let must23_80 = v128_and(v128_or(third, fourth), u8x16_splat(0x80));
    v128_xor(special, must23_80)
}

/// Whether the 16 bytes `v` end inside a multi-byte sequence.
#[inline(always)]
fn utf8_incomplete(v: v128) -> bool {
    const MAX: [u8; 16] = [
        255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 0xef, 0xdf, 0xbf,
    ];
    v128_any_true(u8x16_gt(v, table(&MAX)))
}

// ---- A table-driven stage 2: one lookup per structural instead of a branch per state. ----

const C_QUOTE: u8 = 0;
const C_OPEN_OBJ: u8 = 1;
const C_OPEN_ARR: u8 = 2;
const C_CLOSE_OBJ: u8 = 3;
const C_CLOSE_ARR: u8 = 4;
const C_COLON: u8 = 5;
const C_COMMA: u8 = 6;
const C_SCALAR: u8 = 7;

const CLASS: [u8; 256] = {
    let mut t = [C_SCALAR; 256];
    t[b'"' as usize] = C_QUOTE;
    t[b'{' as usize] = C_OPEN_OBJ;
    t[b'[' as usize] = C_OPEN_ARR;
    t[b'}' as usize] = C_CLOSE_OBJ;
    t[b']' as usize] = C_CLOSE_ARR;
    t[b':' as usize] = C_COLON;
    t[b',' as usize] = C_COMMA;
    t
};
const PUSH: [u8; 8] = [0, 1, 1, 0, 0, 0, 0, 0];
const POP: [u8; 8] = [0, 0, 0, 1, 1, 0, 0, 0];
/// The kind a push records: 0 object, 1 array.
const KIND: [u8; 8] = [0, 0, 1, 0, 0, 0, 0, 0];

const T_VALUE_OBJ: u8 = 0;
const T_VALUE_OR_ARRAY_END: u8 = 1;
const T_KEY: u8 = 2;
const T_KEY_OR_OBJECT_END: u8 = 3;
const T_COLON: u8 = 4;
const T_COMMA_OBJ: u8 = 5;
const T_COMMA_ARR: u8 = 6;
const T_DONE: u8 = 7;
const T_ERROR: u8 = 8;
const AFTER_CLOSE: u8 = 9;
const T_VALUE_ARR: u8 = 10;
const T_ROOT: u8 = 11;

const NEXT: [[u8; 8]; 12] = {
    let e = T_ERROR;
    let mut t = [[e; 8]; 12];
    // quote, {, [, }, ], :, ,, scalar
    t[T_VALUE_OBJ as usize] = [
        T_COMMA_OBJ,
        T_KEY_OR_OBJECT_END,
        T_VALUE_OR_ARRAY_END,
        e,
        e,
        e,
        e,
        T_COMMA_OBJ,
    ];
    t[T_VALUE_ARR as usize] = [
        T_COMMA_ARR,
        T_KEY_OR_OBJECT_END,
        T_VALUE_OR_ARRAY_END,
        e,
        e,
        e,
        e,
        T_COMMA_ARR,
    ];
    t[T_VALUE_OR_ARRAY_END as usize] = [
        T_COMMA_ARR,
        T_KEY_OR_OBJECT_END,
        T_VALUE_OR_ARRAY_END,
        e,
        AFTER_CLOSE,
        e,
        e,
        T_COMMA_ARR,
    ];
    t[T_KEY as usize] = [T_COLON, e, e, e, e, e, e, e];
    t[T_KEY_OR_OBJECT_END as usize] = [T_COLON, e, e, AFTER_CLOSE, e, e, e, e];
    t[T_COLON as usize] = [e, e, e, e, e, T_VALUE_OBJ, e, e];
    t[T_COMMA_OBJ as usize] = [e, e, e, AFTER_CLOSE, e, e, T_KEY, e];
    t[T_COMMA_ARR as usize] = [e, e, e, e, AFTER_CLOSE, e, T_VALUE_ARR, e];
    t[T_ROOT as usize] = [e, T_KEY_OR_OBJECT_END, T_VALUE_OR_ARRAY_END, e, e, e, e, e];
    t
};

/// The table-driven walk: its state (`T_ERROR` once invalid, and then for good) and the kind
/// of each open level (0 object, 1 array).
struct Table {
    state: u8,
    kinds: [u8; 64],
    depth: usize,
}

impl Table {
    fn new() -> Table {
        Table {
            state: T_ROOT,
            kinds: [0; 64],
            depth: 0,
        }
    }

    /// One structural `b` at `d[p]`; false for an invalid scalar (the other errors leave
    /// the state at `T_ERROR`, checked at the end).
    #[inline(always)]
    fn step(&mut self, b: u8, d: &[u8], p: usize) -> bool {
        let c = CLASS[b as usize];
        let next = NEXT[self.state as usize][c as usize];
        // '{' and '[' push their kind; '}' and ']' pop.
        let push = PUSH[c as usize];
        self.depth = (self.depth + push as usize).wrapping_sub(POP[c as usize] as usize) & 63;
        self.kinds[self.depth] = if push != 0 {
            KIND[c as usize]
        } else {
            self.kinds[self.depth]
        };
        self.state = match next {
            AFTER_CLOSE if self.depth == 0 => T_DONE,
            AFTER_CLOSE => T_COMMA_OBJ + self.kinds[self.depth],
            _ => next,
        };
        c != C_SCALAR || scalar_ok(d, p)
    }
}

// ---- Stage 2 for skimming: a validating walk over the structurals, on the fly. ----

#[derive(Clone, Copy, PartialEq, Eq)]
enum St {
    Value,
    ValueOrArrayEnd,
    Key,
    KeyOrObjectEnd,
    Colon,
    CommaOrEnd,
    Done,
}

#[inline(always)]
fn digits(d: &[u8], mut i: usize) -> usize {
    while i < d.len() && d[i].is_ascii_digit() {
        i += 1;
    }
    i
}

/// The end of a number at `i`, or usize::MAX.
#[inline(always)]
fn number_end(d: &[u8], mut i: usize) -> usize {
    if d[i] == b'-' {
        i += 1;
    }
    match d.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = digits(d, i + 1),
        _ => return usize::MAX,
    }
    if d.get(i) == Some(&b'.') {
        if !d.get(i + 1).is_some_and(u8::is_ascii_digit) {
            return usize::MAX;
        }
        i = digits(d, i + 2);
    }
    if matches!(d.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(d.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        if !d.get(i).is_some_and(u8::is_ascii_digit) {
            return usize::MAX;
        }
        i = digits(d, i + 1);
    }
    i
}

/// Stage 1 of the validating skims, block by block: what crosses from one 64-byte block to
/// the next (strings, escapes, scalars, a UTF-8 sequence) and whether anything seen so far
/// is invalid inside strings (a control character, a bad escape, bad UTF-8).
struct Blocks {
    in_string: u64,
    escape: u64,
    scalar: u64,
    prev_lane: v128,
    prev_incomplete: bool,
    bad: bool,
}

impl Blocks {
    fn new() -> Blocks {
        Blocks {
            in_string: 0,
            escape: 0,
            scalar: 0,
            prev_lane: u8x16_splat(0),
            prev_incomplete: false,
            bad: false,
        }
    }

    /// The structurals of `d[at..at + 64]`: operators outside strings, opening quotes, and
    /// the first byte of each run outside strings that is neither (a scalar). `utf8`: check
    /// UTF-8 with SIMD128 too.
    #[inline(always)]
    fn structurals(&mut self, d: &[u8], at: usize, utf8: bool) -> u64 {
        let mut m = [0u64; 6];
        let mut lanes = [u8x16_splat(0); 4];
        for (lane, slot) in lanes.iter_mut().enumerate() {
            // SAFETY: callers pass at + 64 <= d.len().
            let v = unsafe { v128_load(d.as_ptr().add(at + 16 * lane) as *const v128) };
            let [q, b, o, c] = lane_masks(v);
            let ws = i8x16_bitmask(v128_or(
                v128_or(
                    i8x16_eq(v, u8x16_splat(b' ')),
                    i8x16_eq(v, u8x16_splat(b'\n')),
                ),
                v128_or(
                    i8x16_eq(v, u8x16_splat(b'\t')),
                    i8x16_eq(v, u8x16_splat(b'\r')),
                ),
            )) as u64;
            *slot = v;
            let sh = 16 * lane;
            for (mask, bits) in m
                .iter_mut()
                .zip([q, b, o, c, ws, u64::from(i8x16_bitmask(v))])
            {
                *mask |= bits << sh;
            }
        }
        let [quote, backslash, ops, control, ws, high] = m;
        if utf8 {
            if high == 0 {
                self.bad |= self.prev_incomplete;
            } else {
                let mut err = utf8_errors(self.prev_lane, lanes[0]);
                err = v128_or(err, utf8_errors(lanes[0], lanes[1]));
                err = v128_or(err, utf8_errors(lanes[1], lanes[2]));
                err = v128_or(err, utf8_errors(lanes[2], lanes[3]));
                self.bad |= v128_any_true(err);
            }
            self.prev_incomplete = utf8_incomplete(lanes[3]);
            self.prev_lane = lanes[3];
        }
        let esc = escaped(backslash, &mut self.escape);
        let quote = quote & !esc;
        let in_string = prefix_xor(quote) ^ self.in_string;
        self.in_string = ((in_string as i64) >> 63) as u64;
        self.bad |= control & in_string != 0;
        let mut bits = esc & in_string;
        while bits != 0 {
            let p = at + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            match d[p] {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {}
                b'u' if d
                    .get(p + 1..p + 5)
                    .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) => {}
                _ => self.bad = true,
            }
        }
        let scalar = !in_string & !quote & !ws & !ops;
        let scalar_start = scalar & !(scalar << 1 | self.scalar);
        self.scalar = scalar >> 63;
        (ops & !in_string) | (quote & in_string) | scalar_start
    }

    /// Whether the blocks read were valid inside strings and ended outside one.
    fn ok(&self) -> bool {
        !self.bad && self.in_string == 0 && !self.prev_incomplete
    }
}

/// Whether the scalar starting at `d[p]` is a number or literal running up to a delimiter.
#[inline(always)]
fn scalar_ok(d: &[u8], p: usize) -> bool {
    let end = match d[p] {
        b't' if d[p..].starts_with(b"true") => p + 4,
        b'f' if d[p..].starts_with(b"false") => p + 5,
        b'n' if d[p..].starts_with(b"null") => p + 4,
        b'-' | b'0'..=b'9' => number_end(d, p),
        _ => return false,
    };
    matches!(
        d.get(end),
        Some(b' ' | b'\t' | b'\n' | b'\r' | b',' | b']' | b'}')
    )
}

/// The stack of open containers: a bit per level, 1 for an object (64 levels at most).
struct Nesting {
    kinds: u64,
    depth: u32,
}

/// One structural `b` at `d[p]` read in state `st`; `None` when the document is invalid.
#[inline(always)]
fn step(st: St, b: u8, d: &[u8], p: usize, nest: &mut Nesting) -> Option<St> {
    let after_close = |nest: &mut Nesting| {
        nest.kinds >>= 1;
        nest.depth -= 1;
        if nest.depth == 0 {
            St::Done
        } else {
            St::CommaOrEnd
        }
    };
    Some(match (st, b) {
        (St::Value | St::ValueOrArrayEnd, b'"') => St::CommaOrEnd,
        (St::Key | St::KeyOrObjectEnd, b'"') => St::Colon,
        (St::Colon, b':') => St::Value,
        (St::CommaOrEnd, b',') if nest.kinds & 1 != 0 => St::Key,
        (St::CommaOrEnd, b',') => St::Value,
        (St::Value | St::ValueOrArrayEnd, b'{' | b'[') if nest.depth < 64 => {
            nest.kinds = nest.kinds << 1 | u64::from(b == b'{');
            nest.depth += 1;
            if b == b'{' {
                St::KeyOrObjectEnd
            } else {
                St::ValueOrArrayEnd
            }
        }
        (St::KeyOrObjectEnd | St::CommaOrEnd, b'}') if nest.kinds & 1 == 1 && nest.depth > 0 => {
            after_close(nest)
        }
        (St::ValueOrArrayEnd | St::CommaOrEnd, b']') if nest.kinds & 1 == 0 && nest.depth > 0 => {
            after_close(nest)
        }
        (St::Value | St::ValueOrArrayEnd, _) if scalar_ok(d, p) => St::CommaOrEnd,
        _ => return None,
    })
}

/// Validates the document (one JSON text whose root is an object or array, padded with
/// spaces to a whole block) by stage 1 and a stage-2 state machine run on each block's
/// structurals as they are found; returns the number of structurals, or u32::MAX when
/// invalid. `mode` bits: 1 validates UTF-8 with `core::str::from_utf8` afterwards, 2 with
/// SIMD128 in the block loop (neither: UTF-8 is not checked), 4 walks with the transition
/// table instead of a `match`. Lone surrogate escapes (`\ud800`) are not refused here.
#[no_mangle]
pub extern "C" fn skim(len: usize, mode: u32) -> u32 {
    // SAFETY: as in stage1.
    let input = unsafe { &*core::ptr::addr_of!(INPUT) };
    let padded = len.div_ceil(64) * 64;
    let d = &input[..padded];
    let mut blocks = Blocks::new();
    let mut st = St::Value;
    let mut nest = Nesting { kinds: 0, depth: 0 };
    let mut table = Table::new();
    let mut count = 0u32;
    let mut at = 0;
    while at < padded {
        let mut bits = blocks.structurals(d, at, mode & 2 != 0);
        count += bits.count_ones();
        while bits != 0 {
            let p = at + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            let ok = if mode & 4 == 0 {
                step(st, d[p], d, p, &mut nest)
                    .map(|next| st = next)
                    .is_some()
            } else {
                table.step(d[p], d, p)
            };
            if !ok {
                return u32::MAX;
            }
        }
        at += 64;
    }
    let done = if mode & 4 == 0 {
        st == St::Done
    } else {
        table.state == T_DONE
    };
    if !blocks.ok() || !done {
        return u32::MAX;
    }
    if mode & 1 != 0 && core::str::from_utf8(&d[..len]).is_err() {
        return u32::MAX;
    }
    count
}

// ---- Two phases: a flattened index (branchless), then stage 2 a member at a time. ----

/// Validates like `skim(len, 2)`, but writes the structurals to an index first (eight at a
/// time, without a branch per bit) and walks the index taking a whole `"key":"value",` or
/// `"key":scalar,` member (or a `"string",` element) in one comparison of four (two) bytes.
/// `members`: 0 to walk one token at a time (to measure what the member step buys).
#[no_mangle]
pub extern "C" fn skim2(len: usize, members: u32) -> u32 {
    // SAFETY: as in stage1.
    let (input, index) = unsafe {
        (
            &*core::ptr::addr_of!(INPUT),
            &mut *core::ptr::addr_of_mut!(INDEX),
        )
    };
    let padded = len.div_ceil(64) * 64;
    let d = &input[..padded];
    let mut blocks = Blocks::new();
    let mut n = 0usize;
    let mut at = 0;
    while at < padded {
        let mut bits = blocks.structurals(d, at, true);
        // Eight offsets at a time, unconditionally; the count says how many are real.
        let count = bits.count_ones() as usize;
        let base = at as u32;
        let mut k = n;
        while bits != 0 {
            for _ in 0..8 {
                // SAFETY: the index has len + 64 slots, more than the structurals plus 8.
                unsafe { *index.get_unchecked_mut(k) = base + bits.trailing_zeros() };
                bits &= bits.wrapping_sub(1);
                k += 1;
            }
        }
        n += count;
        at += 64;
    }
    if !blocks.ok() {
        return u32::MAX;
    }
    // Sentinels: four offsets of the padding (or the document's last byte) past the end.
    for s in 0..4 {
        index[n + s] = len as u32;
    }
    // SAFETY (spike): offsets in the index are below `padded`.
    let byte = |k: usize| unsafe { *d.get_unchecked(*index.get_unchecked(k) as usize) };
    let is_scalar = |b: u8| !matches!(b, b'"' | b'{' | b'[' | b'}' | b']' | b':' | b',');
    let mut st = St::Value;
    let mut nest = Nesting { kinds: 0, depth: 0 };
    let mut k = 0;
    while k < n {
        if members != 0 {
            match st {
                St::Key | St::KeyOrObjectEnd => {
                    let w = u32::from_le_bytes([byte(k), byte(k + 1), byte(k + 2), byte(k + 3)]);
                    if w == u32::from_le_bytes(*b"\":\",") {
                        k += 4;
                        st = St::Key;
                        continue;
                    }
                    if w & 0xff00_ffff == u32::from_le_bytes(*b"\":\0,")
                        && is_scalar((w >> 16) as u8)
                    {
                        if !scalar_ok(d, index[k + 2] as usize) {
                            return u32::MAX;
                        }
                        k += 4;
                        st = St::Key;
                        continue;
                    }
                }
                St::Value | St::ValueOrArrayEnd
                    if nest.kinds & 1 == 0
                        && nest.depth > 0
                        && u16::from_le_bytes([byte(k), byte(k + 1)])
                            == u16::from_le_bytes(*b"\",") =>
                {
                    k += 2;
                    st = St::Value;
                    continue;
                }
                _ => {}
            }
        }
        // SAFETY (spike): k < n, offsets below `padded`.
        let p = unsafe { *index.get_unchecked(k) } as usize;
        k += 1;
        match step(st, d[p], d, p, &mut nest) {
            Some(next) => st = next,
            None => return u32::MAX,
        }
    }
    if st != St::Done {
        return u32::MAX;
    }
    n as u32
}
