#!/usr/bin/env bash
# Read throughput on one node, in ONE run: wrk drives (on loopback, 2 threads, 64 connections,
# 10 s a scenario) a bare axum JSON endpoint (the machine's ceiling), then the query API of the
# embedded server at 1,000 and at BIG movies (default 5,000,000), and prints req/s, p50 and p99
# per scenario with its ratio to the bare endpoint (run for 5 s just before each scenario) and the
# bytes a response took on the wire (compressed where the scenario accepts brotli or gzip), and
# the server's RSS. Cached detail, the figure with a target, is the median of three rounds.
#   bench/load.sh [BIG]
set -euo pipefail
cd "$(dirname "$0")/.."
big="${1:-5000000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/movies/target}"
if ! command -v wrk >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || { echo "bench/load.sh: wrk is not installed" >&2; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
cargo build --release -j2 --bin movies --example bare_endpoint --example load_fill >&2
bin="$CARGO_TARGET_DIR/release"
dir="$(mktemp -d /tmp/movies-load.XXXXXX)"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_up() { for _ in $(seq 600); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "never up: $1" >&2; exit 1; }

# wrk's latency lines ("50%  1.23ms") in milliseconds.
ms() { awk -v q="$1" '$1 == q { v = $2; if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }; printf "%.2f", v }'; }
rps_of() { awk '/^Requests\/sec/ { printf "%.0f", $2 }'; }
# Bytes a response took on the wire, headers included: wrk's transfer rate over its request rate.
bytes_of() { awk '/^Requests\/sec/ { r = $2 } /^Transfer\/sec/ { v = $2; m = 1
  if (v ~ /GB$/) m = 1024^3; else if (v ~ /MB$/) m = 1024^2; else if (v ~ /KB$/) m = 1024
  sub(/[KMG]?B$/, "", v); t = v * m } END { if (r > 0) printf "%.0f", t / r }'; }
# The bare endpoint's rate right now: this machine's speed drifts (a shared VM), so every ratio
# is taken against a bare run made just before the scenario, not one at the start.
bare_now() { wrk -t2 -c64 -d5s "http://127.0.0.1:$bare/movie" | rps_of; }
scenario() { # label url [lua script] [rounds] [accept-encoding]
  local label="$1" url="$2" script="${3:-}" rounds="${4:-1}" accept="${5:-}" out rps ratio p50 p99 bytes errors
  local results=()
  for _ in $(seq "$rounds"); do
    local base; base="$(bare_now)"
    out="$(wrk -t2 -c64 -d10s --latency ${script:+-s "$script"} ${accept:+-H "Accept-Encoding: $accept"} "$url")"
    rps="$(rps_of <<<"$out")"
    results+=("$(awk -v a="$rps" -v b="$base" 'BEGIN { printf "%.3f", a / b }') $rps $(ms 50% <<<"$out") $(ms 99% <<<"$out") $(bytes_of <<<"$out")")
    errors="$(awk '/Non-2xx or 3xx/ { print $5 }' <<<"$out")"
  done
  # The median round by ratio.
  read -r ratio rps p50 p99 bytes <<<"$(printf '%s\n' "${results[@]}" | sort -n | sed -n "$(( (rounds + 1) / 2 ))p")"
  local note="${errors:+($errors non-2xx/3xx) }"
  [ "$rounds" -gt 1 ] && note+="(median of $rounds rounds)"
  printf "%-34s %10s %9s %9s %8.2fx %9s %s\n" "$label" "$rps" "$p50" "$p99" "$ratio" "$bytes" "$note"
}
paths_script() { # file with one path per line -> a wrk script picking one at random per request
  local list="$1" script="$2" header="${3:-}"
  { echo "local paths = {"; sed 's/.*/"&",/' "$list"; echo "}"
    [ -n "$header" ] && echo "wrk.headers[\"If-None-Match\"] = '$header'"
    echo 'request = function() return wrk.format(nil, paths[math.random(#paths)]) end'; } >"$script"
}

echo "# bench/load.sh $big on $(nproc) cores, $(date -u +%Y-%m-%d); wrk -t2 -c64 -d10s on loopback"
printf "%-34s %10s %9s %9s %9s %9s\n" "scenario" "req/s" "p50 ms" "p99 ms" "vs bare" "B/resp"
bare="$(port)"; "$bin/examples/bare_endpoint" "127.0.0.1:$bare" & pids+=($!)
wait_up "http://127.0.0.1:$bare/"
scenario "bare axum JSON endpoint" "http://127.0.0.1:$bare/movie"

for count in 1000 "$big"; do
  data="$dir/data-$count"
  "$bin/examples/load_fill" "$count" "$data" 2>"$dir/fill-$count.log"
  echo "## $count movies ($(tail -n1 "$dir/fill-$count.log"))"
  api="$(port)"
  MOVIES_RATE_ANONYMOUS=0 "$bin/movies" --data-dir "$data" --listen "127.0.0.1:$api" >/dev/null 2>"$dir/server-$count.log" & pids+=($!)
  server="${pids[-1]}"
  base="http://127.0.0.1:$api"
  wait_up "$base/health"
  hot="$(head -n1 "$data/ids.txt")"
  sed 's|^|/api/v1/movies/|' "$data/ids.txt" >"$dir/cold.txt"; paths_script "$dir/cold.txt" "$dir/cold.lua"
  head -n 100 "$dir/cold.txt" >"$dir/hot.txt"; paths_script "$dir/hot.txt" "$dir/304.lua" '"1"'
  # The cursor of the last page up to page 1000, walked by the API's own next links.
  cursor=""; pages=1
  for _ in $(seq 999); do
    next="$(curl -fs "$base/api/v1/movies?limit=20${cursor:+&cursor=$cursor}" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("next_cursor") or "")')"
    [ -z "$next" ] && break
    cursor="$next"; pages=$((pages + 1))
  done
  # One-word searches, the words drawn by the catalogue's own frequencies (load_fill's words.txt).
  sed 's|^|/api/v1/search?q=|' "$data/words.txt" >"$dir/search.txt"
  paths_script "$dir/search.txt" "$dir/search.lua"
  # The mixed read workload: 50% hot details, 15% cold details, 15% first list pages, 15% searches, 5% revalidations.
  { for _ in $(seq 10); do cat "$dir/hot.txt"; done | head -n 1000
    shuf -n 300 "$dir/cold.txt" 2>/dev/null || head -n 300 "$dir/cold.txt"
    for _ in $(seq 300); do echo "/api/v1/movies?limit=20"; done
    shuf -n 300 -r "$dir/search.txt" 2>/dev/null || head -n 300 "$dir/search.txt"
  } >"$dir/mixed.txt"
  paths_script "$dir/mixed.txt" "$dir/mixed.lua"
  scenario "cached detail" "$base/api/v1/movies/$hot" "" 3
  scenario "cached detail, br/gzip accepted" "$base/api/v1/movies/$hot" "" 3 "br, gzip"
  scenario "cold detail (random of $(wc -l <"$data/ids.txt"))" "$base/" "$dir/cold.lua"
  scenario "list page 1" "$base/api/v1/movies?limit=20"
  scenario "list page 1, br" "$base/api/v1/movies?limit=20" "" 1 "br"
  scenario "list page $pages by cursor" "$base/api/v1/movies?limit=20&cursor=$cursor"
  scenario "search (one word)" "$base/" "$dir/search.lua"
  scenario "search (one word), br" "$base/" "$dir/search.lua" 1 "br"
  scenario "search (one word), gzip" "$base/" "$dir/search.lua" 1 "gzip"
  scenario "304 revalidation" "$base/" "$dir/304.lua"
  scenario "mixed reads" "$base/" "$dir/mixed.lua"
  # Its own memory (anonymous) apart from the pages of files it maps (the search index), which
  # the kernel can drop and read again: both count in the RSS.
  awk '/^VmRSS/ { t = $2 } /^RssAnon/ { a = $2 } /^RssFile/ { f = $2 }
       END { printf "query server RSS: %d MiB (anonymous %d MiB, mapped files %d MiB)\n", t / 1024, a / 1024, f / 1024 }' \
    "/proc/$server/status"
  kill "$server"
done
