#!/usr/bin/env bash
# Deploy tests (internal/sshdocker, internal/deploy) run their own sshd from Debian's
# openssh-server on a loopback port, in front of the local Docker Engine.
# The tests start sshd themselves with their own config; nothing is started here.
set -euo pipefail

if [ ! -x /usr/sbin/sshd ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends openssh-server
fi
# sshd refuses to start without its privilege-separation directory.
mkdir -p /run/sshd

if [ ! -S /var/run/docker.sock ]; then
  echo "deploy tests need the Docker Engine at /var/run/docker.sock" >&2
  exit 1
fi
