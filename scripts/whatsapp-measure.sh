#!/usr/bin/env bash
# Measures the WhatsApp channel end to end on loopback: N distinct signed Cloud API webhooks are
# posted one after another with `kav replay` (the accept path: verify, parse, dedup-insert, 200),
# then each is posted again (all duplicates), and we wait until every message has been answered
# (inbox → simulated agent with zero latency → mock sender). Prints wall times.
#
#   scripts/whatsapp-measure.sh [N] [path/to/kav]       # default 200, target/debug/kav
set -euo pipefail
N="${1:-200}"
KAV="${2:-${CARGO_TARGET_DIR:-target}/debug/kav}"
PORT="${KAV_MEASURE_PORT:-18099}"
TMP="$(mktemp -d)"
cleanup() { [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

cat >"$TMP/config.toml" <<TOML
[call]
tts = "simulated"
[sim]
agent_first_token_ms = "fixed:0"
agent_token_ms = "fixed:0"
[store]
url = "sqlite://$TMP/kav.db"
[whatsapp]
mock_sends = true
[[whatsapp.numbers]]
business_id = "biz-ny"
business_name = "New York Studio"
language = "en-US"
phone_number_id = "106540352242922"
display_number = "15550783881"
TOML

for i in $(seq 1 "$N"); do
  phone=$((16505550000 + i))
  printf '{"object":"whatsapp_business_account","entry":[{"id":"1","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"contacts":[{"profile":{"name":"Load %s"},"wa_id":"%s"}],"messages":[{"from":"%s","id":"wamid.LOAD%06d","timestamp":"1749416383","type":"text","text":{"body":"I would like to book the New York room"}}]}}]}]}' \
    "$i" "$phone" "$phone" "$i" >"$TMP/hook_$(printf %06d "$i").json"
done

export WHATSAPP_APP_SECRET=measure-secret KAV_ADMIN_TOKEN=measure-admin RUST_LOG=warn
"$KAV" --config "$TMP/config.toml" serve --listen "127.0.0.1:$PORT" >"$TMP/server.log" 2>&1 &
SERVER_PID=$!
for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done

now() { date +%s%N; }
t0=$(now)
"$KAV" replay --url "http://127.0.0.1:$PORT/whatsapp/webhook" "$TMP"/hook_*.json >/dev/null
t1=$(now)
"$KAV" replay --url "http://127.0.0.1:$PORT/whatsapp/webhook" "$TMP"/hook_*.json >/dev/null
t2=$(now)
answered=0
while [ "$answered" -lt "$N" ]; do
  answered=$(curl -fs -H "Authorization: Bearer $KAV_ADMIN_TOKEN" \
    "http://127.0.0.1:$PORT/api/conversations?limit=1000" |
    python3 -c 'import json,sys; print(sum(1 for c in json.load(sys.stdin) if c["message_count"] >= 2))')
  [ "$answered" -ge "$N" ] && break
  sleep 0.05
done
t3=$(now)
ms() { echo $(( ($2 - $1) / 1000000 )); }
echo "webhooks: $N distinct, posted sequentially (kav replay: one HTTP client, keep-alive)"
echo "  accept (verify + dedup insert + 200): $(ms "$t0" "$t1") ms total, $(( ($t1 - $t0) / N / 1000 )) us per webhook"
echo "  duplicates (all $N again):           $(ms "$t1" "$t2") ms total, $(( ($t2 - $t1) / N / 1000 )) us per webhook"
echo "  all $N answered (mock sends) after:  $(ms "$t0" "$t3") ms from the first post"
curl -fs "http://127.0.0.1:$PORT/metrics" | grep '^kav_whatsapp' || true
