//! The SHA-256 compression function (FIPS 180-4, 6.2.2) run on four messages at once, one
//! per lane: each round's operations are the same for every message, only the words differ.

use crate::lanes::U32x4;

/// The round constants.
const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// The initial hash value.
pub const H0: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

/// Compresses one 64-byte block per lane, given as its sixteen big-endian words, into `state`.
#[inline(never)]
pub fn compress(state: &mut [U32x4; 8], block: &[U32x4; 16]) {
    let mut w = [U32x4::splat(0); 64];
    w[..16].copy_from_slice(block);
    for t in 16..64 {
        let s0 = w[t - 15]
            .rotr::<7>()
            .xor(w[t - 15].rotr::<18>())
            .xor(w[t - 15].shr::<3>());
        let s1 = w[t - 2]
            .rotr::<17>()
            .xor(w[t - 2].rotr::<19>())
            .xor(w[t - 2].shr::<10>());
        w[t] = w[t - 16]
            .wrapping_add(s0)
            .wrapping_add(w[t - 7])
            .wrapping_add(s1);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for t in 0..64 {
        let big_s1 = e.rotr::<6>().xor(e.rotr::<11>()).xor(e.rotr::<25>());
        // Ch(e, f, g): f where e is set, g elsewhere.
        let ch = f.select(g, e);
        let t1 = h
            .wrapping_add(big_s1)
            .wrapping_add(ch)
            .wrapping_add(U32x4::splat(K[t]))
            .wrapping_add(w[t]);
        let big_s0 = a.rotr::<2>().xor(a.rotr::<13>()).xor(a.rotr::<22>());
        // Maj(a, b, c): a where a and b agree, c where they differ.
        let maj = c.select(a, a.xor(b));
        let t2 = big_s0.wrapping_add(maj);
        h = g;
        g = f;
        f = e;
        e = d.wrapping_add(t1);
        d = c;
        c = b;
        b = a;
        a = t1.wrapping_add(t2);
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *s = s.wrapping_add(v);
    }
}
