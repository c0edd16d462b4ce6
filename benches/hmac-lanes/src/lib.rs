//! HMAC-SHA-256 of four values at once, one per SIMD128 lane, producing exactly the MAC that
//! finalite's pseudonyms are made of: under the pseudonymisation key, of the optional client
//! prefix (the client's length as a big-endian u32, then its bytes) followed by the value.
//!
//! A measurement, never part of finalite: the runner (`src/main.rs`) checks these MACs
//! against `hmac` + `sha2` on random inputs and times both inside Node's V8 and natively.

pub mod check;
pub mod lanes;
pub mod sha256x4;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use lanes::U32x4;
use sha256x4::{compress, H0};

/// The client prefix finalite feeds the MAC before a value when pseudonyms are per reuser:
/// length-prefixed, so no (client, value) pair can collide with another.
pub fn client_prefix(client: Option<&str>) -> Vec<u8> {
    match client {
        None => Vec::new(),
        Some(client) => {
            let mut prefix = (client.len() as u32).to_be_bytes().to_vec();
            prefix.extend_from_slice(client.as_bytes());
            prefix
        }
    }
}

/// The reference: the MAC as finalite computes it with `hmac` + `sha2`, keyed once and fed
/// the client prefix once, cloned for each value.
#[derive(Clone)]
pub struct ScalarMac {
    mac: Hmac<Sha256>,
}

impl ScalarMac {
    pub fn new(key: &[u8], client: Option<&str>) -> ScalarMac {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
        mac.update(&client_prefix(client));
        ScalarMac { mac }
    }

    #[inline]
    pub fn mac(&self, value: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(value);
        mac.finalize().into_bytes().into()
    }
}

/// Keyed BLAKE3 over the same prefix and value: not finalite's MAC (its output differs), timed
/// beside it as the case for another PRF. One compression for a message of up to 64 bytes,
/// seven rounds, and the key needs no block of its own.
#[derive(Clone)]
pub struct Blake3Prf {
    hasher: blake3::Hasher,
}

impl Blake3Prf {
    pub fn new(key: &[u8; 32], client: Option<&str>) -> Blake3Prf {
        let mut hasher = blake3::Hasher::new_keyed(key);
        hasher.update(&client_prefix(client));
        Blake3Prf { hasher }
    }

    #[inline]
    pub fn prf(&self, value: &[u8]) -> [u8; 32] {
        let mut hasher = self.hasher.clone();
        hasher.update(value);
        hasher.finalize().into()
    }
}

/// The same MAC four values at a time: the key's inner and outer states (after their padded
/// key block) and the client prefix, prepared once.
#[derive(Clone)]
pub struct LaneMac {
    inner: [u32; 8],
    outer: [u32; 8],
    prefix: Vec<u8>,
}

impl LaneMac {
    pub fn new(key: &[u8], client: Option<&str>) -> LaneMac {
        // RFC 2104: a key longer than the block is hashed first, then padded with zeros.
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let state_after = |pad: u8| -> [u32; 8] {
            let padded = block.map(|b| b ^ pad);
            let mut state = H0.map(U32x4::splat);
            compress(&mut state, &U32x4::load_blocks([&padded; 4]));
            state.map(|w| w.to_lanes()[0])
        };
        LaneMac {
            inner: state_after(0x36),
            outer: state_after(0x5c),
            prefix: client_prefix(client),
        }
    }

    /// The MACs of four values (of any lengths: a lane whose message has fewer blocks than
    /// another's keeps its state while the others' last blocks are compressed).
    pub fn mac4(&self, values: [&[u8]; 4]) -> [[u8; 32]; 4] {
        let prefix = &self.prefix[..];
        let totals = values.map(|v| prefix.len() + v.len());
        // The message, 0x80, zeros, then the bit length in the last 8 bytes of a block.
        let blocks = totals.map(|t| (t + 9).div_ceil(64));
        let most = blocks.into_iter().max().unwrap_or(0);
        let mut state = self.inner.map(U32x4::splat);
        let mut bufs = [[0u8; 64]; 4];
        for b in 0..most {
            for lane in 0..4 {
                if b < blocks[lane] {
                    fill_block(
                        prefix,
                        values[lane],
                        b,
                        b + 1 == blocks[lane],
                        &mut bufs[lane],
                    );
                }
            }
            let words = U32x4::load_blocks([&bufs[0], &bufs[1], &bufs[2], &bufs[3]]);
            if blocks.iter().all(|&n| b < n) {
                compress(&mut state, &words);
            } else {
                let before = state;
                compress(&mut state, &words);
                let done = U32x4::from_lanes(blocks.map(|n| if b < n { u32::MAX } else { 0 }));
                for (s, old) in state.iter_mut().zip(before) {
                    *s = s.select(old, done);
                }
            }
        }
        // The outer hash's message is the key block and the inner digest: one block whose
        // first eight words are the inner state as it stands, lane by lane.
        let mut words = [U32x4::splat(0); 16];
        words[..8].copy_from_slice(&state);
        words[8] = U32x4::splat(0x8000_0000);
        words[15] = U32x4::splat((64 + 32) * 8);
        let mut outer = self.outer.map(U32x4::splat);
        compress(&mut outer, &words);
        U32x4::store_digests(&outer)
    }
}

/// Writes block `b` of the padded inner message `prefix ‖ value` (after the key block) into
/// `buf`.
#[inline(always)]
fn fill_block(prefix: &[u8], value: &[u8], b: usize, last: bool, buf: &mut [u8; 64]) {
    let start = 64 * b;
    let total = prefix.len() + value.len();
    *buf = [0; 64];
    copy_part(prefix, 0, start, buf);
    copy_part(value, prefix.len(), start, buf);
    if (start..start + 64).contains(&total) {
        buf[total - start] = 0x80;
    }
    if last {
        buf[56..].copy_from_slice(&(((64 + total) as u64) * 8).to_be_bytes());
    }
}

/// Copies the bytes of `part` (at `offset` in the message) that fall in the block starting at
/// `start`.
#[inline(always)]
fn copy_part(part: &[u8], offset: usize, start: usize, buf: &mut [u8; 64]) {
    let from = start.max(offset);
    let to = (start + 64).min(offset + part.len());
    if from < to {
        buf[from - start..to - start].copy_from_slice(&part[from - offset..to - offset]);
    }
}
