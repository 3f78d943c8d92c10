#!/usr/bin/env bash
# Quick start 2: the whole test suite: the swift-format lint, Swift unit and round-trip tests, then the interop tests in which
# real Keras (jax backend), h5py, numpy and the safetensors library load what wsurgery wrote.
# Makes its own Python venv (.venv) with the pinned versions in fixtures/requirements.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/install-test-deps.sh
# Style: the tree is formatted with .swift-format, and every public declaration has a doc comment.
swift format lint --strict -r Sources Tests
swift build
swift test --disable-xctest
# The interop tests run the release build: several hundred commands, each as fast as users get it.
swift build -c release
venv=.venv
stamp="$venv/.requirements"
if ! cmp -s fixtures/requirements.txt "$stamp" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r fixtures/requirements.txt
  cp fixtures/requirements.txt "$stamp"
fi
export KERAS_BACKEND=jax WSURGERY_BIN="$PWD/.build/release/wsurgery"
"$venv/bin/python" -m pytest Tests/interop -q
