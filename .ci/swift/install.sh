#!/usr/bin/env bash
# Install OpenStack Swift (Debian 12 packages) and memcached without starting any service:
# a policy-rc.d that answers 101 blocks the packages' init scripts / systemd units during
# installation; .ci/swift/start.sh runs the servers as plain processes instead.
set -euo pipefail
PKGS=(swift swift-proxy swift-account swift-container swift-object memcached curl)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "swift: packages already installed"
    exit 0
fi
had_policy=0
[ -e /usr/sbin/policy-rc.d ] && had_policy=1
if [ $had_policy -eq 0 ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 0755 /usr/sbin/policy-rc.d
fi
trap '[ $had_policy -eq 0 ] && rm -f /usr/sbin/policy-rc.d' EXIT
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
echo "swift: installed ${missing[*]}"
