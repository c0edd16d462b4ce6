//! The engine benchmark as a plain program: built for `wasm32-wasip1` and run inside Node's
//! V8 by `run.mjs` (the same engine that runs inside Envoy), and natively for the ratio.
//!
//!   wasm-runner [--quick]                 every case; one JSON line per case on stdout
//!   wasm-runner --only CASE SIZE --iters N  runs one case N times, untimed (for callgrind)
//!   wasm-runner --write DIR               writes the bodies (and an 8 MiB one) as JSON files
//!   wasm-runner --typed-purpose           prints the typed research purpose as configuration
//!
//! CASE: memcpy, validate, lexer, finalite/denylist, finalite/realistic, finalite/drop-most,
//! finalite/realistic-id-kept, naive/realistic, scanner/realistic (or another policy),
//! finalite/typed-realistic (the realistic policy written as rules by resource type),
//! finalite/fhir-typed (the typed research purpose of the HL7 examples); SIZE: 1KiB, 64KiB,
//! 1MiB (the synthetic Bundle), fhir-64KiB, fhir-1MiB (HL7's examples). `lexer` (the
//! engine's lexer alone, every event read and nothing written) is counted by
//! `benches/count.sh`, not timed by default.
//!
//! The cases of one body are timed in interleaved rounds (every case once per round, in
//! turn), and each line gives every round's figure: a ratio of two cases is then taken
//! round by round, the two measured within the same fraction of a second, so that what the
//! machine does meanwhile weighs on both alike.

use std::hint::black_box;
use std::time::{Duration, Instant};

use finalite_test_support::bench::{
    self as common, bundle, fhir_bundle, fhir_typed_rules, naive, run_engine, scanner,
    typed_realistic_rules, EngineRules, Policy, FHIR_SIZES, FHIR_TYPED, POLICIES, SIZES,
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
    if name == "finalite/fhir-typed" {
        let rules = fhir_typed_rules();
        return Box::new(move |doc| run_engine(&rules, doc, &mut out));
    }
    let (kind, policy) = name.split_once('/').expect("KIND/POLICY");
    let policy = POLICIES
        .iter()
        .chain(&[(Policy::RealisticIdKept, "realistic-id-kept")])
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

/// How many runs of `run` on `doc` take about `round`, after warming it up.
fn runs_per_round(run: &mut dyn FnMut(&[u8]) -> usize, doc: &[u8], round: Duration) -> u32 {
    let start = Instant::now();
    let mut n = 0u32;
    while n < 3 || start.elapsed() < round / 2 {
        black_box(run(black_box(doc)));
        n += 1;
    }
    ((round.as_secs_f64() / (start.elapsed().as_secs_f64() / n as f64)) as u32).max(1)
}

/// Throughput (MB/s) of every case in each of `rounds` rounds of about `round` per case,
/// the cases taking turns within each round.
fn measure_interleaved(
    cases: &mut [(&str, Case)],
    doc: &[u8],
    rounds: usize,
    round: Duration,
) -> Vec<Vec<f64>> {
    let per_round: Vec<u32> = cases
        .iter_mut()
        .map(|(_, run)| runs_per_round(&mut **run, doc, round))
        .collect();
    let mut rates = vec![Vec::with_capacity(rounds); cases.len()];
    for _ in 0..rounds {
        for (i, (_, run)) in cases.iter_mut().enumerate() {
            let start = Instant::now();
            for _ in 0..per_round[i] {
                black_box(run(black_box(doc)));
            }
            let seconds = start.elapsed().as_secs_f64();
            rates[i].push(doc.len() as f64 * per_round[i] as f64 / seconds / 1e6);
        }
    }
    rates
}

/// Every body measured, by label, with its cases.
fn inputs() -> Vec<(String, Vec<u8>, Vec<&'static str>)> {
    let synthetic = [
        "memcpy",
        "validate",
        "finalite/denylist",
        "finalite/realistic",
        "finalite/drop-most",
        "naive/realistic",
        "scanner/realistic",
    ];
    let mut out: Vec<(String, Vec<u8>, Vec<&'static str>)> = SIZES
        .iter()
        .map(|&(size, label)| {
            let mut cases = synthetic.to_vec();
            if size >= 1 << 20 {
                // The pseudonyms' cost: the realistic policy with the ids kept.
                cases.push("finalite/realistic-id-kept");
            }
            (label.to_string(), bundle(size, SEED), cases)
        })
        .collect();
    for (size, label) in FHIR_SIZES {
        out.push((
            format!("fhir-{label}"),
            fhir_bundle(size),
            vec![
                "validate",
                "finalite/fhir-typed",
                "finalite/realistic",
                "naive/realistic",
                "scanner/realistic",
            ],
        ));
    }
    out
}

/// The body of `label` (as [`inputs`] names them).
fn input(label: &str) -> Vec<u8> {
    if let Some(size) = label.strip_prefix("fhir-") {
        let size = FHIR_SIZES
            .iter()
            .find(|(_, l)| *l == size)
            .expect("a size")
            .0;
        return fhir_bundle(size);
    }
    bundle(
        SIZES.iter().find(|(_, l)| *l == label).expect("a size").0,
        SEED,
    )
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
        for (size, label) in FHIR_SIZES {
            let path = dir.join(format!("fhir-{label}.json"));
            std::fs::write(&path, fhir_bundle(size)).expect("write a bundle");
        }
        return;
    }
    if args.iter().any(|a| a == "--typed-purpose") {
        println!("{}", FHIR_TYPED.to_json());
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--only") {
        let name = &args[i + 1];
        let iters: usize = args
            .iter()
            .position(|a| a == "--iters")
            .map(|j| args[j + 1].parse().expect("a count"))
            .unwrap_or(10);
        let doc = input(&args[i + 2]);
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
    for (label, doc, names) in inputs() {
        let mut cases: Vec<(&str, Case)> = names.iter().map(|name| (*name, case(name))).collect();
        let rates = measure_interleaved(&mut cases, &doc, rounds, round);
        for ((name, _), rates) in cases.iter().zip(rates) {
            let mut sorted = rates.clone();
            sorted.sort_by(f64::total_cmp);
            let rounds: Vec<String> = rates.iter().map(|r| format!("{r:.1}")).collect();
            println!(
                "{{\"case\":\"{name}\",\"size\":\"{label}\",\"bytes\":{},\"mbps\":{:.1},\"rounds\":[{}]}}",
                doc.len(),
                sorted[sorted.len() / 2],
                rounds.join(",")
            );
        }
    }
}
