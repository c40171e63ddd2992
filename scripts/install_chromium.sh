#!/usr/bin/env bash
# Headless Chromium for scripts/ui_screenshot.py and its test: Debian's `chromium` package.
# Does nothing when a Chromium is already on the PATH (or $PBE_CHROMIUM names one).
set -euo pipefail
for candidate in "${PBE_CHROMIUM:-}" chromium chromium-browser google-chrome; do
    if [ -n "$candidate" ] && command -v "$candidate" >/dev/null 2>&1; then
        echo "chromium: $(command -v "$candidate") ($("$candidate" --version 2>/dev/null || true))"
        exit 0
    fi
done
if ! command -v apt-get >/dev/null 2>&1; then
    echo "chromium: no apt-get here; install Chromium and set PBE_CHROMIUM to it" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    chromium fonts-dejavu-core >/dev/null
echo "chromium: $(command -v chromium) ($(chromium --version))"
