"""PyTorch checkpoints (torch.save zip and legacy, .bin, training checkpoints, a malicious pickle) read
by wsurgery, checked against what real torch recorded (fixtures/pytorch/make_pytorch_fixtures.py) with
numpy only: torch is not a CI dependency."""
import json
import os
import shutil
import struct
import subprocess
import zipfile

import numpy as np
import pytest
from safetensors.numpy import load_file

import torchsave
from conftest import BIN, fixture, wsurgery

RECORDS = json.load(open(fixture("pytorch", "torch_records.json")))


def raw(path):
    """Every tensor of a safetensors file as (dtype, shape, bytes): exact, whatever the dtype."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0] : v["data_offsets"][1]]) for k, v in header.items()}


def manifest(path):
    return {k: list(v[1]) for k, v in raw(path).items()}


@pytest.mark.parametrize("name", ["tiny_resnet.pth", "tiny_resnet_legacy.pth", "pytorch_model.bin", "data_parallel.pth"])
def test_state_dicts_match_torch(name, out):
    src = fixture("pytorch", name)
    if name == "pytorch_model.bin":  # the Hugging Face name of the same zip format
        src = str(out / name)
        shutil.copy(fixture("pytorch", "tiny_resnet.pth"), src)
    proc = wsurgery("convert", src, out / "o.safetensors")
    assert raw(out / "o.safetensors") == raw(fixture("pytorch", "tiny_resnet.expected.safetensors"))
    if name == "data_parallel.pth":
        assert "'module.' prefix" in proc.stderr


@pytest.mark.parametrize("name", ["views.pth", "views_legacy.pth"])
def test_views_shared_storages_and_dtypes(name, out):
    """Offsets into a shared storage, a transposed view, strided columns, f16/bf16/i64/bool, a scalar."""
    wsurgery("convert", fixture("pytorch", name), out / "o.safetensors")
    got, want = raw(out / "o.safetensors"), raw(fixture("pytorch", "views.expected.safetensors"))
    assert got == want
    assert got["transposed"][1] == [6, 4] and got["scalar"][1] == []


def test_training_checkpoint(out):
    ckpt = fixture("pytorch", "lightning_like.ckpt")
    proc = wsurgery("convert", ckpt, out / "a.safetensors")
    expected = raw(fixture("pytorch", "tiny_resnet.expected.safetensors"))
    assert raw(out / "a.safetensors") == {"model." + k: v for k, v in expected.items()}
    assert "entry 'state_dict'" in proc.stderr and "ema_state_dict" in proc.stderr
    # The custom class in the hyper-parameters (torch.load(weights_only=True) refuses the file) is listed, never built.
    assert "__main__.TrainingConfig" in proc.stderr
    wsurgery("convert", ckpt + "#ema_state_dict", out / "b.safetensors")
    assert raw(out / "b.safetensors") == expected


def test_ambiguous_checkpoint_names_its_keys(out):
    src = fixture("pytorch", "two_models.pth")
    proc = wsurgery("convert", src, out / "o.safetensors", expect=64)
    assert "'student'" in proc.stderr and "'teacher'" in proc.stderr and "#KEY" in proc.stderr
    assert not os.listdir(out)
    wsurgery("convert", src + "#student", out / "o.safetensors")
    wsurgery("convert", src + "#nope", out / "p.safetensors", expect=65)


def test_malicious_pickle_runs_nothing(tmp_path):
    """Unpickling malicious.pth with pickle runs `echo ran > wsurgery-pickle-ran` in the current directory."""
    src = fixture("pytorch", "malicious.pth")
    for args in (["inspect", src], ["convert", src, "o.safetensors"], ["collapse-channels", src, "c.safetensors", "--layer", "conv"]):
        proc = subprocess.run([BIN, *args], cwd=tmp_path, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert "posix.system" in proc.stdout + proc.stderr
        assert not (tmp_path / "wsurgery-pickle-ran").exists()
    assert sorted(os.listdir(tmp_path)) == ["c.safetensors", "o.safetensors"]
    assert list(raw(tmp_path / "o.safetensors")) == ["conv.weight"]


def rewrite_pickle(src, dst, edit):
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            zout.writestr(info.filename, edit(data) if info.filename.endswith("data.pkl") else data)


@pytest.mark.parametrize(
    "edit,message",
    [
        (lambda d: d[: len(d) // 2], "ends inside an opcode"),
        (lambda d: d[:2] + b"\xff" + d[2:], "unknown or unsupported opcode 0xff"),
        (lambda d: d[:2] + b"h\x63" + d[2:], "memo reference to entry 99"),
        (lambda d: d.replace(b"K\x00", b"\x8a\x09" + b"\xff" * 9, 1), "do not describe a tensor"),
    ],
    ids=["truncated", "unknown-opcode", "bad-memo", "bad-offset"],
)
def test_corrupt_pickles_are_refused(edit, message, out):
    bad = out / "bad.pth"
    rewrite_pickle(fixture("pytorch", "tiny_resnet.pth"), bad, edit)
    proc = wsurgery("convert", bad, out / "o.safetensors", expect=65)
    assert message in proc.stderr and "bad.pth" in proc.stderr
    assert sorted(os.listdir(out)) == ["bad.pth"]


def test_pickles_are_never_written(out):
    proc = wsurgery("convert", fixture("pytorch", "tiny_resnet.pth"), out / "o.pth", expect=64)
    assert "never pickles" in proc.stderr
    assert not os.listdir(out)


# A numpy forward of the fixture's TinyResNet (torchvision's conv1/bn1/maxpool/BasicBlock/avgpool/fc).
def conv2d(x, w, stride, pad):
    c, h, wd = x.shape
    o, _, kh, kw = w.shape
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - kh) // stride + 1, (wd + 2 * pad - kw) // stride + 1
    out = np.zeros((o, oh, ow), np.float64)
    for i in range(kh):
        for j in range(kw):
            patch = x[:, i : i + stride * oh : stride, j : j + stride * ow : stride]
            out += np.einsum("oc,chw->ohw", w[:, :, i, j], patch)
    return out


def batch_norm(x, sd, p):
    scale = sd[p + ".weight"] / np.sqrt(sd[p + ".running_var"] + 1e-5)
    return (x - sd[p + ".running_mean"][:, None, None]) * scale[:, None, None] + sd[p + ".bias"][:, None, None]


def max_pool(x):
    x = np.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    oh, ow = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
    return np.max([x[:, i : i + 2 * oh : 2, j : j + 2 * ow : 2] for i in range(3) for j in range(3)], axis=0)


def tiny_resnet(sd, x):
    relu = lambda v: np.maximum(v, 0)  # noqa: E731
    y = max_pool(relu(batch_norm(conv2d(x, sd["conv1.weight"], 2, 3), sd, "bn1")))
    z = relu(batch_norm(conv2d(y, sd["layer1.0.conv1.weight"], 1, 1), sd, "layer1.0.bn1"))
    z = relu(batch_norm(conv2d(z, sd["layer1.0.conv2.weight"], 1, 1), sd, "layer1.0.bn2") + y)
    return sd["fc.weight"] @ z.mean((1, 2)) + sd["fc.bias"]


def test_collapse_and_replace_head_match_torch(out):
    rec = RECORDS["tiny_resnet"]
    gray = np.array(rec["input_gray"], np.float64)[None]
    original = load_file(fixture("pytorch", "tiny_resnet.expected.safetensors"))
    # The numpy forward agrees with torch on the original model.
    np.testing.assert_allclose(tiny_resnet(original, np.repeat(gray, 3, 0)), rec["logits_rgb_copy"], rtol=1e-4, atol=1e-5)
    wsurgery("collapse-channels", fixture("pytorch", "tiny_resnet.pth"), out / "gray.safetensors")
    collapsed = load_file(out / "gray.safetensors")
    # On a gray image the collapsed model computes what torch computed for the original on its RGB copy.
    np.testing.assert_allclose(tiny_resnet(collapsed, gray), rec["logits_rgb_copy"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(tiny_resnet(collapsed, gray), rec["logits_collapsed"], rtol=1e-4, atol=1e-5)
    before = raw(fixture("pytorch", "tiny_resnet.expected.safetensors"))
    after = raw(out / "gray.safetensors")
    assert [k for k in before if before[k] != after[k]] == ["conv1.weight"]
    wsurgery("replace-head", out / "gray.safetensors", out / "five.safetensors", "--classes", 5, "--seed", 1)
    assert manifest(out / "five.safetensors") == RECORDS["manifests"]["tiny_resnet_gray_5"]


def test_resnet50_targets_torchvision_manifest(out):
    """A resnet50-sized state dict (generated: 100 MB) through collapse-channels and replace-head has
    exactly the keys and shapes of torchvision's resnet50(num_classes=5) with a 1-channel conv1, so
    load_state_dict(strict=True) accepts it."""
    rng = np.random.default_rng(0)
    arrays = {
        k: np.array(3, "int64") if k.endswith("num_batches_tracked") else rng.standard_normal(s, dtype=np.float32)
        for k, s in RECORDS["manifests"]["resnet50"].items()
    }
    torchsave.save(arrays, out / "resnet50.pth")
    wsurgery("run", "--pass", "collapse-channels", "--pass", "replace-head classes=5 seed=0", out / "resnet50.pth", "--out-dir", out,
             "--output", "{stem}.safetensors")
    result = out / "resnet50.safetensors"
    assert manifest(result) == RECORDS["manifests"]["resnet50_gray_5"]
    got = load_file(result)
    np.testing.assert_allclose(got["conv1.weight"], arrays["conv1.weight"].sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    for k, v in arrays.items():
        if not (k.startswith("conv1.") or k.startswith("fc.")):
            assert np.array_equal(got[k], v), k


def test_batch_report_lists_what_the_reader_noted(out):
    report = out / "r.json"
    wsurgery("run", "--pass", "convert", fixture("pytorch", "malicious.pth"), fixture("pytorch", "lightning_like.ckpt"),
             "--out-dir", out / "o", "--output", "{stem}.safetensors", "--report", report)
    notes = {os.path.basename(f["input"]): f["notes"] for f in json.load(open(report))["files"]}
    assert any("posix.system" in n for n in notes["malicious.pth"])
    assert any("'state_dict'" in n for n in notes["lightning_like.ckpt"])
    assert sorted(os.listdir(out / "o")) == ["lightning_like.safetensors", "malicious.safetensors"]


def test_sharded_pytorch_model_bin_folder(out):
    """pytorch_model-0000i-of-00002.bin shards and their pytorch_model.bin.index.json, as older Hugging Face
    repositories hold large models."""
    expected = load_file(fixture("pytorch", "tiny_resnet.expected.safetensors"))
    names = list(expected)
    folder = out / "model"
    folder.mkdir()
    weight_map = {}
    for i, part in enumerate([names[:7], names[7:]], 1):
        shard = f"pytorch_model-{i:05d}-of-00002.bin"
        torchsave.save({n: expected[n] for n in part}, folder / shard)
        weight_map.update({n: shard for n in part})
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    wsurgery("convert", folder, out / "o.safetensors")
    assert raw(out / "o.safetensors") == raw(fixture("pytorch", "tiny_resnet.expected.safetensors"))
    # An index that places a tensor in the wrong shard is refused.
    weight_map[names[0]] = "pytorch_model-00002-of-00002.bin"
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}))
    proc = wsurgery("convert", folder, out / "p.safetensors", expect=65)
    assert names[0] in proc.stderr and not (out / "p.safetensors").exists()


def test_python2_era_legacy_file_reads_like_torch_load(out):
    """Python 2 str keys and persistent ids (SHORT_BINSTRING), storages on cuda:0, as lpips' weights:
    torch.load(weights_only=True) decodes them as UTF-8 text; so does wsurgery."""
    rng = np.random.default_rng(3)
    arrays = {
        "lin0.model.1.weight": rng.standard_normal((1, 64, 1, 1)).astype(np.float32),
        "lin1.model.1.weight": rng.standard_normal((1, 192, 1, 1)).astype(np.float32),
        "scale": np.arange(3, dtype=np.int64),
    }
    src = out / "alex_py2.pth"
    torchsave.save_python2_legacy(arrays, src)
    wsurgery("convert", src, out / "alex.safetensors")
    got = load_file(str(out / "alex.safetensors"))
    assert list(got) == sorted(arrays) or set(got) == set(arrays)
    for name, a in arrays.items():
        assert got[name].dtype == a.dtype and np.array_equal(got[name], a), name


def test_torchscript_archive_is_named_and_what_to_run_is_said(out):
    """A torch.jit.save archive (data.pkl of scripted modules beside code/ and constants.pkl): refused
    as TorchScript, saying how to get a state dict, not as 'holds no tensors'."""
    src = out / "scripted.pt"
    with zipfile.ZipFile(src, "w", zipfile.ZIP_STORED) as z:
        z.writestr("scripted/data.pkl", b"\x80\x02c__torch__\nNet\n)\x81}b.")
        z.writestr("scripted/code/__torch__.py", "class Net(Module):\n  pass\n")
        z.writestr("scripted/constants.pkl", b"\x80\x02).")
        z.writestr("scripted/version", "3\n")
    proc = wsurgery("inspect", src, expect=65)
    assert "TorchScript" in proc.stderr and "torch.jit.load" in proc.stderr and str(src) in proc.stderr


def test_npz_is_named_as_numpy(out):
    src = out / "weights.npz"
    np.savez(src, w=np.zeros(3, np.float32))
    proc = wsurgery("inspect", src, expect=65)
    assert "numpy .npz" in proc.stderr and str(src) in proc.stderr


def test_every_object_of_a_torch_save_file_is_accounted_for(out):
    """A storage no tensor uses, an entry torch does not write, or tensors nested inside a state dict's value
    would be dropped by a reader that takes the state dict's tensors: each is refused by name (issue 23)."""
    import hostile_torch as ht
    arrays = {"conv.weight": np.ones((2, 3, 1, 1), np.float32), "fc.weight": np.ones((4, 2), np.float32)}
    cases = {}
    for name, extra, message in [
        ("orphan.pth", ("archive/data/7", b"\0" * 64), "'archive/data/7' (64 bytes) is a storage no tensor of data.pkl uses"),
        ("unknown.pth", ("archive/notes.txt", b"hello"), "'archive/notes.txt' is not part of a torch.save file"),
        ("outside.pth", ("other/data.bin", b"x"), "'other/data.bin' lies outside the archive 'archive'"),
    ]:
        torchsave.save(arrays, out / name)
        with zipfile.ZipFile(out / name, "a", zipfile.ZIP_STORED) as z:
            z.writestr(extra[0], extra[1])
        cases[name] = message
    ht.write_zip(out / "nested.pth", ht.PROTO2 + ht.ordered_dict({"w": ht.tensor("0"), "extra": ht.ordered_dict({"v": ht.tensor("1")})}) + b".",
                 {"0": np.float32([1]).tobytes(), "1": np.float32([2]).tobytes()})
    cases["nested.pth"] = "key 'extra' is not a tensor but holds tensors"
    for name, message in cases.items():
        for command in (["inspect", out / name], ["convert", out / name, out / "never.safetensors"]):
            proc = wsurgery(*command, expect=65)
            assert message in proc.stderr and "refusing rather than dropping" in proc.stderr, (name, proc.stderr)
    assert not (out / "never.safetensors").exists()
    # torch's own metadata entries (.data/serialization_id, .format_version, .storage_alignment) are fine.
    wsurgery("inspect", fixture("pytorch", "tiny_resnet.pth"))
    # The nested value picked by name is its own state dict.
    assert "1 tensors" in wsurgery("convert", f"{out / 'nested.pth'}#extra", out / "extra.safetensors").stdout


def test_weights_two_levels_down_are_found_and_can_be_picked_by_a_path(out):
    """chgnet's .pth.tar: {'model': {'state_dict': ..., 'model_args': ...}, 'optimizer': {...}}: the known key
    inside a known key is taken (said in a note); `#model.state_dict` picks it; `#model` says where to look."""
    import hostile_torch as ht
    pkl = ht.PROTO2 + ht.ordered_dict({
        "model": ht.ordered_dict({"state_dict": ht.ordered_dict({"fc.weight": ht.tensor("0", numel=2, shape=(2, 1), stride=(1, 1))})}),
        "optimizer": ht.ordered_dict({"state": ht.ordered_dict({"exp_avg": ht.tensor("1")})}),
    }) + b"."
    src = out / "trained.pth.tar"
    ht.write_zip(src, pkl, {"0": np.float32([1, 2]).tobytes(), "1": np.float32([3]).tobytes()})
    proc = wsurgery("convert", src, out / "a.safetensors")
    assert "the entry 'model.state_dict'" in proc.stderr + proc.stdout and "optimizer" in proc.stderr + proc.stdout
    assert load_file(str(out / "a.safetensors"))["fc.weight"].tolist() == [[1.0], [2.0]]
    wsurgery("convert", f"{src}#model.state_dict", out / "b.safetensors")
    assert load_file(str(out / "b.safetensors")).keys() == {"fc.weight"}
    proc = wsurgery("inspect", f"{src}#model", expect=65)
    assert "holds no tensors itself; its entries holding tensors: state_dict" in proc.stderr
    assert f"{src}#model.state_dict" in proc.stderr
    proc = wsurgery("inspect", f"{src}#model.nope", expect=65)
    assert "no such path of keys; keys: model, optimizer" in proc.stderr
