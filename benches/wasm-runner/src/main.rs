//! The engine benchmark as a plain program: built for `wasm32-wasip1` and run inside Node's
//! V8 by `run.mjs` (the same engine that runs inside Envoy), and natively for the ratio.
//!
//!   wasm-runner [--quick]                 every case; one JSON line per case on stdout
//!   wasm-runner --only CASE SIZE --iters N  runs one case N times, untimed (for callgrind)
//!   wasm-runner --write DIR               writes the bundles (and an 8 MiB one) as JSON files
//!
//! CASE: memcpy, validate, lexer, finalite/denylist, finalite/realistic, finalite/drop-most,
//! naive/realistic, scanner/realistic (or another policy), finalite/typed-realistic (the
//! realistic policy written as rules by resource type); SIZE: 1KiB, 64KiB, 1MiB. `lexer` (the engine's lexer alone, every event
//! read and nothing written) is counted by `benches/count.sh`, not timed by default.

use std::hint::black_box;
use std::time::{Duration, Instant};

use finalite_test_support::bench::{
    self as common, bundle, naive, run_engine, scanner, typed_realistic_rules, EngineRules, Policy,
    POLICIES, SIZES,
};

const SEED: u64 = 7;

/// One benchmarked case: filters (or copies) a document, returning the bytes written.
type Case = Box<dyn FnMut(&[u8]) -> usize>;

fn case(name: &str) -> Case {
    let mut out = Vec::with_capacity(2 << 20);
    if name == "memcpy" {
        return Box::new(move |doc| {
            out.clear();
            out.extend_from_slice(doc);
            out.len()
        });
    }
    if name == "validate" {
        return Box::new(|doc| {
            serde_json::from_slice::<serde::de::IgnoredAny>(doc).expect("valid");
            0
        });
    }
    if name == "lexer" {
        // The lexer alone (every event read, nothing written): the engine's floor.
        return Box::new(|doc| {
            let mut lexer = finalite::json::lexer::Lexer::new(64);
            let mut events = 0;
            for chunk in doc.chunks(common::CHUNK) {
                let mut pos = 0;
                while lexer.next(chunk, &mut pos).expect("valid").is_some() {
                    events += 1;
                }
                lexer.end_chunk(chunk.len());
            }
            lexer.finish().expect("valid");
            events
        });
    }
    if name == "finalite/typed-realistic" {
        let rules = typed_realistic_rules();
        return Box::new(move |doc| run_engine(&rules, doc, &mut out));
    }
    let (kind, policy) = name.split_once('/').expect("KIND/POLICY");
    let policy = POLICIES
        .iter()
        .find(|(_, n)| *n == policy)
        .map(|(p, _)| *p)
        .unwrap_or(Policy::Realistic);
    match kind {
        "finalite" => {
            let rules = policy.rules();
            Box::new(move |doc| run_engine(&rules, doc, &mut out))
        }
        "scanner" => {
            let rules = policy.scanner();
            Box::new(move |doc| scanner::filter(doc, &rules).expect("complete").len())
        }
        _ => {
            let rules = policy.naive();
            Box::new(move |doc| naive::filter(doc, &rules).expect("valid").len())
        }
    }
}

/// Median throughput (MB/s) over `rounds` rounds of about `round` each.
fn measure(run: &mut dyn FnMut(&[u8]) -> usize, doc: &[u8], rounds: usize, round: Duration) -> f64 {
    // Warm up, and size a round.
    let start = Instant::now();
    let mut n = 0u32;
    while n < 3 || start.elapsed() < round / 2 {
        black_box(run(black_box(doc)));
        n += 1;
    }
    let per_round =
        ((round.as_secs_f64() / (start.elapsed().as_secs_f64() / n as f64)) as u32).max(1);
    let mut rates: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_round {
                black_box(run(black_box(doc)));
            }
            let seconds = start.elapsed().as_secs_f64();
            doc.len() as f64 * per_round as f64 / seconds / 1e6
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--write") {
        let dir = std::path::Path::new(&args[i + 1]);
        std::fs::create_dir_all(dir).expect("the directory");
        for (size, label) in SIZES.iter().copied().chain([(8 << 20, "8MiB")]) {
            let path = dir.join(format!("bundle-{label}.json"));
            std::fs::write(&path, bundle(size, SEED)).expect("write a bundle");
        }
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--only") {
        let name = &args[i + 1];
        let size = SIZES
            .iter()
            .find(|(_, l)| *l == args[i + 2])
            .expect("a size")
            .0;
        let iters: usize = args
            .iter()
            .position(|a| a == "--iters")
            .map(|j| args[j + 1].parse().expect("a count"))
            .unwrap_or(10);
        let doc = bundle(size, SEED);
        let mut run = case(name);
        let mut total = 0;
        for _ in 0..iters {
            total += run(black_box(&doc));
        }
        println!("{name} {} x{iters}: {total} bytes out", doc.len());
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let (rounds, round) = if quick {
        (5, Duration::from_millis(60))
    } else {
        (9, Duration::from_millis(150))
    };
    let cases = [
        "memcpy",
        "validate",
        "finalite/denylist",
        "finalite/realistic",
        "finalite/drop-most",
        "naive/realistic",
        "scanner/realistic",
    ];
    for (size, label) in SIZES {
        let doc = bundle(size, SEED);
        for name in cases {
            let mut run = case(name);
            let mbps = measure(&mut *run, &doc, rounds, round);
            println!(
                "{{\"case\":\"{name}\",\"size\":\"{label}\",\"bytes\":{},\"mbps\":{mbps:.1}}}",
                doc.len()
            );
        }
    }
}
