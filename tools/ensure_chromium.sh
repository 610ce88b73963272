#!/usr/bin/env bash
# Make sure Debian's Chromium and its matching chromedriver are installed: the chat page
# test (tests/test_chat_page.py) drives them. Idempotent; `make test` calls it.
set -euo pipefail

if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "Chromium is missing; the chat page test needs it. Install it with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y chromium chromium-driver" >&2
    exit 1
fi

echo "Installing chromium and chromium-driver (Debian packages)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq chromium chromium-driver >/dev/null
/usr/bin/chromium --version
