#!/usr/bin/env bash
# Commit-ordered positions at size: WRITERS concurrent appenders (default 32) commit EVENTS
# events in all (default 1,000,000) on Postgres, 1 to 16 a transaction, one transaction in ten
# pausing inside the append lock and one in five rolling back, while a reader tails the log by position. Prints what was
# committed, rolled back and read, and the commit rate; fails unless the reader saw exactly the
# committed events, each once, in position order. The suite runs the same test at 12 x 360.
#   bench/appends.sh [WRITERS] [EVENTS]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/services.sh
echo "# bench/appends.sh ${1:-32} ${2:-1000000} on $(nproc) cores, $(date -u +%Y-%m-%d)"
MOVIES_APPEND_WRITERS="${1:-32}" MOVIES_APPEND_EVENTS="${2:-1000000}" MOVIES_APPEND_BATCH=16 \
  cargo test --release -j2 -p movies-store --features testing --test concurrent_append -- --nocapture
