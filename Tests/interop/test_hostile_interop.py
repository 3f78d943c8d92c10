"""Hostile and unlucky inputs: every case of issue 15 as a regression test.

Each crafted file is made here (h5py, numpy, zipfile); the crashing inputs the fuzzer found are under
fixtures/fuzz/. A case passes when wsurgery ends with a documented exit code and a message naming the
file, within seconds, without a signal, and leaves nothing behind: no output, no temporary file beside
it, nothing in $TMPDIR.
"""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import warnings
import zipfile

import h5py
import numpy as np
import pytest
from safetensors.numpy import save_file

from conftest import BIN, ROOT, fixture

SIGNAL_NAMES = {getattr(signal, n): n for n in dir(signal) if n.startswith("SIG") and not n.startswith("SIG_")}


def run(args, tmpdir, timeout=30, env=None, raw=False):
    """Runs wsurgery (or, `raw`, the command `args` as given) with its own $TMPDIR."""
    environment = dict(os.environ, TMPDIR=str(tmpdir), **(env or {}))
    command = [*map(str, args)] if raw else [BIN, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environment, stdin=subprocess.DEVNULL)


@pytest.fixture
def box(tmp_path):
    """A work directory, an output directory and a private $TMPDIR, checked empty at the end."""
    class Box:
        work = tmp_path / "work"
        outdir = tmp_path / "out"
        tmpdir = tmp_path / "tmp"

        def wsurgery(self, *args, expect, timeout=30, env=None, output_expected=False, raw=False):
            proc = run(args, self.tmpdir, timeout=timeout, env=env, raw=raw)
            assert proc.returncode >= 0, f"killed by {SIGNAL_NAMES.get(-proc.returncode)}\nstderr: {proc.stderr}"
            assert proc.returncode == expect, f"exit {proc.returncode}, expected {expect}\nstderr: {proc.stderr}"
            if expect != 0:
                assert proc.stderr.startswith("wsurgery: error: "), proc.stderr
                assert proc.stderr.count("\n") <= 2, f"one message, no injected lines: {proc.stderr!r}"
            if not output_expected:
                assert os.listdir(self.outdir) == [], f"left in the output directory: {os.listdir(self.outdir)}"
            assert os.listdir(self.tmpdir) == [], f"left in TMPDIR: {os.listdir(self.tmpdir)}"
            return proc

    for d in (Box.work, Box.outdir, Box.tmpdir):
        d.mkdir()
    return Box()


def weights_only_h5(path, make_dataset, name="dense"):
    """A legacy weights-only .h5 whose one weight is made by `make_dataset(group, name)`."""
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode()]
        g = f.create_group(name)
        g.attrs["weight_names"] = [f"{name}/kernel:0".encode()]
        make_dataset(g, f"{name}/kernel:0")


def safetensors_bytes(header, data=b""):
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + data


# ---------------------------------------------------------------------------------------------------
# Arithmetic on sizes from files and options


def test_a_dataset_of_2_to_the_64_elements_is_refused(box):
    path = box.work / "huge.h5"
    weights_only_h5(path, lambda g, n: g.create_dataset(n, shape=(2**32, 2**32), dtype="f4", chunks=(1, 1)))
    proc = box.wsurgery("convert", path, box.outdir / "o.safetensors", expect=65)
    assert str(path) in proc.stderr and "2^60" in proc.stderr


def test_an_unallocated_4_tb_dataset_is_refused_by_the_expansion_limit(box):
    path = box.work / "sparse.h5"
    weights_only_h5(path, lambda g, n: g.create_dataset(n, shape=(2**20, 2**20), dtype="f4", chunks=(1024, 1024)))
    proc = box.wsurgery("convert", path, box.outdir / "o.safetensors", expect=65)
    assert "expansion" in proc.stderr and "WSURGERY_LIMITS" in proc.stderr


def test_a_gzip_bomb_is_refused_unless_the_limit_is_raised(box):
    path = box.work / "bomb.h5"
    zeros = np.zeros((5000, 5000), np.float32)  # 100 MB that gzip stores in about 100 KB
    weights_only_h5(path, lambda g, n: g.create_dataset(n, data=zeros, chunks=(500, 5000), compression="gzip"))
    assert os.path.getsize(path) < 2_000_000
    proc = box.wsurgery("convert", path, box.outdir / "o.safetensors", expect=65)
    assert "decodes to 100000000 bytes" in proc.stderr
    box.wsurgery("convert", path, box.outdir / "o.safetensors", expect=0, env={"WSURGERY_LIMITS": "expansion=100000"},
                 output_expected=True)


def test_a_bad_limits_variable_is_a_usage_error(box):
    proc = run(["inspect", fixture("keras_cnn.h5")], box.tmpdir, env={"WSURGERY_LIMITS": "expansion=lots"})
    assert proc.returncode == 64 and "WSURGERY_LIMITS" in proc.stderr


def edited_config(box, edit):
    """keras_cnn.h5 with its model_config edited by `edit(config)`."""
    path = box.work / "edited.h5"
    shutil.copy(fixture("keras_cnn.h5"), path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        edit(config)
        f.attrs["model_config"] = json.dumps(config)
    return path


@pytest.mark.parametrize("case", ["batch_shape", "strides", "permute"])
def test_hostile_config_values_are_errors_not_traps(box, case):
    def edit(config):
        layers = config["config"]["layers"]
        if case == "batch_shape":
            layers[0]["config"]["batch_shape"] = [None, 2**62, 2**62, 3]
        elif case == "strides":
            conv = next(l for l in layers if l["class_name"] == "Conv2D")
            conv["config"]["strides"] = [0, 0]
        else:
            layers.insert(1, {"class_name": "Permute", "name": "p", "config": {"name": "p", "dims": [7, 9, 1]}})
    path = edited_config(box, edit)
    for args in (["inspect", path], ["set-input-shape", path, box.outdir / "o.h5", "--size", "64x64"]):
        proc = run(args, box.tmpdir)
        assert proc.returncode in (0, 65), f"{args[0]}: exit {proc.returncode}: {proc.stderr}"
    assert os.listdir(box.outdir) in ([], ["o.h5"])


@pytest.mark.parametrize("args,needle", [
    (["set-input-shape", "IN", "OUT", "--size", "4294967296x4294967296"], "--size"),
    (["replace-head", "IN", "OUT", "--classes", "4611686018427387904"], "--classes"),
    (["resize-dense", "IN", "OUT", "--layer", "fc1", "--units", "99999999999"], "--units"),
    (["adapt-channels", "IN", "OUT", "--channels", "9223372036854775807"], "--channels"),
])
def test_huge_option_values_are_refused_before_any_work(box, args, needle):
    args = [fixture("keras_cnn.h5") if a == "IN" else box.outdir / "o.h5" if a == "OUT" else a for a in args]
    proc = box.wsurgery(*args, expect=64, timeout=10)
    assert needle in proc.stderr


def test_a_tensor_name_beyond_the_hdf5_attribute_limit_ends_quickly(box):
    path = box.work / "long.safetensors"
    save_file({"x" * 70000: np.ones((2,), np.float32)}, str(path))
    proc = box.wsurgery("convert", path, box.outdir / "o.h5", expect=65, timeout=20)
    assert "name-bytes" in proc.stderr
    proc = box.wsurgery("convert", path, box.outdir / "o.h5", expect=65, timeout=20, env={"WSURGERY_LIMITS": "name-bytes=100000"})
    assert "64512-byte HDF5 attribute" in proc.stderr


def test_a_hundred_thousand_tensors_go_to_h5(box):
    path = box.work / "many.safetensors"
    save_file({f"layer{i}.weight": np.full((2,), i, np.float32) for i in range(100_000)}, str(path))
    box.wsurgery("convert", path, box.outdir / "many.h5", expect=0, timeout=600, output_expected=True)
    with h5py.File(box.outdir / "many.h5") as f:
        names = [n.decode() if isinstance(n, bytes) else n for k in sorted(f.attrs) if k.startswith("layer_names")
                 for n in f.attrs[k]]
        assert len(names) == 100_000 and f["layer99999/layer99999.weight"][1] == 99999


# ---------------------------------------------------------------------------------------------------
# Files that are not what they say


def test_a_duplicate_metadata_key_is_not_called_a_duplicate_tensor(box):
    path = box.work / "meta.safetensors"
    text = b'{"__metadata__":{"a":"1","a":"2"},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * 4)
    proc = box.wsurgery("inspect", path, expect=65)
    assert "__metadata__" in proc.stderr and "tensor 'a'" not in proc.stderr


def test_a_dtype_with_a_newline_cannot_inject_lines(box):
    path = box.work / "nl.safetensors"
    path.write_bytes(safetensors_bytes({"w": {"dtype": "F32\nwsurgery: error: injected", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4))
    proc = box.wsurgery("convert", path, box.outdir / "o.h5", expect=65)
    assert "\\n" in proc.stderr and "\nwsurgery: error: injected" not in proc.stderr


def test_names_with_control_characters_are_shown_escaped(box):
    path = box.work / "esc.safetensors"
    save_file({"w\x1b[2J\nforged line": np.ones((1,), np.float32)}, str(path))
    proc = box.wsurgery("inspect", path, expect=0)
    assert "\x1b" not in proc.stdout and "forged line" in proc.stdout and "\\n" in proc.stdout


def test_a_virtual_dataset_is_named_as_such(box):
    source = box.work / "src.h5"
    with h5py.File(source, "w") as f:
        f["d"] = np.ones((4,), np.float32)
    layout = h5py.VirtualLayout(shape=(4,), dtype="f4")
    layout[:] = h5py.VirtualSource(str(source), "d", shape=(4,))
    path = box.work / "vds.h5"
    weights_only_h5(path, lambda g, n: g.create_virtual_dataset(n, layout))
    os.remove(source)
    proc = box.wsurgery("convert", path, box.outdir / "o.safetensors", expect=65)
    assert "virtual dataset" in proc.stderr


def test_fifos_and_devices_are_refused_before_opening(box):
    fifo = box.work / "pipe.safetensors"
    os.mkfifo(fifo)
    proc = box.wsurgery("inspect", fifo, expect=66, timeout=10)
    assert "FIFO" in proc.stderr
    proc = box.wsurgery("inspect", "/dev/zero", expect=66, timeout=10)
    assert "character device" in proc.stderr
    # A FIFO named as a shard in an index.
    index = box.work / "model.safetensors.index.json"
    os.mkfifo(box.work / "model-00001-of-00001.safetensors")
    index.write_text(json.dumps({"metadata": {}, "weight_map": {"w": "model-00001-of-00001.safetensors"}}))
    proc = box.wsurgery("inspect", index, expect=66, timeout=10)
    assert "FIFO" in proc.stderr
    recipe = box.work / "recipe.yaml"
    os.mkfifo(recipe)
    box.wsurgery("run", recipe, fixture("keras_cnn.h5"), "--out-dir", box.outdir, expect=66, timeout=10)


def test_a_dangling_symlink_at_the_output_is_not_replaced_without_force(box):
    link = box.outdir / "o.safetensors"
    os.symlink(box.work / "nowhere", link)
    proc = run(["convert", fixture("keras_cnn.h5"), link], box.tmpdir)
    assert proc.returncode == 73 and "already exists" in proc.stderr
    assert os.path.islink(link) and not os.path.exists(box.work / "nowhere")
    os.remove(link)


def test_an_existing_directory_named_like_a_file_is_not_filled_with_shards(box):
    target = box.outdir / "y.h5"
    target.mkdir()
    proc = run(["convert", fixture("torch_resnet_tiny.safetensors"), target, "--shard-size", "1KB"], box.tmpdir)
    assert proc.returncode in (64, 73) and os.listdir(target) == []
    target.rmdir()


# ---------------------------------------------------------------------------------------------------
# .keras archives checked as Keras reads them


def test_a_wrong_crc_in_a_keras_archive_is_refused(box):
    path = box.work / "bad.keras"
    data = bytearray(open(fixture("keras_cnn.keras"), "rb").read())
    with zipfile.ZipFile(fixture("keras_cnn.keras")) as z:
        info = z.getinfo("model.weights.h5")
        assert info.compress_type == zipfile.ZIP_STORED
        # Inside the stored weights, past the HDF5 metadata: a flipped byte of tensor data.
        local_header = info.header_offset
        name_length, extra_length = struct.unpack("<HH", data[local_header + 26:local_header + 30])
        start = local_header + 30 + name_length + extra_length
    data[start + info.file_size - 100] ^= 0xFF
    path.write_bytes(bytes(data))
    proc = box.wsurgery("convert", path, box.outdir / "o.h5", expect=65)
    assert "CRC-32" in proc.stderr and "model.weights.h5" in proc.stderr


@pytest.mark.parametrize("entry", ["config.json", "model.weights.h5"])
def test_duplicate_keras_entries_are_refused(box, entry):
    path = box.work / "dup.keras"
    with zipfile.ZipFile(fixture("keras_cnn.keras")) as z:
        entries = [(i.filename, z.read(i.filename)) for i in z.infolist()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
            for name, data in entries:
                z.writestr(name, data)
            z.writestr(entry, dict(entries)[entry])
    proc = box.wsurgery("convert", path, box.outdir / "o.h5", expect=65)
    assert "appears twice" in proc.stderr and entry in proc.stderr


def test_a_keras_config_over_the_limit_is_refused(box):
    proc = box.wsurgery("inspect", fixture("keras_cnn.keras"), expect=65, env={"WSURGERY_LIMITS": "config-bytes=1000"})
    assert "config-bytes" in proc.stderr
    proc = box.wsurgery("inspect", fixture("keras_cnn.h5"), expect=65, env={"WSURGERY_LIMITS": "config-bytes=1000"})
    assert "model_config" in proc.stderr


# ---------------------------------------------------------------------------------------------------
# run stays inside --out-dir


def test_run_outputs_stay_inside_the_output_directory(box):
    inputs = box.work / "inputs"
    inputs.mkdir()
    shutil.copy(fixture("keras_cnn.h5"), box.work / "m.h5")
    shutil.copy(fixture("keras_cnn.h5"), inputs / "{parent}.h5")
    before = sorted(os.listdir(box.work))
    # {parent} of ../m.h5 is '..': refused, nothing written anywhere.
    proc = subprocess.run([BIN, "run", "--pass", "convert", "../m.h5", "--out-dir", str(box.outdir), "--output", "{parent}/{name}"],
                          cwd=inputs, capture_output=True, text=True, env=dict(os.environ, TMPDIR=str(box.tmpdir)))
    assert proc.returncode == 64 and "out-dir" in proc.stderr
    assert sorted(os.listdir(box.work)) == before and os.listdir(box.outdir) == []
    # A placeholder inside an input's name is text, never expanded again.
    proc = subprocess.run([BIN, "run", "--pass", "convert", "{parent}.h5", "--out-dir", str(box.outdir), "--output", "x-{name}"],
                          cwd=inputs, capture_output=True, text=True, env=dict(os.environ, TMPDIR=str(box.tmpdir)))
    assert proc.returncode == 0, proc.stderr
    assert os.listdir(box.outdir) == ["x-{parent}.h5"]
    os.remove(box.outdir / "x-{parent}.h5")
    # A symlink inside the output directory that leads out of it.
    os.symlink(box.work, box.outdir / "escape")
    proc = subprocess.run([BIN, "run", "--pass", "convert", "{parent}.h5", "--out-dir", str(box.outdir), "--output", "escape/{stem}.safetensors"],
                          cwd=inputs, capture_output=True, text=True, env=dict(os.environ, TMPDIR=str(box.tmpdir)))
    assert proc.returncode == 64 and "symlink" in proc.stderr
    assert sorted(os.listdir(box.work)) == before
    os.remove(box.outdir / "escape")


# ---------------------------------------------------------------------------------------------------
# Full disk, signals


@pytest.mark.parametrize("source,suffix", [
    ("keras_cnn.keras", ".h5"), ("keras_cnn.keras", ".keras"), ("keras_cnn.h5", ".weights.h5"),
    ("torch_resnet_tiny.safetensors", ".safetensors"), ("keras_cnn.h5", ".safetensors"),
])
@pytest.mark.parametrize("limit", [4096, 6000])
def test_a_full_disk_is_exit_74_and_no_file(box, source, suffix, limit):
    # A file-size limit (bash's ulimit, in KiB), SIGXFSZ ignored: writes past it fail with EFBIG, as on
    # a full disk. Through bash rather than preexec_fn, which forks this multithreaded (JAX) interpreter.
    proc = box.wsurgery("bash", "-c", f'trap "" XFSZ; ulimit -f {limit // 1024}; exec "$@"', "_", BIN,
                        "convert", fixture(source), box.outdir / f"o{suffix}", expect=74, raw=True)
    assert "o" + suffix in proc.stderr or ("extracting" in proc.stderr and source in proc.stderr)


def test_a_full_tmpfs_is_exit_74_and_no_file(box, tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mount)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        for suffix in (".h5", ".keras", ".weights.h5", ".safetensors"):
            proc = run(["convert", fixture("keras_cnn.keras"), mount / f"o{suffix}"], box.tmpdir)
            assert proc.returncode == 74, f"{suffix}: exit {proc.returncode}: {proc.stderr}"
            assert os.listdir(mount) == [], os.listdir(mount)
    finally:
        subprocess.run(["umount", str(mount)])


def big_state_dict(path):
    """A state dict whose resize-dense draws a few hundred MB (long enough to be interrupted)."""
    save_file({"fc.weight": np.zeros((4096, 8192), np.float32), "fc.bias": np.zeros((4096,), np.float32)}, str(path))


def wait_until_writing(pid, directory, deadline=20.0):
    """Waits until process `pid` holds a descriptor on a file in `directory` (its unnamed output)."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith(str(directory) + "/"):
                    return True
        except FileNotFoundError:
            return False
        time.sleep(0.005)
    return False


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGKILL])
@pytest.mark.parametrize("suffix", [".safetensors", ".h5"])
def test_a_signal_during_a_write_leaves_nothing(box, sig, suffix):
    source = box.work / "big.safetensors"
    big_state_dict(source)
    # The signals sent are reset to their default first: under nohup (or as a background job) SIGHUP
    # (SIGINT) is inherited as ignored, and wsurgery rightly keeps an ignored signal ignored.
    proc = subprocess.Popen(["env", "--default-signal=HUP,INT,TERM", BIN, "resize-dense", source, box.outdir / f"o{suffix}", "--layer", "fc", "--units", "8192"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(os.environ, TMPDIR=str(box.tmpdir)))
    assert wait_until_writing(proc.pid, box.outdir), "the write never started"
    os.kill(proc.pid, sig)
    proc.communicate(timeout=60)
    assert proc.returncode == -sig, f"exit {proc.returncode}"
    assert os.listdir(box.outdir) == [] and os.listdir(box.tmpdir) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_signal_while_a_keras_archive_is_extracted_leaves_nothing(box, sig):
    # A .keras whose weights take a moment to extract: the fixture's config, and weights of 300 MB.
    path = box.work / "big.keras"
    weights = box.work / "w.h5"
    with h5py.File(weights, "w") as f:
        f.create_group("layers")
        f.create_dataset("vars/0", data=np.zeros((75_000_000,), np.float32))
    with zipfile.ZipFile(fixture("keras_cnn.keras")) as z, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as out:
        out.writestr("metadata.json", z.read("metadata.json"))
        out.writestr("config.json", z.read("config.json"))
        out.write(weights, "model.weights.h5")
    proc = subprocess.Popen(["env", "--default-signal=HUP,INT,TERM", BIN, "inspect", path], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=dict(os.environ, TMPDIR=str(box.tmpdir)))
    assert wait_until_writing(proc.pid, box.tmpdir), "the extraction never started"
    os.kill(proc.pid, sig)
    proc.communicate(timeout=60)
    assert proc.returncode == -sig
    assert os.listdir(box.tmpdir) == []


# ---------------------------------------------------------------------------------------------------
# What the fuzzer found, and a short fuzzing run


FUZZ_CASES = os.path.join(ROOT, "fixtures", "fuzz")


@pytest.mark.parametrize("name", sorted(os.listdir(FUZZ_CASES)) if os.path.isdir(FUZZ_CASES) else [])
def test_inputs_the_fuzzer_found(box, name):
    if name.endswith((".md", ".json", ".py")):
        pytest.skip("not an input")
    suffix = ".safetensors" if name.endswith((".pth", ".safetensors")) else ".h5"  # .h5 output: H5Ocopy runs too
    proc = run(["convert", os.path.join(FUZZ_CASES, name), box.outdir / f"o{suffix}"], box.tmpdir, timeout=10)
    assert proc.returncode in (0, 64, 65, 66, 74), f"exit {proc.returncode}: {proc.stderr}"
    assert os.listdir(box.tmpdir) == []
    assert os.listdir(box.outdir) == ([f"o{suffix}"] if proc.returncode == 0 else [])


def test_a_time_boxed_fuzzing_run_finds_nothing(tmp_path):
    # A fixed seed by default, the one of the 10,000-per-reader run in the issue note, so the suite stays
    # deterministic; WSURGERY_FUZZ_SEED explores other mutants.
    seconds = float(os.environ.get("WSURGERY_FUZZ_SECONDS", "90"))
    seed = os.environ.get("WSURGERY_FUZZ_SEED", "20261130")
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "fuzz.py"), "--bin", BIN, "--seconds", str(seconds),
                           "--seed", seed, "--jobs", "2", "--out", str(tmp_path / "found"), "--json", str(tmp_path / "summary.json")],
                          capture_output=True, text=True, timeout=seconds + 120)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    summary = json.load(open(tmp_path / "summary.json"))
    assert all(r["runs"] > 0 for r in summary["readers"].values())
