#!/usr/bin/env bash
# Fuzzes each target in fuzz/ for SECONDS (default 300) and prints what each ran: executions,
# coverage and peak memory. New inputs are kept in a scratch directory it names.
#   bench/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-300}"
echo "# bench/fuzz.sh $seconds s per target on $(nproc) cores, $(date -u +%Y-%m-%d)"
MOVIES_FUZZ_KEEP=1 exec scripts/fuzz.sh -max_total_time="$seconds"
