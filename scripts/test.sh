#!/usr/bin/env bash
# `make test`: provision the services and the venv, then `ruff check .` and the
# suite twice, on PostgreSQL and on SQLite, side by side. Every step runs even when an earlier
# one failed (so one run shows everything); the exit status is non-zero when any
# failed. Extra pytest arguments: PYTEST_ARGS='-k deploy -x' make test.
# Each pytest run is interrupted after PYTEST_TIMEOUT seconds (default 3000,
# 0 = no limit) with SIGINT, so pytest still prints its summary: both runs must
# fit CI's 90 minutes even when a test hangs.
set -uo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SLIPWAY_ROOT"

TEST_DATABASE_URL=${TEST_DATABASE_URL:-postgresql://slipway:slipway@127.0.0.1:5432/slipway_test}
TEST_REDIS_URL=${TEST_REDIS_URL:-redis://127.0.0.1:6379/15}
PG_REDIS_URL=${PG_REDIS_URL:-redis://127.0.0.1:6379/14}
PYTEST_TIMEOUT=${PYTEST_TIMEOUT:-3000}
read -r -a pytest_args <<<"${PYTEST_ARGS:-}"

started=$(now_ms)
bash scripts/provision-test.sh || die "provisioning the test services failed"
bash scripts/venv.sh test || die "creating the venv failed"
say "provisioning (services and venv) took $(since "$started")"

status=0
results=()
step() { # step NAME COMMAND...
    local name=$1 begun rc=0
    begun=$(now_ms)
    shift
    say "$name: $*"
    "$@" </dev/null || rc=$?
    if [ "$rc" -eq 0 ]; then
        results+=("ok      $name ($(since "$begun"))")
    elif [ "$rc" -eq 124 ]; then
        results+=("FAILED  $name (interrupted after PYTEST_TIMEOUT=$PYTEST_TIMEOUT s)")
        status=1
    else
        results+=("FAILED  $name (exit $rc, $(since "$begun"))")
        status=1
    fi
}

# --foreground: a Ctrl-C in the terminal still reaches pytest.
pytest=(timeout --foreground -s INT -k 60 "$PYTEST_TIMEOUT" .venv/bin/pytest -q)
step "ruff check" .venv/bin/ruff check .
# The two runs go side by side, each on its own Redis database, so the suite takes as
# long as its longer half. Tests of the engine, Traefik, the browser and whole processes
# run once, in the SQLite run (the default `make run` uses); the PostgreSQL run
# deselects them and mostly waits on its database, so it takes the databases' Docker
# tests instead (tests/conftest.py ONCE_IN_POSTGRESQL_RUN). Its output is printed when it ends.
pg_log=$(mktemp /tmp/slipway-pytest-postgresql.XXXXXX)
pg_begun=$(now_ms)
say "pytest on PostgreSQL, beside the SQLite run (its output follows when it ends)"
(
    env SLIPWAY_TEST_DATABASE_URL="$TEST_DATABASE_URL" SLIPWAY_TEST_REDIS_URL="$PG_REDIS_URL" \
        SLIPWAY_TEST_ONCE=skip timeout -s INT -k 60 "$PYTEST_TIMEOUT" .venv/bin/pytest -q \
        ${pytest_args[@]+"${pytest_args[@]}"} </dev/null >"$pg_log" 2>&1
    echo $? >"$pg_log.rc"
) &
pg_pid=$!
trap 'pkill -INT -P "$pg_pid" 2>/dev/null' EXIT  # its timeout passes it on to pytest
step "pytest on SQLite" env -u SLIPWAY_TEST_DATABASE_URL SLIPWAY_TEST_ONCE=sqlite \
    SLIPWAY_TEST_REDIS_URL="$TEST_REDIS_URL" "${pytest[@]}" ${pytest_args[@]+"${pytest_args[@]}"}
wait "$pg_pid"
trap - EXIT
echo
say "pytest on PostgreSQL: its output"
cat "$pg_log"
pg_rc=$(cat "$pg_log.rc" 2>/dev/null || echo 1)
rm -f "$pg_log" "$pg_log.rc"
if [ "$pg_rc" -eq 0 ]; then
    results+=("ok      pytest on PostgreSQL ($(since "$pg_begun"), beside SQLite)")
elif [ "$pg_rc" -eq 124 ]; then
    results+=("FAILED  pytest on PostgreSQL (interrupted after PYTEST_TIMEOUT=$PYTEST_TIMEOUT s)")
    status=1
else
    results+=("FAILED  pytest on PostgreSQL (exit $pg_rc, $(since "$pg_begun"))")
    status=1
fi

echo
say "make test: $(since "$started") in all"
printf '    %s\n' "${results[@]}"
exit "$status"
