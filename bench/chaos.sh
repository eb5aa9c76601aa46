#!/usr/bin/env bash
# The fault campaign at length: SCHEDULES seeded fault schedules (default 50, seeds 1..N) against
# the distributed roles, each over a catalogue of CATALOGUE movies (default 100,000) ingested
# first, on the services scripts/services.sh starts. Prints the checker's table: per schedule the
# faults, writes acknowledged, lost, duplicated, stale reads, reads that went back in time,
# projections drifted and the slowest convergence. A failing seed replays with
# MOVIES_CHAOS_SEEDS=SEED. Built with --release, so ingesting and verifying the catalogue are
# not what the run measures.
#   bench/chaos.sh [SCHEDULES] [CATALOGUE]
set -euo pipefail
cd "$(dirname "$0")/.."
schedules="${1:-50}"
catalogue="${2:-100000}"
. scripts/services.sh
echo "# bench/chaos.sh $schedules schedules over $catalogue movies on $(nproc) cores, $(date -u +%Y-%m-%d)"
MOVIES_CHAOS_SEEDS="$(seq -s, 1 "$schedules")" MOVIES_CHAOS_CATALOGUE="$catalogue" \
  cargo test --release -j2 --test distributed -- campaign --nocapture
