//! Four u32 lanes: a wasm `v128` when the build has SIMD128, a plain array otherwise (the
//! native build, where `cargo test` checks the same SHA-256 code the wasm build runs).

#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod imp {
    use core::arch::wasm32::*;

    /// Four independent u32 words, one per message.
    #[derive(Clone, Copy)]
    pub struct U32x4(v128);

    impl U32x4 {
        #[inline(always)]
        pub fn splat(x: u32) -> U32x4 {
            U32x4(u32x4_splat(x))
        }

        #[inline(always)]
        pub fn from_lanes(l: [u32; 4]) -> U32x4 {
            U32x4(u32x4(l[0], l[1], l[2], l[3]))
        }

        #[inline(always)]
        pub fn to_lanes(self) -> [u32; 4] {
            [
                u32x4_extract_lane::<0>(self.0),
                u32x4_extract_lane::<1>(self.0),
                u32x4_extract_lane::<2>(self.0),
                u32x4_extract_lane::<3>(self.0),
            ]
        }

        #[inline(always)]
        pub fn wrapping_add(self, o: U32x4) -> U32x4 {
            U32x4(u32x4_add(self.0, o.0))
        }

        #[inline(always)]
        pub fn xor(self, o: U32x4) -> U32x4 {
            U32x4(v128_xor(self.0, o.0))
        }

        /// Bits of `self` where `mask` is set, of `other` elsewhere.
        #[inline(always)]
        pub fn select(self, other: U32x4, mask: U32x4) -> U32x4 {
            U32x4(v128_bitselect(self.0, other.0, mask.0))
        }

        #[inline(always)]
        pub fn shr<const N: u32>(self) -> U32x4 {
            U32x4(u32x4_shr(self.0, N))
        }

        /// wasm has no vector rotate: two shifts and an or.
        #[inline(always)]
        pub fn rotr<const N: u32>(self) -> U32x4 {
            U32x4(v128_or(u32x4_shr(self.0, N), i32x4_shl(self.0, 32 - N)))
        }

        /// The sixteen big-endian words of one 64-byte block per lane: word `j` of every block
        /// in the lanes of the `j`th vector (sixteen byte swaps and a 4×4 transpose per quarter).
        #[inline(always)]
        pub fn load_blocks(blocks: [&[u8; 64]; 4]) -> [U32x4; 16] {
            let mut out = [U32x4::splat(0); 16];
            for q in 0..4 {
                let [r0, r1, r2, r3] = blocks.map(|b| {
                    // SAFETY: `b` has 64 bytes, so the 16 at 16 * q are readable; wasm loads need
                    // no alignment.
                    let x = unsafe { v128_load(b.as_ptr().add(16 * q).cast()) };
                    i8x16_shuffle::<3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12>(x, x)
                });
                let t0 = i32x4_shuffle::<0, 4, 1, 5>(r0, r1);
                let t1 = i32x4_shuffle::<2, 6, 3, 7>(r0, r1);
                let t2 = i32x4_shuffle::<0, 4, 1, 5>(r2, r3);
                let t3 = i32x4_shuffle::<2, 6, 3, 7>(r2, r3);
                out[4 * q] = U32x4(i64x2_shuffle::<0, 2>(t0, t2));
                out[4 * q + 1] = U32x4(i64x2_shuffle::<1, 3>(t0, t2));
                out[4 * q + 2] = U32x4(i64x2_shuffle::<0, 2>(t1, t3));
                out[4 * q + 3] = U32x4(i64x2_shuffle::<1, 3>(t1, t3));
            }
            out
        }

        /// The inverse of [`U32x4::load_blocks`] for a digest: eight words per lane, written as
        /// each lane's 32 big-endian bytes.
        #[inline(always)]
        pub fn store_digests(words: &[U32x4; 8]) -> [[u8; 32]; 4] {
            let mut out = [[0u8; 32]; 4];
            for half in 0..2 {
                let [r0, r1, r2, r3] = [0, 1, 2, 3].map(|i| words[4 * half + i].0);
                let t0 = i32x4_shuffle::<0, 4, 1, 5>(r0, r1);
                let t1 = i32x4_shuffle::<2, 6, 3, 7>(r0, r1);
                let t2 = i32x4_shuffle::<0, 4, 1, 5>(r2, r3);
                let t3 = i32x4_shuffle::<2, 6, 3, 7>(r2, r3);
                let lanes = [
                    i64x2_shuffle::<0, 2>(t0, t2),
                    i64x2_shuffle::<1, 3>(t0, t2),
                    i64x2_shuffle::<0, 2>(t1, t3),
                    i64x2_shuffle::<1, 3>(t1, t3),
                ];
                for (digest, x) in out.iter_mut().zip(lanes) {
                    let x =
                        i8x16_shuffle::<3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12>(x, x);
                    // SAFETY: 16 writable bytes at 16 * half of a 32-byte array; no alignment
                    // needed.
                    unsafe { v128_store(digest.as_mut_ptr().add(16 * half).cast(), x) };
                }
            }
            out
        }
    }
}

#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
mod imp {
    /// Four independent u32 words, one per message.
    #[derive(Clone, Copy)]
    pub struct U32x4([u32; 4]);

    impl U32x4 {
        #[inline(always)]
        fn map2(self, o: U32x4, f: impl Fn(u32, u32) -> u32) -> U32x4 {
            U32x4([
                f(self.0[0], o.0[0]),
                f(self.0[1], o.0[1]),
                f(self.0[2], o.0[2]),
                f(self.0[3], o.0[3]),
            ])
        }

        #[inline(always)]
        pub fn splat(x: u32) -> U32x4 {
            U32x4([x; 4])
        }

        #[inline(always)]
        pub fn from_lanes(l: [u32; 4]) -> U32x4 {
            U32x4(l)
        }

        #[inline(always)]
        pub fn to_lanes(self) -> [u32; 4] {
            self.0
        }

        #[inline(always)]
        pub fn wrapping_add(self, o: U32x4) -> U32x4 {
            self.map2(o, u32::wrapping_add)
        }

        #[inline(always)]
        pub fn xor(self, o: U32x4) -> U32x4 {
            self.map2(o, |a, b| a ^ b)
        }

        /// Bits of `self` where `mask` is set, of `other` elsewhere.
        #[inline(always)]
        pub fn select(self, other: U32x4, mask: U32x4) -> U32x4 {
            U32x4([
                (self.0[0] & mask.0[0]) | (other.0[0] & !mask.0[0]),
                (self.0[1] & mask.0[1]) | (other.0[1] & !mask.0[1]),
                (self.0[2] & mask.0[2]) | (other.0[2] & !mask.0[2]),
                (self.0[3] & mask.0[3]) | (other.0[3] & !mask.0[3]),
            ])
        }

        #[inline(always)]
        pub fn shr<const N: u32>(self) -> U32x4 {
            U32x4(self.0.map(|x| x >> N))
        }

        #[inline(always)]
        pub fn rotr<const N: u32>(self) -> U32x4 {
            U32x4(self.0.map(|x| x.rotate_right(N)))
        }

        /// The sixteen big-endian words of one 64-byte block per lane: word `j` of every block
        /// in the lanes of the `j`th vector.
        #[inline(always)]
        pub fn load_blocks(blocks: [&[u8; 64]; 4]) -> [U32x4; 16] {
            core::array::from_fn(|j| {
                U32x4(blocks.map(|b| {
                    u32::from_be_bytes([b[4 * j], b[4 * j + 1], b[4 * j + 2], b[4 * j + 3]])
                }))
            })
        }

        /// The inverse of [`U32x4::load_blocks`] for a digest: eight words per lane, written as
        /// each lane's 32 big-endian bytes.
        #[inline(always)]
        pub fn store_digests(words: &[U32x4; 8]) -> [[u8; 32]; 4] {
            let mut out = [[0u8; 32]; 4];
            for (i, word) in words.iter().enumerate() {
                for (digest, x) in out.iter_mut().zip(word.0) {
                    digest[4 * i..4 * i + 4].copy_from_slice(&x.to_be_bytes());
                }
            }
            out
        }
    }
}

pub use imp::U32x4;

/// Whether [`U32x4`] is a SIMD128 vector in this build (the runner says which it timed).
pub const SIMD128: bool = cfg!(all(target_arch = "wasm32", target_feature = "simd128"));
