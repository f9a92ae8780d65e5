#!/usr/bin/env bash
# Runs each cargo-fuzz (libFuzzer) target briefly, on a scratch copy of the
# seed corpus. libFuzzer needs a nightly toolchain; where there is none, this
# says so and leaves the fuzzing to fuzz_mutate (stable), which runs the same
# targets.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${LIBFUZZER_SECONDS:-10}

if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
    echo "fuzz-libfuzzer: no nightly toolchain here; skipping the libFuzzer pass"
    exit 0
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-libfuzzer: installing cargo-fuzz"
    if ! cargo install --locked cargo-fuzz >target/cargo-fuzz-install.log 2>&1; then
        echo "fuzz-libfuzzer: cargo-fuzz could not be installed (see target/cargo-fuzz-install.log); skipping"
        exit 0
    fi
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in $(cargo fuzz list --fuzz-dir fuzz); do
    mkdir -p "$scratch/$target"
    cp fuzz/seeds/"$target"/* "$scratch/$target/" 2>/dev/null || true
    echo "fuzz-libfuzzer: $target (${SECONDS_PER_TARGET}s)"
    cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$scratch/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=0 >"$scratch/$target.log" 2>&1 || {
        tail -n 40 "$scratch/$target.log"
        echo "fuzz-libfuzzer: $target failed; the crashing input is under fuzz/artifacts/$target" >&2
        exit 1
    }
    grep -E '^Done [0-9]+ runs' "$scratch/$target.log" || true
done
