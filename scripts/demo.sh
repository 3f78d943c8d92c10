#!/usr/bin/env bash
# Quick start 1: build wsurgery and run the main job on a bundled fixture (a small Keras CNN saved as legacy
# .h5): inspect it, collapse its RGB first convolution to one channel, give it a 5-class head, convert the
# result to safetensors, and inspect that.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product wsurgery
bin=.build/release/wsurgery
out=$(mktemp -d)
$bin inspect fixtures/keras_cnn.h5
$bin collapse-channels fixtures/keras_cnn.h5 "$out/gray.h5"
$bin replace-head "$out/gray.h5" "$out/gray5.h5" --classes 5 --seed 1
$bin convert "$out/gray5.h5" "$out/gray5.safetensors"
$bin inspect "$out/gray5.safetensors"
echo "outputs in $out"
