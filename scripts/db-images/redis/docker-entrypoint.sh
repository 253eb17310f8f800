#!/bin/sh
# The official redis image's entrypoint contract, for the test image: a first
# argument that is an option (`--requirepass X`) or a .conf file is redis-server's;
# redis-server runs as redis in /data (its `dir`), with a umask of 0077. The official
# image builds Redis with protected mode off by default (nothing could reach it from
# another container without a config file); here that is `--protected-mode no`
# before the arguments when no config file is given, so an argument still wins.
set -e

if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
    set -- redis-server "$@"
fi

if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
    find . \! -user redis -exec chown redis '{}' +
    exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi

if [ "$1" = redis-server ] && [ "${2%.conf}" = "${2:-}" ]; then
    shift
    set -- redis-server --protected-mode no "$@"
fi

if [ "$(umask)" = 0022 ]; then
    umask 0077
fi

exec "$@"
