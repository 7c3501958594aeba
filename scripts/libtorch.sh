#!/usr/bin/env bash
# Installs libtorch for tch (the PyPI wheel torch==2.13.0, the version tch 0.26 expects)
# into a venv under the user's cache folder, reused when present.
# Prints the venv's path on stdout; everything else goes to stderr.
set -euo pipefail

TORCH_VERSION=2.13.0
cache="${HUDD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/hudd}"
venv="$cache/torch-$TORCH_VERSION"
stamp="$venv/.hudd-ready"

if [ ! -f "$stamp" ]; then
  echo "hudd: installing libtorch (PyPI torch==$TORCH_VERSION) into $venv; about a minute and 5 GB, once" >&2
  mkdir -p "$cache"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION" >&2
  # -W ignore: importing torch without NumPy prints a warning that concerns Python users only.
  "$venv/bin/python3" -W ignore -c 'import torch, sys; assert torch.__version__.split("+")[0] == sys.argv[1], torch.__version__' "$TORCH_VERSION"
  touch "$stamp"
fi
echo "$venv"
