#!/usr/bin/env bash
# Install everything the test suite needs (Debian packages and Python extras), then run it.
# Usage (from the repository root, on Debian/Ubuntu): sudo bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

DEBIAN_PACKAGES=(prometheus prometheus-alertmanager prometheus-node-exporter nftables ethtool iproute2 procps)
missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  $SUDO apt-get update -qq
  # The packaged services must not start on their own and hold the ports the tests use.
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
  $SUDO rm -f /usr/sbin/policy-rc.d
fi

python3 -m pip install -q --disable-pip-version-check -e '.[test]'
python3 -m ruff check .
python3 -m pytest -q "$@"
