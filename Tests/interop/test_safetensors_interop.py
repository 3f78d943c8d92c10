"""The safetensors library (and numpy) load what wsurgery writes, bit for bit, metadata included."""
import json
import subprocess
import os

import h5py
import ml_dtypes  # noqa: F401  registers bfloat16 with numpy (the fixtures hold BF16): the file passes run alone too
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from conftest import fixture, wsurgery

ST_INPUTS = ["torch_resnet_tiny.safetensors", "dtypes.safetensors", "hf_tiny/model.safetensors"]


def assert_same_tensors(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert a[name].dtype == b[name].dtype, name
        assert a[name].shape == b[name].shape, name
        assert a[name].tobytes() == b[name].tobytes(), name


@pytest.mark.parametrize("name", ST_INPUTS)
def test_safetensors_round_trip_is_byte_identical_to_reference_writer(name, out):
    src = fixture(name)
    dst = out / "copy.safetensors"
    wsurgery("convert", src, dst)
    assert_same_tensors(load_file(src), load_file(str(dst)))
    with safe_open(src, "np") as a, safe_open(str(dst), "np") as b:
        written = dict(b.metadata())
        history = json.loads(written.pop("wsurgery_provenance"))
        assert written == (a.metadata() or {})
        assert history[-1]["passes"] == [] and history[-1]["input"]["xxh128"] == subprocess.run(
            ["xxhsum", "-H2", src], capture_output=True, text=True, check=True).stdout.split()[0]
    # Same tensors, same metadata through the reference writer gives the same bytes, except that our
    # header may carry more trailing spaces (padding that keeps the data at the input's offset within a
    # page). (The reference writer keeps __metadata__ in a HashMap, so with several keys even its own key
    # order varies from run to run: then the parsed headers and the data buffers must be equal.)
    reference = out / "reference.safetensors"
    with safe_open(str(dst), "np") as f:
        metadata = f.metadata()
    save_file(load_file(src), str(reference), metadata=metadata)
    ours, theirs = dst.read_bytes(), reference.read_bytes()
    n, m = int.from_bytes(ours[:8], "little"), int.from_bytes(theirs[:8], "little")
    assert (8 + n) % 4096 == (8 + int.from_bytes(open(src, "rb").read(8), "little")) % 4096 or n == m
    if metadata is None or len(metadata) <= 1:
        assert ours[8:8 + n].rstrip(b" ") == theirs[8:8 + m].rstrip(b" ")
        assert ours[8 + n:] == theirs[8 + m:]
    else:
        header_ours, header_theirs = json.loads(ours[8:8 + n]), json.loads(theirs[8:8 + m])
        assert header_ours == header_theirs
        assert [k for k in header_ours if k != "__metadata__"] == [k for k in header_theirs if k != "__metadata__"]
        assert ours[8 + n:] == theirs[8 + m:]


def test_sharded_output_loads_and_index_is_consistent(out):
    src = fixture("torch_resnet_tiny.safetensors")
    dst = out / "sharded"
    dst.mkdir()
    wsurgery("convert", src, dst, "--shard-size", "2KB")
    index = json.loads((dst / "model.safetensors.index.json").read_text())
    files = sorted(set(index["weight_map"].values()))
    assert len(files) > 1 and all(f.endswith("-of-%05d.safetensors" % len(files)) for f in files)
    merged = {}
    for f in files:
        part = load_file(str(dst / f))
        assert all(index["weight_map"][k] == f for k in part)
        merged.update(part)
    assert_same_tensors(load_file(src), merged)
    assert index["metadata"]["total_size"] == sum(v.nbytes for v in merged.values())


def test_sharded_input_converts_to_single_file(out):
    dst = out / "merged.safetensors"
    wsurgery("convert", fixture("sharded"), dst)
    assert_same_tensors(load_file(fixture("torch_resnet_tiny.safetensors")), load_file(str(dst)))


def test_hugging_face_config_is_written_beside_output(out):
    dst = out / "model.safetensors"
    wsurgery("convert", fixture("hf_tiny", "model.safetensors"), dst)
    assert (out / "config.json").read_bytes() == open(fixture("hf_tiny", "config.json"), "rb").read()


def test_safetensors_to_legacy_h5_weights_only(out):
    dst = out / "w.h5"
    wsurgery("convert", fixture("torch_resnet_tiny.safetensors"), dst)
    sd = load_file(fixture("torch_resnet_tiny.safetensors"))
    with h5py.File(dst) as f:
        names = [n.decode() if isinstance(n, bytes) else n for n in f.attrs["layer_names"]]
        seen = {}
        for layer in names:
            for w in f[layer].attrs["weight_names"]:
                w = w.decode() if isinstance(w, bytes) else w
                seen[w] = f[layer][w][()]
    assert sorted(seen) == sorted(sd)
    for k, v in sd.items():
        assert np.asarray(seen[k]).tobytes() == v.tobytes() and np.asarray(seen[k]).dtype == v.dtype, k
    # And back: the same state dict.
    back = out / "back.safetensors"
    wsurgery("convert", dst, back)
    assert_same_tensors(sd, load_file(str(back)))


def test_refuses_existing_output_and_output_equal_to_input(out):
    dst = out / "x.safetensors"
    dst.write_bytes(b"keep")
    wsurgery("convert", fixture("dtypes.safetensors"), dst, expect=73)
    assert dst.read_bytes() == b"keep"
    wsurgery("convert", fixture("dtypes.safetensors"), dst, "--force")
    assert_same_tensors(load_file(fixture("dtypes.safetensors")), load_file(str(dst)))
    wsurgery("convert", dst, dst, "--force", expect=64)
    assert os.listdir(out) == ["x.safetensors"]
