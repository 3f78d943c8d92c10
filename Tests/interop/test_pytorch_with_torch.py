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


# --- Hugging Face folders through from_pretrained --------------------------------------------------

transformers = pytest.importorskip("transformers")


def gray_and_rgb(size=40, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    gray = Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L")
    return gray, gray.convert("RGB")


def pixels(folder, image):
    return transformers.AutoImageProcessor.from_pretrained(folder)(image, return_tensors="pt")["pixel_values"]


def stem_output(model, x):
    out = {}
    first = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    # The convolution's output through its batch norm (the folded offset lives in the moving mean).
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    handle = bn.register_forward_hook(lambda m, i, o: out.setdefault("y", o))
    with torch.no_grad():
        logits = model(x).logits
    handle.remove()
    return out["y"], logits


@pytest.mark.parametrize("name", ["resnet", "resnet_bin"])
def test_hf_collapse_loads_and_matches(name, tmp_path):
    src = fixture("hf", name)
    wsurgery("collapse-channels", src, str(tmp_path / "out") + "/")
    auto = transformers.AutoModelForImageClassification
    original, gray_model = auto.from_pretrained(src).eval(), auto.from_pretrained(tmp_path / "out").eval()
    assert gray_model.config.num_channels == 1
    gray, rgb = gray_and_rgb()
    x_gray, x_rgb = pixels(tmp_path / "out", gray), pixels(src, rgb)
    assert x_gray.shape[1] == 1 and x_rgb.shape[1] == 3
    # The stem on the processed gray image equals the original stem on the processed RGB copy, away from
    # the zero-padded border (7x7 convolution, padding 3).
    y_gray, _ = stem_output(gray_model, x_gray)
    y_rgb, _ = stem_output(original, x_rgb)
    np.testing.assert_allclose(y_gray[..., 2:-2, 2:-2], y_rgb[..., 2:-2, 2:-2], rtol=1e-4, atol=1e-4)


def test_hf_vit_set_input_shape_and_replace_head(tmp_path):
    src = fixture("hf", "vit")
    wsurgery("set-input-shape", src, str(tmp_path / "big") + "/", "--size", "48x48")
    wsurgery("replace-head", tmp_path / "big", str(tmp_path / "five") + "/", "--classes", 5, "--seed", 0)
    model = transformers.AutoModelForImageClassification.from_pretrained(tmp_path / "five").eval()
    assert model.config.image_size == 48 and model.config.num_labels == 5
    x = pixels(tmp_path / "five", gray_and_rgb(64)[1])
    assert x.shape[-2:] == (48, 48)
    with torch.no_grad():
        assert model(x).logits.shape == (1, 5)
    # Resampled the way transformers interpolates for a 48x48 input at the old size.
    original = transformers.AutoModelForImageClassification.from_pretrained(src).eval()
    with torch.no_grad():
        a = original(x, interpolate_pos_encoding=True).logits
    assert a.shape == (1, 4)


def test_hf_resnet_set_input_shape(tmp_path):
    src = fixture("hf", "resnet")
    wsurgery("set-input-shape", src, str(tmp_path / "o") + "/", "--size", "64x64")
    model = transformers.AutoModelForImageClassification.from_pretrained(tmp_path / "o").eval()
    x = pixels(tmp_path / "o", gray_and_rgb(80)[1])
    assert x.shape[-2:] == (64, 64)
    original = transformers.AutoModelForImageClassification.from_pretrained(src).eval()
    with torch.no_grad():
        assert torch.equal(model(x).logits, original(x).logits)
