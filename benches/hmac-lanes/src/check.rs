//! The lanes checked against `hmac` + `sha2`: random keys (some longer than a block, which
//! RFC 2104 hashes), clients or none, and four values of random lengths per call (so lanes
//! with one, two or more blocks run side by side). The runner calls it before it times, so
//! the wasm build's SIMD128 code is checked where it runs.

use crate::{LaneMac, ScalarMac};

/// A small deterministic generator (xorshift64*), so a failure can be replayed by its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next_u64() as u8).collect()
    }
}

/// A random client name: ASCII or not, empty to longer than a block.
fn client(rng: &mut Rng) -> Option<String> {
    const CHARS: &[char] = &['a', 'Z', '0', '-', '.', 'é', 'ł', '中', '😀'];
    match rng.below(4) {
        0 => None,
        _ => {
            let len = rng.below(80);
            Some((0..len).map(|_| CHARS[rng.below(CHARS.len())]).collect())
        }
    }
}

/// Compares `cases` random calls of [`LaneMac::mac4`] with [`ScalarMac::mac`]; the first
/// mismatch is the error.
pub fn compare(seed: u64, cases: usize) -> Result<(), String> {
    let mut rng = Rng::new(seed);
    for case in 0..cases {
        let key = {
            let len = [rng.below(65), 64, 65 + rng.below(100), 32][rng.below(4)];
            rng.bytes(len)
        };
        let client = client(&mut rng);
        let values: Vec<Vec<u8>> = (0..4)
            .map(|_| {
                let len = [rng.below(200), rng.below(64), 55 - 16 + rng.below(20)][rng.below(3)];
                rng.bytes(len)
            })
            .collect();
        let scalar = ScalarMac::new(&key, client.as_deref());
        let lanes = LaneMac::new(&key, client.as_deref());
        let got = lanes.mac4([&values[0], &values[1], &values[2], &values[3]]);
        for (lane, value) in values.iter().enumerate() {
            if got[lane] != scalar.mac(value) {
                return Err(format!(
                    "seed {seed}, case {case}, lane {lane}: key of {} bytes, client {client:?}, \
                     value of {} bytes: the lanes' MAC differs from hmac + sha2",
                    key.len(),
                    value.len()
                ));
            }
        }
    }
    Ok(())
}

/// Every inner message length from 0 to 200 bytes (each padding boundary) in each lane
/// position, beside lanes of other lengths.
pub fn every_length(key: &[u8], client: Option<&str>) -> Result<(), String> {
    let scalar = ScalarMac::new(key, client);
    let lanes = LaneMac::new(key, client);
    let long: Vec<u8> = (0..=200u8).collect();
    for len in 0..=200 {
        for lane in 0..4 {
            let mut values: [&[u8]; 4] = [&long[..3], &long[..60], &long[..130], &long[..7]];
            values[lane] = &long[..len];
            let got = lanes.mac4(values);
            for (i, value) in values.iter().enumerate() {
                if got[i] != scalar.mac(value) {
                    return Err(format!(
                        "value of {len} bytes in lane {lane}, client {client:?}: lane {i} differs"
                    ));
                }
            }
        }
    }
    Ok(())
}
