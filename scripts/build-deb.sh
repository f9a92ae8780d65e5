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
# debian/copyright is generated from Cargo's metadata; the committed one
# must be what the generator prints for this Cargo.lock.
cargo run -q --locked -p pmxcfs-compat --example debian_copyright > "$out/copyright.generated"
if ! cmp -s "$out/copyright.generated" debian/copyright; then
    diff -u debian/copyright "$out/copyright.generated" | head -40 >&2 || true
    echo "debian/copyright is out of date: cargo run -p pmxcfs-compat --example debian_copyright > debian/copyright" >&2
    exit 1
fi
# The crates go into the source package (never into git): the package
# builds from them without network.
echo "== cargo vendor (into the source package)"
mkdir -p "$src/.cargo"
(cd "$src" && cargo vendor --locked --versioned-dirs vendor > .cargo/config.toml 2> "$out/vendor.log")
du -sh "$src/vendor" | sed 's/^/vendored crates: /'
# One cargo target directory for all package builds, reused between runs.
export CARGO_TARGET_DIR=$top/target/deb-cargo
# Without network where we can take it away (root: a network namespace of
# its own), so a build that needs the registry fails here, not on a buildd.
offline=()
if [ "$(id -u)" -eq 0 ] && unshare --net true 2>/dev/null; then
    offline=(unshare --net)
fi
(cd "$src" && "${offline[@]}" dpkg-buildpackage -b -us -uc)
# clean removes the build tree it made.
(cd "$src" && mkdir -p target && "${offline[@]}" debian/rules clean && test ! -e target)
mv "$out"/src/*.deb "$out"/src/*.changes "$out"/src/*.buildinfo "$out"/
rm -rf "$out/src"
echo "== lintian"
lintian --fail-on error --no-tag-display-limit "$out"/*.changes
ls -l "$out"/*.deb
