#!/usr/bin/env bash
# Command-to-visible latency, p50 / p99: creates COUNT movies (default 300) one at a time and
# times each until a read of it answers, through the embedded in-process path (the baseline)
# and through the distributed roles (relay, Kafka, projector, Redis), each its own process.
# Starts Postgres, Redis and the broker like the test suite does.
#   bench/visibility.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-300}"
. scripts/services.sh
cargo build --release -j2 --bin movies --example visibility_bench >&2
echo "# bench/visibility.sh $count on $(nproc) cores, $(date -u +%Y-%m-%d), broker $MOVIES_TEST_KAFKA"
"$CARGO_TARGET_DIR/release/examples/visibility_bench" "$count" "$work"
