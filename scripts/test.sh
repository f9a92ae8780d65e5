#!/usr/bin/env bash
# The whole test suite: unit, property, golden and integration tests, the
# pmxcfs-replay contract over the recorded captures, and a bounded fuzz run.
# Integration tests that need root, /dev/fuse or namespaces run when this is
# run as root (as CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

# Seconds for the mutation fuzz run (every decoder, stable toolchain).
FUZZ_SECONDS=${FUZZ_SECONDS:-60}

echo "== build"
cargo build --workspace --all-targets --locked --features pmxcfs-compat/probe

echo "== Debian packages (dpkg-buildpackage, lintian); tests/package.rs installs them"
scripts/build-deb.sh
echo "== Debian 12 and 13 roots for the package tests (mmdebstrap)"
scripts/debian-roots.sh

echo "== tests"
cargo test --workspace --locked --features pmxcfs-compat/probe 2>&1 | tee target/test-output.txt
read -r passed failed < <(awk '/^test result:/ { for (i = 1; i < NF; i++) {
    if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
    END { print p + 0, f + 0 }' target/test-output.txt)

echo "== pmxcfs-replay needs none of the daemon's system libraries"
if cargo tree --locked -p pmxcfs-compat -e normal | grep -E "rust-corosync|fuser|tokio"; then
    echo "pmxcfs-replay depends on a crate of the daemon's edges (above)" >&2
    exit 1
fi

echo "== pmxcfs-replay decode over the recorded captures"
cargo run -q --locked -p pmxcfs-compat --bin pmxcfs-replay -- decode captures/*/node*.pcap > target/replay-decode.txt
tail -n 1 target/replay-decode.txt

echo "== pmxcfs-replay check: our core against every recorded C node"
cargo run -q --locked -p pmxcfs-compat --bin pmxcfs-replay -- check captures/*/ > target/replay-check.txt || {
    cat target/replay-check.txt
    exit 1
}
tail -n 1 target/replay-check.txt

echo "== pmxcfs-replay wire: packet captures of C clusters against the nodes' own recordings"
for capture in captures/*/wire.pcap captures/*/wire.pcapng; do
    [ -e "$capture" ] || continue
    dir=$(dirname "$capture")
    cargo run -q --release --locked -p pmxcfs-compat --bin pmxcfs-replay -- \
        wire --authkey "$dir/authkey" --expect "$dir" "$capture" > target/replay-wire.txt || {
        cat target/replay-wire.txt
        exit 1
    }
    echo "$dir: $(tail -n 1 target/replay-wire.txt)"
done

echo "== fuzz: every decoder over the seed corpus and its mutations (${FUZZ_SECONDS}s)"
cargo run -q --release --locked -p pmxcfs-wire --example fuzz_mutate -- \
    --seconds "$FUZZ_SECONDS" fuzz/seeds target/fuzz-artifacts
echo "== fuzz: every layer of the knet capture decoder ($((FUZZ_SECONDS / 2))s)"
cargo run -q --release --locked -p pmxcfs-compat --example fuzz_knet -- \
    --seconds "$((FUZZ_SECONDS / 2))" target/fuzz-artifacts
scripts/fuzz-libfuzzer.sh

echo "== all checks passed"
echo "tests: ${passed} passed, ${failed} failed"
