"""Checks wsurgery's PyTorch outputs in real torch/torchvision. Skipped where torch is not installed
(CI): run it with a venv holding the versions in fixtures/pytorch/make_pytorch_fixtures.py:

    WSURGERY_BIN=.build/debug/wsurgery /tmp/torchvenv/bin/python -m pytest Tests/interop/test_pytorch_with_torch.py
"""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
from safetensors.torch import load_file  # noqa: E402

import torchsave  # noqa: E402
from conftest import fixture, wsurgery  # noqa: E402

RECORDS = json.load(open(fixture("pytorch", "torch_records.json")))


def test_torchsave_files_load_in_torch(tmp_path):
    arrays = {"a": np.arange(6, dtype="float32").reshape(2, 3), "n": np.array(3, "int64"), "h": np.ones(4, "float16")}
    torchsave.save(arrays, tmp_path / "t.pth")
    loaded = torch.load(tmp_path / "t.pth", weights_only=True)
    assert list(loaded) == list(arrays)
    for k, v in arrays.items():
        assert loaded[k].shape == v.shape and np.array_equal(loaded[k].numpy(), v)


def test_resnet50_collapse_and_head_in_torchvision(tmp_path):
    """The whole resnet50: strict load into resnet50(num_classes=5) with a 1-channel conv1, and the
    features on a gray image equal the original's on its RGB copy."""
    torch.manual_seed(0)
    original = torchvision.models.resnet50().eval()
    for m in original.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    torchsave.save({k: v.numpy() for k, v in original.state_dict().items()}, tmp_path / "r50.pth")
    wsurgery("collapse-channels", tmp_path / "r50.pth", tmp_path / "gray.safetensors")
    wsurgery("replace-head", tmp_path / "gray.safetensors", tmp_path / "five.safetensors", "--classes", 5, "--seed", 0)
    target = torchvision.models.resnet50(num_classes=5)
    target.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    target.load_state_dict(load_file(tmp_path / "five.safetensors"), strict=True)
    target.eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        features = lambda m, v: torch.nn.Sequential(*list(m.children())[:-1])(v).flatten(1)  # noqa: E731
        got, want = features(target, x).numpy(), features(original, x.repeat(1, 3, 1, 1)).numpy()
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()
        assert target(x).shape == (1, 5)


def test_training_checkpoint_loads_into_its_module(tmp_path):
    wsurgery("convert", fixture("pytorch", "lightning_like.ckpt") + "#ema_state_dict", tmp_path / "o.safetensors")
    sd = load_file(tmp_path / "o.safetensors")
    assert sorted(sd) == sorted(RECORDS["manifests"]["tiny_resnet"])
    # The EMA copy equals the plain state dict the fixture script saved (torch cannot load the checkpoint
    # itself here: its hyper-parameters need the script's class).
    reference = torch.load(fixture("pytorch", "tiny_resnet.pth"), weights_only=True)
    for k, v in reference.items():
        assert torch.equal(sd[k], v), k
