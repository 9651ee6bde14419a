#!/usr/bin/env bash
# TLS cost on the check API, as a ratio measured in one run: two single
# nodes (local mode, same binary and rules), one serving plain HTTP and one
# HTTPS with a throw-away P-256 certificate, measured alternately ROUNDS
# times so machine noise hits both alike. Prints single-check checks/s
# (`sluice bench`, 64 callers, keep-alive) and batch decisions/s
# (deploy/batchload, batches of 1000). See docs/PERFORMANCE.md.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin/sluice}
DURATION=${DURATION:-5s}
ROUNDS=${ROUNDS:-3}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" -subj /CN=localhost \
  -addext "subjectAltName=IP:127.0.0.1" 2>/dev/null
go build -o "$work/batchload" ./deploy/batchload

start() { # name http-port raft-port extra-flags...
  local name=$1 http=$2 raft=$3
  shift 3
  "$BIN" serve --node-id "$name" --data-dir "$work/$name" --http-addr "127.0.0.1:$http" \
    --raft-addr "127.0.0.1:$raft" --rules testdata/rules.json --log-level warn "$@" 2>"$work/$name.log" &
  pids+=($!)
}
start plain 18700 17700
start tls 18701 17701 --http-cert "$work/cert.pem" --http-key "$work/key.pem"
for _ in $(seq 300); do
  if "$BIN" health --ready --addr 127.0.0.1:18700 >/dev/null 2>&1 &&
     "$BIN" health --ready --addr https://127.0.0.1:18701 --ca-cert "$work/cert.pem" >/dev/null 2>&1; then break; fi
  sleep 0.1
done

single() { # url
  "$BIN" bench --target "$1" --ca-cert "$work/cert.pem" --duration "$DURATION" \
    --concurrency 64 --keys 10000 2>/dev/null |
    awk '/throughput\/s/ {getline; t=$5} /per call/ {print t " checks/s, p50 " $3 " ms, p99 " $5 " ms"; exit}'
}
batch() { # url
  "$work/batchload" -url "$1/v1/check/batch" -ca-cert "$work/cert.pem" -c 4 -d "$DURATION"
}
for r in $(seq "$ROUNDS"); do
  echo "== round $r"
  echo "single plain: $(single http://127.0.0.1:18700)"
  echo "single tls:   $(single https://127.0.0.1:18701)"
  echo "batch plain:  $(batch http://127.0.0.1:18700)"
  echo "batch tls:    $(batch https://127.0.0.1:18701)"
done
