#!/usr/bin/env bash
# Installs the system packages wsurgery builds against (Debian): libhdf5-dev, zlib1g-dev, libxxhash-dev,
# pkg-config; and xxhash (xxhsum, to check the XXH3-128 digests outputs record).
set -euo pipefail
if pkg-config --exists hdf5 libxxhash 2>/dev/null && [ -e /usr/include/zlib.h ] && command -v xxhsum >/dev/null; then exit 0; fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq libhdf5-dev zlib1g-dev libxxhash-dev xxhash pkg-config >/dev/null
