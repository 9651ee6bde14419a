#!/usr/bin/env bash
# bench-ab.sh compares Go test binaries on one benchmark, alternating them
# round after round so that a shared machine's noise falls on each alike,
# and prints, per binary and sub-benchmark, the least and the median ns/op.
#
#   go test -c -o /tmp/before.test ./node/engine/   # on the earlier tree
#   go test -c -o /tmp/after.test ./node/engine/
#   deploy/bench-ab.sh 'EngineDecideHitters1Rule/' /tmp/before.test /tmp/after.test
#
# ROUNDS (default 12) rounds of COUNT (default 3) runs of N (default
# 400000) iterations each, on one CPU.
set -euo pipefail
pattern=$1
shift
for _ in $(seq "${ROUNDS:-12}"); do
  for bin in "$@"; do
    "$bin" -test.run '^$' -test.bench "$pattern" -test.benchtime "${N:-400000}x" \
      -test.count "${COUNT:-3}" -test.cpu 1 | awk -v bin="$(basename "$bin")" '/ns\/op/ {print bin, $1, $3}'
  done
done | sort -k1,1 -k2,2 -k3,3g | awk '
  { key = $1 " " $2; v[key, ++n[key]] = $3; if (!(key in seen)) { seen[key] = 1; keys[++k] = key } }
  END { for (i = 1; i <= k; i++) { key = keys[i]; printf "%-70s least %8.1f  median %8.1f ns/op  (%d runs)\n", key, v[key, 1], v[key, int((n[key] + 1) / 2)], n[key] } }'
