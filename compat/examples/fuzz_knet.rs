//! Bounded mutation fuzzing of every layer of the knet capture decoder on
//! the stable toolchain (CI runs it; `fuzz/` has the same targets for
//! libFuzzer).
//!
//! fuzz_knet [--seconds N] [--seed S] [ARTIFACTS_DIR]
//! fuzz_knet --write-seeds DIR    (the libFuzzer corpus, `fuzz/seeds/knet_*`)

use std::path::PathBuf;
use std::time::Duration;

use pmxcfs_compat::knet::fuzzing::{run, seeds, TARGETS};
use pmxcfs_wire::mutation::{campaign, Rng};

fn main() {
    let mut seconds = 30u64;
    let mut seed = 0x6b6e6574_u64;
    let mut artifacts = PathBuf::from("fuzz/artifacts");
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .expect("--seconds N")
            }
            "--write-seeds" => {
                let dir = PathBuf::from(args.next().expect("--write-seeds DIR"));
                for &t in TARGETS {
                    let d = dir.join(t.name());
                    std::fs::create_dir_all(&d).unwrap();
                    for (i, s) in seeds(t).iter().enumerate() {
                        std::fs::write(d.join(format!("forge-{i}")), s).unwrap();
                    }
                }
                return;
            }
            "--seed" => seed = args.next().and_then(|v| v.parse().ok()).expect("--seed S"),
            other => artifacts = PathBuf::from(other),
        }
    }
    std::panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng(seed | 1);
    let all: Vec<Vec<u8>> = TARGETS.iter().flat_map(|&t| seeds(t)).collect();
    let budget = Duration::from_secs(seconds) / TARGETS.len() as u32;
    let mut total = 0;
    for &target in TARGETS {
        let own = seeds(target);
        match campaign(&mut rng, &own, &all, budget, &|data| run(target, data)) {
            Ok(runs) => {
                println!(
                    "{:<22} {:>9} inputs, {} seeds, 0 panics",
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
        "fuzz_knet: {total} inputs in {seconds} s over {} targets, 0 panics",
        TARGETS.len()
    );
}
