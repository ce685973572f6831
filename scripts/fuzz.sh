#!/usr/bin/env bash
# Builds every cargo-fuzz target in fuzz/ and runs each for SECONDS_PER_TARGET (default 20).
# Exits non-zero on the first crash (the input is left in fuzz/artifacts/<target>/).
# Stable toolchain only: RUSTC_BOOTSTRAP=1 lets stable rustc take cargo-fuzz's -Z flags.
# Needs: cargo install cargo-fuzz --locked (0.13.2), a C++ compiler (libFuzzer is built by libfuzzer-sys).
set -euo pipefail
secs="${1:-20}"
cd "$(dirname "$0")/../fuzz"
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
for target in $(cargo fuzz list); do
    mkdir -p "corpus/$target"
    echo "== $target (${secs}s)"
    # Fresh inputs go to a scratch dir so the committed seeds stay small.
    scratch="$(mktemp -d)"
    if ! cargo fuzz run -O "$target" "$scratch" "corpus/$target" -- \
        -max_total_time="$secs" -print_final_stats=1 2>"$scratch.log"; then
        tail -50 "$scratch.log"
        echo "FUZZ CRASH in $target: see fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E "stat::number_of_executed_units" "$scratch.log" || true
    rm -rf "$scratch" "$scratch.log"
done
echo "fuzz ok"
