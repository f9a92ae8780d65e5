#!/usr/bin/env bash
# Builds pmxcfs and runs it in the foreground with the given flags
# (default: -f -l, local mode). Needs root, like the C daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
cargo build --release --locked -p pmxcfs
if [ $# -eq 0 ]; then set -- -f -l; fi

# pmxcfs, as C's, needs its node name to resolve to an address other than
# loopback (a PVE node's /etc/hosts has it). A fresh Debian machine maps its
# name to 127.0.1.1 only: then the daemon runs in a mount namespace of its
# own whose /etc/hosts also maps the name to 192.0.2.1 (TEST-NET-1, never
# routed); /etc/pve is mounted in that namespace.
name=$(uname -n)
name=${name%%.*}
if ! getent ahosts "$name" | awk '{ print $1 }' | grep -qvE '^(127\.|::1$|::ffff:127\.)'; then
    hosts=$PWD/target/run-hosts
    { echo "192.0.2.1 $name"; cat /etc/hosts; } > "$hosts"
    echo "run: '$name' resolves only to loopback; running pmxcfs with '$name' at 192.0.2.1" \
         "in a private mount namespace. See its files with: nsenter -t \$(pidof pmxcfs) -m ls /etc/pve" >&2
    exec unshare --mount --propagation private \
        sh -c 'mount --bind "$1" /etc/hosts && shift && exec "$@"' sh "$hosts" \
        target/release/pmxcfs "$@"
fi
exec target/release/pmxcfs "$@"
