"""Hugging Face model folders (made with real transformers: fixtures/hf/make_hf_fixtures.py) through the
surgery commands, checked without torch: state-dict manifests of the models transformers builds for the
edited configs (so from_pretrained loads them strictly), config and processor fields, the first layer's
math in numpy. test_pytorch_with_torch.py runs the outputs in transformers where torch is installed."""
import json
import os
import shutil

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import fixture, wsurgery
from test_pytorch_interop import conv2d

RECORDS = json.load(open(fixture("hf", "hf_records.json")))
MANIFESTS = RECORDS["manifests"]


def folder_tensors(path):
    """The tensors of an output folder: one model.safetensors (no index) when they fit in one shard, as
    save_pretrained writes them, else shards and their index."""
    if os.path.exists(os.path.join(path, "model.safetensors")):
        assert not os.path.exists(os.path.join(path, "model.safetensors.index.json"))
        return load_file(os.path.join(path, "model.safetensors"))
    index = json.load(open(os.path.join(path, "model.safetensors.index.json")))
    tensors = {}
    for shard in sorted(set(index["weight_map"].values())):
        tensors.update(load_file(os.path.join(path, shard)))
    assert sorted(tensors) == sorted(index["weight_map"])
    return tensors


def manifest(tensors):
    return {k: list(v.shape) for k, v in tensors.items()}


def load_json(*parts):
    return json.load(open(os.path.join(*map(str, parts))))


@pytest.mark.parametrize("name", ["resnet", "resnet_bin"])
def test_collapse_folder(name, out):
    src = fixture("hf", name)
    proc = wsurgery("collapse-channels", src, f"{out}/gray/")
    dst = out / "gray"
    got = folder_tensors(dst)
    assert manifest(got) == MANIFESTS["resnet_gray"]
    assert load_json(dst, "config.json")["num_channels"] == 1
    processor = load_json(dst, "preprocessor_config.json")
    before = load_json(src, "preprocessor_config.json")
    assert processor["image_mean"] == pytest.approx([np.mean(before["image_mean"])])
    assert processor["image_std"] == pytest.approx([np.mean(before["image_std"])])
    assert {k: v for k, v in processor.items() if not k.startswith("image_")} == {
        k: v for k, v in before.items() if not k.startswith("image_")}
    if name == "resnet":
        assert (dst / "README.md").read_bytes() == open(os.path.join(src, "README.md"), "rb").read()
    assert "'preprocessor_config.json' folded in" in proc.stdout
    # The stem (convolution + batch norm) on the gray image through the new processor's statistics equals
    # the original stem on the RGB copy through the original statistics, away from the zero padding.
    original = load_file(os.path.join(fixture("hf", "resnet"), "model.safetensors"))
    pixels = np.random.default_rng(1).uniform(0, 1, (1, 20, 20))
    mean, std = np.array(before["image_mean"])[:, None, None], np.array(before["image_std"])[:, None, None]
    conv, bn = "resnet.embedder.embedder.convolution.weight", "resnet.embedder.embedder.normalization."

    def stem(sd, x):
        y = conv2d(x, sd[conv].astype("float64"), 2, 3)
        scale = sd[bn + "weight"] / np.sqrt(sd[bn + "running_var"] + 1e-5)
        return (y - sd[bn + "running_mean"][:, None, None]) * scale[:, None, None] + sd[bn + "bias"][:, None, None]

    want = stem(original, (np.repeat(pixels, 3, 0) - mean) / std)
    have = stem(got, (pixels - processor["image_mean"][0]) / processor["image_std"][0])
    np.testing.assert_allclose(have[:, 2:-2, 2:-2], want[:, 2:-2, 2:-2], rtol=1e-4, atol=1e-4)
    assert not np.allclose(have, want, rtol=1e-4, atol=1e-4), "the border should show the zero padding"


def test_a_name_without_extension_is_a_folder_with_one_model_safetensors(out):
    # As save_pretrained("resnet-gray") names and fills it: a folder, its weights one model.safetensors.
    wsurgery("collapse-channels", fixture("hf", "resnet"), out / "resnet-gray")
    dst = out / "resnet-gray"
    assert sorted(os.listdir(dst)) == ["README.md", "config.json", "model.safetensors", "preprocessor_config.json"]
    assert manifest(load_file(dst / "model.safetensors")) == MANIFESTS["resnet_gray"]
    # Weights past the shard size are shards and an index; the single file of the earlier output is
    # refused without --force and removed with it, so the folder holds one model.
    proc = wsurgery("convert", dst, dst, "--shard-size", "2KB", expect=64)
    assert "input" in proc.stderr
    other = out / "other"
    shutil.copytree(dst, other)
    proc = wsurgery("convert", dst, other, "--shard-size", "2KB", expect=73)
    assert "model.safetensors" in proc.stderr and sorted(os.listdir(other)) == sorted(os.listdir(dst))
    wsurgery("convert", dst, other, "--shard-size", "2KB", "--force")
    assert not (other / "model.safetensors").exists()
    assert folder_tensors(other).keys() == load_file(dst / "model.safetensors").keys()
    wsurgery("convert", dst, other, "--force")
    assert sorted(os.listdir(other)) == sorted(os.listdir(dst))


def test_replace_head_folder_labels(out):
    wsurgery("replace-head", fixture("hf", "resnet"), f"{out}/o/", "--classes", 3, "--keep-classes", "1,0", "--seed", 0)
    config = load_json(out, "o", "config.json")
    assert config["id2label"] == {"0": "dog", "1": "cat", "2": "LABEL_2"}
    assert config["label2id"] == {"dog": 0, "cat": 1, "LABEL_2": 2}
    assert manifest(folder_tensors(out / "o")) == MANIFESTS["resnet_3_classes"]
    original = load_file(os.path.join(fixture("hf", "resnet"), "model.safetensors"))
    got = folder_tensors(out / "o")
    assert np.array_equal(got["classifier.1.weight"][:2], original["classifier.1.weight"][[1, 0]])
    assert load_json(out, "o", "preprocessor_config.json") == load_json(fixture("hf", "resnet"), "preprocessor_config.json")


def test_vit_set_input_shape_and_collapse(out):
    src = fixture("hf", "vit")
    proc = wsurgery("set-input-shape", src, f"{out}/big/", "--size", "48x48")
    assert manifest(folder_tensors(out / "big")) == MANIFESTS["vit_48"]
    assert load_json(out, "big", "config.json")["image_size"] == 48
    assert load_json(out, "big", "preprocessor_config.json")["size"] == {"height": 48, "width": 48}
    assert "position_embeddings" in proc.stdout
    wsurgery("collapse-channels", src, f"{out}/gray/")
    assert manifest(folder_tensors(out / "gray")) == MANIFESTS["vit_gray"]
    processor = load_json(out, "gray", "preprocessor_config.json")
    assert processor["image_mean"] == [0.5] and processor["image_std"] == [0.5]


def test_cnn_set_input_shape_transfers_every_weight(out):
    proc = wsurgery("set-input-shape", fixture("hf", "resnet"), f"{out}/o/", "--size", "64x64")
    assert "model_type resnet: every weight transfers" in proc.stdout + proc.stderr
    got = folder_tensors(out / "o")
    original = load_file(os.path.join(fixture("hf", "resnet"), "model.safetensors"))
    assert all(np.array_equal(got[k], v) for k, v in original.items())
    assert load_json(out, "o", "preprocessor_config.json")["size"] == {"shortest_edge": 64}
    # A torchvision state dict: every weight transfers, on the stated assumption.
    proc = wsurgery("set-input-shape", fixture("pytorch", "tiny_resnet.pth"), out / "t.safetensors", "--size", "64x64")
    assert "adaptive pooling" in proc.stdout + proc.stderr


def test_size_bound_tables_are_refused(out):
    """A BEiT relative position table spans the patch grid: refused by name, nothing written."""
    rng = np.random.default_rng(0)
    sd = {
        "beit.embeddings.patch_embeddings.projection.weight": rng.standard_normal((16, 3, 8, 8)).astype("float32"),
        "beit.encoder.layer.0.attention.attention.relative_position_bias.relative_position_bias_table":
            rng.standard_normal(((2 * 4 - 1) ** 2 + 3, 2)).astype("float32"),
        "classifier.weight": rng.standard_normal((4, 16)).astype("float32"),
    }
    save_file(sd, out / "beit.safetensors")
    proc = wsurgery("set-input-shape", out / "beit.safetensors", out / "o.safetensors", "--size", "48x48", expect=65)
    assert "relative_position_bias_table" in proc.stderr
    assert not (out / "o.safetensors").exists()


def test_timm_folder_config_follows(out):
    """fixtures/hf_tiny: torchvision names with timm's config.json (pretrained_cfg names the layers)."""
    src = fixture("hf_tiny")
    wsurgery("collapse-channels", src, f"{out}/gray/")
    config = load_json(out, "gray", "config.json")
    assert config["pretrained_cfg"]["input_size"] == [1, 16, 16]
    assert config["pretrained_cfg"]["mean"] == pytest.approx([0.449]) and config["pretrained_cfg"]["std"] == pytest.approx([0.226])
    wsurgery("replace-head", src, f"{out}/five/", "--classes", 5, "--keep-classes", "7,2", "--seed", 0)
    config = load_json(out, "five", "config.json")
    assert config["num_classes"] == 5 and config["pretrained_cfg"]["num_classes"] == 5
    assert config["label_names"] == ["class_7", "class_2", "LABEL_2", "LABEL_3", "LABEL_4"]
    assert folder_tensors(out / "five")["fc.weight"].shape == (5, 8)


def test_folder_output_is_removed_on_failure(out):
    wsurgery("replace-head", fixture("hf", "resnet"), f"{out}/o/", "--classes", 0, expect=64)
    wsurgery("resize-dense", fixture("hf", "resnet"), f"{out}/o/", "--layer", "nope", "--units", 3, expect=64)
    assert not (out / "o").exists()


# --- every known model type, from transformers' own record ---------------------------------------

MODEL_TYPES = RECORDS["model_types"]


def model_type_folder(name, path):
    """A folder as save_pretrained writes it for the tiny model of `name`, with random values."""
    entry = MODEL_TYPES[name]
    os.makedirs(path)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(entry["config"], f, indent=2)
    rng = np.random.default_rng(0)
    tensors = {
        k: np.array(1, "int64") if k.endswith("num_batches_tracked") else rng.standard_normal(shape).astype("float32")
        for k, shape in entry["tensors"].items()
    }
    save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
    return tensors


@pytest.mark.parametrize("name", sorted(MODEL_TYPES))
def test_model_type_targets_match_transformers(name, out):
    entry = MODEL_TYPES[name]
    src = str(out / name)
    original = model_type_folder(name, src)
    wsurgery("collapse-channels", src, f"{out}/gray/")
    assert manifest(folder_tensors(out / "gray")) == entry["gray"]
    assert load_json(out, "gray", "config.json")["num_channels"] == 1
    wsurgery("replace-head", src, f"{out}/five/", "--classes", 5, "--seed", 0)
    five = folder_tensors(out / "five")
    assert manifest(five) == entry["classes5"]
    assert len(load_json(out, "five", "config.json")["id2label"]) == 5
    # Everything but the head is bit-identical.
    assert all(np.array_equal(original[k], five[k]) for k in original if not k.startswith("classifier"))
    if name == "beit_relative":
        proc = wsurgery("set-input-shape", src, f"{out}/big/", "--size", "48x48", expect=65)
        assert "relative_position_bias_table" in proc.stderr and not (out / "big").exists()
        return
    wsurgery("set-input-shape", src, f"{out}/big/", "--size", "48x48")
    assert manifest(folder_tensors(out / "big")) == entry.get("size48", entry["tensors"])


def test_adapt_channels_remaps_processor_statistics(out):
    """3 -> 4 channels: the kernel repeats its channels cyclically, and so do image_mean / image_std."""
    wsurgery("adapt-channels", fixture("hf", "resnet"), f"{out}/o/", "--channels", 4)
    before = load_json(fixture("hf", "resnet"), "preprocessor_config.json")
    after = load_json(out, "o", "preprocessor_config.json")
    assert after["image_mean"] == before["image_mean"] + before["image_mean"][:1]
    assert after["image_std"] == before["image_std"] + before["image_std"][:1]
    assert load_json(out, "o", "config.json")["num_channels"] == 4
    assert folder_tensors(out / "o")["resnet.embedder.embedder.convolution.weight"].shape == (8, 4, 7, 7)


def test_fold_normalization_refused_when_the_processor_normalises(out):
    proc = wsurgery("collapse-channels", fixture("hf", "resnet"), f"{out}/o/", "--fold-normalization", "imagenet", expect=64)
    assert "preprocessor_config.json" in proc.stderr and not (out / "o").exists()
