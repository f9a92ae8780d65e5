#!/usr/bin/env bash
# Makes the Debian roots the package tests install into, with mmdebstrap
# from the Debian archive: bookworm (Proxmox VE 8's base) and trixie (PVE
# 9's), each with corosync, FUSE, SQLite and librrd (named librrd8 on
# bookworm, librrd8t64 on trixie, the 64-bit time_t rename), under
# target/debian-roots/<suite>. A root that exists is kept (delete it to
# make it anew). Needs root and the network to the archive.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/debian-roots
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$out"
# A Debian 12 machine verifies trixie with the keys of a recent
# debian-archive-keyring (12.1 and later); older images lack them.
if [ ! -e /usr/share/keyrings/debian-archive-trixie-automatic.gpg ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q debian-archive-keyring
fi
for suite in bookworm trixie; do
    if [ -e "$out/$suite/var/lib/dpkg/status" ]; then
        echo "debian-roots: $suite: kept"
        continue
    fi
    case $suite in
        bookworm) rrd=librrd8 ;;
        *) rrd=librrd8t64 ;;
    esac
    rm -rf "$out/$suite.tmp"
    echo "debian-roots: $suite: mmdebstrap (corosync, fuse3, $rrd)"
    mmdebstrap --variant=apt --quiet \
        --include=corosync,fuse3,libqb100,libsqlite3-0,"$rrd",gzip \
        "$suite" "$out/$suite.tmp" "$mirror" >"$out/$suite.log" 2>&1 || {
        tail -n 30 "$out/$suite.log" >&2
        exit 1
    }
    mv "$out/$suite.tmp" "$out/$suite"
done
