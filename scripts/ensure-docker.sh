#!/usr/bin/env bash
# `make run`'s Docker step: make the engine answer if we can (root + apt-get:
# install docker.io, start dockerd); otherwise say what is missing and carry on.
# Slipway starts without an engine: the dashboard shows a banner until it answers.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if ! ensure_docker "$SLIPWAY_DATA"; then
    warn "Continuing without a Docker engine: apps cannot be built or run until it answers."
fi
exit 0
