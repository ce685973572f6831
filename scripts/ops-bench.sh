#!/usr/bin/env bash
# Ops view figures: page render and SSE fan-out cost while `kav loadgen` holds N calls.
# usage: scripts/ops-bench.sh KAV_BINARY CALLS SSE_CLIENTS   (e.g. target/release/kav 1000 50)
# Starts `kav serve` (simulated providers, SQLite in a temp dir), holds CALLS calls with
# `kav loadgen --server`, then measures the server's CPU without and with SSE_CLIENTS open
# `/console/ops/events` streams, and 50 renders each of `/console/ops` and `/console/api/ops`.
set -u
KAV=$(realpath "$1"); CALLS=$2; CLIENTS=$3
PORT=18931
DIR=$(mktemp -d)
cd "$DIR"
export KAV_ADMIN_TOKEN=bench-token KAV_CALL_STT=simulated KAV_CALL_AGENT=simulated KAV_CALL_TTS=simulated
export KAV_STORE_URL="sqlite://$DIR/kav.db" KAV_LIMITS_MAX_CALLS=5000 KAV_LIMITS_WEBHOOK_RATE_PER_S=0 KAV_LIMITS_MAX_LOOP_LAG_MS=0
"$KAV" serve --listen 127.0.0.1:$PORT > serve.log 2>&1 &
SERVE=$!
for i in $(seq 50); do curl -sf http://127.0.0.1:$PORT/healthz >/dev/null && break; sleep 0.2; done
"$KAV" loadgen --server http://127.0.0.1:$PORT --calls $CALLS --duration 60 --ramp 10 > loadgen.log 2>&1 &
LG=$!
sleep 15
cpu() { awk '{print $14+$15}' /proc/$SERVE/stat; }
TCK=$(getconf CLK_TCK)
live=$(curl -s -H "Authorization: Bearer bench-token" http://127.0.0.1:$PORT/console/api/ops | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["live"]))')
echo "live calls listed: $live"
# CPU over 10 s without event streams
c0=$(cpu); sleep 10; c1=$(cpu)
echo "server CPU without SSE clients: $(( (c1-c0)*100/TCK/10 )) % of a core"
# CPU over 10 s with CLIENTS event streams (HTML rows)
pids=()
for i in $(seq $CLIENTS); do
  curl -sN -H "Authorization: Bearer bench-token" http://127.0.0.1:$PORT/console/ops/events > sse_$i.txt 2>/dev/null & pids+=($!)
done
sleep 2
c0=$(cpu); sleep 10; c1=$(cpu)
echo "server CPU with $CLIENTS SSE clients: $(( (c1-c0)*100/TCK/10 )) % of a core"
kill "${pids[@]}" 2>/dev/null
echo "bytes of the last event per client: $(tail -c 200000 sse_1.txt | awk '/^event: calls/{n=0} /^data/{n+=length($0)} END{print n}')"
# page render: 50 requests each
for path in /console/ops /console/api/ops; do
  for i in $(seq 50); do
    curl -s -o /dev/null -w '%{time_total}\n' -H "Authorization: Bearer bench-token" http://127.0.0.1:$PORT$path
  done | sort -n | awk -v p=$path '{a[NR]=$1} END{printf "%s: n=%d p50=%.1f ms p99=%.1f ms max=%.1f ms\n", p, NR, a[int(NR*0.5)]*1000, a[int(NR*0.99)]*1000, a[NR]*1000}'
done
wait $LG
tail -5 loadgen.log
kill $SERVE; wait $SERVE 2>/dev/null
echo "dir: $DIR"
