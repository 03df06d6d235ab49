#!/usr/bin/env bash
# The project's one test command (README "Run the tests"; .ci/run calls it).
# Installs what the tests need, then lints and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."

# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build.
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[dev]"
# The aiSFX pretrained weights (CC BY 4.0): only the wheel's checkpoint file is used, its
# pins (librosa 0.9, numpy 1.23) conflict with ours, so it is installed without dependencies.
python -m pip install -q --no-deps aisfx==0.1.2

# Headless Chromium for the end-to-end test of `soundclass serve`, espeak-ng for the speech
# the Whisper tests transcribe (each skipped if absent).
if { ! command -v chromium >/dev/null 2>&1 || ! command -v espeak-ng >/dev/null 2>&1; } \
        && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium espeak-ng) \
        >/dev/null 2>&1 \
        || echo "note: could not install chromium/espeak-ng; their tests will be skipped" >&2
fi

ruff check src tests benchmarks
python -m pytest --durations=25 "$@"
