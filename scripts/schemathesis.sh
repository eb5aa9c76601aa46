#!/usr/bin/env bash
# Runs schemathesis (PyPI, in a virtualenv cached outside the clone) with every check (one off for
# movies by id, see schemathesis.toml) against the OpenAPI document a freshly started all-in-one
# server serves, once anonymously and once with an admin token, each over a bounded number of
# generated requests per operation. Only 127.0.0.1.
#   scripts/schemathesis.sh MOVIES_BINARY [EXAMPLES_PER_OPERATION]
set -euo pipefail
cd "$(dirname "$0")/.."
die() { echo "$(basename "$0"): $*" >&2; exit 1; }
binary="${1:?the movies binary to test}"
examples="${2:-30}"

tools="${MOVIES_TOOLS_DIR:-$HOME/.cache/movies/tools}"
venv="$tools/schemathesis-venv"
version=4.32.5
if [ "$("$venv/bin/st" --version 2>/dev/null)" != "st, version $version" ]; then
  echo "scripts/schemathesis.sh: installing schemathesis $version (once; cached in $venv)" >&2
  rm -rf "$venv"
  python3 -m venv "$venv" || die "could not create a Python virtualenv (python3-venv)"
  "$venv/bin/pip" install -q "schemathesis==$version" || die "could not install schemathesis from PyPI"
fi

scratch="$(mktemp -d /tmp/movies-schemathesis.XXXXXX)"
server=""
stop() {
  if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
  rm -rf "$scratch"
}
trap stop EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
base="http://127.0.0.1:$port"
password="schemathesis-$RANDOM$RANDOM"
# Without the per-address rate limit (its own tests cover it): every generated request reaches
# the handler it is meant for.
MOVIES_ADMIN_PASSWORD="$password" "$binary" --data-dir "$scratch/data" --listen "127.0.0.1:$port" \
  --rate-anonymous 0 --rate-user 0 >"$scratch/server.log" 2>&1 &
server=$!
for _ in $(seq 300); do
  curl -fs "$base/ready" >/dev/null 2>&1 && break
  kill -0 "$server" 2>/dev/null || { cat "$scratch/server.log" >&2; die "the server did not start"; }
  sleep 0.1
done
curl -fs "$base/ready" >/dev/null || { cat "$scratch/server.log" >&2; die "the server was not ready in 30 s"; }
token="$(curl -fs -X POST "$base/api/v1/auth/token" -H 'content-type: application/json' \
  -d "{\"username\":\"admin\",\"password\":\"$password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')" \
  || die "could not sign in as admin"

run() { # label, extra st arguments
  local label="$1"; shift
  echo "scripts/schemathesis.sh: $label, $examples examples per operation, every check but one (see schemathesis.toml)"
  "$venv/bin/st" --config-file scripts/schemathesis.toml run "$base/api/v1/openapi.json" \
    --checks all --max-examples "$examples" --seed 1 --no-color "$@" \
    || { tail -n 40 "$scratch/server.log" >&2; die "schemathesis found failures ($label)"; }
}
run anonymous
run admin -H "Authorization: Bearer $token"
kill -0 "$server" 2>/dev/null || die "the server stopped during the run"
