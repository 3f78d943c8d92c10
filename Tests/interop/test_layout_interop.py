"""convert --layout torch|keras: a numpy forward pass in PyTorch's NCHW convention with the converted tensors
reproduces Keras' prediction (Flatten included), and converting back gives the original tensors bit for bit."""
import json

import keras
import numpy as np
import pytest
from safetensors.numpy import load_file

from conftest import fixture, wsurgery

L = keras.layers


def conv2d(x, w, b=None, stride=1, pad=0, groups=1):
    """PyTorch Conv2d: x (N, C, H, W), w (O, C/groups, kh, kw), cross-correlation."""
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, _, _ = x.shape
    o, cg, kh, kw = w.shape
    windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    outs = []
    per_group = o // groups
    for g in range(groups):
        xs = windows[:, g * cg:(g + 1) * cg]
        ws = w[g * per_group:(g + 1) * per_group]
        outs.append(np.einsum("nchwij,ocij->nohw", xs, ws))
    y = np.concatenate(outs, axis=1)
    return y if b is None else y + b[None, :, None, None]


def conv_transpose2d(x, w, b, stride):
    """PyTorch ConvTranspose2d, padding 0: w (in, out, kh, kw)."""
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    y = np.zeros((n, o, (h - 1) * stride + kh, (wd - 1) * stride + kw))
    for i in range(kh):
        for j in range(kw):
            y[:, :, i:i + (h - 1) * stride + 1:stride, j:j + (wd - 1) * stride + 1:stride] += np.einsum("nchw,co->nohw", x, w[:, :, i, j])
    return y + b[None, :, None, None]


def batch_norm(x, t, name, eps):
    shape = (1, -1, 1, 1)
    return (x - t[f"{name}.running_mean"].reshape(shape)) / np.sqrt(t[f"{name}.running_var"].reshape(shape) + eps) \
        * t[f"{name}.weight"].reshape(shape) + t[f"{name}.bias"].reshape(shape)


def max_pool(x, k):
    n, c, h, w = x.shape
    return x[:, :, :h // k * k, :w // k * k].reshape(n, c, h // k, k, w // k, k).max(axis=(3, 5))


def separable_model():
    keras.utils.set_random_seed(9)
    inputs = keras.Input((12, 12, 3), name="image")
    x = L.DepthwiseConv2D(3, depth_multiplier=2, name="dw")(inputs)
    x = L.SeparableConv2D(5, 3, name="sep")(x)
    x = L.Conv2DTranspose(4, 3, strides=2, name="up")(x)
    x = L.BatchNormalization(name="bn", epsilon=1e-3)(x)
    x = L.Flatten(name="flatten")(x)
    model = keras.Model(inputs, L.Dense(3, name="fc")(x), name="sep_model")
    rng = np.random.default_rng(1)
    model.get_layer("bn").set_weights([rng.uniform(0.5, 1.5, 4), rng.normal(size=4), rng.normal(size=4), rng.uniform(0.5, 2, 4)])
    return model


def test_torch_layout_cnn_matches_keras_in_nchw(out):
    src, dst = fixture("keras_cnn.h5"), str(out / "torch.safetensors")
    report = json.loads(wsurgery("convert", src, dst, "--layout", "torch", "--json").stdout)["passes"][0]
    tensors = {c["tensor"] for c in report["changes"]}
    assert "predictions/kernel -> predictions.weight" in tensors and "bn1.num_batches_tracked" in tensors
    t = load_file(dst)
    assert t["conv1.weight"].shape == (8, 3, 3, 3) and t["predictions.weight"].shape == (10, 288)
    assert t["bn1.num_batches_tracked"].dtype == np.int64 and t["bn1.num_batches_tracked"].shape == ()
    model = keras.models.load_model(src, compile=False)
    x = np.random.default_rng(0).uniform(size=(2, 16, 16, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    h = x.transpose(0, 3, 1, 2).astype("float64")
    h = conv2d(h, t["conv1.weight"], t["conv1.bias"], pad=1)
    h = np.maximum(batch_norm(h, t, "bn1", model.get_layer("bn1").epsilon), 0)
    h = max_pool(h, 2)
    h = conv2d(h, t["conv2.weight"], t["conv2.bias"])
    y = h.reshape(2, -1) @ t["predictions.weight"].T + t["predictions.bias"]
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


def test_torch_layout_depthwise_separable_transposed_match_keras(out):
    src, dst = str(out / "sep.keras"), str(out / "sep.safetensors")
    model = separable_model()
    model.save(src)
    wsurgery("convert", src, dst, "--layout", "torch")
    t = load_file(dst)
    assert t["dw.weight"].shape == (6, 1, 3, 3)
    assert t["sep.depthwise.weight"].shape == (6, 1, 3, 3) and t["sep.pointwise.weight"].shape == (5, 6, 1, 1)
    assert t["up.weight"].shape == (5, 4, 3, 3)
    x = np.random.default_rng(2).uniform(size=(2, 12, 12, 3)).astype("float32")
    expected = model.predict(x, verbose=0)
    h = x.transpose(0, 3, 1, 2).astype("float64")
    h = conv2d(h, t["dw.weight"], t["dw.bias"], groups=3)
    h = conv2d(h, t["sep.depthwise.weight"], None, groups=6)
    h = conv2d(h, t["sep.pointwise.weight"], t["sep.pointwise.bias"])
    h = conv_transpose2d(h, t["up.weight"], t["up.bias"], stride=2)
    h = batch_norm(h, t, "bn", 1e-3)
    y = h.reshape(2, -1) @ t["fc.weight"].T + t["fc.bias"]
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("source,suffix", [("keras_cnn.h5", ".h5"), ("keras_cnn.keras", ".keras"), ("keras_nested.keras", ".keras"), ("sep", ".h5")])
def test_keras_layout_of_the_torch_file_gives_back_the_original(source, suffix, out):
    if source == "sep":
        src = str(out / "sep.keras")
        separable_model().save(src)
    else:
        src = fixture(source)
    torch_file, back = str(out / "torch.safetensors"), str(out / ("back" + suffix))
    wsurgery("convert", src, torch_file, "--layout", "torch")
    wsurgery("convert", torch_file, back, "--layout", "keras")
    original, restored = keras.models.load_model(src, compile=False), keras.models.load_model(back, compile=False)
    wa = {v.path: np.asarray(v) for v in original.weights}
    wb = {v.path: np.asarray(v) for v in restored.weights}
    assert wa.keys() == wb.keys()
    for k in wa:
        assert wa[k].tobytes() == wb[k].tobytes(), k
    x = np.random.default_rng(5).uniform(size=(1,) + original.input_shape[1:]).astype("float32")
    np.testing.assert_array_equal(restored.predict(x, verbose=0), original.predict(x, verbose=0))


def test_keras_layout_without_a_config_transposes_by_shape(out):
    dst = str(out / "keras_names.safetensors")
    proc = wsurgery("convert", fixture("torch_resnet_tiny.safetensors"), dst, "--layout", "keras")
    assert "no Keras config" in proc.stdout
    src, t = load_file(fixture("torch_resnet_tiny.safetensors")), load_file(dst)
    assert np.array_equal(t["conv1/kernel"], src["conv1.weight"].transpose(2, 3, 1, 0))
    assert np.array_equal(t["bn1/moving_variance"], src["bn1.running_var"])
    assert not any(k.endswith("num_batches_tracked") for k in t)
    assert np.array_equal(t["fc/kernel"], src["fc.weight"].T)


def test_torch_layout_to_h5_is_refused(out):
    dst = out / "never.h5"
    proc = wsurgery("convert", fixture("keras_cnn.h5"), dst, "--layout", "torch", expect=64)
    assert "written as .safetensors" in proc.stderr
    assert not dst.exists()


def test_layout_already_torch_is_refused(out):
    dst = out / "never.safetensors"
    proc = wsurgery("convert", fixture("torch_resnet_tiny.safetensors"), dst, "--layout", "torch", expect=65)
    assert "already in torch layout" in proc.stderr


def test_surgery_on_a_torch_layout_file_follows_the_keras_config_it_carries(out):
    """Issue 23 item 5: a `convert --layout torch` output keeps its Keras config in the metadata; surgery on it
    detects, infers shapes and rewrites that config, so `--layout keras` of each output is a loadable Keras
    model at the edit, and untouched tensors come out bit-identical under their PyTorch names."""
    src = fixture("keras_cnn.keras")
    wsurgery("convert", src, out / "t.safetensors", "--layout", "torch")
    torch_in = load_file(str(out / "t.safetensors"))
    original = keras.models.load_model(src, compile=False)
    shown = wsurgery("inspect", out / "t.safetensors").stdout
    assert "carried in __metadata__['source_keras_model_config']" in shown and "from the Keras config the file carries" in shown
    assert "classifier head: predictions" in shown and "(None, 6, 6, 8)" in shown

    # set-input-shape: predictions sits after a Flatten, so its fan-in follows the size.
    proc = wsurgery("set-input-shape", out / "t.safetensors", out / "big.safetensors", "--size", "32x32")
    assert "edited through the Keras model config" in proc.stdout and "predictions.weight" in proc.stdout
    assert load_file(str(out / "big.safetensors"))["predictions.weight"].shape == (10, 14 * 14 * 8)
    wsurgery("convert", out / "big.safetensors", out / "big.keras", "--layout", "keras")
    big = keras.models.load_model(out / "big.keras", compile=False)
    assert big.input_shape == (None, 32, 32, 3) and big.predict(np.zeros((1, 32, 32, 3), "float32"), verbose=0).shape == (1, 10)

    # replace-head finds the head the config names (not "several Dense/Linear layers").
    wsurgery("replace-head", out / "t.safetensors", out / "five.safetensors", "--classes", 5)
    wsurgery("convert", out / "five.safetensors", out / "five.keras", "--layout", "keras")
    five = keras.models.load_model(out / "five.keras", compile=False)
    assert five.output_shape == (None, 5)
    after = load_file(str(out / "five.safetensors"))
    assert [k for k in torch_in if torch_in[k].tobytes() != after[k].tobytes()] == ["predictions.bias", "predictions.weight"]

    # collapse-channels: the Keras model made back from the output equals the original on a gray image's RGB copy.
    wsurgery("collapse-channels", out / "t.safetensors", out / "gray.safetensors")
    wsurgery("convert", out / "gray.safetensors", out / "gray.keras", "--layout", "keras")
    gray = keras.models.load_model(out / "gray.keras", compile=False)
    x = np.random.default_rng(0).uniform(size=(2, 16, 16, 1)).astype("float32")
    np.testing.assert_allclose(gray.predict(x, verbose=0), original.predict(np.repeat(x, 3, -1), verbose=0), rtol=1e-4, atol=1e-5)
    g = load_file(str(out / "gray.safetensors"))
    np.testing.assert_allclose(g["conv1.weight"], torch_in["conv1.weight"].sum(1, keepdims=True), rtol=1e-6, atol=1e-7)
    assert all(g[k].tobytes() == torch_in[k].tobytes() for k in torch_in if k != "conv1.weight")


def test_convert_to_the_torch_layout_says_once_where_the_config_is_kept(tmp_path):
    # Issue 25 item 7: the pass and the writer both said the Keras config was kept.
    proc = wsurgery("convert", fixture("keras_cnn.h5"), tmp_path / "t.safetensors", "--layout", "torch")
    said = (proc.stdout + proc.stderr).count("Keras model config is kept")
    assert said == 1 and "__metadata__['source_keras_model_config']" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
