#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ (cursor decoding, event decoding and upcasting, the
# ingest reader, search query texts, If-Match) with the machine's nightly toolchain, installing
# cargo-fuzz from crates.io once into a cache outside the clone. The arguments go to libFuzzer:
#   scripts/fuzz.sh -runs=20000            # each target over a fixed number of inputs (scripts/test)
#   scripts/fuzz.sh -max_total_time=600    # each target for ten minutes (bench/fuzz.sh)
# Seeds come from fuzz/corpus/TARGET and are not modified: new inputs go to a scratch directory
# (kept and named when MOVIES_FUZZ_KEEP=1). A crash stops the run with the input that caused it.
# Each target runs under libFuzzer's own memory cap (1 GiB) and per-input timeout (10 s).
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "$(basename "$0"): $*" >&2; exit 1; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/movies/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
tools="${MOVIES_TOOLS_DIR:-$HOME/.cache/movies/tools}"
cargo_fuzz_version=0.13.1
if [ "$("$tools/bin/cargo-fuzz" --version 2>/dev/null)" != "cargo-fuzz $cargo_fuzz_version" ]; then
  echo "scripts/fuzz.sh: installing cargo-fuzz $cargo_fuzz_version (once; cached in $tools)" >&2
  CARGO_TARGET_DIR="$tools/target" cargo install "cargo-fuzz@$cargo_fuzz_version" --locked --root "$tools" \
    || die "could not install cargo-fuzz"
  rm -rf "$tools/target"
fi
export PATH="$tools/bin:$PATH"
cargo +nightly --version >/dev/null 2>&1 || die "the nightly toolchain that cargo-fuzz needs is missing"

[ "$#" -gt 0 ] || die "give libFuzzer a bound, e.g. -runs=20000 or -max_total_time=600"
scratch="$(mktemp -d /tmp/movies-fuzz.XXXXXX)"
keep="${MOVIES_FUZZ_KEEP:-0}"
trap '[ "$keep" = 1 ] || rm -rf "$scratch"' EXIT

cargo +nightly fuzz build --fuzz-dir fuzz >&2 || die "the fuzz targets did not build"
for target in $(cargo +nightly fuzz list --fuzz-dir fuzz); do
  mkdir -p "$scratch/$target"
  echo "scripts/fuzz.sh: $target $*"
  log="$scratch/$target.log"
  if ! cargo +nightly fuzz run --fuzz-dir fuzz "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
      -rss_limit_mb=1024 -timeout=10 -artifact_prefix="$scratch/$target-" -print_final_stats=1 "$@" \
      >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    keep=1
    die "$target failed; the input is in $scratch (kept): add it to a regression test"
  fi
  # What libFuzzer ran: inputs, coverage reached, corpus size, peak memory.
  { grep -E '^#[0-9]+[[:space:]]+DONE' "$log" || true; } | tail -n 1
  { grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true; } | tr -s ' \n' '  '
  echo
done
[ "$keep" = 1 ] && echo "scripts/fuzz.sh: new inputs in $scratch (cargo fuzz cmin to merge them into fuzz/corpus)"
exit 0
