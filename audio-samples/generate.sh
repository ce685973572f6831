#!/usr/bin/env bash
# Regenerates the caller test clips in this folder: 8 kHz mono mu-law WAV, as Twilio delivers.
#
# Deterministic for a given espeak-ng and sox version (sox runs with -R, no dither, no noise
# seeding from the clock), so a re-run leaves `git status` clean. SHA256SUMS records the
# expected bytes; `./generate.sh --check` regenerates into a temp dir and compares.
#
# Needs espeak-ng and sox (scripts/setup.sh installs both).
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
OUT="$HERE"
CHECK=0
TMP="$(mktemp -d)"
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT
if [ "${1:-}" = "--check" ]; then
  CHECK=1
  OUT="$TMP/out"
  mkdir "$OUT"
fi

# The versions the committed clips were made with; other versions give slightly different audio.
ESPEAK_VERSION_EXPECTED="1.51"
SOX_VERSION_EXPECTED="v14.4.2"
SPEED=160

for bin in espeak-ng sox sha256sum; do
  command -v "$bin" >/dev/null 2>&1 || {
    echo "generate.sh: '$bin' not found (run scripts/setup.sh)" >&2
    exit 1
  }
done
espeak_version="$(espeak-ng --version | awk '{print $4}')"
sox_version="$(sox --version 2>&1 | awk '{print $NF}')"
[ "$espeak_version" = "$ESPEAK_VERSION_EXPECTED" ] ||
  echo "generate.sh: warning: espeak-ng $espeak_version, clips were made with $ESPEAK_VERSION_EXPECTED" >&2
[ "$sox_version" = "$SOX_VERSION_EXPECTED" ] ||
  echo "generate.sh: warning: sox $sox_version, clips were made with $SOX_VERSION_EXPECTED" >&2

# -R: repeatable (fixed PRNG seed); -D: no dither, which would add random noise.
SOX=(sox -R -D -V1)
# Telephone-like output: 8 kHz mono 8-bit mu-law, peak-normalised to -3 dBFS.
MULAW=(-r 8000 -c 1 -e mu-law -b 8)

speak() { # name voice text
  local name="$1" voice="$2" text="$3"
  # Text goes in as an argument after `--`, never through a shell.
  espeak-ng -v "$voice" -s "$SPEED" -w "$TMP/$name.raw.wav" -- "$text"
  "${SOX[@]}" "$TMP/$name.raw.wav" "${MULAW[@]}" "$OUT/$name.wav" gain -n -3
}

speak book_en en-us "Hi, I would like to book an appointment for tomorrow morning."
speak barge_en en-us "Wait, actually, can we make it in the afternoon?"
speak thanks_en en-us "Thank you, goodbye."
speak book_he he "שלום, אני רוצה לקבוע תור למחר בבוקר"

# 120 ms burst: a 5 ms full-scale click followed by decaying white noise. Loud enough for a VAD
# to fire on, shorter than any minimum utterance.
"${SOX[@]}" -n -r 8000 -c 1 -b 16 "$TMP/click.wav" synth 0.005 square 1000 gain -1
"${SOX[@]}" -n -r 8000 -c 1 -b 16 "$TMP/noise.wav" synth 0.115 whitenoise gain -6 fade q 0 0.115 0.1
"${SOX[@]}" "$TMP/click.wav" "$TMP/noise.wav" "${MULAW[@]}" "$OUT/short_noise.wav"

# DTMF: each key is an 80 ms pair of sines (row + column) at about -10 dBFS per tone,
# followed by 80 ms of silence.
dtmf_pair() {
  case "$1" in
    1) echo "697 1209" ;; 2) echo "697 1336" ;; 3) echo "697 1477" ;;
    4) echo "770 1209" ;; 5) echo "770 1336" ;; 6) echo "770 1477" ;;
    7) echo "852 1209" ;; 8) echo "852 1336" ;; 9) echo "852 1477" ;;
    '*') echo "941 1209" ;; 0) echo "941 1336" ;; '#') echo "941 1477" ;;
    *) echo "generate.sh: not a DTMF key: $1" >&2; return 1 ;;
  esac
}
keys="0501234567#"
parts=()
for ((i = 0; i < ${#keys}; i++)); do
  read -r low high <<<"$(dtmf_pair "${keys:i:1}")"
  # Two sines on two channels, averaged to mono (-6 dB each), then -4 dB: -10 dBFS per tone.
  "${SOX[@]}" -n -r 8000 -c 2 -b 16 "$TMP/key$i.wav" \
    synth 0.08 sine "$low" sine "$high" remix - gain -4 pad 0 0.08
  parts+=("$TMP/key$i.wav")
done
"${SOX[@]}" "${parts[@]}" "${MULAW[@]}" "$OUT/dtmf_0501234567_hash.wav"

CLIPS=(book_en.wav barge_en.wav thanks_en.wav book_he.wav short_noise.wav dtmf_0501234567_hash.wav)
if [ "$CHECK" -eq 1 ]; then
  (cd "$OUT" && sha256sum -c --quiet "$HERE/SHA256SUMS") && echo "generate.sh: clips match SHA256SUMS"
else
  (cd "$OUT" && sha256sum "${CLIPS[@]}" >SHA256SUMS)
  for clip in "${CLIPS[@]}"; do
    printf '%-28s %6.2f s %7d bytes\n' "$clip" "$(soxi -D "$OUT/$clip")" "$(stat -c %s "$OUT/$clip")"
  done
fi
