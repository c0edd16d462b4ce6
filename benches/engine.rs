//! The engine against its limits and its alternative, on FHIR-like Bundles of 1 KiB, 64 KiB
//! and 1 MiB:
//!
//! - `memcpy`: copying the same bytes (the ceiling);
//! - `validate`: `serde_json::from_slice::<IgnoredAny>`, validation alone, no output;
//! - `naive/POLICY`: parse to `serde_json::Value`, edit, serialise (the baseline to beat);
//! - `scanner/POLICY`: a hand-written byte scanner applying the same rules without
//!   validating anything (`finalite_test_support::scanner`): the cheap alternative's speed;
//! - `finalite/POLICY`: the streaming engine with full validation, in 64 KiB chunks;
//! - `finalite/typed-realistic`: the realistic policy written as rules by resource type;
//! - `finalite/realistic-id-kept` (1 MiB): the realistic policy with the ids kept, not
//!   pseudonymised (what the pseudonyms cost);
//! - on HL7's R4 examples as a pretty-printed searchset (`engine/fhir-64KiB`,
//!   `engine/fhir-1MiB`): `validate`, `finalite/fhir-typed` (a research purpose by resource
//!   type), and the realistic policy by finalite, the naive filter and the scanner.
//!
//! criterion measures each case apart, so its ratios are ratios of medians taken at
//! different moments; `make bench`'s targets take the engine's paired ratios from the
//! wasm-runner, which interleaves the cases of a body in rounds (benches/bench.py).
//!
//! `cargo bench --bench engine` (or `make bench`); after criterion's own report, a table of
//! medians with the ratios to memcpy and to the naive filter is printed, and written as
//! Markdown to `$ENGINE_BENCH_SUMMARY` when set.

use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};

use finalite_test_support::bench::{
    bundle, fhir_bundle, fhir_typed_rules, naive, run_engine, scanner, typed_realistic_rules,
    validate_and_pass, EngineRules, Policy, FHIR_SIZES, POLICIES, SIZES,
};

const SEED: u64 = 7;

fn benches(c: &mut Criterion) {
    for (size, label) in SIZES {
        let doc = bundle(size, SEED);
        let mut group = c.benchmark_group(format!("engine/{label}"));
        group.throughput(Throughput::Bytes(doc.len() as u64));
        if size >= 1 << 20 {
            group.sample_size(20);
        }
        let mut out = Vec::with_capacity(doc.len() + 1024);
        group.bench_function("memcpy", |b| {
            b.iter(|| {
                out.clear();
                out.extend_from_slice(black_box(&doc));
                black_box(out.len())
            })
        });
        group.bench_function("validate", |b| {
            b.iter(|| {
                serde_json::from_slice::<serde::de::IgnoredAny>(black_box(&doc)).expect("valid")
            })
        });
        // The realistic policy written as rules by resource type: what typed rules cost.
        let typed = typed_realistic_rules();
        group.bench_function("finalite/typed-realistic", |b| {
            b.iter(|| run_engine(&typed, black_box(&doc), &mut out))
        });
        if size >= 1 << 20 {
            // The pseudonyms' cost: the realistic policy with the ids kept.
            let rules = Policy::RealisticIdKept.rules();
            group.bench_function(BenchmarkId::new("finalite", "realistic-id-kept"), |b| {
                b.iter(|| run_engine(&rules, black_box(&doc), &mut out))
            });
        }
        for (policy, name) in POLICIES {
            let rules = policy.rules();
            group.bench_function(BenchmarkId::new("finalite", name), |b| {
                b.iter(|| run_engine(&rules, black_box(&doc), &mut out))
            });
            let naive_rules = policy.naive();
            group.bench_function(BenchmarkId::new("naive", name), |b| {
                b.iter(|| {
                    naive::filter(black_box(&doc), &naive_rules)
                        .expect("valid")
                        .len()
                })
            });
            let scan_rules = policy.scanner();
            group.bench_function(BenchmarkId::new("scanner", name), |b| {
                b.iter(|| {
                    scanner::filter(black_box(&doc), &scan_rules)
                        .expect("complete")
                        .len()
                })
            });
        }
        group.finish();
    }
    // HL7's examples, pretty-printed: the typed research purpose and the realistic policy.
    for (size, label) in FHIR_SIZES {
        let doc = fhir_bundle(size);
        let mut group = c.benchmark_group(format!("engine/fhir-{label}"));
        group.throughput(Throughput::Bytes(doc.len() as u64));
        if size >= 1 << 20 {
            group.sample_size(20);
        }
        let mut out = Vec::with_capacity(doc.len() + 1024);
        group.bench_function("validate", |b| {
            b.iter(|| validate_and_pass(black_box(&doc)).expect("valid").len())
        });
        let typed = fhir_typed_rules();
        group.bench_function(BenchmarkId::new("finalite", "fhir-typed"), |b| {
            b.iter(|| run_engine(&typed, black_box(&doc), &mut out))
        });
        let rules = Policy::Realistic.rules();
        group.bench_function(BenchmarkId::new("finalite", "realistic"), |b| {
            b.iter(|| run_engine(&rules, black_box(&doc), &mut out))
        });
        let naive_rules = Policy::Realistic.naive();
        group.bench_function(BenchmarkId::new("naive", "realistic"), |b| {
            b.iter(|| {
                naive::filter(black_box(&doc), &naive_rules)
                    .expect("valid")
                    .len()
            })
        });
        let scan_rules = Policy::Realistic.scanner();
        group.bench_function(BenchmarkId::new("scanner", "realistic"), |b| {
            b.iter(|| {
                scanner::filter(black_box(&doc), &scan_rules)
                    .expect("complete")
                    .len()
            })
        });
        group.finish();
    }
}

/// Where criterion wrote its estimates: `<target>/criterion`.
fn criterion_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("criterion");
    }
    // The bench runs as <target>/release/deps/engine-HASH.
    let exe = std::env::current_exe().expect("the executable's path");
    exe.ancestors()
        .nth(3)
        .map(|target| target.join("criterion"))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

/// Median time per iteration (ns) of one benchmark, from criterion's estimates.
fn median_ns(group: &str, id: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(group.replace('/', "_"))
        .join(id)
        .join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["median"]["point_estimate"].as_f64()
}

fn summary() -> String {
    let mut md = String::from(
        "| body | case | median | throughput | vs memcpy | speed-up vs naive | time vs scanner (no validation) |\n|---|---|---:|---:|---:|---:|---:|\n",
    );
    for (size, label) in SIZES {
        let len = bundle(size, SEED).len() as f64;
        let group = format!("engine/{label}");
        let Some(memcpy) = median_ns(&group, "memcpy") else {
            continue;
        };
        let mbps = |ns: f64| len / ns * 1e3; // bytes per ns → MB/s
        let mut row = |case: &str, ns: f64, naive: Option<f64>, scanner: Option<f64>| {
            md.push_str(&format!(
                "| {label} ({len} B) | {case} | {} | {:.0} MB/s | {:.1}× slower | {} | {} |\n",
                show_time(ns),
                mbps(ns),
                ns / memcpy,
                naive.map_or("".to_string(), |n| format!("{:.1}×", n / ns)),
                scanner.map_or("".to_string(), |s| format!("{:.2}×", ns / s)),
            ));
        };
        row("memcpy", memcpy, None, None);
        if let Some(ns) = median_ns(&group, "validate") {
            row("serde_json validate (IgnoredAny)", ns, None, None);
        }
        if let Some(ns) = median_ns(&group, "finalite/realistic-id-kept") {
            row("finalite realistic, ids kept", ns, None, None);
        }
        for (_, name) in POLICIES {
            let naive = median_ns(&group, &format!("naive/{name}"));
            let scanner = median_ns(&group, &format!("scanner/{name}"));
            if let Some(ns) = median_ns(&group, &format!("finalite/{name}")) {
                row(&format!("finalite {name}"), ns, naive, scanner);
            }
            if let Some(ns) = scanner {
                row(&format!("scanner (no validation) {name}"), ns, None, None);
            }
            if let Some(ns) = naive {
                row(&format!("naive serde_json {name}"), ns, None, None);
            }
        }
    }
    md.push_str(
        "\n| HL7 examples | case | median | throughput | ÷ validate (ratio of medians) |\n|---|---|---:|---:|---:|\n",
    );
    for (size, label) in FHIR_SIZES {
        let len = fhir_bundle(size).len() as f64;
        let group = format!("engine/fhir-{label}");
        let Some(validate) = median_ns(&group, "validate") else {
            continue;
        };
        for case in [
            "validate",
            "finalite/fhir-typed",
            "finalite/realistic",
            "naive/realistic",
            "scanner/realistic",
        ] {
            if let Some(ns) = median_ns(&group, case) {
                md.push_str(&format!(
                    "| fhir-{label} ({len} B) | {case} | {} | {:.0} MB/s | {:.2} |\n",
                    show_time(ns),
                    len / ns * 1e3,
                    validate / ns,
                ));
            }
        }
    }
    md
}

fn show_time(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() {
    let _ = Policy::Realistic; // every policy is measured, see `POLICIES`
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(800))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    benches(&mut c);
    c.final_summary();
    let md = summary();
    println!("\n{md}");
    if let Ok(path) = std::env::var("ENGINE_BENCH_SUMMARY") {
        std::fs::write(&path, &md).expect("write the summary");
    }
}
