#!/usr/bin/env bash
# Installs what a FUSE filesystem needs on Debian (fusermount3, from fuse3),
# for crates/forgetfs and the power cuts of real processes (issue 20).
# Does nothing if it is there; says why and exits 0 if it cannot install
# (the tests that need it then print SKIPPED with the reason).
set -euo pipefail
if command -v fusermount3 >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "deploy/fuse/install.sh: cannot install fuse3 here (needs root and apt-get); FUSE tests will be SKIPPED" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q fuse3 >/dev/null 2>&1 || {
    apt-get update -q >/dev/null 2>&1
    apt-get install -y -q fuse3 >/dev/null
}
command -v fusermount3 >/dev/null
