#!/usr/bin/env bash
# Two builds of the server in turn on the same data: fills COUNT (default 1,000) generated movies
# once, then for ROUNDS rounds (default 3) starts OLD, measures, stops it, starts NEW, measures,
# stops it, each measurement `wrk -t2 -c64 -d5s` on loopback of one cached movie's detail (plain,
# and with `Accept-Encoding: br, gzip`), of random movies' details (cold: most miss the cache),
# and of one-word searches (the words drawn by the catalogue's own frequencies, as bench/load.sh
# does). Prints each round's req/s, the NEW/OLD ratio, both p99s and both servers' RSS after the
# measurement: this machine's speed drifts, so only builds measured in turn compare. Each
# measurement starts its server afresh, so a search's first round of words is answered cold.
# Each build has a copy of the data of its own, opened once before the rounds: a build whose
# index schema differs rebuilds its index from the log then, not in a round. AB_SETTLE=SECONDS
# keeps each server running that long at that first open (default 0): merges a build starts at
# open (a serving index merges what a rebuild left) then end before the rounds, not in them.
#   [AB_SETTLE=SECONDS] bench/ab.sh OLD_MOVIES_BINARY NEW_MOVIES_BINARY [ROUNDS] [COUNT]
set -euo pipefail
cd "$(dirname "$0")/.."
old="$1" new="$2" rounds="${3:-3}" count="${4:-1000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/movies/target}"
command -v wrk >/dev/null 2>&1 || { echo "bench/ab.sh: wrk is not installed (bench/load.sh installs it)" >&2; exit 1; }
cargo build --release -j2 --example load_fill >&2
dir="$(mktemp -d /tmp/movies-ab.XXXXXX)"
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
"$CARGO_TARGET_DIR/release/examples/load_fill" "$count" "$dir/data" 2>/dev/null
cp -a "$dir/data" "$dir/data-old"; mv "$dir/data" "$dir/data-new"
hot="$(head -n1 "$dir/data-new/ids.txt")"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
start() { # binary tag: a server on the tag's data, once it is ready (a rebuild may take minutes)
  MOVIES_RATE_ANONYMOUS=0 "$1" --data-dir "$dir/data-$2" --listen "127.0.0.1:$port" >/dev/null 2>&1 & pid=$!
  for _ in $(seq 36000); do curl -fs "http://127.0.0.1:$port/ready" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "bench/ab.sh: $1 never became ready" >&2; exit 1
}
stop() { kill "$pid"; wait "$pid" 2>/dev/null || true; pid=""; }
start "$old" old; sleep "${AB_SETTLE:-0}"; stop
start "$new" new; sleep "${AB_SETTLE:-0}"; stop
segments() { # tag: the search index's segments as its last commit or merge left them
  find "$dir/data-$1" -name meta.json | head -n1 | xargs python3 -c 'import json, sys; print(len(json.load(open(sys.argv[1]))["segments"]))'
}
echo "# search index segments before the rounds: old $(segments old), new $(segments new)"
# wrk scripts picking one of the catalogue's words, or one of its movies, at random per request.
{ echo "local paths = {"; sed 's|.*|"/api/v1/search?q=&",|' "$dir/data-new/words.txt"; echo "}"
  echo 'request = function() return wrk.format(nil, paths[math.random(#paths)]) end'; } >"$dir/search.lua"
{ echo "local paths = {"; sed 's|.*|"/api/v1/movies/&",|' "$dir/data-new/ids.txt"; echo "}"
  echo 'request = function() return wrk.format(nil, paths[math.random(#paths)]) end'; } >"$dir/cold.lua"
rate() { # binary tag request
  local wrk_args=("http://127.0.0.1:$port/api/v1/movies/$hot")
  case "$3" in
    "detail, br/gzip") wrk_args=(-H "Accept-Encoding: br, gzip" "${wrk_args[@]}") ;;
    "search (one word)") wrk_args=(-s "$dir/search.lua" "http://127.0.0.1:$port/") ;;
    "cold detail") wrk_args=(-s "$dir/cold.lua" "http://127.0.0.1:$port/") ;;
  esac
  start "$1" "$2"
  wrk -t2 -c64 -d2s "${wrk_args[@]}" >/dev/null
  # req/s, p99 in ms, RSS in MiB
  wrk -t2 -c64 -d5s --latency "${wrk_args[@]}" | awk '/^Requests\/sec/ { r = $2 } $1 == "99%" { v = $2
    if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v) } else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
    p = v } END { printf "%.0f %.2f ", r, p }'
  awk '/^VmRSS/ { printf "%d", $2 / 1024 }' "/proc/$pid/status"
  stop
}
echo "# bench/ab.sh on $(nproc) cores, $(date -u +%Y-%m-%d), $count movies: req/s (wrk -t2 -c64 -d5s)"
printf "%-7s %-20s %10s %10s %8s %11s %11s %8s %8s\n" "round" "request" "old" "new" "new/old" "old p99 ms" "new p99 ms" \
  "old MiB" "new MiB"
for round in $(seq "$rounds"); do
  for request in "detail" "detail, br/gzip" "cold detail" "search (one word)"; do
    read -r a ap am <<<"$(rate "$old" old "$request")"; read -r b bp bm <<<"$(rate "$new" new "$request")"
    printf "%-7s %-20s %10s %10s %7.3fx %11s %11s %8s %8s\n" "$round" "$request" "$a" "$b" \
      "$(awk -v a="$a" -v b="$b" 'BEGIN { print b / a }')" "$ap" "$bp" "$am" "$bm"
  done
done
