"""The first convolution of a state dict is the one that reads an image (issue 23, item 3): a stem name on a
convolution reading 129 channels (an audio model's `conv1` after its `stft_conv`) is not taken for it, and a
model that already takes 1 channel says so instead of "no stem name"."""
import json

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
    src = state_dict(tmp_path / "sd.safetensors", {
        "bn1.weight": (8,), "bn1.running_mean": (8,), "conv1.weight": (8, 3, 3, 3), "fc.weight": (2, 8), "layer1.0.conv1.weight": (8, 8, 3, 3),
        "layer1.0.bn1.weight": (8,), "layer1.0.bn1.running_mean": (8,), "layer1.10.conv1.weight": (8, 8, 3, 3), "layer1.2.conv1.weight": (8, 8, 3, 3)})
    shown = wsurgery("inspect", src).stdout
    assert "layer order: recovered from the names, a guess (safetensors stores tensors sorted by dtype and name" in shown
    report = json.loads(wsurgery("inspect", src, "--json").stdout)
    assert report["layer_order"]["kind"] == "recovered"
    # The model's order, not the file's sorted one (bn1, conv1, fc, layer1.0.bn1, layer1.0.conv1, layer1.10, layer1.2).
    assert [l["name"] for l in report["layers"]] == ["conv1", "bn1", "layer1.0.conv1", "layer1.0.bn1", "layer1.2.conv1", "layer1.10.conv1", "fc"]
    assert json.loads(wsurgery("inspect", fixture("keras_cnn.h5"), "--json").stdout)["layer_order"]["kind"] == "model"
    assert "the state dict's" in wsurgery("inspect", fixture("pytorch", "tiny_resnet.pth")).stdout


def torch_state_dict(path, shapes):
    import torchsave
    rng = np.random.default_rng(0)
    torchsave.save({k: rng.normal(size=s).astype("float32") for k, s in shapes.items()}, path)
    return path


LENET = {"c1.weight": (6, 1, 5, 5), "c1.bias": (6,), "c3.weight": (16, 6, 5, 5), "c3.bias": (16,), "f5.weight": (120, 400), "f5.bias": (120,),
         "f6.weight": (84, 120), "f6.bias": (84,), "out.weight": (10, 84), "out.bias": (10,)}


def test_head_of_a_pth_without_known_names_is_its_last_linear_on_convolution_features(tmp_path):
    """README's rule: in a .pth's order, the last layer with weights, when it is a Linear whose chain of
    Linears starts on a convolution's features (LeNet's `out` after `f5`, `f6`)."""
    src = torch_state_dict(tmp_path / "lenet.pth", LENET)
    assert "classifier head: out" in wsurgery("inspect", src).stdout
    wsurgery("replace-head", src, tmp_path / "five.safetensors", "--classes", 5)
    from safetensors.numpy import load_file
    assert load_file(str(tmp_path / "five.safetensors"))["out.weight"].shape == (5, 84)
    # The same tensors as a safetensors file record no order: the head is not guessed.
    st = state_dict(tmp_path / "lenet.safetensors", LENET)
    assert "several Dense/Linear layers" in wsurgery("replace-head", st, tmp_path / "x.safetensors", "--classes", 5, expect=65).stderr


def test_heads_side_by_side_projections_and_backbones_are_not_taken_for_a_classifier(tmp_path):
    # facenet's RNet: dense5_1 (face / not face) and dense5_2 (box) both read dense4's 128 features.
    rnet = torch_state_dict(tmp_path / "rnet.pth", {
        "conv1.weight": (28, 3, 3, 3), "conv3.weight": (64, 28, 2, 2), "prelu3.weight": (64,), "dense4.weight": (128, 576),
        "prelu4.weight": (128,), "dense5_1.weight": (2, 128), "dense5_2.weight": (4, 128)})
    proc = wsurgery("replace-head", rnet, tmp_path / "x.safetensors", "--classes", 3, expect=65)
    assert "read the same 128 features" in proc.stderr and "dense5_1" in proc.stderr and "dense5_2" in proc.stderr
    # A projection with as many outputs as inputs after other Linears.
    proj = torch_state_dict(tmp_path / "proj.pth", {"conv.weight": (8, 3, 3, 3), "a.weight": (32, 8), "b.weight": (32, 32)})
    proc = wsurgery("replace-head", proj, tmp_path / "x.safetensors", "--classes", 3, expect=65)
    assert "as many outputs as inputs (32)" in proc.stderr
    # A transformer block's MLP at the end (no head) and a backbone ending in a norm have no classifier.
    vit = torch_state_dict(tmp_path / "vit.pth", {
        "patch.weight": (16, 3, 4, 4), "blk.norm1.weight": (16,), "blk.qkv.weight": (48, 16), "blk.proj.weight": (16, 16),
        "blk.norm2.weight": (16,), "blk.fc1.weight": (64, 16), "blk.fc2.weight": (16, 64)})
    assert "none has a known head name" in wsurgery("replace-head", vit, tmp_path / "x.safetensors", "--classes", 3, expect=65).stderr
    backbone = torch_state_dict(tmp_path / "bb.pth", {"conv.weight": (8, 3, 3, 3), "bn.weight": (8,), "bn.running_mean": (8,)})
    wsurgery("replace-head", backbone, tmp_path / "x.safetensors", "--classes", 3, expect=65)
    assert not (tmp_path / "x.safetensors").exists()


def test_a_layer_norm_over_a_row_or_a_map_is_no_head_and_no_convolution(tmp_path):
    # pesto's mir-1k.ckpt: nn.LayerNorm([1, 264]) stores a (1, 264) weight and bias; read as a Linear it was
    # taken for the head and replace-head exited 0 with a (1, 264) bias beside a (5, 264) weight.
    src = state_dict(tmp_path / "pitch.safetensors", {
        "encoder.layernorm.weight": (1, 264), "encoder.layernorm.bias": (1, 264),
        "encoder.conv1.0.weight": (40, 1, 15), "encoder.conv1.0.bias": (40,),
        "encoder.mapnorm.weight": (40, 4, 4), "encoder.mapnorm.bias": (40, 4, 4),
        "encoder.conv_layers.0.weight": (30, 40, 1), "encoder.conv_layers.0.bias": (30,),
        "encoder.fc.weight": (1, 1, 1175)})
    kinds = {layer["name"]: layer["kind"] for layer in json.loads(wsurgery("inspect", src, "--json").stdout)["layers"]}
    assert kinds["encoder.layernorm"] == "layer_norm" and kinds["encoder.mapnorm"] == "layer_norm", kinds
    proc = wsurgery("replace-head", src, tmp_path / "o.safetensors", "--classes", "5", expect=65)
    assert "classifier head" in proc.stderr
    proc = wsurgery("collapse-channels", src, tmp_path / "o.safetensors", expect=65)
    assert "already takes 1 channel" in proc.stderr and "encoder.conv1.0, encoder.fc" in proc.stderr
    assert not (tmp_path / "o.safetensors").exists()
