#!/usr/bin/env bash
# The test images of the three database engines, built here (no registry on the
# internet can be reached): one minimal Debian root made by mmdebstrap with
# PostgreSQL, MariaDB, Redis and their clients, cached as a tarball under
# .cache/db-images/ (built once per machine, rebuilt only when its package list or
# hooks change), imported once, and three thin images on top of it whose
# entrypoints (scripts/db-images/<engine>/) honour the official images'
# environment contracts. The root itself is also tagged as the client image the
# test apps build FROM (busybox httpd, psql, mariadb, redis-cli).
#
# Idempotent: a few seconds when the tarball and images are in place. Building the
# root needs root, mmdebstrap (make test installs it) and the Debian mirror; the
# rest needs only the Docker engine.
#
# Note: the tags say what the product's defaults say (postgres:16, mariadb:11,
# redis:7); the contents are Debian 12's PostgreSQL 15, MariaDB 10.11 and Redis 7.0.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

POSTGRES_IMAGE=${DB_IMAGE_POSTGRES:-slipway-test/postgres:16}
MARIADB_IMAGE=${DB_IMAGE_MARIADB:-slipway-test/mariadb:11}
REDIS_IMAGE=${DB_IMAGE_REDIS:-slipway-test/redis:7}
CLIENT_IMAGE=${DB_IMAGE_CLIENT:-slipway-test/dbclient:latest}
ROOT_REPOSITORY=slipway-test/dbroot
MIRROR=${DB_IMAGES_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${DB_IMAGES_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

# Bump when the root changes in a way the lists below do not show.
ROOTFS_REV=1
SUITE=bookworm
PACKAGES=(
    postgresql postgresql-client
    mariadb-server mariadb-client
    redis-server redis-tools
    busybox ca-certificates
)
# No manuals, docs or translations: a quarter of the size.
DPKG_OPTS=(
    'path-exclude=/usr/share/man/*'
    'path-exclude=/usr/share/doc/*'
    'path-include=/usr/share/doc/*/copyright'
    'path-exclude=/usr/share/info/*'
    'path-exclude=/usr/share/locale/*'
    'path-exclude=/usr/share/lintian/*'
)
# At the end of the build, inside the new root ("$1"): the packages' maintainer
# scripts made a PostgreSQL cluster and MariaDB system tables, which an entrypoint
# must create itself on an empty volume (and a volume mounted over a non-empty
# folder of the image starts as a copy of it); the PostgreSQL programs go on PATH.
# Files of no use to a test database go (nothing ever runs apt in these images):
# PostgreSQL's JIT with LLVM (without it PostgreSQL runs queries without JIT; 155 MB),
# the locale sources (C.UTF-8 is built in) and MariaDB's offline table tools.
CUSTOMIZE='set -e
rm -rf "$1"/usr/lib/postgresql/*/lib/llvmjit* "$1"/usr/lib/postgresql/*/lib/bitcode \
    "$1"/usr/lib/x86_64-linux-gnu/libLLVM* "$1"/usr/lib/x86_64-linux-gnu/libz3.* \
    "$1"/usr/share/i18n "$1"/usr/bin/aria_* "$1"/usr/bin/myisam* "$1"/usr/bin/mariadb-slap \
    "$1"/usr/bin/mariadb-binlog "$1"/usr/bin/mariadb-test*
rm -rf "$1"/etc/postgresql/*/main "$1"/var/lib/postgresql/*/main
for dir in "$1/var/lib/mysql" "$1/var/lib/redis"; do [ ! -d "$dir" ] || find "$dir" -mindepth 1 -delete; done
find "$1/var/log" -type f -delete
for bin in "$1"/usr/lib/postgresql/*/bin/*; do ln -sf "${bin#"$1"}" "$1/usr/local/bin/"; done
chroot "$1" dpkg-query -W -f "\${Package} \${Version}\n" postgresql mariadb-server redis-server busybox \
    >"$1/etc/slipway-test-versions"'

hash=$(printf '%s\n' "$ROOTFS_REV" "$SUITE" "${PACKAGES[*]}" "${DPKG_OPTS[*]}" "$CUSTOMIZE" |
    sha256sum | cut -c1-12)
CACHE=$SLIPWAY_ROOT/.cache/db-images
TARBALL=$CACHE/rootfs-$hash.tar
ROOT_IMAGE=$ROOT_REPOSITORY:$hash
CONTEXTS=$SLIPWAY_ROOT/scripts/db-images

started=$(now_ms)
mkdir -p "$CACHE"
# One build at a time on this machine (the cache is shared by worktrees and runs).
exec 9>"$CACHE/.lock"
flock 9

# ---- 1. the root tarball ----------------------------------------------------------

build_rootfs() {
    is_root || die "Building $TARBALL needs root (mmdebstrap); run scripts/db-images.sh as root once."
    have mmdebstrap || die "mmdebstrap is missing: apt-get install mmdebstrap (make test installs it)."
    local begun options=() opt partial=$TARBALL.partial
    begun=$(now_ms)
    for opt in "${DPKG_OPTS[@]}"; do options+=("--dpkgopt=$opt"); done
    say "building the database root with mmdebstrap ($SUITE: ${PACKAGES[*]})"
    rm -f "$partial"
    mmdebstrap --variant=minbase --format=tar --include="$(
        IFS=,
        echo "${PACKAGES[*]}"
    )" "${options[@]}" --customize-hook="$CUSTOMIZE" "$SUITE" "$partial" \
        "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
        "deb $SECURITY_MIRROR $SUITE-security main" </dev/null >"$CACHE/mmdebstrap.log" 2>&1 || {
        tail -n 30 "$CACHE/mmdebstrap.log" >&2 || true
        rm -f "$partial"
        die "mmdebstrap failed (log: $CACHE/mmdebstrap.log)."
    }
    mv "$partial" "$TARBALL"
    say "root tarball built in $(since "$begun"): $TARBALL ($(du -h "$TARBALL" | cut -f1))"
    # Older roots (another package list) are of no further use.
    find "$CACHE" -maxdepth 1 -name 'rootfs-*.tar' ! -name "rootfs-$hash.tar" -delete
}

[ -s "$TARBALL" ] || build_rootfs

# ---- 2. the images ----------------------------------------------------------------

docker_answers || die "The Docker engine does not answer: the database images need it."
export DOCKER_HOST
DOCKER_HOST=$(slipway_docker_host)

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

if ! image_exists "$ROOT_IMAGE"; then
    say "importing $TARBALL as $ROOT_IMAGE"
    docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["bash"]' \
        "$TARBALL" "$ROOT_IMAGE" >/dev/null
    # Roots of older package lists: untag them (their images go when nothing uses them).
    docker image ls --format '{{.Repository}}:{{.Tag}}' "$ROOT_REPOSITORY" | while read -r old; do
        [ "$old" = "$ROOT_IMAGE" ] || docker image rm "$old" >/dev/null 2>&1 || true
    done
fi
docker tag "$ROOT_IMAGE" "$CLIENT_IMAGE"

build() { # build ENGINE IMAGE: the thin image of scripts/db-images/ENGINE on the root
    local log
    log=$(docker build --build-arg "ROOT=$ROOT_IMAGE" --label slipway.test=1 -t "$2" \
        "$CONTEXTS/$1" 2>&1) || {
        printf '%s\n' "$log" >&2
        die "docker build of $2 failed."
    }
}
build postgres "$POSTGRES_IMAGE"
build mariadb "$MARIADB_IMAGE"
build redis "$REDIS_IMAGE"

say "database images ready in $(since "$started"): $POSTGRES_IMAGE $MARIADB_IMAGE $REDIS_IMAGE $CLIENT_IMAGE (root $ROOT_IMAGE)"
