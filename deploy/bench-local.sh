#!/usr/bin/env bash
# The second half of `make bench`: start redis-server and three sluice nodes
# on free loopback ports, run short `sluice bench` scenarios against the
# cluster, and print the headline figures. Tables, JSON and charts go to
# $OUT (docs/bench-out). Everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin/sluice}
OUT=${OUT:-docs/bench-out}
DURATION=${DURATION:-5s}
TOKEN=bench-local-token
work=$(mktemp -d)
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# free_port prints a loopback port nothing listens on.
free_port() {
  local port
  while :; do
    port=$((20000 + RANDOM % 30000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
}

# wait_until CMD...: retry for up to 30 s.
wait_until() {
  for _ in $(seq 300); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "timed out waiting for: $*" >&2
  return 1
}

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no \
  --dir "$work" --logfile "$work/redis.log" &
pids+=($!)
wait_until redis-cli -p "$redis_port" ping

http=()
for i in 1 2 3; do
  http_port=$(free_port)
  raft_port=$(free_port)
  http+=("127.0.0.1:$http_port")
  join=()
  if [ "$i" -gt 1 ]; then join=(--join "${http[0]}"); fi
  "$BIN" serve --node-id "n$i" --data-dir "$work/n$i" \
    --http-addr "127.0.0.1:$http_port" --raft-addr "127.0.0.1:$raft_port" \
    --redis "127.0.0.1:$redis_port" --rules testdata/rules.json \
    --admin-token "$TOKEN" --log-level warn "${join[@]}" 2>"$work/n$i.log" &
  pids+=($!)
done
for addr in "${http[@]}"; do wait_until "$BIN" health --ready --addr "$addr"; done
targets=$(IFS=,; echo "${http[*]}")
mkdir -p "$OUT"

echo "== cluster: 3 nodes ($targets), redis 127.0.0.1:$redis_port; $(nproc) CPUs shared by all"

echo "== 1. throughput: closed loop, 64 callers, 10000 keys, single checks"
"$BIN" bench --target "$targets" --token "$TOKEN" --duration "$DURATION" \
  --concurrency 64 --keys 10000 --out "$OUT/throughput" 2>/dev/null

echo "== 2. batch throughput: closed loop, 8 callers, batches of 100, 10000 keys"
"$BIN" bench --target "$targets" --token "$TOKEN" --duration "$DURATION" \
  --concurrency 8 --batch 100 --keys 10000 --out "$OUT/batch" 2>/dev/null

echo "== 3. accuracy: one hot key (limit 100/s, burst 200) at 1000 checks/s over all three nodes"
"$BIN" bench --target "$targets" --token "$TOKEN" --duration "$DURATION" \
  --rate 1000 --concurrency 32 --keys 1 --out "$OUT/hotkey" 2>/dev/null
