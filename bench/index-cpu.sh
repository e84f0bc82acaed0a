#!/usr/bin/env bash
# The pure CPU work of an update (parse the current Packages, merge 3 new versions,
# build the indices: render, gzip, hashes) at N = 1,000, 10,000 and 50,000 entries of
# one architecture, the fastest of RUNS runs, each N in a process of its own for its
# peak RSS. No store, no network: what every publish pays before its first write.
# "KB at gzip -9" is the size Packages.gz would have at level 9 in one stream.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${SIZES:-"1000 10000 50000"}
RUNS=${RUNS:-5}

cargo build --release --locked --quiet --example index_cpu
echo "Update CPU work, one architecture, fastest of $RUNS runs ($(nproc) cores), times in ms:"
echo
echo "| N | Packages MB | parse | merge +3 | build_indices | of which render | of which gzip | Packages.gz KB | KB at gzip -9 | threads | peak RSS MB |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for n in $SIZES; do
    target/release/examples/index_cpu "$n" "$RUNS"
done
