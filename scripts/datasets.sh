#!/usr/bin/env bash
# Installs the real image sets the shipped manifests read, when missing: Fashion-MNIST from Debian's
# `dataset-fashion-mnist` (/usr/share/datasets/fashion-mnist, 30 MB; workflows/fashion.toml and
# workflows/recovery-fashion.toml import it). No data set is downloaded at run time: this is the one setup step.
# Called by scripts/study and scripts/vendor-check; safe to rerun. Needs root (or sudo) the first time.
set -euo pipefail
[[ -d /usr/share/datasets/fashion-mnist ]] && exit 0
echo "hudd: installing Debian's dataset-fashion-mnist" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends dataset-fashion-mnist >&2 \
    || { $sudo apt-get update >&2 && $sudo apt-get install -y --no-install-recommends dataset-fashion-mnist >&2; }
