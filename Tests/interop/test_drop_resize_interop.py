"""drop-layer and resize-dense with real Keras (jax backend): outputs load, run, and keep what they claim."""
import json

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import fixture, wsurgery

L = keras.layers


def mlp_cnn():
    keras.utils.set_random_seed(11)
    inputs = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(4, 3, name="conv")(inputs)
    x = L.Flatten(name="flatten")(x)
    x = L.Dense(32, activation="relu", name="fc1")(x)
    x = L.Dropout(0.1, name="drop")(x)
    x = L.Dense(16, activation="relu", name="fc2")(x)
    x = L.BatchNormalization(name="bn")(x)
    model = keras.Model(inputs, L.Dense(5, name="fc3")(x), name="mlp_cnn")
    rng = np.random.default_rng(3)
    model.get_layer("bn").set_weights([rng.uniform(0.5, 1.5, 16), rng.normal(size=16), rng.normal(size=16), rng.uniform(0.5, 2, 16)])
    return model


def batch(model, n=3, seed=0):
    return np.random.default_rng(seed).uniform(size=(n,) + model.input_shape[1:]).astype("float32")


def same_weights(a, b, layers):
    for name in layers:
        for x, y in zip(a.get_layer(name).weights, b.get_layer(name).weights):
            assert np.asarray(x).tobytes() == np.asarray(y).tobytes(), name


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_top_yields_the_feature_extractor(suffix, out):
    src, dst = fixture("keras_cnn" + suffix), str(out / ("features" + suffix))
    wsurgery("drop-layer", src, dst, "--top")
    original, features = keras.models.load_model(src, compile=False), keras.models.load_model(dst, compile=False)
    assert [l.name for l in features.layers] == ["image", "conv1", "bn1", "relu1", "pool1", "conv2"]
    # As include_top=False builds it: any size in (issue 25 item 7); the trained size computes the same.
    assert features.input_shape == (None, None, None, 3) and features.output_shape == (None, None, None, 8)
    x = batch(original)
    reference = keras.Model(original.input, original.get_layer("conv2").output)
    np.testing.assert_array_equal(features.predict(x, verbose=0), reference.predict(x, verbose=0))
    assert features.predict(np.zeros((1, 40, 30, 3), "float32"), verbose=0).shape == (1, 18, 13, 8)
    kept = str(out / ("kept" + suffix))
    proc = wsurgery("drop-layer", src, kept, "--top", "--keep-input-shape")
    assert "input kept at (None, 16, 16, 3)" in proc.stdout
    assert keras.models.load_model(kept, compile=False).output_shape == (None, 6, 6, 8)
    proc = wsurgery("drop-layer", src, out / "never.h5", "--layer", "flatten", "--keep-input-shape", expect=64)
    assert "--keep-input-shape: only applies with --top" in proc.stderr


def test_top_includes_a_classifier_convolution_before_the_pooling(out):
    # fer's emotion model and SqueezeNet end conv(classes) -> GlobalAveragePooling -> softmax: replace-head
    # takes the convolution for the head, so the top that drop-layer removes starts there (with its Dropout).
    inputs = keras.Input((12, 12, 3), name="image")
    x = keras.layers.Conv2D(8, 3, name="features")(inputs)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    x = keras.layers.Conv2D(7, 3, name="classes")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    outputs = keras.layers.Activation("softmax", name="predictions")(x)
    src, dst = str(out / "squeeze.h5"), str(out / "features.h5")
    keras.Model(inputs, outputs).save(src)
    proc = wsurgery("drop-layer", src, dst, "--top")
    for name in ("drop", "relu", "gap", "predictions"):
        assert f"removed '{name}'" in proc.stderr + proc.stdout, name
    assert "classes/kernel" in proc.stdout
    original, features = keras.models.load_model(src, compile=False), keras.models.load_model(dst, compile=False)
    assert [l.name for l in features.layers] == ["image", "features"] and features.output_shape == (None, None, None, 8)
    x = batch(original)
    reference = keras.Model(original.input, original.get_layer("features").output)
    np.testing.assert_array_equal(features.predict(x, verbose=0), reference.predict(x, verbose=0))


def test_top_of_a_sequential_with_a_nested_base(out):
    dst = str(out / "base.keras")
    wsurgery("drop-layer", fixture("keras_nested.keras"), dst, "--top")
    features = keras.models.load_model(dst, compile=False)
    assert [l.name for l in features.layers] == ["base"] and features.output_shape == (None, None, None, 4)
    original = keras.models.load_model(fixture("keras_nested.keras"), compile=False)
    x = batch(original)
    reference = keras.Model(original.layers[0].input, original.layers[0].output)
    np.testing.assert_array_equal(features.predict(x, verbose=0), reference.predict(x, verbose=0))
    assert features.predict(np.zeros((1, 20, 16, 3), "float32"), verbose=0).shape[1:3] == (18, 14)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_dropping_a_dense_between_denses_needs_reinit_next(suffix, out):
    src = str(out / ("m" + suffix))
    mlp_cnn().save(src)
    never = out / ("never" + suffix)
    proc = wsurgery("drop-layer", src, never, "--layer", "fc2", expect=65)
    assert "shapes do not compose" in proc.stderr and "'fc3/kernel' is (16, 5) but its input (None, 32) needs (32, 5)" in proc.stderr
    assert not never.exists()
    dst = str(out / ("dropped" + suffix))
    report = json.loads(wsurgery("drop-layer", src, dst, "--layer", "fc2", "--reinit-next", "--seed", "2", "--json").stdout)["passes"][0]
    changed = {c["tensor"]: c["new_shape"] for c in report["changes"]}
    assert changed["fc3/kernel"] == [32, 5] and changed["bn/gamma"] == [32]
    original, dropped = keras.models.load_model(src, compile=False), keras.models.load_model(dst, compile=False)
    assert "fc2" not in [l.name for l in dropped.layers]
    same_weights(original, dropped, ["conv", "fc1"])
    gamma, variance = (np.asarray(w) for w in (dropped.get_layer("bn").gamma, dropped.get_layer("bn").moving_variance))
    assert (gamma == 1).all() and (variance == 1).all()
    assert dropped.predict(batch(dropped), verbose=0).shape == (3, 5)


def test_dropping_a_shape_keeping_layer_keeps_every_weight(out):
    src, dst = str(out / "m.keras"), str(out / "nodrop.keras")
    model = mlp_cnn()
    model.save(src)
    wsurgery("drop-layer", src, dst, "--layer", "drop")
    dropped = keras.models.load_model(dst, compile=False)
    same_weights(model, dropped, ["conv", "fc1", "fc2", "bn", "fc3"])
    x = batch(model)
    np.testing.assert_allclose(dropped.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_resize_dense_grow_with_zeros_keeps_the_function(suffix, out):
    """New units with zero weights and bias output relu(0) = 0 and the next layer's new rows are zero too,
    so the model computes exactly what it did; the old units' weights are kept bit for bit."""
    src, dst = str(out / ("m" + suffix)), str(out / ("wide" + suffix))
    model = mlp_cnn()
    model.save(src)
    wsurgery("resize-dense", src, dst, "--layer", "fc1", "--units", "48", "--init", "zeros")
    wide = keras.models.load_model(dst, compile=False)
    assert tuple(wide.get_layer("fc1").kernel.shape) == (144, 48) and tuple(wide.get_layer("fc2").kernel.shape) == (48, 16)
    assert np.asarray(wide.get_layer("fc1").kernel)[:, :32].tobytes() == np.asarray(model.get_layer("fc1").kernel).tobytes()
    assert np.asarray(wide.get_layer("fc2").kernel)[:32].tobytes() == np.asarray(model.get_layer("fc2").kernel).tobytes()
    x = batch(model)
    np.testing.assert_allclose(wide.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6, atol=1e-6)


def test_resize_dense_shrink_through_batchnorm(out):
    src, dst = str(out / "m.keras"), str(out / "narrow.keras")
    model = mlp_cnn()
    model.save(src)
    wsurgery("resize-dense", src, dst, "--layer", "fc2", "--units", "8")
    narrow = keras.models.load_model(dst, compile=False)
    assert tuple(narrow.get_layer("fc3").kernel.shape) == (8, 5)
    for a, b in zip(model.get_layer("bn").weights, narrow.get_layer("bn").weights):
        assert np.asarray(b).tobytes() == np.asarray(a)[:8].tobytes()
    np.testing.assert_array_equal(np.asarray(narrow.get_layer("fc3").kernel), np.asarray(model.get_layer("fc3").kernel)[:8])
    assert narrow.predict(batch(narrow), verbose=0).shape == (3, 5)


def test_resize_linear_in_a_state_dict_with_next(out):
    from safetensors.numpy import save_file
    rng = np.random.default_rng(8)
    t = {"fc1.weight": rng.normal(size=(32, 20)).astype("float32"), "fc1.bias": rng.normal(size=32).astype("float32"),
         "fc2.weight": rng.normal(size=(10, 32)).astype("float32"), "fc2.bias": rng.normal(size=10).astype("float32")}
    src, dst = str(out / "mlp.safetensors"), str(out / "mlp64.safetensors")
    save_file(t, src)
    proc = wsurgery("resize-dense", src, out / "never.safetensors", "--layer", "fc1", "--units", "64", expect=65)
    assert "--next" in proc.stderr
    wsurgery("resize-dense", src, dst, "--layer", "fc1", "--units", "64", "--next", "fc2")
    r = load_file(dst)
    assert r["fc1.weight"].shape == (64, 20) and r["fc2.weight"].shape == (10, 64)
    assert r["fc1.weight"][:32].tobytes() == t["fc1.weight"].tobytes() and r["fc2.weight"][:, :32].tobytes() == t["fc2.weight"].tobytes()
    bound = 1 / np.sqrt(20)  # torch-default for the new rows of fc1
    assert np.abs(r["fc1.weight"][32:]).max() <= bound and np.abs(r["fc1.bias"][32:]).max() <= bound
    assert r["fc2.bias"].tobytes() == t["fc2.bias"].tobytes()


def test_unknown_layer_to_drop_is_a_usage_error(out):
    proc = wsurgery("drop-layer", fixture("keras_cnn.h5"), out / "never.h5", "--layer", "nope", expect=64)
    assert "no layer named 'nope'" in proc.stderr
