#!/usr/bin/env bash
# Runner Droplet tests (internal/runnerhost) check the cloud-init shoal writes with
# Debian's cloud-init (`cloud-init schema`) and the runner unit's drop-in with
# systemd-analyze. Nothing is started.
set -euo pipefail

missing=()
command -v cloud-init >/dev/null || missing+=(cloud-init)
command -v systemd-analyze >/dev/null || missing+=(systemd)
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
