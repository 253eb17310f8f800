#!/usr/bin/env bash
# Create .venv (python3 -m venv) and install the project into it:
#   venv.sh        what Slipway needs to run, `pip install -e .` (make run)
#   venv.sh test   and its test tools too, `pip install -e '.[test]'` (make test, lint)
# Again only when pyproject.toml is newer than the stamp of that set (the test
# stamp stands for both). On Debian, python3 -m venv needs python3-venv:
# installed with apt-get when running as root, otherwise named.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$SLIPWAY_ROOT"

VENV=.venv
PYTHON=${PYTHON:-python3}
case "${1:-run}" in
run) STAMP=$VENV/.slipway-installed TARGET=. WHAT="Slipway" ;;
test) STAMP=$VENV/.slipway-installed-test TARGET='.[test]' WHAT="Slipway and its test tools" ;;
*) die "usage: venv.sh [run|test]" ;;
esac
# A venv with the test tools has everything make run needs too.
STAMPS=("$STAMP" "$VENV/.slipway-installed-test")

mkdir -p "$VENV"
# Two `make` runs at once must not both pip install into the same venv: lock the
# directory itself (venv --clear empties it but keeps it).
exec 9<"$VENV"
flock 9

if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import pip' >/dev/null 2>&1; then
    for stamp in "${STAMPS[@]}"; do
        if [ -f "$stamp" ] && ! [ pyproject.toml -nt "$stamp" ]; then
            exit 0 # up to date
        fi
    done
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
    rm -f "${STAMPS[@]}"
fi

say "installing $WHAT into $VENV (pip install -e '$TARGET')"
"$VENV/bin/python" -m pip install -q -e "$TARGET" </dev/null
touch "$STAMP"
