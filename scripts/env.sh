# Sourced by ./hudd and scripts/test: makes libtorch available to cargo (installing it on first use).
# Sets LIBTORCH to the torch package of the cached venv; build.rs embeds its lib folder as the binary's rpath.
hudd_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
hudd_venv="$("$hudd_root/scripts/libtorch.sh")"
LIBTORCH="$(ls -d "$hudd_venv"/lib/python3*/site-packages/torch | head -n 1)"
export LIBTORCH
