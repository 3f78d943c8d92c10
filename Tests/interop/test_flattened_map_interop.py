"""set-input-shape on state dicts whose Linear reads a flattened feature map (facenet's RNet: dense4 takes
64 x 3 x 3 = 576 inputs) rather than pooled features: refused with the map named unless --flattened-map
says what the map is at the new size; the resample is checked against jax.image.resize and against the
response to a spatially constant map, the reinit against torch's default bound. torchvision families that
pool adaptively before such a Linear (VGG, AlexNet, GoogLeNet's auxiliary heads) transfer unchanged."""
import json

import jax
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import torchsave
from conftest import wsurgery


def rnet(rng=None):
    """facenet-pytorch's RNet names and shapes (conv1..conv3 + PReLU, dense4 on the flattened 64 x 3 x 3 map,
    two heads), in its state-dict order."""
    rng = rng or np.random.default_rng(0)
    f = lambda *s: rng.standard_normal(s).astype("float32")  # noqa: E731
    return {
        "conv1.weight": f(28, 3, 3, 3), "conv1.bias": f(28), "prelu1.weight": f(28),
        "conv2.weight": f(48, 28, 3, 3), "conv2.bias": f(48), "prelu2.weight": f(48),
        "conv3.weight": f(64, 48, 2, 2), "conv3.bias": f(64), "prelu3.weight": f(64),
        "dense4.weight": f(128, 576), "dense4.bias": f(128), "prelu4.weight": f(128),
        "dense5_1.weight": f(2, 128), "dense5_1.bias": f(2), "dense5_2.weight": f(4, 128), "dense5_2.bias": f(4),
    }


@pytest.fixture
def sources(out):
    sd = rnet()
    torchsave.save(sd, out / "rnet.pth")
    save_file(sd, str(out / "rnet.safetensors"))
    return sd


@pytest.mark.parametrize("name", ["rnet.pth", "rnet.safetensors"])
def test_a_flattened_map_is_refused_naming_the_layer_and_the_map(name, sources, out):
    dst = out / "never.safetensors"
    proc = wsurgery("set-input-shape", out / name, dst, "--size", "48x48", expect=65)
    assert "layer 'dense4'" in proc.stderr and "64 x 3 x 3 map of 'conv3'" in proc.stderr, proc.stderr
    assert "--flattened-map dense4=HxW" in proc.stderr and "dense4=fixed" in proc.stderr
    if name.endswith(".safetensors"):
        assert "does not record the layer order" in proc.stderr
    assert not dst.exists()


def test_a_fixed_map_transfers_every_weight(sources, out):
    for choice in ["dense4=fixed", "fixed", "dense4=3x3", "64x3x3"]:
        dst = out / f"same-{choice.replace('=', '_')}.safetensors"
        proc = wsurgery("set-input-shape", out / "rnet.pth", dst, "--size", "48x48", "--flattened-map", choice)
        assert "transfer unchanged" in proc.stdout, proc.stdout
        after = load_file(str(dst))
        assert sorted(after) == sorted(sources) and all(after[k].tobytes() == sources[k].tobytes() for k in sources)


def test_resample_keeps_the_response_to_a_constant_map(sources, out):
    dst = out / "big.safetensors"
    report = json.loads(
        wsurgery(
            "set-input-shape", out / "rnet.pth", dst, "--size", "48x48", "--flattened-map", "dense4=6x6", "--dense-policy", "resample",
            "--json").stdout)["passes"][0]
    assert [c["tensor"] for c in report["changes"]] == ["dense4.weight"]
    after = load_file(str(dst))
    w_old, w_new = sources["dense4.weight"], after["dense4.weight"]
    assert w_new.shape == (128, 64 * 6 * 6)
    # torch flattens (C, H, W): the kernel viewed as (units, C, H, W) is resized over H, W, times 9/36.
    expected = np.asarray(jax.image.resize(w_old.reshape(128, 64, 3, 3), (128, 64, 6, 6), method="linear", antialias=False)) * (9 / 36)
    np.testing.assert_allclose(w_new, expected.reshape(128, -1), rtol=1e-5, atol=1e-6)
    # A map constant over space (one value per channel) gives the same dense4 output at 2x the size.
    v = np.random.default_rng(1).uniform(size=64).astype("float32")
    np.testing.assert_allclose(w_new @ np.repeat(v, 36), w_old @ np.repeat(v, 9), rtol=1e-4, atol=1e-4)
    assert all(after[k].tobytes() == sources[k].tobytes() for k in sources if k != "dense4.weight")


def test_reinit_draws_torch_default_weights_for_the_new_fan_in(sources, out):
    dst = out / "re.safetensors"
    proc = wsurgery("set-input-shape", out / "rnet.safetensors", dst, "--size", "48x48", "--flattened-map", "dense4=5x5", "--seed", "4")
    assert "fan-in 576 -> 1600" in proc.stdout, proc.stdout
    w = load_file(str(dst))["dense4.weight"]
    bound = 1 / np.sqrt(1600)  # kaiming_uniform(a=sqrt(5)), nn.Linear's default
    assert w.shape == (128, 1600) and np.abs(w).max() <= bound and w.std() > bound / 3
    assert load_file(str(dst))["dense4.bias"].tobytes() == sources["dense4.bias"].tobytes()


def test_dense_policy_error_and_bad_choices(sources, out):
    dst = out / "never.safetensors"
    proc = wsurgery(
        "set-input-shape", out / "rnet.pth", dst, "--size", "48x48", "--flattened-map", "dense4=5x5", "--dense-policy", "error", expect=65)
    assert "dense4 (kernel (128, 576) -> (128, 1600))" in proc.stderr
    proc = wsurgery("set-input-shape", out / "rnet.pth", dst, "--size", "48x48", "--flattened-map", "dense5_1=5x5", expect=64)
    assert "'dense5_1' is not a Dense/Linear layer reading a flattened map" in proc.stderr and "'dense4'" in proc.stderr
    proc = wsurgery("set-input-shape", out / "rnet.pth", dst, "--size", "48x48", "--flattened-map", "dense4=big", expect=64)
    assert "--flattened-map" in proc.stderr and "[LAYER=]HxW" in proc.stderr
    assert not dst.exists()


def small(*shape, rng=np.random.default_rng(2)):
    return rng.standard_normal(shape).astype("float32")


def vgg_like():
    """torchvision VGG's names: features.N convolutions (the last with 512 channels), AdaptiveAvgPool2d((7, 7)),
    classifier.0 on 512 x 7 x 7 = 25088 inputs (few units, to stay small)."""
    return {
        "features.0.weight": small(8, 3, 3, 3), "features.0.bias": small(8),
        "features.2.weight": small(512, 8, 3, 3), "features.2.bias": small(512),
        "classifier.0.weight": small(16, 25088), "classifier.0.bias": small(16),
        "classifier.3.weight": small(16, 16), "classifier.3.bias": small(16),
        "classifier.6.weight": small(10, 16), "classifier.6.bias": small(10),
    }


def googlenet_like():
    """torchvision GoogLeNet's order: the auxiliary heads (AdaptiveAvgPool2d((4, 4)), aux.conv 128 channels,
    fc1 on 2048) come after inception5b and before fc, which reads the pooled 1024 channels."""
    sd = {"conv1.conv.weight": small(8, 3, 7, 7), "inception5b.branch4.1.conv.weight": small(128, 8, 1, 1)}
    for aux in ["aux1", "aux2"]:
        sd |= {f"{aux}.conv.conv.weight": small(128, 8, 1, 1), f"{aux}.fc1.weight": small(1024, 2048), f"{aux}.fc1.bias": small(1024),
               f"{aux}.fc2.weight": small(10, 1024), f"{aux}.fc2.bias": small(10)}
    return sd | {"fc.weight": small(10, 1024), "fc.bias": small(10)}


@pytest.mark.parametrize("family,make,layers", [("vgg", vgg_like, ["classifier.0"]), ("googlenet", googlenet_like, ["aux2.fc1"])])
def test_torchvision_families_that_pool_adaptively_transfer(family, make, layers, out):
    sd = make()
    torchsave.save(sd, out / f"{family}.pth")
    dst = out / f"{family}-big.safetensors"
    proc = wsurgery("set-input-shape", out / f"{family}.pth", dst, "--size", "320x320")
    for layer in layers:
        assert f"'{layer}' reads the flattened" in proc.stdout and "pools adaptively" in proc.stdout, proc.stdout
    after = load_file(str(dst))
    assert all(after[k].tobytes() == sd[k].tobytes() for k in sd)


def test_keras_weights_without_config_are_refused_with_the_way_out(out):
    from conftest import fixture
    proc = wsurgery("set-input-shape", fixture("keras_cnn.weights.h5"), out / "x.weights.h5", "--size", "24x24", expect=65)
    assert "Keras weights without their model config" in proc.stderr and "'predictions'" in proc.stderr, proc.stderr
    assert not (out / "x.weights.h5").exists()


def flat_cnn(sd, x):
    """fixtures/pytorch/make_flat_cnn.py's FlatCNN in numpy: 1x1 conv, ReLU, 2x2 max pool, torch.flatten (C, H, W), fc."""
    y = np.maximum(np.einsum("oc,nchw->nohw", sd["conv.weight"][:, :, 0, 0], x) + sd["conv.bias"][None, :, None, None], 0)
    n, c, h, w = y.shape
    y = y.reshape(n, c, h // 2, 2, w // 2, 2).max((3, 5))
    return y.reshape(n, -1) @ sd["fc.weight"].T + sd["fc.bias"]


def test_resampled_fc_matches_torch_interpolate_and_runs_at_the_new_size(out):
    from conftest import fixture
    rec = json.load(open(fixture("pytorch", "flat_cnn_records.json")))
    src = fixture("pytorch", "flat_cnn.pth")
    wsurgery("convert", src, out / "flat.safetensors")
    original = load_file(str(out / "flat.safetensors"))
    # The numpy forward agrees with torch on the original, so the flatten order is torch's (C, H, W).
    np.testing.assert_allclose(flat_cnn(original, np.array(rec["image"])[None]), [rec["logits_image"]], rtol=1e-5, atol=1e-5)
    proc = wsurgery("set-input-shape", src, out / "never.safetensors", "--size", "16x16", expect=65)
    assert "layer 'fc'" in proc.stderr and "4 x 4 x 4 map of 'conv'" in proc.stderr, proc.stderr
    wsurgery("set-input-shape", src, out / "big.safetensors", "--size", "16x16", "--flattened-map", "fc=8x8", "--dense-policy", "resample")
    big = load_file(str(out / "big.safetensors"))
    # The new fc is what torch's F.interpolate(bilinear, align_corners=False) x 16/64 gives, and the model
    # at 16x16 (a strict load in torch, made by the fixture script) answers a constant image as before.
    np.testing.assert_allclose(big["fc.weight"], rec["fc_weight_16_resampled"], rtol=1e-5, atol=1e-7)
    colors = np.array(rec["colors"])[:, :, None, None]
    np.testing.assert_allclose(flat_cnn(big, np.broadcast_to(colors, (2, 3, 16, 16))), rec["logits_16_resampled"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(rec["logits_16_resampled"], rec["logits_8"], rtol=1e-5, atol=1e-5)
    assert all(big[k].tobytes() == original[k].tobytes() for k in original if k != "fc.weight")
