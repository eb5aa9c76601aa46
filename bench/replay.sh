#!/usr/bin/env bash
# Replay throughput: bulk-appends COUNT generated movies (default 1,000,000) to a fresh event log,
# then rebuilds each projection from it with `movies replay`'s own code, against a baseline that
# only reads the log. SQLite by default; with DATABASE_URL set, that Postgres database.
#   bench/replay.sh [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
run_store_bench replay_bench "${1:-1000000}"
