#!/usr/bin/env bash
# Soak (issue 15): a `kav serve` child under `kav loadgen` for a long run, its memory (RSS), open
# file descriptors and live tokio tasks sampled over time.
#
#   scripts/soak.sh CALLS DURATION_S [SAMPLE_EVERY_S] [RAMP_S]
#
# KAV (default target/release/kav) is the binary; the server gets the same simulated providers
# as `kav loadgen`'s own child server. Samples go to soak-<calls>x<duration>.csv (seconds since
# start, rss_kib, open fds, tokio tasks alive, calls active, live heap); the summary on stdout
# gives the RSS slope after warm-up (least squares over the samples from the end of the ramp +
# 60 s until the first calls end, DURATION s after the start, MB/min) and the fd/task counts idle
# before, at full load, and idle after. KAV_LOADGEN (default KAV) runs the callers.
#
# SOAK_CALL_S=N: instead of CALLS calls that each last the whole DURATION, back-to-back rounds of
# CALLS calls lasting N s each until DURATION is over (calls end and new ones start: memory
# that grows with calls served, rather than with one call's length, shows up as a slope).
# A binary built with `--features dhat-heap` reports its live heap (bytes allocated and not yet
# freed) every 5 s; the CSV then has it in heap_kib and the summary gives its slope next to RSS's,
# and the server's dhat-heap.json (written when it exits) is kept as soak-<calls>x<duration>-dhat.json.
set -euo pipefail

CALLS="${1:?calls}"
DURATION="${2:?duration in seconds}"
EVERY="${3:-10}"
RAMP="${4:-60}"
KAV="${KAV:-target/release/kav}"
KAV_LOADGEN="${KAV_LOADGEN:-$KAV}"
PORT="${SOAK_PORT:-18089}"
URL="http://127.0.0.1:${PORT}"
CSV="soak-${CALLS}x${DURATION}.csv"
DIR="$(mktemp -d)"

KAV_CALL_TTS=simulated KAV_CALL_LANGUAGE=he-IL KAV_CALL_GREETING= \
KAV_STORE_URL="sqlite://${DIR}/soak.db" KAV_LIMITS_WEBHOOK_RATE_PER_S=0 \
KAV_SIM_STT_FIRST_PARTIAL_MS=fixed:150 KAV_SIM_STT_FINAL_MS=fixed:150 \
KAV_SIM_AGENT_FIRST_TOKEN_MS=fixed:300 KAV_SIM_AGENT_TOKEN_MS=fixed:20 \
KAV_SIM_TTS_FIRST_AUDIO_MS=fixed:100 RUST_LOG=warn \
    "$KAV" serve --listen "127.0.0.1:${PORT}" --config "${DIR}/none.toml" 2>"${DIR}/server.log" &
SERVER=$!
cleanup() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    [ -f dhat-heap.json ] && mv dhat-heap.json "soak-${CALLS}x${DURATION}-dhat.json"
    rm -rf "$DIR"
}
trap cleanup EXIT

for _ in $(seq 100); do curl -sf "${URL}/healthz" >/dev/null && break; sleep 0.2; done

metric() { curl -s "${URL}/metrics" | awk -v m="$1" '$1 == m { printf "%d", $2 }'; }
sample() {
    local t="$1"
    local rss
    rss="$(awk '/^VmRSS:/ { print $2 }' "/proc/${SERVER}/status")"
    local heap
    heap="$(awk -F'curr_bytes=' '/^dhat-heap:/ { split($2, v, " "); last = int(v[1] / 1024) } END { print last }' "${DIR}/server.log")"
    echo "${t},${rss},$(metric process_open_fds),$(metric kav_tasks_alive),$(metric kav_calls_active),${heap}"
}

echo "t_s,rss_kib,open_fds,tasks_alive,calls_active,heap_kib" >"$CSV"
sleep 6 # a dhat-heap build reports every 5 s
BEFORE="$(sample 0)"
echo "$BEFORE" >>"$CSV"

START=$(date +%s)
if [ -n "${SOAK_CALL_S:-}" ]; then
    (
        while [ $(($(date +%s) - START)) -lt "$((RAMP + DURATION))" ]; do
            "$KAV_LOADGEN" loadgen --server "$URL" --calls "$CALLS" --duration "$SOAK_CALL_S" \
                --ramp "$RAMP" >"${DIR}/loadgen.txt" 2>&1 || echo "loadgen round exited with $?"
        done
    ) &
else
    "$KAV_LOADGEN" loadgen --server "$URL" --calls "$CALLS" --duration "$DURATION" --ramp "$RAMP" \
        >"${DIR}/loadgen.txt" 2>&1 &
fi
LOADGEN=$!
while kill -0 "$LOADGEN" 2>/dev/null; do
    sleep "$EVERY"
    sample "$(($(date +%s) - START))" >>"$CSV"
done
wait "$LOADGEN" || echo "loadgen exited with $?"
sleep 10
AFTER="$(sample "$(($(date +%s) - START))")"
echo "$AFTER" >>"$CSV"

cat "${DIR}/loadgen.txt"
echo
echo "samples: $CSV"
awk -F, -v warm="$((RAMP + 60))" -v end="$DURATION" \
    -v before="$BEFORE" -v after="$AFTER" '
NR > 1 && $1 >= warm && $1 <= end { n++; sx += $1; sy += $2 / 1024; sxx += $1 * $1; sxy += $1 * $2 / 1024
    if ($6 != "") { hy += $6 / 1024; hxy += $1 * $6 / 1024; heap = 1 }
    if ($3 > fdmax) fdmax = $3; if ($4 > tmax) tmax = $4; if (rmax < $2) rmax = $2 }
END {
    split(before, b, ","); split(after, a, ",")
    if (n > 1) slope = (n * sxy - sx * sy) / (n * sxx - sx * sx) * 60
    printf "RSS: idle %.1f MB, peak after warm-up %.1f MB, idle after %.1f MB\n", b[2] / 1024, rmax / 1024, a[2] / 1024
    printf "RSS slope after warm-up: %+.3f MB/min over %d samples\n", slope, n
    if (heap && n > 1) {
        printf "live heap: idle %.1f MB, idle after %.1f MB\n", b[6] / 1024, a[6] / 1024
        printf "live heap slope after warm-up: %+.3f MB/min\n", (n * hxy - sx * hy) / (n * sxx - sx * sx) * 60
    }
    printf "open fds: before %d, max under load %d, after %d\n", b[3], fdmax, a[3]
    printf "tokio tasks alive: before %d, max under load %d, after %d\n", b[4], tmax, a[4]
}' "$CSV"
