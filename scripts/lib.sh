# shellcheck shell=bash
# Helpers sourced by the scripts behind `make run` and `make test`: messages,
# apt-get, the Docker engine. Needs only what a fresh Debian 12 has (bash,
# coreutils, util-linux): no procps, no systemd.

SLIPWAY_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SLIPWAY_DATA=${SLIPWAY_DATA_DIR:-$SLIPWAY_ROOT/instance}
case $SLIPWAY_DATA in /*) ;; *) SLIPWAY_DATA=$PWD/$SLIPWAY_DATA ;; esac

say() { printf '==> %s\n' "$*"; }
warn() { printf '!!! %s\n' "$*" >&2; }
die() {
    warn "$*"
    exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }
is_root() { [ "$(id -u)" -eq 0 ]; }
can_apt() { is_root && have apt-get; }

# apt_install PACKAGE...: non-interactive. `apt-get update` first, unless one of
# these scripts did so in the last 30 minutes (`make run` may need apt twice);
# if the install then fails, update and try once more.
APT_MARKER=/var/tmp/slipway-apt-updated
apt_update() {
    say "apt-get update"
    apt-get update -q </dev/null && touch "$APT_MARKER"
}
apt_install() {
    can_apt || return 1
    export DEBIAN_FRONTEND=noninteractive
    local fresh=
    if [ -n "$(find "$APT_MARKER" -mmin -30 2>/dev/null)" ]; then
        fresh=1
    else
        apt_update || return 1
    fi
    say "apt-get install $*"
    if ! apt-get install -y -q --no-install-recommends "$@" </dev/null; then
        [ -n "$fresh" ] || return 1
        apt_update && apt-get install -y -q --no-install-recommends "$@" </dev/null
    fi
}

# now_ms; since START_MS: wall-clock timing, e.g. "3.2 s".
now_ms() {
    local t=${EPOCHREALTIME/[.,]/}
    printf '%s' $((t / 1000))
}
since() {
    local ms=$(($(now_ms) - $1))
    printf '%d.%d s' $((ms / 1000)) $((ms % 1000 / 100))
}

# wait_until SECONDS COMMAND...: run COMMAND every half second until it succeeds.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

# close_extra_fds: in a subshell about to start a daemon, close every inherited
# descriptor above 2, so the daemon holds no pipe of ours (a CI log that never
# reaches end-of-file because dockerd still holds it open).
close_extra_fds() {
    local fd
    for fd in /proc/"$BASHPID"/fd/*; do
        fd=${fd##*/}
        if [ "$fd" -gt 2 ]; then
            eval "exec $fd>&-" 2>/dev/null || true
        fi
    done
}

# detach LOG COMMAND...: start COMMAND in its own session (so neither a Ctrl-C in
# this terminal nor the end of this script reaches it), cwd /, stdin /dev/null,
# output appended to LOG; return at once.
detach() {
    local log=$1
    shift
    (
        cd /
        close_extra_fds
        exec setsid -f nohup "$@" >>"$log" 2>&1 </dev/null
    )
}

# ---- Docker ---------------------------------------------------------------

DEFAULT_DOCKER_HOST=unix:///var/run/docker.sock
# The engine the app talks to (app/config.py reads the same two variables).
slipway_docker_host() { printf '%s' "${SLIPWAY_DOCKER_HOST:-${DOCKER_HOST:-$DEFAULT_DOCKER_HOST}}"; }

docker_answers() {
    have docker && DOCKER_HOST=$(slipway_docker_host) timeout 15 docker info >/dev/null 2>&1
}

dockerd_running() {
    local pid
    [ -r /var/run/docker.pid ] && pid=$(cat /var/run/docker.pid 2>/dev/null) &&
        [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null
}

# ensure_docker LOG_DIR: make `docker info` answer. As root with apt-get: install
# docker.io if missing and start dockerd (detached: it outlives `make run` and
# `make test`, like a system service). Otherwise say what is missing. Returns non-zero when the engine does
# not answer; callers decide whether that is fatal.
ensure_docker() {
    local log_dir=$1 host
    docker_answers && return 0
    host=$(slipway_docker_host)
    if [ "$host" != "$DEFAULT_DOCKER_HOST" ]; then
        warn "The Docker engine at $host (SLIPWAY_DOCKER_HOST/DOCKER_HOST) does not answer 'docker info'."
        return 1
    fi
    if ! is_root; then
        if ! have dockerd && ! have docker; then
            warn "Docker is not installed. As root: apt-get install docker.io"
        elif [ -S /var/run/docker.sock ] && ! [ -w /var/run/docker.sock ]; then
            warn "No permission on /var/run/docker.sock. As root: usermod -aG docker $(id -un); then log in again."
        else
            warn "The Docker engine is not running. As root: dockerd (or: systemctl start docker)."
        fi
        return 1
    fi
    if ! have dockerd || ! have docker; then
        if ! can_apt; then
            warn "Docker is not installed and apt-get is not available: install Docker Engine."
            return 1
        fi
        apt_install docker.io iptables ca-certificates || {
            warn "Installing docker.io failed."
            return 1
        }
        # The package's init script may have started it already.
        docker_answers && return 0
    fi
    mkdir -p "$log_dir"
    if dockerd_running; then
        say "dockerd is running but not answering yet; waiting"
    else
        say "starting dockerd (log: $log_dir/dockerd.log)"
        detach "$log_dir/dockerd.log" dockerd
    fi
    if wait_until 30 docker_answers; then
        say "Docker engine is up"
        return 0
    fi
    warn "dockerd did not answer within 30 s; the end of $log_dir/dockerd.log:"
    tail -n 15 "$log_dir/dockerd.log" >&2 2>/dev/null || true
    return 1
}
