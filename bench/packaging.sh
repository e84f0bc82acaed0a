#!/usr/bin/env bash
# Packaging time of the three fixture services, cargo build excluded:
# `cargo speedy build --no-build` next to `cargo deb --no-build` on the very same
# package definitions (the manifests cargo-speedy stages for cargo-deb), both xz.
# Needs hyperfine (apt-get install hyperfine) and cargo-deb (installed on demand).
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO_DEB_VERSION=3.8.0
RUNS=${RUNS:-10}

command -v hyperfine >/dev/null || { echo "bench: install hyperfine (apt-get install hyperfine)" >&2; exit 1; }
if ! cargo deb --version 2>/dev/null | grep -q "$CARGO_DEB_VERSION"; then
    cargo install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi
cargo build --release --locked --quiet
SPEEDY="$PWD/target/release/cargo-speedy"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r tests/fixtures/speedy "$work/ws"
rm -rf "$work/ws/target"
export SOURCE_DATE_EPOCH=1795000000
# Build the binaries and the staged manifests once.
"$SPEEDY" speedy build --quiet --manifest-path "$work/ws/Cargo.toml" >/dev/null
stage="$work/ws/target/speedy/stage"

cargo_deb_all="for p in speedy-app speedy-notifier speedy-jobs; do cargo deb --no-build --quiet --manifest-path $stage/\$p/Cargo.toml >/dev/null; done"
hyperfine --style basic --warmup 2 --runs "$RUNS" \
    --command-name "cargo speedy build --no-build (3 packages)" \
    "$SPEEDY speedy build --quiet --no-build --manifest-path $work/ws/Cargo.toml" \
    --command-name "cargo deb --no-build x3 (cargo-deb $CARGO_DEB_VERSION)" \
    "$cargo_deb_all" \
    --export-markdown "$work/table.md" >/dev/null
echo
echo "Packaging the three fixture services ($RUNS runs, $(nproc) cores), cargo build excluded:"
echo
cat "$work/table.md"
echo
ls -l "$work/ws/target/speedy/debs"/*.deb | awk '{print "speedy:    " $5 " bytes  " $NF}'
ls -l "$stage"/*/target/debian/*.deb | awk '{print "cargo-deb: " $5 " bytes  " $NF}'
