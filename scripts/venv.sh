#!/usr/bin/env bash
# Create .venv (python3 -m venv) and install the project with its test extras,
# `pip install -e '.[test]'`; again only when pyproject.toml is newer than the
# stamp file. On Debian, python3 -m venv needs python3-venv: installed with
# apt-get when running as root, otherwise named.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SLIPWAY_ROOT"

VENV=.venv
STAMP=$VENV/.slipway-installed
PYTHON=${PYTHON:-python3}

mkdir -p "$VENV"
# Two `make` runs at once must not both pip install into the same venv: lock the
# directory itself (venv --clear empties it but keeps it).
exec 9<"$VENV"
flock 9

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import pip' >/dev/null 2>&1; then
    if [ -f "$STAMP" ] && ! [ pyproject.toml -nt "$STAMP" ]; then
        exit 0 # up to date
    fi
else
    if ! have "$PYTHON" || ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        if can_apt; then
            apt_install python3 python3-venv ca-certificates
        else
            die "python3 -m venv needs Python 3.11+ with venv and ensurepip. On Debian, as root: apt-get install python3-venv"
        fi
    fi
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
        die "$PYTHON is $("$PYTHON" --version 2>&1); Slipway needs Python 3.11 or newer (set PYTHON=...)"
    say "creating $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv --clear "$VENV"
    rm -f "$STAMP"
fi

say "installing Slipway and its test tools into $VENV (pip install -e '.[test]')"
"$VENV/bin/python" -m pip install -q -e '.[test]' </dev/null
touch "$STAMP"
