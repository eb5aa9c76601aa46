#!/usr/bin/env bash
# Search at scale: indexes COUNT generated movies (default 5,000,000) through the search
# projection's own apply path, then times each kind of query on one thread against a bare
# single-term lookup (the baseline) measured in the same run.
#   bench/search.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
count="${1:-5000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/movies/target}"
cargo build --release -j2 --example search_bench >&2
dir="$(mktemp -d /tmp/movies-search-bench.XXXXXX)"
trap 'rm -rf "$dir"' EXIT
echo "# bench/search.sh $count on $(nproc) cores, $(date -u +%Y-%m-%d)"
"$CARGO_TARGET_DIR/release/examples/search_bench" "$count" "$dir/index"
