#!/usr/bin/env bash
# Quick start 1: build wsurgery and run it on a bundled fixture (a small Keras CNN saved as legacy .h5):
# inspect it, convert it to safetensors and to a .keras archive, and inspect the result.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product wsurgery
bin=.build/release/wsurgery
out=$(mktemp -d)
$bin inspect fixtures/keras_cnn.h5
$bin convert fixtures/keras_cnn.h5 "$out/keras_cnn.safetensors"
$bin convert fixtures/keras_cnn.h5 "$out/keras_cnn.keras"
$bin inspect "$out/keras_cnn.safetensors"
echo "outputs in $out"
