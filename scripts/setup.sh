#!/usr/bin/env bash
# Installs what building and testing pmxcfs needs on a Debian 12 machine.
# Idempotent; needs root (or sudo) for the system packages.
set -euo pipefail

# System packages: a C toolchain for the -sys crates; libqb, librrd (loaded
# at run time) and
# corosync's client libraries (what PVE ships; the daemon links them); and
# what the integration tests drive (corosync, FUSE, network namespaces,
# SQLite's shell, rrdcached and rrdtool, tcpdump for the knet capture tests,
# tshark for the Wireshark dissector's tests).
# The Debian packages are built with dpkg-buildpackage/debhelper, checked
# with lintian, their units with systemd-analyze; the package links the
# system SQLite; mmdebstrap makes the Debian 12 and 13 roots the package
# tests install into.
PACKAGES=(build-essential pkg-config libqb-dev librrd8 corosync libcpg-dev libcfg-dev libcmap-dev
          libquorum-dev libvotequorum-dev libsqlite3-dev rrdcached rrdtool fuse3 iproute2 sqlite3
          procps tcpdump tshark dpkg-dev debhelper lintian systemd apt man-db mmdebstrap)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null 2>&1; then
    for env in "$HOME/.cargo/env"; do [ -f "$env" ] && . "$env"; done
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup: cargo not found. Install a Rust toolchain (1.89 or newer, e.g. with rustup) and re-run." >&2
    exit 1
fi
