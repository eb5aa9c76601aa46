#!/usr/bin/env bash
# Replay throughput: bulk-appends COUNT generated movies (default 1,000,000) to a fresh event log,
# then rebuilds each projection from it with `movies replay`'s own code, against a baseline that
# only reads the log. SQLite by default; with DATABASE_URL set, that Postgres database.
#   bench/replay.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-1000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/movies/target}"
cargo build --release -j2 --example replay_bench >&2
dir="$(mktemp -d /tmp/movies-replay-bench.XXXXXX)"
trap 'rm -rf "$dir"' EXIT
store=SQLite; [ -n "${DATABASE_URL:-}" ] && store=Postgres
echo "# bench/replay.sh $count on $(nproc) cores, $(date -u +%Y-%m-%d), $store"
"$CARGO_TARGET_DIR/release/examples/replay_bench" "$count" "$dir"
