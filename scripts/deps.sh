#!/usr/bin/env bash
# Installs the Debian packages the tests use, when missing: chromium (the report's browser test), slurm-wlm and
# munge (a single-node Slurm cluster for the Slurm executor's test), strace (counts a run's fsync calls), qemu-user
# (tests/it/kernels.rs runs the kernels' hash test again under emulated AMD and Intel CPUs).
# Called by scripts/test; safe to rerun. Needs root (or sudo) the first time.
set -euo pipefail
packages=(chromium slurm-wlm munge strace qemu-user)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "hudd: installing Debian packages: ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
    || { $sudo apt-get update >&2 && $sudo apt-get install -y --no-install-recommends "${missing[@]}" >&2; }
