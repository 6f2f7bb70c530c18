#!/usr/bin/env bash
# Installs what the real-browser test of `captag serve` needs (tests/integration/browser.rs):
# Debian's headless-capable Chromium and its WebDriver. Run by `make test`; does nothing when
# both are already on PATH. Needs root or passwordless sudo for apt-get.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo -n"; else
    echo "install-browser: chromium/chromedriver missing and no root or sudo to install them" >&2
    echo "install-browser: install Debian's chromium and chromium-driver packages yourself" >&2
    exit 1
  fi
fi
echo "install-browser: installing chromium and chromium-driver (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null || true
$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null
command -v chromium >/dev/null && command -v chromedriver >/dev/null
