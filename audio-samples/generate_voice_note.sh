#!/usr/bin/env bash
# Regenerates voice_note_en.ogg: a WhatsApp-style voice note (OGG/Opus, mono, 16 kHz speech,
# 24 kb/s VBR) of espeak-ng speech. Used by tests/whatsapp.rs (voice note decoding and STT).
# Needs espeak-ng and opus-tools (scripts/setup.sh installs both).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
TEXT="Check next Friday at nine in the evening for the Barcelona room."
espeak-ng -v en-us -s 160 -w "$TMP/speech.wav" "$TEXT"
# --discard-comments: no encoder/version tags, so the bytes depend on the audio only.
opusenc --quiet --discard-comments --bitrate 24 --serial 1 "$TMP/speech.wav" "$HERE/voice_note_en.ogg"
echo "wrote $HERE/voice_note_en.ogg ($(stat -c %s "$HERE/voice_note_en.ogg") bytes): $TEXT"
