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
use std::time::{Duration, Instant};

use pmxcfs_wire::fuzzing::{run, Target, TARGETS};

/// xorshift64*: deterministic for a given seed, so a failure can be re-run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Values that sit on the length checks of the decoders.
const INTERESTING: &[u32] = &[
    0,
    1,
    7,
    8,
    16,
    20,
    24,
    32,
    33,
    40,
    41,
    48,
    255,
    256,
    4096,
    131072,
    0x7fff_ffff,
    u32::MAX,
];

fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
    for _ in 0..1 + rng.below(4) {
        match rng.below(9) {
            0 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] ^= 1 << rng.below(8);
            }
            1 if !input.is_empty() => {
                let i = rng.below(input.len());
                input[i] = rng.next() as u8;
            }
            2 => {
                let n = rng.below(input.len() + 1);
                input.truncate(n);
            }
            3 => {
                let at = rng.below(input.len() + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                input.splice(at..at, bytes);
            }
            4 if !input.is_empty() => {
                let at = rng.below(input.len());
                let n = 1 + rng.below(16.min(input.len() - at));
                input.drain(at..at + n);
            }
            5 if input.len() >= 4 => {
                // Overwrite an aligned u32 (most length fields are u32).
                let at = rng.below(input.len() / 4) * 4;
                let v = INTERESTING[rng.below(INTERESTING.len())];
                let v = match rng.below(3) {
                    0 => v,
                    1 => v.wrapping_add(1),
                    _ => v.wrapping_sub(1),
                };
                input[at..at + 4].copy_from_slice(&v.to_le_bytes());
            }
            6 if input.len() >= 2 => {
                let at = rng.below(input.len() - 1);
                input[at] = 0;
            }
            7 if !corpus.is_empty() => {
                // Splice a piece of another seed.
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let from = rng.below(other.len());
                    let n = 1 + rng.below(other.len() - from);
                    let at = rng.below(input.len() + 1);
                    input.splice(at..at, other[from..from + n].iter().copied());
                }
            }
            _ => {
                if !input.is_empty() {
                    let i = rng.below(input.len());
                    input[i] = input[i].wrapping_add(1);
                }
            }
        }
    }
}

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
        let start = Instant::now();
        let mut runs = 0u64;
        let corpus: Vec<&Vec<u8>> = own.iter().chain(all.iter()).collect();
        let check = |input: &[u8], runs: u64| {
            let data = input.to_vec();
            if panic::catch_unwind(|| run(*target, &data)).is_err() {
                std::fs::create_dir_all(&artifacts).unwrap();
                let path = artifacts.join(format!("crash-{}-{}", target.name(), runs));
                std::fs::write(&path, input).unwrap();
                eprintln!(
                    "{}: panic on {} bytes, input saved to {}",
                    target.name(),
                    input.len(),
                    path.display()
                );
                std::process::exit(1);
            }
        };
        for s in &corpus {
            check(s, runs);
            runs += 1;
        }
        let owned: Vec<Vec<u8>> = corpus.iter().map(|v| (*v).clone()).collect();
        while start.elapsed() < budget {
            // Prefer the target's own seeds: they pass the first checks.
            let base = if !own.is_empty() && rng.below(4) != 0 {
                &own[rng.below(own.len())]
            } else {
                &all[rng.below(all.len())]
            };
            let mut input = base.clone();
            mutate(&mut rng, &mut input, &owned);
            check(&input, runs);
            runs += 1;
        }
        println!(
            "{:<16} {:>9} inputs, {} seeds, 0 panics",
            target.name(),
            runs,
            own.len()
        );
        total += runs;
    }
    println!(
        "fuzz_mutate: {total} inputs in {seconds} s over {} targets, 0 panics",
        TARGETS.len()
    );
}
