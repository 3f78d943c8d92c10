"""set-input-shape with real Keras (jax backend), numpy, jax.image and Pillow as references: the outputs load
at the new size, untouched weights are bit-identical, and the changed ones are what the options say."""
import json
import os

import jax
import keras
import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import load_file, save_file

from conftest import fixture, wsurgery

L = keras.layers


def weights_by_path(model):
    return {v.path: np.asarray(v) for v in model.weights}


def gap_cnn(size=32):
    keras.utils.set_random_seed(5)
    inputs = keras.Input((size, size, 3), name="image")
    x = L.Conv2D(8, 3, padding="same", name="conv1")(inputs)
    x = L.BatchNormalization(name="bn1")(x)
    x = L.ReLU(name="relu1")(x)
    x = L.Conv2D(16, 3, strides=2, name="conv2")(x)
    x = L.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(inputs, L.Dense(4, name="head")(x), name="gap_cnn")


def flatten_cnn(size=16):
    """1x1 convolution and pooling before Flatten, so a constant image gives a constant feature map."""
    keras.utils.set_random_seed(6)
    inputs = keras.Input((size, size, 3), name="image")
    x = L.Conv2D(4, 1, name="conv1x1")(inputs)
    x = L.ReLU(name="relu")(x)
    x = L.MaxPooling2D(2, name="pool")(x)
    x = L.Flatten(name="flatten")(x)
    x = L.Dropout(0.2, name="drop")(x)
    return keras.Model(inputs, L.Dense(5, name="fc")(x), name="flatten_cnn")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_gap_cnn_keeps_every_weight_at_a_new_size(suffix, out):
    src, dst = str(out / ("gap" + suffix)), str(out / ("gap64" + suffix))
    gap_cnn().save(src)
    report = json.loads(wsurgery("set-input-shape", src, dst, "--size", "64x64", "--json").stdout)["passes"][0]
    assert report["changes"] == []
    assert "fully convolutional up to 'gap'" in " ".join(report["notes"])
    assert {l["layer"]: l["weights"] for l in report["layers"]}["head"] == "unchanged"
    before, after = keras.models.load_model(src, compile=False), keras.models.load_model(dst, compile=False)
    assert after.input_shape == (None, 64, 64, 3)
    wa, wb = weights_by_path(before), weights_by_path(after)
    assert wa.keys() == wb.keys()
    for k in wa:
        assert wa[k].tobytes() == wb[k].tobytes(), k
    x = np.random.default_rng(0).uniform(size=(2, 64, 64, 3)).astype("float32")
    assert after.predict(x, verbose=0).shape == (2, 4)


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_flatten_dense_gets_the_new_fan_in(suffix, out):
    src, dst = fixture("keras_cnn" + suffix), str(out / ("big" + suffix))
    proc = wsurgery("set-input-shape", src, dst, "--size", "32x32", "--seed", "3")
    assert "fan-in 288 -> 1568" in proc.stdout
    before, after = keras.models.load_model(src, compile=False), keras.models.load_model(dst, compile=False)
    assert after.input_shape == (None, 32, 32, 3)
    kernel = after.get_layer("predictions").kernel
    assert tuple(kernel.shape) == (14 * 14 * 8, 10)
    bound = np.sqrt(6 / (1568 + 10))  # glorot-uniform for the new fans
    assert np.abs(np.asarray(kernel)).max() <= bound and np.asarray(kernel).std() > bound / 3
    for name in ["conv1", "bn1", "conv2"]:
        for a, b in zip(before.get_layer(name).weights, after.get_layer(name).weights):
            assert np.asarray(a).tobytes() == np.asarray(b).tobytes(), name
    bias_before, bias_after = before.get_layer("predictions").bias, after.get_layer("predictions").bias
    assert np.asarray(bias_before).tobytes() == np.asarray(bias_after).tobytes()
    x = np.random.default_rng(1).uniform(size=(3, 32, 32, 3)).astype("float32")
    assert after.predict(x, verbose=0).shape == (3, 10)


@pytest.mark.parametrize("new_size", [32, 8])
def test_resample_keeps_the_response_to_a_spatially_constant_map(new_size, out):
    """Up 2x and down 2x: the bilinear resize of the kernel times HW/H'W' keeps, for every channel, the sum
    over positions, so a feature map constant over space gives the same Dense output (float32 rounding)."""
    src, dst = str(out / "flat.keras"), str(out / "flat2.keras")
    flatten_cnn(16).save(src)
    proc = wsurgery("set-input-shape", src, dst, "--size", f"{new_size}x{new_size}", "--dense-policy", "resample")
    assert "resampled bilinearly" in proc.stdout
    before, after = keras.models.load_model(src, compile=False), keras.models.load_model(dst, compile=False)
    color = np.random.default_rng(2).uniform(0.2, 1.0, size=(4, 1, 1, 3)).astype("float32")
    y_before = before.predict(np.broadcast_to(color, (4, 16, 16, 3)), verbose=0)
    y_after = after.predict(np.broadcast_to(color, (4, new_size, new_size, 3)), verbose=0)
    np.testing.assert_allclose(y_after, y_before, rtol=1e-5, atol=1e-5)
    # The kernel itself against jax.image.resize (linear, no antialiasing = PyTorch's bilinear).
    k = np.asarray(before.get_layer("fc").kernel).reshape(8, 8, 4, 5)
    h = new_size // 2
    expected = np.asarray(jax.image.resize(k, (h, h, 4, 5), method="linear", antialias=False)) * (64 / (h * h))
    np.testing.assert_allclose(np.asarray(after.get_layer("fc").kernel), expected.reshape(-1, 5), rtol=1e-5, atol=1e-6)


def test_dense_policy_error_lists_the_layers_and_writes_nothing(out):
    dst = out / "never.h5"
    proc = wsurgery("set-input-shape", fixture("keras_cnn.h5"), dst, "--size", "32x32", "--dense-policy", "error", expect=65)
    assert "predictions (kernel (288, 10) -> (1568, 10))" in proc.stderr
    assert not dst.exists()


def test_too_small_names_the_layer(out):
    dst = out / "never.h5"
    proc = wsurgery("set-input-shape", fixture("keras_cnn.h5"), dst, "--size", "4x4", expect=64)
    assert "too small" in proc.stderr and "'conv2'" in proc.stderr and "(None, 0, 0, 8)" in proc.stderr
    assert not dst.exists()


def test_unknown_layer_class_is_named(out):
    inputs = keras.Input((8, 8, 3), name="image")
    x = L.Conv2D(4, 3, name="conv")(inputs)
    x = L.Lambda(lambda t: t * 2, output_shape=(6, 6, 4), name="double")(x)
    x = L.Flatten(name="flatten")(x)
    src, dst = str(out / "lambda.keras"), out / "never.keras"
    keras.Model(inputs, L.Dense(2, name="head")(x)).save(src)
    proc = wsurgery("set-input-shape", src, dst, "--size", "16x16", expect=65)
    assert "layer 'double' is a Lambda" in proc.stderr
    assert not dst.exists()


def test_vgg16_fc1_gets_32768_inputs(out):
    src, dst = str(out / "vgg16.h5"), str(out / "vgg16_256.h5")
    keras.utils.set_random_seed(0)
    before = keras.applications.VGG16(weights=None, input_shape=(224, 224, 3))
    before.save(src)
    report = json.loads(wsurgery("set-input-shape", src, dst, "--size", "256x256", "--json").stdout)["passes"][0]
    assert [(c["tensor"], c["old_shape"], c["new_shape"]) for c in report["changes"]] == [("fc1/kernel", [25088, 4096], [32768, 4096])]
    after = keras.models.load_model(dst, compile=False)
    assert after.input_shape == (None, 256, 256, 3)
    assert tuple(after.get_layer("fc1").kernel.shape) == (8 * 8 * 512, 4096)
    wa, wb = weights_by_path(before), weights_by_path(after)
    for k in wa:
        if k != "fc1/kernel":
            assert wa[k].tobytes() == wb[k].tobytes(), k
    assert after.predict(np.zeros((1, 256, 256, 3), "float32"), verbose=0).shape == (1, 1000)


def pil_bicubic(grid, h, w):
    """Pillow's antialiased bicubic (what PyTorch's bicubic with antialias=True reproduces), per channel."""
    return np.stack([np.asarray(Image.fromarray(grid[:, :, c], mode="F").resize((w, h), Image.BICUBIC)) for c in range(grid.shape[2])], axis=-1)


@pytest.mark.parametrize("new", [(48, 48), (24, 40)])
def test_vit_pos_embed_resampled_like_timm(new, out):
    rng = np.random.default_rng(4)
    dim, patch = 6, 8
    tensors = {
        "cls_token": rng.normal(size=(1, 1, dim)).astype("float32"),
        "pos_embed": rng.normal(size=(1, 1 + 4 * 4, dim)).astype("float32"),
        "patch_embed.proj.weight": rng.normal(size=(dim, 3, patch, patch)).astype("float32"),
        "patch_embed.proj.bias": rng.normal(size=(dim,)).astype("float32"),
        "head.weight": rng.normal(size=(10, dim)).astype("float32"),
    }
    src, dst = str(out / "vit.safetensors"), str(out / "vit_new.safetensors")
    save_file(tensors, src)
    wsurgery("set-input-shape", src, dst, "--size", f"{new[0]}x{new[1]}")
    result = load_file(dst)
    gh, gw = new[0] // patch, new[1] // patch
    assert result["pos_embed"].shape == (1, 1 + gh * gw, dim)
    assert result["pos_embed"][0, 0].tobytes() == tensors["pos_embed"][0, 0].tobytes()  # class token kept
    expected = pil_bicubic(tensors["pos_embed"][0, 1:].reshape(4, 4, dim), gh, gw).reshape(-1, dim)
    np.testing.assert_allclose(result["pos_embed"][0, 1:], expected, rtol=1e-5, atol=1e-5)
    for name in tensors:
        if name != "pos_embed":
            assert result[name].tobytes() == tensors[name].tobytes(), name


def test_hf_vit_position_embeddings_and_config(out):
    rng = np.random.default_rng(7)
    src = out / "hf"
    src.mkdir()
    config = {"model_type": "vit", "image_size": 32, "patch_size": 8, "num_channels": 3, "hidden_size": 4}
    (src / "config.json").write_text(json.dumps(config))
    pos = rng.normal(size=(1, 1 + 16, 4)).astype("float32")
    save_file({"vit.embeddings.position_embeddings": pos,
               "vit.embeddings.patch_embeddings.projection.weight": rng.normal(size=(4, 3, 8, 8)).astype("float32")},
              str(src / "model.safetensors"), metadata={"format": "pt"})
    dst = out / "hf64"
    dst.mkdir()
    wsurgery("set-input-shape", str(src / "model.safetensors"), str(dst / "model.safetensors"), "--size", "64x64")
    result = load_file(str(dst / "model.safetensors"))["vit.embeddings.position_embeddings"]
    assert result.shape == (1, 1 + 64, 4)
    np.testing.assert_allclose(result[0, 1:], pil_bicubic(pos[0, 1:].reshape(4, 4, 4), 8, 8).reshape(-1, 4), rtol=1e-5, atol=1e-5)
    written = json.loads((dst / "config.json").read_text())
    assert written["image_size"] == 64 and written["patch_size"] == 8


def test_state_dict_without_architecture_transfers_every_weight(out):
    """A torchvision-style CNN state dict: no weight depends on the input size (adaptive pooling before
    the head), so every tensor is written unchanged and the report states the assumption."""
    dst = out / "big.safetensors"
    proc = wsurgery("set-input-shape", fixture("torch_resnet_tiny.safetensors"), dst, "--size", "64x64")
    assert "assuming global or adaptive pooling" in proc.stdout
    before, after = load_file(fixture("torch_resnet_tiny.safetensors")), load_file(str(dst))
    assert sorted(before) == sorted(after)
    assert all(before[k].tobytes() == after[k].tobytes() for k in before)


def test_channels_chain_adapt_channels(out):
    src, dst = str(out / "gap.keras"), str(out / "gray64.keras")
    gap_cnn().save(src)
    proc = wsurgery("set-input-shape", src, dst, "--size", "64x64", "--channels", "1")
    assert "conv1/kernel" in proc.stdout
    before, after = keras.models.load_model(src, compile=False), keras.models.load_model(dst, compile=False)
    assert after.input_shape == (None, 64, 64, 1)
    x = np.random.default_rng(3).uniform(size=(2, 64, 64, 1)).astype("float32")
    # Fully convolutional: the original accepts 64x64 RGB too, so gray == RGB copy holds at the new size.
    rebuilt = gap_cnn(64)
    rebuilt.set_weights(before.get_weights())
    np.testing.assert_allclose(after.predict(x, verbose=0), rebuilt.predict(np.repeat(x, 3, -1), verbose=0), rtol=1e-4, atol=1e-5)



def test_the_report_of_a_size_and_channel_change_agrees_with_itself(out):
    # Issue 25 item 5: the layer table showed the adapted input as the shape before and conv1 "unchanged"
    # while the tensor table said conv1 went 3 -> 1 input channels.
    import json
    report = json.loads(wsurgery("set-input-shape", fixture("keras_cnn.h5"), "--size", "24x24", "--channels", "1",
                                 "--dry-run", "--json").stdout)
    (step,) = report["passes"]
    rows = {row["layer"]: row for row in step["layers"]}
    assert rows["image"]["old_output"] == [None, 16, 16, 3] and rows["image"]["new_output"] == [None, 24, 24, 1], rows["image"]
    assert rows["conv1"]["weights"] == "adapted" and rows["bn1"]["weights"] == "unchanged"
    assert rows["predictions"]["weights"] == "re-initialised"
    assert {layer for layer, row in rows.items() if row["weights"] not in ("-", "unchanged")} == {c["layer"] for c in step["changes"]}


def test_a_state_dict_that_reads_no_image_is_refused(out):
    # chgnet's crystal-graph network (Linear, embeddings, LayerNorms): set-input-shape exited 0 with the
    # weights unchanged, as if the model took HxW images.
    from safetensors.numpy import save_file
    rng = np.random.default_rng(0)
    src = out / "mlp.safetensors"
    save_file({"atom_embedding.weight": rng.normal(size=(94, 64)).astype("float32"),
               "mlp.0.weight": rng.normal(size=(64, 64)).astype("float32"), "mlp.0.bias": np.zeros(64, "float32"),
               "head.weight": rng.normal(size=(1, 64)).astype("float32"), "head.bias": np.zeros(1, "float32")}, str(src))
    proc = wsurgery("set-input-shape", src, out / "o.safetensors", "--size", "64x64", expect=65)
    assert "no 2-D convolution or position embedding" in proc.stderr and "input size has no meaning" in proc.stderr
    assert not (out / "o.safetensors").exists()
