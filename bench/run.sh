#!/usr/bin/env bash
# Builds wsurgery in release mode and runs the benchmark (inputs generated under bench/work, not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }
swift build -c release --product wsurgery
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv && .venv/bin/pip install -q -r fixtures/requirements.txt; fi
exec .venv/bin/python bench/bench.py "$@"
