#!/usr/bin/env bash
# Write cost against a movie's history: PATCH through the command service on movies with 1,
# COUNT/10 and COUNT events (default 10,000), each against the PATCH on a fresh movie measured
# in the same run, beside what folding the whole stream costs. SQLite by default; with
# DATABASE_URL set, that Postgres database.
#   bench/patch.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
run_store_bench patch_bench "${1:-10000}"
