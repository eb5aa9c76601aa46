#!/usr/bin/env bash
# Ingest throughput: `movies ingest`'s code on COUNT generated movies (default 200,000) against a
# baseline bulk append of as many creations. SQLite by default; with DATABASE_URL set, that
# Postgres database.
#   bench/ingest.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
run_store_bench ingest_bench "${1:-200000}"
