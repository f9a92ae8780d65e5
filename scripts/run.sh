#!/usr/bin/env bash
# Builds pmxcfs and runs it in the foreground with the given flags
# (default: -f -l, local mode). Needs root, like the C daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --locked -p pmxcfs
if [ $# -eq 0 ]; then set -- -f -l; fi
exec target/release/pmxcfs "$@"
