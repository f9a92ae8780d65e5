#!/usr/bin/env bash
# Builds the Debian packages (pmxcfs-rs, pmxcfs-rs-tools, and the -dbgsym
# package of the stripped binaries) with dpkg-buildpackage from a copy of
# the committed tree, puts them in target/deb/, and runs lintian (which
# must report no errors). Needs the build dependencies of debian/control
# (scripts/setup.sh installs them) and the Rust toolchain on the PATH.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
top=$(pwd)
out=$top/target/deb
src=$out/src/pmxcfs-rs
rm -rf "$out/src" "$out"/*.deb "$out"/*.changes "$out"/*.buildinfo
mkdir -p "$src"
# The tree as git sees it (in CI: the commit); dpkg-buildpackage writes its output
# beside the source, so the copy keeps it inside target/.
if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$src"
else
    tar --exclude=./target -cf - . | tar -xf - -C "$src"
fi
# One cargo target directory for all package builds, reused between runs.
export CARGO_TARGET_DIR=$top/target/deb-cargo
(cd "$src" && dpkg-buildpackage -b -us -uc)
mv "$out"/src/*.deb "$out"/src/*.changes "$out"/src/*.buildinfo "$out"/
rm -rf "$out/src"
echo "== lintian"
lintian --fail-on error --no-tag-display-limit "$out"/*.changes
ls -l "$out"/*.deb
