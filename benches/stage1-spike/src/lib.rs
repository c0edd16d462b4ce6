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

use core::arch::wasm32::*;

static mut INPUT: Vec<u8> = Vec::new();
static mut INDEX: Vec<u32> = Vec::new();

/// Room for a document of `len` bytes; returns where to write it.
#[no_mangle]
pub extern "C" fn alloc(len: usize) -> *mut u8 {
    // SAFETY: single-threaded module; the buffers are only used by the exports below.
    unsafe {
        INPUT = vec![0u8; len + 64];
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
