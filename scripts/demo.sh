#!/usr/bin/env bash
# Quick start 1: build wsurgery and run the main job on a bundled fixture (a small Keras CNN saved as legacy
# .h5): inspect it, collapse its RGB first convolution to one channel, give it a 5-class head, move it to
# 32x32 input (its Dense after Flatten gets the new fan-in), convert the result to PyTorch layout, and
# inspect that (with the history each step recorded). Then the batch form: the recipe
# fixtures/recipes/gray5.yaml over the bundled Keras files with two jobs, and a diff of one result.
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
$bin run fixtures/recipes/gray5.yaml fixtures/keras_cnn.h5 fixtures/keras_cnn.keras fixtures/keras_nested.h5 --out-dir "$out/batch" --jobs 2 --report "$out/batch/report.json"
status=0
$bin diff fixtures/keras_cnn.h5 "$out/batch/keras_cnn-gray5.h5" || status=$?
echo "diff exit status: $status (1: they differ, as the recipe intends)"
echo "outputs in $out"
