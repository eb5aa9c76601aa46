# Starts what the tests and benchmarks need, each on a random loopback port and stopped on exit:
# a throwaway Postgres, Redis, a Kafka-protocol broker and headless Chromium's WebDriver,
# installing what is missing. Exports MOVIES_TEST_POSTGRES, MOVIES_TEST_REDIS, MOVIES_TEST_KAFKA,
# MOVIES_TEST_WEBDRIVER (and the server binaries the outage tests start on their own). Fails
# loudly, never skips, when something cannot be had.
# Sourced by scripts/test and bench/*.sh; set MOVIES_TEST_KAFKA=host:port to use a broker you run
# (Apache Kafka) instead of starting nisshi.
# shellcheck shell=bash
die() { echo "$(basename "$0"): $*" >&2; exit 1; }

# Build caches live outside the clone so CI reruns reuse them; nothing else is cached.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/movies/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# ---- Postgres: initdb + pg_ctl from the PATH (or Debian's install), run by an unprivileged user.
pg_bin=""
if command -v initdb >/dev/null 2>&1; then
  pg_bin="$(dirname "$(command -v initdb)")"
else
  pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
  if [ -z "$pg_bin" ] && [ "$(id -u)" = 0 ]; then
    echo "scripts/test: installing PostgreSQL server binaries" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
  fi
fi
[ -x "$pg_bin/initdb" ] && [ -x "$pg_bin/pg_ctl" ] || die "PostgreSQL server binaries (initdb, pg_ctl) not found and could not be installed"

as_pg=()
if [ "$(id -u)" = 0 ]; then
  # initdb refuses to run as root: use the unprivileged `postgres` user, creating it if missing.
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
  as_pg=(runuser -u postgres --)
fi

work="$(mktemp -d /tmp/movies-test.XXXXXX)"
chmod 755 "$work"
[ "$(id -u)" = 0 ] && chown postgres "$work"
pg_port="$(free_port)"
pids=()
cleanup() {
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg" -U postgres --auth=trust -E UTF8 --no-sync >"$work/initdb.log" 2>&1 \
  || { cat "$work/initdb.log" >&2; die "initdb failed"; }
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg.log" -w -t 60 start -o \
  "-c listen_addresses=127.0.0.1 -p $pg_port -k $work -c max_connections=400 -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
  >/dev/null || { cat "$work/pg.log" >&2; die "Postgres did not start"; }
export MOVIES_TEST_POSTGRES="postgres://postgres@127.0.0.1:$pg_port/postgres"
# The fault campaign starts (and restarts) a Postgres of its own with these binaries.
export MOVIES_TEST_PG_BIN="$pg_bin"
echo "scripts/test: Postgres on 127.0.0.1:$pg_port"

wait_port() { # host port seconds
  python3 - "$@" <<'PY' || return 1
import socket, sys, time
host, port, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
deadline = time.time() + limit
while time.time() < deadline:
    try:
        socket.create_connection((host, port), timeout=1).close(); sys.exit(0)
    except OSError:
        time.sleep(0.1)
sys.exit(1)
PY
}

# ---- Redis: Debian's redis-server, installed if missing.
if ! command -v redis-server >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "redis-server is not installed (apt-get install redis-server)"
  echo "scripts/test: installing redis-server" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null \
    || die "could not install redis-server"
fi
redis_port="$(free_port)"
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" \
  --maxmemory 256mb --maxmemory-policy allkeys-lfu >"$work/redis.log" 2>&1 &
pids+=($!)
wait_port 127.0.0.1 "$redis_port" 20 || { cat "$work/redis.log" >&2; die "Redis did not start"; }
export MOVIES_TEST_REDIS="redis://127.0.0.1:$redis_port"
# Outage tests start (and kill) their own Redis.
export MOVIES_TEST_REDIS_SERVER="$(command -v redis-server)"
echo "scripts/test: Redis on 127.0.0.1:$redis_port"

# ---- Kafka-protocol broker: nisshi with its memory engine, built once into a cache outside the
# clone (about 12 minutes with the machine's nightly toolchain), unless MOVIES_TEST_KAFKA names one.
tools="${MOVIES_TOOLS_DIR:-$HOME/.cache/movies/tools}"
nisshi="$tools/bin/nisshi"
if [ ! -x "$nisshi" ] || [ "$("$nisshi" --version 2>/dev/null)" != "nisshi 0.8.1" ]; then
  echo "scripts/test: building the nisshi 0.8.1 broker (once; cached in $tools)" >&2
  cargo +nightly --version >/dev/null 2>&1 || die "the nightly toolchain (rustc 1.96+) that builds nisshi is missing"
  CARGO_TARGET_DIR="$tools/target" cargo +nightly install nisshi@0.8.1 --locked --no-default-features \
    --features dynostore,postgres --root "$tools" || die "could not build the nisshi broker"
  rm -rf "$tools/target"
fi
export MOVIES_TEST_NISSHI="$nisshi"
if [ -z "${MOVIES_TEST_KAFKA:-}" ]; then
  kafka_port="$(free_port)"
  mkdir -p "$work/nisshi"   # no .env file here: nisshi would read it
  (cd "$work/nisshi" && exec "$nisshi" broker --listener-url "tcp://127.0.0.1:$kafka_port" \
    --advertised-listener-url "tcp://127.0.0.1:$kafka_port" --storage-engine memory://nisshi/ \
    --group-initial-rebalance-delay 100ms) >"$work/nisshi.log" 2>&1 &
  pids+=($!)
  wait_port 127.0.0.1 "$kafka_port" 30 || { cat "$work/nisshi.log" >&2; die "the nisshi broker did not start"; }
  export MOVIES_TEST_KAFKA="127.0.0.1:$kafka_port"
fi
echo "scripts/test: Kafka-protocol broker on $MOVIES_TEST_KAFKA"


# ---- Headless Chromium for the console's browser tests: Debian's chromium and its WebDriver,
# installed if missing; one chromedriver serves every test's sessions.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  [ "$(id -u)" = 0 ] || die "chromium and chromedriver are not installed (apt-get install chromium chromium-driver)"
  echo "scripts/test: installing chromium and chromium-driver" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null \
    || die "could not install chromium and chromium-driver"
fi
webdriver_port="$(free_port)"
chromedriver --port="$webdriver_port" --allowed-ips=127.0.0.1 >"$work/chromedriver.log" 2>&1 &
pids+=($!)
wait_port 127.0.0.1 "$webdriver_port" 30 || { cat "$work/chromedriver.log" >&2; die "chromedriver did not start"; }
export MOVIES_TEST_WEBDRIVER="http://127.0.0.1:$webdriver_port"
export MOVIES_TEST_CHROMIUM="$(command -v chromium)"
echo "scripts/test: Chromium's WebDriver on 127.0.0.1:$webdriver_port"
