"""Shape inference against Keras itself: for models using every layer class the engine knows, the output
shape `wsurgery inspect --json` infers for each layer equals the shape Keras computes."""
import json
import os

import keras
import pytest

from conftest import wsurgery

L = keras.layers


def zoo_functional():
    inputs = keras.Input((37, 29, 3), name="image")
    x = L.ZeroPadding2D(((1, 2), (0, 3)), name="pad")(inputs)
    x = L.Conv2D(8, 3, strides=2, padding="valid", name="conv_valid_s2")(x)
    a = L.Conv2D(8, 5, padding="same", dilation_rate=2, name="conv_same_d2")(x)
    b = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", name="dw")(x)
    b = L.Conv2D(8, 1, name="dw_proj")(b)
    x = L.Add(name="add")([a, b])
    x = L.BatchNormalization(name="bn")(x)
    x = L.Activation("relu", name="act")(x)
    c = L.SeparableConv2D(6, 3, strides=2, padding="same", name="sep")(x)
    d = L.MaxPooling2D(3, strides=2, padding="same", name="maxpool_same")(x)
    x = L.Concatenate(name="concat")([c, d])
    x = L.AveragePooling2D(2, name="avgpool")(x)
    x = L.Conv2DTranspose(5, 3, strides=2, padding="valid", name="tconv_valid")(x)
    x = L.Conv2DTranspose(5, 3, strides=2, padding="same", output_padding=1, name="tconv_outpad")(x)
    x = L.Cropping2D(((1, 0), (2, 1)), name="crop")(x)
    x = L.UpSampling2D((2, 3), name="up")(x)
    x = L.Resizing(12, 10, name="resize")(x)
    g = L.GlobalMaxPooling2D(keepdims=True, name="gmp_keep")(x)
    x = L.Multiply(name="mul")([x, g])
    x = L.LayerNormalization(name="ln")(x)
    x = L.Reshape((-1, 5), name="reshape")(x)
    x = L.Conv1D(4, 3, padding="causal", name="conv1d")(x)
    x = L.MaxPooling1D(2, name="pool1d")(x)
    x = L.Permute((2, 1), name="permute")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dropout(0.1, name="drop")(x)
    x = L.Dense(7, name="dense")(x)
    x = L.RepeatVector(2, name="repeat")(x)
    x = L.GlobalAveragePooling1D(name="gap1d")(x)
    return keras.Model(inputs, x, name="zoo")


def nested_sequential():
    base = keras.Sequential([keras.Input((20, 20, 3)), L.Conv2D(4, 3, name="inner_conv"), L.MaxPooling2D(name="inner_pool")], name="inner")
    inputs = keras.Input((20, 20, 3), name="outer_input")
    x = base(inputs)
    x = L.Conv2D(6, 3, padding="same", name="outer_conv")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, L.Dense(3, name="head")(x), name="outer")


def keras_shapes(model, into):
    for layer in model.layers:
        into[layer.name] = [None if d is None else int(d) for d in layer.output.shape]
        if isinstance(layer, keras.Model):
            keras_shapes(layer, into)
    return into


@pytest.mark.parametrize("build", [zoo_functional, nested_sequential])
@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_inferred_shapes_equal_keras(build, suffix, out):
    model = build()
    path = str(out / ("model" + suffix))
    model.save(path)
    report = json.loads(wsurgery("inspect", "--json", path).stdout)
    assert report["shape_problem"] is None
    inferred = report["output_shapes"]
    expected = keras_shapes(model, {})
    for name, shape in expected.items():
        assert inferred[name] == [shape], (name, inferred[name], shape)
    assert len(expected) >= 6


def test_unknown_class_keeps_its_recorded_shape_until_its_input_changes(out):
    inputs = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(4, 3, name="conv")(inputs)
    x = L.Lambda(lambda t: t * 2, output_shape=(6, 6, 4), name="double")(x)
    x = L.Flatten(name="flatten")(x)
    model = keras.Model(inputs, L.Dense(2, name="head")(x))
    path = str(out / "lambda.keras")
    model.save(path)
    # At the size the config records, the Lambda's output is the shape the config records for it.
    report = json.loads(wsurgery("inspect", "--json", path).stdout)
    assert report["output_shapes"]["conv"] == [[None, 6, 6, 4]]
    assert report["output_shapes"]["double"] == [[None, 6, 6, 4]]
    assert report["output_shapes"]["head"] == [[None, 2]]
    # At another size its output is unknown, and so is everything after it: the command says which layer.
    proc = wsurgery("set-input-shape", path, str(out / "big.keras"), "--size", "10x10", expect=65)
    assert "'double'" in proc.stderr and "Lambda" in proc.stderr
    assert not os.path.exists(out / "big.keras")
