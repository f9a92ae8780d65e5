//! A bounded mutation fuzzer for the stable toolchain: runs every decoder of
//! `pmxcfs_wire::fuzzing` over a seed corpus and over mutations of it for a
//! fixed time, and fails on the first panic (a decoder crash or a decoded
//! input that does not re-encode to itself). CI runs it; libFuzzer runs the
//! same targets for longer through `fuzz/`.
//!
//! fuzz_mutate [--seconds N] [--seed S] SEEDS_DIR [ARTIFACTS_DIR]
//!
//! SEEDS_DIR holds one folder per target (`fuzz/seeds/dcdb_message/...`);
//! every target also gets every other target's seeds. A failing input is
//! written to ARTIFACTS_DIR (default `fuzz/artifacts`).

use std::panic;
use std::path::PathBuf;
use std::time::Duration;

use pmxcfs_wire::fuzzing::{run, Target, TARGETS};
use pmxcfs_wire::mutation::{campaign, Rng};

fn main() {
    let mut seconds = 60u64;
    let mut seed = 0x5eed_u64;
    let mut dirs = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--seconds N")
            }
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).expect("--seed S"),
            _ => dirs.push(PathBuf::from(a)),
        }
    }
    let Some(seeds_dir) = dirs.first().cloned() else {
        eprintln!("usage: fuzz_mutate [--seconds N] [--seed S] SEEDS_DIR [ARTIFACTS_DIR]");
        std::process::exit(2);
    };
    let artifacts = dirs
        .get(1)
        .cloned()
        .unwrap_or_else(|| PathBuf::from("fuzz/artifacts"));

    let mut per_target: Vec<(Target, Vec<Vec<u8>>)> = Vec::new();
    let mut all = Vec::new();
    for &t in TARGETS {
        let mut seeds = Vec::new();
        if let Ok(entries) = std::fs::read_dir(seeds_dir.join(t.name())) {
            for e in entries {
                seeds.push(std::fs::read(e.unwrap().path()).unwrap());
            }
        }
        all.extend(seeds.iter().cloned());
        per_target.push((t, seeds));
    }
    if all.is_empty() {
        eprintln!("no seeds under {}", seeds_dir.display());
        std::process::exit(2);
    }

    // Panics are expected to be reported by us, not printed by the hook.
    panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng(seed | 1);
    let budget = Duration::from_secs(seconds) / TARGETS.len() as u32;
    let mut total = 0u64;
    for (target, own) in &per_target {
        let result = campaign(&mut rng, own, &all, budget, &|data| run(*target, data));
        match result {
            Ok(runs) => {
                println!(
                    "{:<16} {:>9} inputs, {} seeds, 0 panics",
                    target.name(),
                    runs,
                    own.len()
                );
                total += runs;
            }
            Err(input) => {
                std::fs::create_dir_all(&artifacts).unwrap();
                let path = artifacts.join(format!("crash-{}", target.name()));
                std::fs::write(&path, &input).unwrap();
                eprintln!(
                    "{}: panic on {} bytes, input saved to {}",
                    target.name(),
                    input.len(),
                    path.display()
                );
                std::process::exit(1);
            }
        }
    }
    println!(
        "fuzz_mutate: {total} inputs in {seconds} s over {} targets, 0 panics",
        TARGETS.len()
    );
}
