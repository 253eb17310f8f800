#!/usr/bin/env bash
# The services `make test` needs, on Debian 12: install what is missing with
# apt-get (skipped entirely when every command is present), start what is not
# running (PostgreSQL, Redis on 127.0.0.1:6379, dockerd), and create the test
# role and database, install s3rver (npm, pinned) into .cache/, and build the
# database test images (scripts/db-images.sh). Idempotent;
# takes a few seconds when all is in place.
# Installing and starting need root; checking does not.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PG_HOST=127.0.0.1
PG_PORT=5432
PG_ROLE=slipway
PG_PASSWORD=slipway
PG_DB=slipway_test
REDIS_PORT=6379
CHROMIUM=/usr/bin/chromium
LOG_DIR=$SLIPWAY_DATA/test-services
# s3rver: an S3 server independent of moto, which the backup tests run against too.
S3RVER_VERSION=3.7.1
S3RVER_DIR=$SLIPWAY_ROOT/.cache/s3rver

started=$(now_ms)

# ---- 1. packages ------------------------------------------------------------

packages=()
want() { # want PACKAGE... when the check that follows fails
    packages+=("$@")
}
have pg_ctlcluster && have psql && have pg_isready &&
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || want postgresql
have redis-server && have redis-cli || want redis-server
have dockerd && have docker || want docker.io iptables
have git || want git
have git-lfs || want git-lfs  # the LFS deploy tests push and check out LFS objects
dpkg -s busybox-static >/dev/null 2>&1 || want busybox-static  # the base image of the deploy tests
[ -x "$CHROMIUM" ] || want chromium fonts-liberation
[ -x /usr/sbin/sshd ] || want openssh-server  # the private-repository tests run their own sshd
if ! [ -x "$SLIPWAY_ROOT/.venv/bin/python" ]; then # scripts/venv.sh will need python3 -m venv
    have python3 && python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || want python3 python3-venv
fi
[ -r /etc/ssl/certs/ca-certificates.crt ] || want ca-certificates
have node && have npm || want nodejs npm  # s3rver
have pebble && have pebble-challtestsrv || want pebble  # the ACME server of the HTTPS tests
[ -x /usr/bin/docker-registry ] || want docker-registry  # the image-pull tests' registry
have mmdebstrap || want mmdebstrap  # the root of the database test images

if [ ${#packages[@]} -gt 0 ]; then
    can_apt || die "Missing packages: ${packages[*]}. Install them as root (apt-get install ${packages[*]}), or run make test as root."
    apt_install "${packages[@]}"
fi

# ---- 2. PostgreSQL ------------------------------------------------------------

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2; }

if ! pg_ready; then
    is_root || die "PostgreSQL does not answer on $PG_HOST:$PG_PORT; start it as root (pg_ctlcluster <version> main start)."
    # Debian's clusters: /etc/postgresql/<version>/<name>. Take the newest version.
    version=$(ls /etc/postgresql 2>/dev/null | sort -n | tail -n 1 || true)
    if [ -z "$version" ]; then
        version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
    fi
    if [ ! -d "/etc/postgresql/$version/main" ]; then
        say "creating PostgreSQL cluster $version/main"
        pg_createcluster "$version" main
    fi
    if ! pg_ctlcluster "$version" main status >/dev/null 2>&1; then
        say "starting PostgreSQL $version/main"
        (close_extra_fds && pg_ctlcluster "$version" main start)
    fi
    wait_until 30 pg_ready || {
        pg_lsclusters >&2 || true
        die "PostgreSQL $version/main does not answer on $PG_HOST:$PG_PORT (see the port above)."
    }
fi

# ---- 3. test role and database ------------------------------------------------

test_login() {
    PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=5 psql -X -q -h "$PG_HOST" -p "$PG_PORT" \
        -U "$PG_ROLE" -d "$PG_DB" -tAc 'SELECT 1' >/dev/null 2>&1
}
as_postgres() { # psql as the postgres superuser, over the local socket (peer auth)
    (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres "$@")
}

if ! test_login; then
    is_root || die "Cannot log in as $PG_ROLE to $PG_DB on $PG_HOST:$PG_PORT, and creating them needs root."
    if [ "$(as_postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE'")" = 1 ]; then
        say "resetting PostgreSQL role $PG_ROLE"
        as_postgres -c "ALTER ROLE $PG_ROLE LOGIN SUPERUSER PASSWORD '$PG_PASSWORD'"
    else
        say "creating PostgreSQL role $PG_ROLE"
        as_postgres -c "CREATE ROLE $PG_ROLE LOGIN SUPERUSER PASSWORD '$PG_PASSWORD'"
    fi
    if [ "$(as_postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" != 1 ]; then
        say "creating PostgreSQL database $PG_DB"
        as_postgres -c "CREATE DATABASE $PG_DB OWNER $PG_ROLE"
    fi
    test_login || die "Still cannot log in as $PG_ROLE to $PG_DB on $PG_HOST:$PG_PORT (check pg_hba.conf)."
fi

# ---- 4. Redis -----------------------------------------------------------------

redis_answers() { [ "$(timeout 5 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }

if ! redis_answers; then
    mkdir -p "$LOG_DIR"
    say "starting redis-server on 127.0.0.1:$REDIS_PORT (log: $LOG_DIR/redis.log)"
    # No persistence: a test Redis, not a home for data.
    detach "$LOG_DIR/redis.log" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
        --save '' --appendonly no --dir "$LOG_DIR" --pidfile "$LOG_DIR/redis.pid"
    wait_until 10 redis_answers || {
        tail -n 10 "$LOG_DIR/redis.log" >&2 || true
        die "Redis does not answer PING on 127.0.0.1:$REDIS_PORT."
    }
fi

# ---- 5. s3rver ------------------------------------------------------------------

s3rver_installed() {
    [ -x "$S3RVER_DIR/node_modules/.bin/s3rver" ] &&
        [ "$(sed -n 's/^ *"version": *"\([^"]*\)".*/\1/p' \
            "$S3RVER_DIR/node_modules/s3rver/package.json" 2>/dev/null)" = "$S3RVER_VERSION" ]
}
if ! s3rver_installed; then
    say "npm install s3rver@$S3RVER_VERSION into $S3RVER_DIR"
    mkdir -p "$S3RVER_DIR"
    npm install --prefix "$S3RVER_DIR" --no-audit --no-fund --omit=dev --no-save \
        "s3rver@$S3RVER_VERSION" </dev/null >"$S3RVER_DIR/npm.log" 2>&1 || {
        tail -n 20 "$S3RVER_DIR/npm.log" >&2 || true
        die "npm install s3rver@$S3RVER_VERSION failed (log: $S3RVER_DIR/npm.log)."
    }
    s3rver_installed || die "s3rver $S3RVER_VERSION is not in $S3RVER_DIR after npm install."
fi

# ---- 6. Docker ----------------------------------------------------------------

# dockerd logs to the data directory, as under `make run`: it is the same engine.
if ensure_docker "$SLIPWAY_DATA"; then
    # ---- 7. the database test images (cached: seconds after the first build) -------
    # Built here, where root and apt are at hand; the database tests' fixture runs the
    # script again (seconds) and fails loudly if the images cannot be made.
    bash "$SLIPWAY_ROOT/scripts/db-images.sh" || die "building the database test images failed"
else
    warn "No Docker engine: the tests that need one will fail or skip."
fi

say "test services ready in $(since "$started")"
