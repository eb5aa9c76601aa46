# Sourced by the benchmarks that run one example against a store (bench/ingest.sh,
# bench/replay.sh, bench/patch.sh): builds examples/NAME.rs and runs it on COUNT movies in a scratch directory
# removed afterwards, under a header naming the run and the store (SQLite, or the Postgres
# database DATABASE_URL names).
#   run_store_bench NAME COUNT
run_store_bench() {
  local name="$1" count="$2" store=SQLite
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/movies/target}"
  cargo build --release -j2 --example "$name" >&2
  bench_dir="$(mktemp -d "/tmp/movies-$name.XXXXXX")"
  trap 'rm -rf "$bench_dir"' EXIT
  [ -n "${DATABASE_URL:-}" ] && store=Postgres
  echo "# bench/$(basename "$0") $count on $(nproc) cores, $(date -u +%Y-%m-%d), $store"
  "$CARGO_TARGET_DIR/release/examples/$name" "$count" "$bench_dir"
}
