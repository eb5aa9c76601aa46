#!/usr/bin/env bash
# Ingest throughput: `movies ingest`'s code on COUNT generated movies (default 200,000) against a
# baseline bulk append of as many creations. SQLite by default; with DATABASE_URL set, that
# Postgres database.
#   bench/ingest.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-200000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/movies/target}"
cargo build --release -j2 --example ingest_bench >&2
dir="$(mktemp -d /tmp/movies-ingest-bench.XXXXXX)"
trap 'rm -rf "$dir"' EXIT
store=SQLite; [ -n "${DATABASE_URL:-}" ] && store=Postgres
echo "# bench/ingest.sh $count on $(nproc) cores, $(date -u +%Y-%m-%d), $store"
"$CARGO_TARGET_DIR/release/examples/ingest_bench" "$count" "$dir"
