#!/usr/bin/env bash
# Warm keys over HTTP, in one run (make bench; docs/PERFORMANCE.md "Global mode: many warm
# keys"): a node with Redis (global mode) against the same node without Redis (local mode),
# the same rule (100,000/s per key: never binding) and the same load driver (`sluice bench`,
# closed loop, CONCURRENCY callers, keys round-robin), for each key count in KEYS_LIST. After
# a warm-up (below: until a warm-up round's refills are at most 5% of its decisions) the two are measured
# alternately ROUNDS times. Per round it prints checks/s of each and their ratio, then for the
# node with Redis: script runs and round trips per decision (the node's
# sluice_redis_script_runs_total and sluice_redis_round_trips_total; the script runs Redis saw
# are printed beside them) and Redis CPU per decision (INFO cpu: the server's user + system
# time; INFO commandstats: the script's own time). The baseline is one INCRBY and one EXPIRE
# per check (a counter per request) against the same kind of Redis (the first binary's),
# driven by redis-benchmark.
#
# BIN is the binary under test; BINS (label=path ...) compares several in the same run,
# alternating them round by round, e.g. BINS="before=/tmp/sluice-old after=bin/sluice".
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${BIN:-bin/sluice}
BINS=${BINS:-"sluice=$BIN"}
KEYS_LIST=${KEYS_LIST:-"1000 100000"}
DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-2}
CONCURRENCY=${CONCURRENCY:-32}
SLICE_MAX_TTL=${SLICE_MAX_TTL:-}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# take_port sets port to the next loopback port nothing listens on.
port=$((20000 + RANDOM % 20000))
take_port() {
  port=$((port + 1))
  while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do port=$((port + 1)); done
}
ready() { # http-addr
  for _ in $(seq 300); do
    if "$BIN" health --ready --addr "$1" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "node $1 not ready; its log:" >&2
  cat "$work"/*.log >&2
  return 1
}

cat >"$work/rules.json" <<'EOF'
{"rules": [{"name": "warm", "key": ["ip"], "limit": {"rate": 100000, "per": "1s"}}]}
EOF

# Per binary: a redis-server of its own (so one node's background renewals do not count
# against another's), one node with it and one without; addr[<label>-<redis|local>].
declare -A addr rport
labels=()
for spec in $BINS; do
  label=${spec%%=*} bin=${spec#*=}
  labels+=("$label")
  take_port
  rport[$label]=$port
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no \
    --dir "$work" --dbfilename "$label.rdb" --logfile "$work/redis-$label.log" &
  pids+=($!)
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  for mode in redis local; do
    take_port
    http=127.0.0.1:$port
    take_port
    extra=()
    if [ "$mode" = redis ]; then
      extra=(--redis "127.0.0.1:${rport[$label]}")
      if [ -n "$SLICE_MAX_TTL" ]; then extra+=(--slice-max-ttl "$SLICE_MAX_TTL"); fi
    fi
    "$bin" serve --node-id "$label-$mode" --data-dir "$work/$label-$mode" --http-addr "$http" \
      --raft-addr "127.0.0.1:$port" --rules "$work/rules.json" --log-level warn \
      "${extra[@]}" 2>"$work/$label-$mode.log" &
    pids+=($!)
    addr[$label-$mode]=$http
  done
done
for a in "${addr[@]}"; do ready "$a"; done

# bench ADDR KEYS DURATION: prints "sent checks/s" of one closed-loop run.
bench() {
  "$BIN" bench --target "$1" --duration "$3" --concurrency "$CONCURRENCY" --keys "$2" 2>/dev/null |
    awk '/throughput\/s/ {getline; print $1, $5; exit}'
}
# metric ADDR NAME: the sum of a metric's samples on the node (0 if it has none).
metric() {
  curl -s "http://$1/metrics" | awk -v m="$2" '$1 == m || index($1, m "{") == 1 {s += $2} END {printf "%.0f\n", s}'
}
# redis_side PORT: "script-calls script-usec cpu-usec counter-usec" from INFO.
redis_side() {
  redis-cli -p "$1" info all | tr -d '\r' | awk -F'[:,=]' '
    /^cmdstat_evalsha:|^cmdstat_eval:/ {calls += $3; usec += $5}
    /^cmdstat_incrby:|^cmdstat_expire:/ {cusec += $5}
    /^used_cpu_user:|^used_cpu_sys:/ {cpu += $2 * 1e6}
    END {printf "%d %d %.0f %d\n", calls, usec, cpu, cusec}'
}

echo "== warm keys over HTTP: $(nproc) CPUs shared by everything; $(uptime | sed 's/.*load/load/')"
echo "== binaries: $BINS; callers $CONCURRENCY; ${DURATION} per measurement"
for keys in $KEYS_LIST; do
  # Warm-up: the node with Redis runs rounds until a round's refills by requests
  # (sluice_redis_calls_total{kind="acquire"} counts them with the renewals ahead) fall to
  # 5% of its decisions, at most WARMUP_ROUNDS; the node without Redis runs one round.
  warm=$(( keys / 2500 > 40 ? 40 : (keys / 2500 < 5 ? 5 : keys / 2500) ))s
  for label in "${labels[@]}"; do
    bench "${addr[$label-local]}" "$keys" "$warm" >/dev/null
    g=${addr[$label-redis]}
    for w in $(seq "${WARMUP_ROUNDS:-8}"); do
      a0=$(metric "$g" 'sluice_redis_calls_total{kind="acquire"}')
      read -r sent _ < <(bench "$g" "$keys" "$warm")
      a1=$(metric "$g" 'sluice_redis_calls_total{kind="acquire"}')
      echo "   warm-up keys=$keys $label round $w: $sent decisions, $((a1 - a0)) acquires"
      if [ $(( (a1 - a0) * 20 )) -le "$sent" ]; then break; fi
    done
  done
  for r in $(seq "$ROUNDS"); do
    for label in "${labels[@]}"; do
      g=${addr[$label-redis]}
      read -r _ local_rate < <(bench "${addr[$label-local]}" "$keys" "$DURATION")
      runs0=$(metric "$g" sluice_redis_script_runs_total) trips0=$(metric "$g" sluice_redis_round_trips_total)
      read -r sc0 su0 cpu0 _ < <(redis_side "${rport[$label]}")
      read -r sent global_rate < <(bench "$g" "$keys" "$DURATION")
      read -r sc1 su1 cpu1 _ < <(redis_side "${rport[$label]}")
      runs1=$(metric "$g" sluice_redis_script_runs_total) trips1=$(metric "$g" sluice_redis_round_trips_total)
      awk -v k="$keys" -v r="$r" -v l="$label" -v lr="$local_rate" -v gr="$global_rate" -v n="$sent" \
        -v runs=$((runs1 - runs0)) -v trips=$((trips1 - trips0)) -v sc=$((sc1 - sc0)) \
        -v su=$((su1 - su0)) -v cpu=$((cpu1 - cpu0)) 'BEGIN {
        printf "keys=%d round=%d %-8s local %8.0f/s  redis %8.0f/s  ratio %.2f | script runs/decision %.5f (redis saw %.5f)  round trips/decision %.5f | redis cpu µs/decision %.3f  script µs/decision %.3f\n",
          k, r, l, lr, gr, gr / lr, runs / n, sc / n, trips / n, cpu / n, su / n }'
    done
  done
done

if command -v redis-benchmark >/dev/null; then
  n=200000 p=${rport[${labels[0]}]}
  read -r _ _ cpu0 cu0 < <(redis_side "$p")
  redis-benchmark -p "$p" -q -n "$n" -c "$CONCURRENCY" -r 1000 INCRBY ctr:__rand_int__ 1 >/dev/null
  redis-benchmark -p "$p" -q -n "$n" -c "$CONCURRENCY" -r 1000 EXPIRE ctr:__rand_int__ 1 >/dev/null
  read -r _ _ cpu1 cu1 < <(redis_side "$p")
  awk -v n="$n" -v cpu=$((cpu1 - cpu0)) -v cu=$((cu1 - cu0)) 'BEGIN {
    printf "baseline: INCRBY+EXPIRE per check: redis cpu µs/check %.3f  commands µs/check %.3f\n", cpu / n, cu / n }'
else
  echo "baseline: redis-benchmark not found, INCRBY+EXPIRE baseline not measured"
fi
