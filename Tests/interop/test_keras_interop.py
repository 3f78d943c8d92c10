"""Real Keras (jax backend) loads what wsurgery writes and computes exactly what the input computed."""
import json
import zipfile

import h5py
import keras
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file

from conftest import fixture, wsurgery

KERAS_MODELS = ["keras_cnn", "keras_nested"]


def same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb):
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes()


def probe(model):
    shape = (2,) + tuple(model.input_shape[1:])
    return np.random.default_rng(0).normal(size=shape).astype("float32")


@pytest.mark.parametrize("name", KERAS_MODELS)
@pytest.mark.parametrize("source", [".h5", ".keras"])
@pytest.mark.parametrize("target", [".h5", ".keras"])
def test_full_model_outputs_load_with_load_model(name, source, target, out):
    src = fixture(name + source)
    dst = out / ("out" + target)
    wsurgery("convert", src, dst)
    original = keras.models.load_model(src, compile=False)
    converted = keras.models.load_model(str(dst), compile=False)
    same_weights(original, converted)
    x = probe(original)
    assert np.array_equal(original.predict(x, verbose=0), converted.predict(x, verbose=0))


@pytest.mark.parametrize("name", KERAS_MODELS)
@pytest.mark.parametrize("source", [".h5", ".keras", ".weights.h5"])
def test_weights_h5_output_loads_with_load_weights(name, source, out):
    if source == ".weights.h5" and name != "keras_cnn":
        pytest.skip("only keras_cnn has a .weights.h5 fixture")
    src = fixture(name + source)
    dst = out / "out.weights.h5"
    wsurgery("convert", src, dst)
    original = keras.models.load_model(fixture(name + ".keras"), compile=False)
    fresh = keras.models.clone_model(original)
    fresh.load_weights(str(dst))
    same_weights(original, fresh)


def test_legacy_full_model_keeps_config_training_config_and_optimizer(out):
    dst = out / "copy.h5"
    wsurgery("convert", fixture("keras_cnn.h5"), dst)
    with h5py.File(fixture("keras_cnn.h5")) as a, h5py.File(dst) as b:
        for attr in ["model_config", "training_config", "keras_version", "backend"]:
            va, vb = a.attrs[attr], b.attrs[attr]
            va = va.decode() if isinstance(va, bytes) else va
            vb = vb.decode() if isinstance(vb, bytes) else vb
            assert va == vb, attr
        names_a = list(a["optimizer_weights"].attrs["weight_names"])
        names_b = list(b["optimizer_weights"].attrs["weight_names"])
        assert names_a == names_b
        for n in names_a:
            n = n.decode() if isinstance(n, bytes) else n
            assert a["optimizer_weights"][n][()].tobytes() == b["optimizer_weights"][n][()].tobytes()
    # (Keras 3.15 cannot compile-load even its own legacy file: 'keras.metrics.mse' fails to deserialize.)
    same_weights(keras.models.load_model(fixture("keras_cnn.h5"), compile=False), keras.models.load_model(str(dst), compile=False))


def test_keras_to_safetensors_keeps_every_tensor_and_the_config(out):
    dst = out / "cnn.safetensors"
    wsurgery("convert", fixture("keras_cnn.h5"), dst)
    tensors = load_file(str(dst))
    with h5py.File(fixture("keras_cnn.h5")) as f:
        mw = f["model_weights"]
        expected = {}
        for layer in mw.attrs["layer_names"]:
            for w in mw[layer].attrs["weight_names"]:
                expected[w] = mw[layer][w][()]
        config = f.attrs["model_config"]
    assert sorted(tensors) == sorted(expected)
    for k in expected:
        assert tensors[k].tobytes() == np.asarray(expected[k]).tobytes()
    with safe_open(str(dst), "np") as g:
        assert json.loads(g.metadata()["keras_model_config"]) == json.loads(config)
    # And back to a full model Keras loads.
    back = out / "back.h5"
    wsurgery("convert", dst, back)
    same_weights(keras.models.load_model(fixture("keras_cnn.h5"), compile=False), keras.models.load_model(str(back), compile=False))


def test_keras2_style_file_reads_and_round_trips_bit_for_bit(out):
    src = fixture("keras2_style.h5")
    dst = out / "copy.h5"
    wsurgery("convert", src, dst)
    st = out / "k2.safetensors"
    wsurgery("convert", src, st)
    tensors = load_file(str(st))
    with h5py.File(src) as a, h5py.File(dst) as b:
        for layer in [b"conv2d_1", b"dense_1"]:
            names = list(a["model_weights"][layer.decode()].attrs["weight_names"])
            assert [n.decode() for n in names] == [n.decode() if isinstance(n, bytes) else n for n in b["model_weights"][layer.decode()].attrs["weight_names"]]
            for n in names:
                va = a["model_weights"][layer.decode()][n.decode()]
                vb = b["model_weights"][layer.decode()][n.decode()]
                assert va.dtype == vb.dtype and va[()].tobytes() == vb[()].tobytes()
                assert tensors[n.decode()].tobytes() == va[()].tobytes()
        # The compressed dataset stays compressed (copied, not re-encoded).
        assert b["model_weights/conv2d_1/conv2d_1_1/kernel:0"].compression == "gzip"
    assert tensors["conv2d_1_1/bias:0"].dtype == np.float16
    assert tensors["dense_1/kernel:0"].dtype == np.float64
    # Keras loads the weights by order into the same architecture.
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3, dtype="float32"), keras.layers.Flatten(), keras.layers.Dense(2)])
    model.load_weights(str(dst))
    assert np.array_equal(model.layers[0].get_weights()[0], tensors["conv2d_1_1/kernel:0"])


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_compiled_trained_model_after_surgery_loads_without_warnings(suffix, out):
    """A fitted model's optimizer state no longer matches a new head: it is dropped so that `load_model`
    neither warns that it skips the optimizer's variables (`.keras`: the compile config goes too, the model
    loads uncompiled) nor fails (`.h5`: compiled from training_config with a fresh optimizer)."""
    import warnings

    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, name="c1")(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax", name="head")(x))
    model.compile("adam", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.random((4, 8, 8, 3)), rng.integers(0, 10, 4), epochs=1, verbose=0)
    src, dst = out / ("trained" + suffix), out / ("five" + suffix)
    model.save(src)
    result = wsurgery("replace-head", src, dst, "--classes", "5")
    assert "dropped the optimizer state" in result.stdout
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = keras.models.load_model(dst)
    assert loaded.output_shape == (None, 5)
    if suffix == ".keras":
        assert "loads uncompiled" in result.stdout and not loaded.compiled
        assert "compile_config" not in json.loads(zipfile.ZipFile(dst).read("config.json"))
    else:
        assert loaded.compiled
    x = rng.random((2, 8, 8, 3)).astype("float32")
    features = keras.Model(model.input, model.get_layer("gap").output)
    loaded_features = keras.Model(loaded.input, loaded.get_layer("gap").output)
    assert np.array_equal(features.predict(x, verbose=0), loaded_features.predict(x, verbose=0))
