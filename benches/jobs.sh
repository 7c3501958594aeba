#!/usr/bin/env bash
# The quickstart from empty stores, one stage at a time (`-j 1`) against `hudd run`'s default (as many stages at
# once as the machine has cores), back to back in one run; prints both wall times, the ratio and whether the two
# runs gave the same key for every stage. Run it with nothing heavy beside it:
#   benches/jobs.sh [manifest] [extra hudd run arguments...]
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
manifest="${1:-workflows/quickstart.toml}"
shift || true
"$root/hudd" --version >/dev/null
hudd="$root/target/release/hudd"
name="$(basename "$manifest" .toml)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

run() { # label, hudd run arguments...
  local label="$1"
  shift
  local ws="$work/$label"
  mkdir -p "$ws/workflows"
  cp -r "$root/workflows/." "$ws/workflows/"
  local start end
  start=$(date +%s.%N)
  (cd "$ws" && "$hudd" run "$manifest" "$@" >/dev/null 2>"$ws/log")
  end=$(date +%s.%N)
  echo "$end - $start" | bc
}

one=$(run one -j 1 "$@")
auto=$(run auto "$@")
same=$(cmp -s <(jq -S '.stages | map({id, key})' "$work"/one/.hudd/runs/*-"$name".json) \
              <(jq -S '.stages | map({id, key})' "$work"/auto/.hudd/runs/*-"$name".json) && echo yes || echo NO)
cores=$(nproc)
printf '%s on %s cores\n' "$manifest" "$cores"
printf '  -j 1                 %8.1f s\n' "$one"
printf '  default (-j %s)       %8.1f s\n' "$cores" "$auto"
printf '  speed-up             %8.2f x\n' "$(echo "$one / $auto" | bc -l)"
printf '  same key per stage   %s\n' "$same"
