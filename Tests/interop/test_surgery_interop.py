"""Surgery I with real Keras (jax backend) and numpy: collapse/adapt the first convolution's channels and
replace the classifier head; the outputs load in the framework that made the input and compute what we claim."""
import json
import os
import time

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import fixture, wsurgery


def build(model, path):
    model.save(path)
    return path


def rel_close(a, b, rtol=1e-4):
    scale = max(np.abs(b).max(), 1e-6)
    assert np.abs(a - b).max() <= rtol * scale, f"max diff {np.abs(a - b).max()} vs scale {scale}"


def weights_by_path(model):
    return {v.path: np.asarray(v) for v in model.weights}


def untouched_identical(before, after, changed):
    wa, wb = weights_by_path(before), weights_by_path(after)
    assert set(wa) == set(wb)
    for path in wa:
        if not any(path.startswith(c + "/") or f"/{c}/" in path for c in changed):
            assert wa[path].tobytes() == wb[path].tobytes(), path


def gray_batch(model, n=2, seed=0):
    h, w = model.input_shape[1:3]
    return np.random.default_rng(seed).uniform(0, 1, size=(n, h, w, 1)).astype("float32")


# --- collapse-channels -----------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".h5", ".keras"])
@pytest.mark.parametrize("name", ["keras_cnn", "keras_nested"])
def test_collapse_keras_gray_equals_rgb_copy(name, suffix, out):
    src = fixture(name + suffix)
    dst = str(out / ("gray" + suffix))
    proc = wsurgery("collapse-channels", src, dst)
    assert "sum of 3 input channels -> 1" in proc.stdout
    original = keras.models.load_model(src, compile=False)
    gray = keras.models.load_model(dst, compile=False)
    assert gray.input_shape[-1] == 1
    x = gray_batch(gray)
    rel_close(gray.predict(x, verbose=0), original.predict(np.repeat(x, 3, axis=-1), verbose=0))
    untouched_identical(original, gray, ["conv1", "base_conv"])


def test_collapse_weights_only_loads_into_changed_architecture(out):
    dst = str(out / "gray.weights.h5")
    wsurgery("collapse-channels", fixture("keras_cnn.keras"), dst)
    arch = str(out / "arch.keras")
    wsurgery("collapse-channels", fixture("keras_cnn.keras"), arch)
    model = keras.models.load_model(arch, compile=False)
    model.load_weights(dst)
    original = keras.models.load_model(fixture("keras_cnn.keras"), compile=False)
    x = gray_batch(model)
    rel_close(model.predict(x, verbose=0), original.predict(np.repeat(x, 3, axis=-1), verbose=0))


def test_collapse_keras_applications_mobilenetv2(out):
    keras.utils.set_random_seed(0)
    net = keras.applications.MobileNetV2(weights=None, input_shape=(48, 48, 3), alpha=0.35, classes=7)
    # Non-trivial BatchNorm statistics, so the check covers more than an identity normalisation.
    rng = np.random.default_rng(0)
    for layer in net.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            mean, var = layer.moving_mean, layer.moving_variance
            mean.assign(rng.normal(0, 0.1, mean.shape).astype("float32"))
            var.assign(rng.uniform(0.5, 1.5, var.shape).astype("float32"))
    src = build(net, str(out / "mnv2.keras"))
    dst = str(out / "mnv2_gray.keras")
    wsurgery("collapse-channels", src, dst)
    gray = keras.models.load_model(dst, compile=False)
    x = gray_batch(gray)
    rel_close(gray.predict(x, verbose=0), net.predict(np.repeat(x, 3, axis=-1), verbose=0))
    untouched_identical(net, gray, ["Conv1"])


def test_collapse_fold_normalization_keras(out):
    dst = str(out / "gray.keras")
    wsurgery("collapse-channels", fixture("keras_cnn.keras"), dst, "--fold-normalization", "imagenet")
    original = keras.models.load_model(fixture("keras_cnn.keras"), compile=False)
    gray = keras.models.load_model(dst, compile=False)
    mean, std = np.array([0.485, 0.456, 0.406], "float32"), np.array([0.229, 0.224, 0.225], "float32")
    x = gray_batch(gray)
    normalised = (np.repeat(x, 3, axis=-1) - mean) / std
    # conv1 pads 'same': compare the conv1 feature maps away from the one-pixel border.
    a = keras.Model(gray.input, gray.get_layer("conv1").output).predict(x, verbose=0)
    b = keras.Model(original.input, original.get_layer("conv1").output).predict(normalised, verbose=0)
    rel_close(a[:, 1:-1, 1:-1], b[:, 1:-1, 1:-1])


def conv2d_valid(x, w):
    """x: (C, H, W); w: (O, C, kh, kw) -> (O, H-kh+1, W-kw+1), PyTorch cross-correlation."""
    _, kh, kw = w.shape[1:]
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(1, 2))  # C, H', W', kh, kw
    return np.einsum("chwij,ocij->ohw", windows, w)


def batch_norm(z, sd, prefix, eps=1e-5):
    g, b = sd[prefix + ".weight"], sd[prefix + ".bias"]
    m, v = sd[prefix + ".running_mean"], sd[prefix + ".running_var"]
    return g[:, None, None] * (z - m[:, None, None]) / np.sqrt(v[:, None, None] + eps) + b[:, None, None]


def test_collapse_state_dict_numpy_identity(out):
    dst = out / "gray.safetensors"
    wsurgery("collapse-channels", fixture("torch_resnet_tiny.safetensors"), dst)
    before, after = load_file(fixture("torch_resnet_tiny.safetensors")), load_file(str(dst))
    assert after["conv1.weight"].shape == (8, 1, 3, 3)
    for k in before:
        if k != "conv1.weight":
            assert before[k].tobytes() == after[k].tobytes(), k
    x = np.random.default_rng(1).uniform(0, 1, size=(1, 10, 10)).astype("float64")
    rel_close(conv2d_valid(x, after["conv1.weight"].astype("float64")),
              conv2d_valid(np.repeat(x, 3, axis=0), before["conv1.weight"].astype("float64")))


def test_collapse_state_dict_fold_normalization_into_batchnorm(out):
    dst = out / "gray.safetensors"
    wsurgery("collapse-channels", fixture("torch_resnet_tiny.safetensors"), dst, "--fold-normalization", "0.5,0.4,0.3/0.2,0.25,0.3")
    before, after = load_file(fixture("torch_resnet_tiny.safetensors")), load_file(str(dst))
    mean, std = np.array([0.5, 0.4, 0.3])[:, None, None], np.array([0.2, 0.25, 0.3])[:, None, None]
    x = np.random.default_rng(2).uniform(0, 1, size=(1, 10, 10))
    sd_b = {k: v.astype("float64") for k, v in before.items()}
    sd_a = {k: v.astype("float64") for k, v in after.items()}
    expected = batch_norm(conv2d_valid((np.repeat(x, 3, axis=0) - mean) / std, sd_b["conv1.weight"]), sd_b, "bn1")
    actual = batch_norm(conv2d_valid(x, sd_a["conv1.weight"]), sd_a, "bn1")
    rel_close(actual, expected)
    assert before["bn1.running_var"].tobytes() == after["bn1.running_var"].tobytes()


def test_config_json_beside_a_safetensors_file_follows_channels_and_classes(out):
    """A config.json beside model.safetensors (timm's, here) is written beside the output, edited."""
    dst = out / "model.safetensors"
    wsurgery("collapse-channels", fixture("hf_tiny", "model.safetensors"), dst)
    assert json.load(open(out / "config.json"))["pretrained_cfg"]["input_size"][0] == 1
    dst2 = out / "h" / "model.safetensors"
    os.makedirs(out / "h")
    wsurgery("replace-head", fixture("hf_tiny", "model.safetensors"), dst2, "--classes", "3", "--keep-classes", "7,2")
    config = json.load(open(out / "h" / "config.json"))
    assert config["label_names"] == ["class_7", "class_2", "LABEL_2"]
    assert config["num_classes"] == 3
    assert load_file(str(dst2))["fc.weight"].shape == (3, 8)


# --- adapt-channels --------------------------------------------------------------------------------

def gray_model(out):
    keras.utils.set_random_seed(3)
    inputs = keras.Input((12, 12, 1), name="gray_in")
    x = keras.layers.Conv2D(6, 3, padding="same", name="stem")(inputs)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(4, name="logits")(x)
    return build(keras.Model(inputs, outputs, name="gray_net"), str(out / "gray_net.keras"))


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_adapt_one_to_three_rgb_copy_equals_gray(suffix, out):
    src = gray_model(out)
    dst = str(out / ("rgb" + suffix))
    wsurgery("adapt-channels", src, dst, "--channels", "3")
    original = keras.models.load_model(src, compile=False)
    rgb = keras.models.load_model(dst, compile=False)
    assert rgb.input_shape[-1] == 3
    x = gray_batch(original)
    rel_close(rgb.predict(np.repeat(x, 3, axis=-1), verbose=0), original.predict(x, verbose=0))


def test_adapt_rgb_to_rgbn_copy_red(out):
    dst = out / "rgbn.safetensors"
    wsurgery("adapt-channels", fixture("torch_resnet_tiny.safetensors"), dst, "--channels", "4", "--extra", "copy:0", "--no-rescale")
    w0 = load_file(fixture("torch_resnet_tiny.safetensors"))["conv1.weight"]
    w = load_file(str(dst))["conv1.weight"]
    assert w.shape == (8, 4, 3, 3)
    assert np.array_equal(w[:, :3], w0) and np.array_equal(w[:, 3], w0[:, 0])


def test_adapt_timm_rule_scales(out):
    dst = out / "six.safetensors"
    wsurgery("adapt-channels", fixture("torch_resnet_tiny.safetensors"), dst, "--channels", "6")
    w0 = load_file(fixture("torch_resnet_tiny.safetensors"))["conv1.weight"].astype("float64")
    w = load_file(str(dst))["conv1.weight"]
    np.testing.assert_allclose(w, (np.concatenate([w0, w0], axis=1) * 0.5).astype("float32"), rtol=0, atol=0)


# --- replace-head ----------------------------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".h5", ".keras"])
def test_replace_dense_head_keras(suffix, out):
    src = fixture("keras_cnn" + suffix)
    dst = str(out / ("five" + suffix))
    wsurgery("replace-head", src, dst, "--classes", "5", "--keep-classes", "3,7", "--seed", "4")
    time.sleep(1.1)  # HDF5 would record a new modification time if the writer let it
    original = keras.models.load_model(src, compile=False)
    model = keras.models.load_model(dst, compile=False)
    x = np.random.default_rng(0).normal(size=(2, 16, 16, 3)).astype("float32")
    assert model.predict(x, verbose=0).shape == (2, 5)
    untouched_identical(original, model, ["predictions"])
    k0, b0 = original.get_layer("predictions").get_weights()
    k, b = model.get_layer("predictions").get_weights()
    assert k.shape == (288, 5) and b.shape == (5,)
    assert np.array_equal(k[:, :2], k0[:, [3, 7]]) and np.array_equal(b[:2], b0[[3, 7]])
    limit = np.sqrt(6 / (288 + 5))
    assert np.abs(k[:, 2:]).max() <= limit and np.abs(k[:, 2:]).max() > 0.9 * limit
    assert np.all(b[2:] == 0)
    again = str(out / ("again" + suffix))
    wsurgery("replace-head", src, again, "--classes", "5", "--keep-classes", "3,7", "--seed", "4")
    assert open(dst, "rb").read() == open(again, "rb").read()
    same = keras.models.load_model(again, compile=False)
    for a, c in zip(model.get_weights(), same.get_weights()):
        assert a.tobytes() == c.tobytes()


def test_replace_conv_head_with_global_pooling(out):
    keras.utils.set_random_seed(5)
    inputs = keras.Input((10, 10, 3))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="features")(inputs)
    x = keras.layers.Conv2D(10, 1, name="conv_head")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = keras.layers.Softmax(name="probs")(x)
    src = build(keras.Model(inputs, outputs), str(out / "fcn.keras"))
    dst = str(out / "fcn3.keras")
    proc = wsurgery("replace-head", src, dst, "--classes", "3")
    assert "conv_head" in proc.stdout
    original = keras.models.load_model(src, compile=False)
    model = keras.models.load_model(dst, compile=False)
    assert model.get_layer("conv_head").get_weights()[0].shape == (1, 1, 8, 3)
    x = np.random.default_rng(0).normal(size=(2, 10, 10, 3)).astype("float32")
    assert model.predict(x, verbose=0).shape == (2, 3)
    untouched_identical(original, model, ["conv_head"])


def big_head_state_dict(path):
    rng = np.random.default_rng(0)
    save_file({"conv1.weight": rng.normal(size=(16, 3, 3, 3)).astype("float32"),
               "fc.weight": rng.normal(size=(1000, 512)).astype("float32"),
               "fc.bias": rng.normal(size=(1000,)).astype("float32")}, path)
    return path


@pytest.mark.parametrize("kind,check", [
    ("torch-default", lambda w: (np.abs(w).max() <= 1 / np.sqrt(512), w.std(), 1 / np.sqrt(512) / np.sqrt(3))),
    ("kaiming-uniform", lambda w: (np.abs(w).max() <= np.sqrt(6 / 512), w.std(), np.sqrt(2 / 512))),
    ("kaiming-normal", lambda w: (True, w.std(), np.sqrt(2 / 512))),
    ("trunc-normal:0.02", lambda w: (np.abs(w).max() <= 2, w.std(), 0.02)),
    ("uniform:0.1", lambda w: (np.abs(w).max() <= 0.1, w.std(), 0.1 / np.sqrt(3))),
])
def test_replace_head_state_dict_init_statistics(kind, check, out):
    src = big_head_state_dict(str(out / "big.safetensors"))
    dst = out / "new.safetensors"
    wsurgery("replace-head", src, dst, "--classes", "200", "--init", kind, "--seed", "7")
    before, after = load_file(src), load_file(str(dst))
    assert after["fc.weight"].shape == (200, 512) and after["fc.bias"].shape == (200,)
    assert before["conv1.weight"].tobytes() == after["conv1.weight"].tobytes()
    within, std, expected = check(after["fc.weight"].astype("float64"))
    assert within
    assert abs(std / expected - 1) < 0.02, (std, expected)  # 102,400 samples: sampling error ~0.3%
    again = out / "again.safetensors"
    wsurgery("replace-head", src, again, "--classes", "200", "--init", kind, "--seed", "7")
    assert open(dst, "rb").read() == open(again, "rb").read()
    other = out / "other.safetensors"
    wsurgery("replace-head", src, other, "--classes", "200", "--init", kind, "--seed", "8")
    assert open(dst, "rb").read() != open(other, "rb").read()


def test_replace_head_keras_he_normal_statistics(out):
    dst = str(out / "he.keras")
    wsurgery("replace-head", fixture("keras_cnn.keras"), dst, "--classes", "300", "--init", "he-normal")
    k = keras.models.load_model(dst, compile=False).get_layer("predictions").get_weights()[0].astype("float64")
    std = np.sqrt(2 / 288) / 0.87962566103423978
    assert np.abs(k).max() <= 2 * std
    assert abs(k.std() / np.sqrt(2 / 288) - 1) < 0.02


def test_dry_run_writes_nothing_and_reports_json(out):
    dst = out / "never.h5"
    proc = wsurgery("replace-head", fixture("keras_cnn.h5"), dst, "--classes", "2", "--dry-run", "--json")
    assert not dst.exists()
    report = json.loads(proc.stdout)
    changes = report["passes"][0]["changes"]
    assert [(c["tensor"], c["old_shape"], c["new_shape"]) for c in changes] == [
        ("predictions/kernel", [288, 10], [288, 2]), ("predictions/bias", [10], [2])]
    assert any("optimizer" in n for n in report["passes"][0]["notes"])


# --- errors ----------------------------------------------------------------------------------------

def test_error_no_rgb_first_conv(out):
    src = gray_model(out)
    dst = out / "x.keras"
    proc = wsurgery("collapse-channels", src, dst, expect=65)
    assert "'stem'" in proc.stderr and "1 input channel" in proc.stderr
    assert not dst.exists() and os.listdir(out) == ["gray_net.keras"]


def test_error_ambiguous_head(out):
    src = str(out / "two.safetensors")
    rng = np.random.default_rng(0)
    save_file({"mlp_a.weight": rng.normal(size=(8, 4)).astype("float32"),
               "mlp_b.weight": rng.normal(size=(3, 8)).astype("float32")}, src)
    proc = wsurgery("replace-head", src, out / "x.safetensors", "--classes", "2", expect=65)
    assert "classifier head" in proc.stderr and "mlp_a" in proc.stderr and "mlp_b" in proc.stderr and "--layer" in proc.stderr
    assert not (out / "x.safetensors").exists()
    wsurgery("replace-head", src, out / "x.safetensors", "--classes", "2", "--layer", "mlp_b")
    assert load_file(str(out / "x.safetensors"))["mlp_b.weight"].shape == (2, 8)


def test_error_classes_zero(out):
    proc = wsurgery("replace-head", fixture("keras_cnn.h5"), out / "x.h5", "--classes", "0", expect=64)
    assert "--classes" in proc.stderr
    assert not (out / "x.h5").exists()


def test_error_unknown_layer(out):
    proc = wsurgery("collapse-channels", fixture("keras_cnn.h5"), out / "x.h5", "--layer", "nope", expect=64)
    assert "'nope'" in proc.stderr and "conv1" in proc.stderr
    assert not (out / "x.h5").exists()
