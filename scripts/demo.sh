#!/usr/bin/env bash
# Quick start 1: build wsurgery and run the main job on a bundled fixture (a small Keras CNN saved as legacy
# .h5): inspect it, collapse its RGB first convolution to one channel, give it a 5-class head, move it to
# 32x32 input (its Dense after Flatten gets the new fan-in), convert the result to PyTorch layout, and
# inspect that.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product wsurgery
bin=.build/release/wsurgery
out=$(mktemp -d)
$bin inspect fixtures/keras_cnn.h5
$bin collapse-channels fixtures/keras_cnn.h5 "$out/gray.h5"
$bin replace-head "$out/gray.h5" "$out/gray5.h5" --classes 5 --seed 1
$bin set-input-shape "$out/gray5.h5" "$out/gray5_32.h5" --size 32x32 --dense-policy resample
$bin convert "$out/gray5_32.h5" "$out/gray5_32_torch.safetensors" --layout torch
$bin inspect "$out/gray5_32_torch.safetensors"
echo "outputs in $out"
