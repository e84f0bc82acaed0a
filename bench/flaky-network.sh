#!/usr/bin/env bash
# Publishing through a flaky network (issue 12): publishes to moto (a real S3 server on
# 127.0.0.1) through the fault-injecting proxy of tests/testsuite/support/proxy.rs, with p% of
# all requests faulted at random (503 SlowDown, 500, answer dropped after the write,
# reset mid-body, GET body truncated, stalled), seeded. Attempts time out after 2 s
# (so stalls stay short); the retry deadline is the default. Prints a table.
# Needs moto (.ci/deps installs it in .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
SEED=${SEED:-12}

log=$(mktemp -t speedy-flaky-network.XXXXXX.log)
cargo test --locked --quiet --test testsuite --no-run 2>>"$log"
run() { # percent publishers rounds
    SPEEDY_FLAKY_PERCENT=$1 SPEEDY_FLAKY_PUBLISHERS=$2 SPEEDY_FLAKY_ROUNDS=$3 SPEEDY_FLAKY_SEED=$SEED \
        cargo test --locked --quiet --test testsuite -- --ignored --exact flaky::random_faults --nocapture 2>>"$log" \
        | grep '^| '
}
echo
echo "Publishes through a flaky network (seed $SEED, $(nproc) cores, $(date -u +%F)):"
echo
echo "| faulted | publishers × rounds | publishes | succeeded | failed | failed after switch | missing afterwards | verify problems | unfinished (succeeded) | faulted requests | time |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
run 5 1 20
run 15 1 20
run 5 8 25
echo
echo "Failed publishes and their errors, if any: $log"
