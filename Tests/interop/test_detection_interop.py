"""The first convolution of a state dict is the one that reads an image (issue 23, item 3): a stem name on a
convolution reading 129 channels (an audio model's `conv1` after its `stft_conv`) is not taken for it, and a
model that already takes 1 channel says so instead of "no stem name"."""
import numpy as np
from safetensors.numpy import save_file

from conftest import wsurgery


def state_dict(path, shapes):
    rng = np.random.default_rng(0)
    save_file({k: rng.normal(size=s).astype("float32") for k, s in shapes.items()}, str(path))
    return path


def test_an_audio_model_s_conv1_reading_129_channels_is_not_its_first_convolution(tmp_path):
    src = state_dict(tmp_path / "audio.safetensors", {
        "stft_conv.weight": (258, 1, 256), "conv1.weight": (64, 129, 3), "conv1.bias": (64,), "fc.weight": (2, 64), "fc.bias": (2,)})
    assert "first convolution: stft_conv" in wsurgery("inspect", src).stdout
    proc = wsurgery("collapse-channels", src, tmp_path / "o.safetensors", expect=65)
    assert "'stft_conv'" in proc.stderr and "already takes 1 channel" in proc.stderr
    assert not (tmp_path / "o.safetensors").exists()


def test_a_one_channel_model_says_it_already_takes_one_channel(tmp_path):
    src = state_dict(tmp_path / "gray.safetensors", {"conv1.weight": (8, 1, 3, 3), "conv1.bias": (8,), "fc.weight": (2, 8), "fc.bias": (2,)})
    proc = wsurgery("collapse-channels", src, tmp_path / "o.safetensors", expect=65)
    assert "already takes 1 channel" in proc.stderr and "stem name" not in proc.stderr


def test_a_stem_name_on_a_convolution_that_reads_no_image_is_refused_naming_the_candidates(tmp_path):
    src = state_dict(tmp_path / "odd.safetensors", {"conv1.weight": (8, 64, 3, 3), "conv2.weight": (8, 8, 3, 3), "fc.weight": (2, 8)})
    proc = wsurgery("collapse-channels", src, tmp_path / "o.safetensors", expect=65)
    assert "no convolution reads an image" in proc.stderr and "conv1" in proc.stderr


def test_an_rgb_state_dict_still_collapses_its_stem(tmp_path):
    src = state_dict(tmp_path / "rgb.safetensors", {
        "conv1.weight": (8, 3, 3, 3), "layer1.conv.weight": (8, 8, 3, 3), "fc.weight": (2, 8), "fc.bias": (2,)})
    wsurgery("collapse-channels", src, tmp_path / "o.safetensors")
    from safetensors.numpy import load_file
    original, out = load_file(str(src)), load_file(str(tmp_path / "o.safetensors"))
    np.testing.assert_allclose(out["conv1.weight"], original["conv1.weight"].sum(axis=1, keepdims=True), rtol=1e-6)
    assert (out["layer1.conv.weight"] == original["layer1.conv.weight"]).all()


def test_inspect_says_which_layer_order_it_shows(tmp_path):
    import json
    from conftest import fixture
    src = state_dict(tmp_path / "sd.safetensors", {"conv1.weight": (8, 3, 3, 3), "fc.weight": (2, 8)})
    assert "layer order: the file's (safetensors stores tensors sorted by dtype and name" in wsurgery("inspect", src).stdout
    assert json.loads(wsurgery("inspect", src, "--json").stdout)["layer_order"]["kind"] == "file"
    assert json.loads(wsurgery("inspect", fixture("keras_cnn.h5"), "--json").stdout)["layer_order"]["kind"] == "model"
    assert "the state dict's" in wsurgery("inspect", fixture("pytorch", "tiny_resnet.pth")).stdout
