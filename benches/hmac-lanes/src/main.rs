//! Times finalite's pseudonym MAC one value at a time (`hmac` + `sha2`, as the filter makes a
//! pseudonym) against four values at a time in lanes, on FHIR-like resource ids, after
//! checking that both give the same bytes. Built for wasm32-wasip1 (run inside Node's V8 by
//! `run.mjs`) and natively.
//!
//!   hmac-lanes [--rounds N] [--ms N] [--values N] [--check N]
//!   hmac-lanes --only scalar|lanes|blake3 --set K --passes P     (for count.sh: that work only)

use std::hint::black_box;
use std::process::ExitCode;
use std::time::Instant;

use finalite_bench_hmac_lanes::check::{compare, every_length, Rng};
use finalite_bench_hmac_lanes::lanes::SIMD128;
use finalite_bench_hmac_lanes::{client_prefix, Blake3Prf, LaneMac, ScalarMac};

/// The engine benchmark's pseudonymisation key and client.
const KEY: &[u8; 32] = b"bench-key-0123456789abcdefghijkl";
const CLIENT: &str = "bench-client";

/// The characters of a FHIR id (`[A-Za-z0-9\-\.]{1,64}`).
const ID_CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.";

struct Options {
    rounds: usize,
    ms: f64,
    values: usize,
    check: usize,
    /// `--only`: the side to run alone (no check, no timing), for instruction counts.
    only: Option<String>,
    set: usize,
    passes: usize,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        rounds: 11,
        ms: 40.0,
        values: 4096,
        check: 3000,
        only: None,
        set: 0,
        passes: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        let number = || value.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--rounds" => o.rounds = number()?.max(1),
            "--ms" => o.ms = number()? as f64,
            "--values" => o.values = number()?.max(4) / 4 * 4,
            "--check" => o.check = number()?,
            "--only" => o.only = Some(value.clone()),
            "--set" => o.set = number()?,
            "--passes" => o.passes = number()?,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

/// One kind of pseudonymised value.
struct Set {
    name: &'static str,
    client: Option<&'static str>,
    values: Vec<Vec<u8>>,
}

fn hex(rng: &mut Rng, digits: usize) -> String {
    (0..digits)
        .map(|_| char::from(b"0123456789abcdef"[rng.below(16)]))
        .collect()
}

fn sets(n: usize) -> Vec<Set> {
    let mut rng = Rng::new(27);
    let mut make = |f: &mut dyn FnMut(&mut Rng) -> String| -> Vec<Vec<u8>> {
        (0..n).map(|_| f(&mut rng).into_bytes()).collect()
    };
    vec![
        Set {
            name: "pat-xxxxxxxx (12 B, the engine benchmark's ids), client",
            client: Some(CLIENT),
            values: make(&mut |r| format!("pat-{}", hex(r, 8))),
        },
        Set {
            name: "UUIDs (36 B), client",
            client: Some(CLIENT),
            values: make(&mut |r| {
                format!(
                    "{}-{}-{}-{}-{}",
                    hex(r, 8),
                    hex(r, 4),
                    hex(r, 4),
                    hex(r, 4),
                    hex(r, 12)
                )
            }),
        },
        Set {
            name: "FHIR ids of 10-64 B (uniform), client",
            client: Some(CLIENT),
            values: make(&mut |r| {
                let len = 10 + r.below(55);
                (0..len)
                    .map(|_| char::from(ID_CHARS[r.below(ID_CHARS.len())]))
                    .collect()
            }),
        },
        Set {
            name: "FHIR ids of 10-64 B (uniform), no client",
            client: None,
            values: make(&mut |r| {
                let len = 10 + r.below(55);
                (0..len)
                    .map(|_| char::from(ID_CHARS[r.below(ID_CHARS.len())]))
                    .collect()
            }),
        },
    ]
}

/// Nanoseconds per value, one value at a time.
fn time_each(values: &[Vec<u8>], reps: usize, prf: impl Fn(&[u8]) -> [u8; 32]) -> f64 {
    let start = Instant::now();
    let mut sink = 0u8;
    for _ in 0..reps {
        for v in values {
            sink ^= prf(black_box(v))[0];
        }
    }
    black_box(sink);
    start.elapsed().as_nanos() as f64 / (reps * values.len()) as f64
}

/// Nanoseconds per value, finalite's MAC one value at a time.
fn time_scalar(mac: &ScalarMac, values: &[Vec<u8>], reps: usize) -> f64 {
    time_each(values, reps, |v| mac.mac(v))
}

/// Nanoseconds per value, keyed BLAKE3 one value at a time.
fn time_blake3(prf: &Blake3Prf, values: &[Vec<u8>], reps: usize) -> f64 {
    time_each(values, reps, |v| prf.prf(v))
}

/// Nanoseconds per value, four MACs at a time.
fn time_lanes(mac: &LaneMac, values: &[Vec<u8>], reps: usize) -> f64 {
    let start = Instant::now();
    let mut sink = 0u8;
    for _ in 0..reps {
        for v in values.chunks_exact(4) {
            let out = mac.mac4(black_box([&v[0][..], &v[1][..], &v[2][..], &v[3][..]]));
            sink ^= out[0][0] ^ out[1][0] ^ out[2][0] ^ out[3][0];
        }
    }
    black_box(sink);
    start.elapsed().as_nanos() as f64 / (reps * values.len()) as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> ExitCode {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("hmac-lanes: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(side) = &o.only {
        let Some(set) = sets(o.values).into_iter().nth(o.set) else {
            eprintln!("hmac-lanes: no set {}", o.set);
            return ExitCode::from(2);
        };
        let ns = match side.as_str() {
            "scalar" => time_scalar(&ScalarMac::new(KEY, set.client), &set.values, o.passes),
            "lanes" => time_lanes(&LaneMac::new(KEY, set.client), &set.values, o.passes),
            "blake3" => time_blake3(&Blake3Prf::new(KEY, set.client), &set.values, o.passes),
            _ => {
                eprintln!("hmac-lanes: --only takes scalar, lanes or blake3");
                return ExitCode::from(2);
            }
        };
        println!("{side}, {}: {ns:.0} ns/value", set.name);
        return ExitCode::SUCCESS;
    }
    println!(
        "hmac-lanes on {}: lanes as {}",
        std::env::consts::ARCH,
        if SIMD128 {
            "SIMD128 v128"
        } else {
            "portable [u32; 4] arrays"
        }
    );
    let checked = compare(27, o.check)
        .and_then(|()| every_length(KEY, Some(CLIENT)))
        .and_then(|()| every_length(KEY, None));
    if let Err(e) = checked {
        eprintln!("hmac-lanes: {e}");
        return ExitCode::FAILURE;
    }
    println!(
        "checked: {} random calls of four values and every length to 200 B in every lane \
         give the MACs of hmac + sha2",
        o.check
    );
    println!(
        "{} rounds of about {} ms per side, each timing the three in turn; medians",
        o.rounds, o.ms
    );
    println!();
    println!(
        "| values | two-block share | hmac + sha2, ns/value | 4 lanes, ns/value | \
         lanes ÷ scalar (median of rounds) | range of rounds | keyed BLAKE3, ns/value | \
         BLAKE3 ÷ scalar |"
    );
    println!("|---|---:|---:|---:|---:|---|---:|---:|");
    for set in sets(o.values) {
        let scalar = ScalarMac::new(KEY, set.client);
        let lanes = LaneMac::new(KEY, set.client);
        let blake3 = Blake3Prf::new(KEY, set.client);
        for v in set.values.chunks_exact(4) {
            let got = lanes.mac4([&v[0][..], &v[1][..], &v[2][..], &v[3][..]]);
            for (value, mac) in v.iter().zip(got) {
                if mac != scalar.mac(value) {
                    eprintln!("hmac-lanes: {}: MACs differ", set.name);
                    return ExitCode::FAILURE;
                }
            }
        }
        let prefix = client_prefix(set.client).len();
        let two_blocks = set
            .values
            .iter()
            .filter(|v| prefix + v.len() + 9 > 64)
            .count() as f64
            / set.values.len() as f64;
        // Calibrate: enough repetitions of the whole set for about `ms` per measurement.
        let once = time_scalar(&scalar, &set.values, 1) * set.values.len() as f64 / 1e6;
        let reps = ((o.ms / once.max(1e-3)).ceil() as usize).max(1);
        // Warm up both, so V8 has tiered them up to its optimising compiler before rounds.
        for _ in 0..3 {
            time_scalar(&scalar, &set.values, reps);
            time_lanes(&lanes, &set.values, reps);
            time_blake3(&blake3, &set.values, reps);
        }
        let (mut s_ns, mut l_ns, mut b_ns, mut ratios, mut b_ratios) =
            (vec![], vec![], vec![], vec![], vec![]);
        for round in 0..o.rounds {
            // Each side goes first, second and third in turn.
            let (mut s, mut l, mut b) = (0.0, 0.0, 0.0);
            for side in 0..3 {
                match (round + side) % 3 {
                    0 => s = time_scalar(&scalar, &set.values, reps),
                    1 => l = time_lanes(&lanes, &set.values, reps),
                    _ => b = time_blake3(&blake3, &set.values, reps),
                }
            }
            s_ns.push(s);
            l_ns.push(l);
            b_ns.push(b);
            ratios.push(l / s);
            b_ratios.push(b / s);
        }
        let (lo, hi) = ratios
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &r| (lo.min(r), hi.max(r)));
        println!(
            "| {} | {:.0}% | {:.0} | {:.0} | {:.3} | {:.3}-{:.3} | {:.0} | {:.3} |",
            set.name,
            two_blocks * 100.0,
            median(&mut s_ns),
            median(&mut l_ns),
            median(&mut ratios),
            lo,
            hi,
            median(&mut b_ns),
            median(&mut b_ratios)
        );
    }
    ExitCode::SUCCESS
}
