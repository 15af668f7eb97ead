#!/usr/bin/env bash
# Installs a headless browser on Debian (the chromium package), for the test
# that opens paxsim's space-time diagram in a real browser (issue 24).
# Does nothing if one is there; says why and exits 0 if it cannot install
# (the test then prints SKIPPED with the reason).
set -euo pipefail
for b in chromium chromium-browser google-chrome; do
    if command -v "$b" >/dev/null 2>&1; then
        exit 0
    fi
done
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "deploy/chromium/install.sh: cannot install chromium here (needs root and apt-get); the browser test will be SKIPPED" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -q --no-install-recommends chromium >/dev/null 2>&1 || {
    apt-get update -q >/dev/null 2>&1
    apt-get install -y -q --no-install-recommends chromium >/dev/null
}
command -v chromium >/dev/null
