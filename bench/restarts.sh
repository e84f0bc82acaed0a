#!/usr/bin/env bash
# Requests failed during an upgrade, a rollback and a restart of speedy-app on a
# booted Debian server, with the package's socket unit (`listen`) and without it:
# tests/testsuite/restarts.rs, `bench_with_and_without_a_socket`, under a load of
# 8 connections at a time, 200 requests/s in total, on loopback.
# Needs root and systemd-nspawn, as the booted-server tests do (.ci/deps).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --locked --test testsuite -- --ignored --nocapture --exact \
    restarts::bench_with_and_without_a_socket 2>&1 |
    sed -n '/connections at a time/,/^$/p; /^|/p' | awk '!seen[$0]++'
