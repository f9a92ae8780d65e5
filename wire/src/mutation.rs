//! The mutation engine of the bounded, stable-toolchain fuzz runs: a
//! deterministic RNG, byte-level mutations aimed at length fields, and a
//! time-boxed campaign over one target. The examples that drive it (this
//! crate's decoders, and the knet capture decoder in `pmxcfs-compat`) only
//! read seeds and write crashing inputs.

use std::panic::{self, AssertUnwindSafe};
use std::time::{Duration, Instant};

/// xorshift64*: deterministic for a given seed, so a failure can be re-run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
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

pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, corpus: &[Vec<u8>]) {
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

/// Runs `target` over every seed, then over mutations of them until
/// `budget` is spent. Returns the number of inputs tried, or the first input
/// that made the target panic.
pub fn campaign(
    rng: &mut Rng,
    own: &[Vec<u8>],
    all: &[Vec<u8>],
    budget: Duration,
    target: &dyn Fn(&[u8]),
) -> Result<u64, Vec<u8>> {
    let start = Instant::now();
    let mut runs = 0u64;
    let check = |input: &[u8]| -> Result<(), Vec<u8>> {
        match panic::catch_unwind(AssertUnwindSafe(|| target(input))) {
            Ok(()) => Ok(()),
            Err(_) => Err(input.to_vec()),
        }
    };
    for s in own.iter().chain(all.iter()) {
        check(s)?;
        runs += 1;
    }
    if all.is_empty() && own.is_empty() {
        return Ok(runs);
    }
    let corpus: Vec<Vec<u8>> = own.iter().chain(all.iter()).cloned().collect();
    while start.elapsed() < budget {
        // Prefer the target's own seeds: they pass the first checks.
        let base = if !own.is_empty() && (rng.below(4) != 0 || all.is_empty()) {
            &own[rng.below(own.len())]
        } else {
            &all[rng.below(all.len())]
        };
        let mut input = base.clone();
        mutate(rng, &mut input, &corpus);
        check(&input)?;
        runs += 1;
    }
    Ok(runs)
}
