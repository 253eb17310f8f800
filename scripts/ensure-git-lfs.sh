#!/usr/bin/env bash
# `make run`'s Git LFS step: install git-lfs if it is missing (root + apt-get);
# otherwise say what follows and carry on. Without git-lfs, a repository's LFS
# files are deployed as their pointer files, and the build log says so.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

have git-lfs && exit 0
if can_apt && apt_install git-lfs; then
    exit 0
fi
warn "git-lfs is not installed: Git LFS files deploy as pointer files (as root: apt-get install git-lfs)."
exit 0
