#!/usr/bin/env bash
# Installs what only the tests use (Debian): GNU parallel, Graphviz (renders inspect --graph), and Slurm
# with munge for the test that starts a single-node cluster. Best effort: without them those tests are skipped and say why.
set -uo pipefail
if command -v parallel >/dev/null && command -v sbatch >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null && command -v dot >/dev/null; then exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq parallel graphviz slurm-wlm munge >/dev/null; }; then
  echo "install-test-deps: could not install parallel, graphviz, slurm-wlm and munge; their tests will be skipped" >&2
fi
exit 0
