#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each for SECONDS_PER_TARGET (default 20).
# Exits non-zero on the first crash (the input is left in fuzz/artifacts/<target>/).
# Stable toolchain only: RUSTC_BOOTSTRAP=1 lets stable rustc take cargo-fuzz's -Z flags.
# Needs: cargo install cargo-fuzz --locked (0.13.2), a C++ compiler (libFuzzer is built by libfuzzer-sys).
#   scripts/fuzz.sh seed   only (re)copies the seed corpora from fixtures/ and $KAV_PROTOCOL_FIXTURES (default ../shared/protocol-fixtures beside the clone).
set -euo pipefail
secs="${1:-20}"
cd "$(dirname "$0")/../fuzz"
if [ "$secs" = seed ]; then
    # Small seeds only (the corpora are committed): vendor frames, webhooks, forms, signature
    # vectors, and one second of the ITU G.191 mu-law sweep in 160-byte frames after a mode byte.
    for target in twilio_inbound whatsapp_webhook twilio_form signatures audio_frames; do
        mkdir -p "corpus/$target"
    done
    for dir in ../fixtures "${KAV_PROTOCOL_FIXTURES:-../../shared/protocol-fixtures}"; do
        [ -d "$dir" ] || continue
        cp -f "$dir"/twilio/{connected,start,media_inbound,dtmf,mark_inbound,stop,send_media,send_mark,send_clear}.json corpus/twilio_inbound/ 2>/dev/null || true
        cp -f "$dir"/whatsapp/*webhook*.json "$dir"/whatsapp/error_130429_response.json corpus/whatsapp_webhook/ 2>/dev/null || true
        cp -f "$dir"/twilio/*form*.txt corpus/twilio_form/ 2>/dev/null || true
        cp -f "$dir"/twilio/signature_vectors.json corpus/signatures/twilio_vectors 2>/dev/null || true
        cp -f "$dir"/whatsapp/x_hub_signature_256_vectors_DERIVED.json corpus/signatures/hub_vectors 2>/dev/null || true
        if [ -f "$dir/g711/sweep-r.u" ]; then
            { printf '\x00'; head -c 8000 "$dir/g711/sweep-r.u"; } >corpus/audio_frames/sweep_mode0
            { printf '\x0d'; tail -c 8000 "$dir/g711/sweep-r.u"; } >corpus/audio_frames/sweep_mode13
        fi
    done
    du -sh corpus
    exit 0
fi
export RUSTC_BOOTSTRAP=1
# No ASan (Kav is safe Rust; ASan halves exec/s and doubles the build), debug assertions on so
# integer overflow is a crash, no compare tracing (it put ~60 % of call_session's time into
# tracing the resampler's comparisons; without it audio_frames ran 1.7× and call_session 2.4× faster).
flags=(-O -a --sanitizer none --no-trace-compares)
cargo fuzz build "${flags[@]}"
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target" "regressions/$target"
    echo "== $target (${secs}s)"
    # Fresh inputs go to a scratch dir so the committed seeds stay small.
    scratch="$(mktemp -d)"
    if ! cargo fuzz run "${flags[@]}" "$target" "$scratch" "corpus/$target" "regressions/$target" -- \
        -max_total_time="$secs" -print_final_stats=1 2>"$scratch.log"; then
        tail -50 "$scratch.log"
        echo "FUZZ CRASH in $target: see fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E "stat::number_of_executed_units" "$scratch.log" || true
    rm -rf "$scratch" "$scratch.log"
done
echo "fuzz ok"
