"""run (recipes, --pass chains), provenance, diff and progress, checked with real Keras, h5py and safetensors."""
import hashlib
import json
import os
import pty
import re
import shutil
import subprocess

import h5py
import keras
import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from conftest import BIN, fixture, wsurgery

RECIPE = """\
passes:
  - collapse-channels: {mode: sum}
  - replace-head: {classes: 5, seed: 1}
output: "{stem}-gray5{ext}"
"""


def sha256(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def xxh128(path):
    """What `xxhsum -H2` (Debian's xxhash, installed by scripts/install-deps.sh) prints for the file."""
    return subprocess.run(["xxhsum", "-H2", str(path)], capture_output=True, text=True, check=True).stdout.split()[0]


def files_under(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


@pytest.fixture
def inputs(tmp_path):
    """A directory of checkpoints: two Keras files, a sharded safetensors directory and a corrupt file."""
    d = tmp_path / "in"
    d.mkdir()
    shutil.copy(fixture("keras_cnn.h5"), d / "keras_cnn.h5")
    shutil.copy(fixture("keras_cnn.keras"), d / "keras_cnn.keras")
    shutil.copytree(fixture("sharded"), d / "sharded")
    (d / "corrupt.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    return d


def write_recipe(tmp_path, text=RECIPE, name="recipe.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_recipe_over_a_directory_with_two_jobs(inputs, tmp_path):
    recipe = write_recipe(tmp_path)
    out = tmp_path / "out"
    proc = wsurgery("run", recipe, inputs, "--out-dir", out, "--jobs", 2, "--report", tmp_path / "report.json", expect=65)
    report = json.loads((tmp_path / "report.json").read_text())
    by_input = {os.path.basename(f["input"]): f for f in report["files"]}
    assert set(by_input) == {"keras_cnn.h5", "keras_cnn.keras", "sharded", "corrupt.h5"}
    bad = by_input["corrupt.h5"]
    assert bad["status"] == "failed" and "corrupt.h5" in bad["error"] and bad["error_category"] == "badData"
    assert "corrupt.h5" in proc.stdout and "failed" in proc.stdout
    for name in ["keras_cnn.h5", "keras_cnn.keras", "sharded"]:
        entry = by_input[name]
        assert entry["status"] == "written"
        assert entry["passes"] == ["collapse-channels (mode=sum)", entry["passes"][1]] and entry["passes"][1].startswith("replace-head (classes=5")
        assert entry["tensors_changed"] and entry["seconds"] >= 0 and entry["error"] is None
    # Nothing else in the output directory: no output for the corrupt input, no temporary files.
    assert sorted(os.listdir(out)) == ["keras_cnn-gray5.h5", "keras_cnn-gray5.keras", "sharded-gray5"]
    assert not any(os.path.basename(f).startswith(".") for f in files_under(out))

    # The Keras outputs load and compute what collapse-channels claims: the features the new 5-class head
    # reads, on a gray image, equal the original's on that image copied to RGB.
    original = keras.saving.load_model(fixture("keras_cnn.h5"), compile=False)
    head = [layer for layer in original.layers if layer.weights][-1].name
    features = keras.Model(original.inputs, original.get_layer(head).input)
    gray = np.random.default_rng(0).uniform(size=(2,) + original.input_shape[1:3] + (1,)).astype("float32")
    for name in ["keras_cnn-gray5.h5", "keras_cnn-gray5.keras"]:
        model = keras.saving.load_model(out / name, compile=False)
        assert model.input_shape[-1] == 1 and model.output_shape[-1] == 5
        assert model.predict(gray, verbose=0).shape == (2, 5)
        new_features = keras.Model(model.inputs, model.get_layer(head).input)
        np.testing.assert_allclose(new_features.predict(gray, verbose=0), features.predict(np.repeat(gray, 3, axis=-1), verbose=0), rtol=1e-4, atol=1e-5)
    # The sharded input's output folder loads with the safetensors library: one model.safetensors, as
    # save_pretrained writes weights that fit in one shard.
    assert not (out / "sharded-gray5" / "model.safetensors.index.json").exists()
    assert load_file(out / "sharded-gray5" / "model.safetensors")


def test_shards_cover_every_input_exactly_once(inputs, tmp_path):
    recipe = write_recipe(tmp_path)
    seen = []
    for i in range(2):
        report = tmp_path / f"r{i}.json"
        proc = subprocess.run([BIN, "run", recipe, inputs, "--out-dir", tmp_path / "out", "--shard", f"{i}/2", "--report", report], capture_output=True)
        files = json.loads(report.read_text())["files"]
        assert proc.returncode == (65 if any(f["status"] == "failed" for f in files) else 0)
        seen += [f["input"] for f in files]
    everything = sorted(str(inputs / n) for n in ["keras_cnn.h5", "keras_cnn.keras", "sharded", "corrupt.h5"])
    assert sorted(seen) == everything and len(seen) == len(set(seen))
    wsurgery("run", recipe, inputs, "--out-dir", tmp_path / "o", "--shard", "2/2", expect=64)


def test_skip_existing_resumes_and_reruns_are_byte_identical(inputs, tmp_path):
    recipe = write_recipe(tmp_path)
    os.remove(inputs / "corrupt.h5")
    wsurgery("run", recipe, inputs, "--out-dir", tmp_path / "a")
    stamps = {f: os.stat(tmp_path / "a" / f).st_mtime_ns for f in files_under(tmp_path / "a")}
    proc = wsurgery("run", recipe, inputs, "--out-dir", tmp_path / "a", "--skip-existing", "--json")
    report = json.loads(proc.stdout)
    assert report["counts"]["skipped"] == 3 and report["counts"]["written"] == 0
    assert {f: os.stat(tmp_path / "a" / f).st_mtime_ns for f in files_under(tmp_path / "a")} == stamps
    # Without --skip-existing, outputs the same recipe wrote from the same inputs are up to date (their
    # provenance says so) and left alone; outputs of another recipe are refused, each as its own failure.
    report = json.loads(wsurgery("run", recipe, inputs, "--out-dir", tmp_path / "a", "--json").stdout)
    assert report["counts"]["up-to-date"] == 3 and report["counts"]["written"] == 0
    assert {f: os.stat(tmp_path / "a" / f).st_mtime_ns for f in files_under(tmp_path / "a")} == stamps
    other = write_recipe(tmp_path, RECIPE.replace("seed: 1", "seed: 2"), "other.yaml")
    wsurgery("run", other, inputs, "--out-dir", tmp_path / "a", expect=73)
    # The same recipe again, also with two jobs, gives the same bytes.
    wsurgery("run", recipe, inputs, "--out-dir", tmp_path / "b", "--jobs", 2)
    assert files_under(tmp_path / "a") == files_under(tmp_path / "b")
    for f in files_under(tmp_path / "a"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    # A --pass chain is the same recipe.
    wsurgery("run", "--pass", "collapse-channels mode=sum", "--pass", "replace-head classes=5 seed=1",
             inputs / "keras_cnn.h5", "--out-dir", tmp_path / "c", "--output", "{stem}-gray5{ext}")
    assert (tmp_path / "c" / "keras_cnn-gray5.h5").read_bytes() == (tmp_path / "a" / "keras_cnn-gray5.h5").read_bytes()


def test_dry_run_writes_nothing(inputs, tmp_path):
    recipe = write_recipe(tmp_path)
    proc = wsurgery("run", recipe, inputs / "keras_cnn.h5", "--out-dir", tmp_path / "none", "--dry-run", "--json")
    assert json.loads(proc.stdout)["files"][0]["status"] == "dry-run"
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("body,line,key", [
    ("  - replace-head: {classs: 5}\n", 3, "classs"),
    ("  - replace-head:\n      classes: five\n", 4, "classes"),
    ("  - drop-layer: {top: 3}\n", 3, "top"),
    ("  - collapse-channels: {mode: blue}\n", 3, "mode"),
    ("  - convert: {layout: torch}\n", 3, "layout"),
    ("  - replace-head: {classes: [1, 2]}\n", 3, "classes"),
    ("  - replace-head: {seed: 1}\n", 3, "classes"),
])
def test_recipe_errors_name_the_line_and_key(inputs, tmp_path, body, line, key):
    recipe = write_recipe(tmp_path, "passes:\n  - collapse-channels\n" + body + "output: '{stem}.h5'\n")
    proc = wsurgery("run", recipe, inputs, "--out-dir", tmp_path / "out", expect=64)
    assert f"{recipe}:{line}: key '{key}'" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_recipe_structure_errors(inputs, tmp_path):
    for text, expected in [
        ("passes:\n  - collapse-channels\nouput: x.h5\n", ":3: key 'ouput': unknown key"),
        ("passes:\n  - replace-hed: {classes: 5}\n", ":2: unknown command 'replace-hed'"),
        ("passes:\n  - collapse-channels\noutput: '{size}.h5'\n", ":3: key 'output': unknown placeholder {size}"),
        ('{"passes": [{"replace-head": {"classes": "x"}}]}', ":1: key 'classes'"),
    ]:
        recipe = write_recipe(tmp_path, text, "r.json" if text.startswith("{") else "r.yaml")
        proc = wsurgery("run", recipe, inputs, "--out-dir", tmp_path / "out", expect=64)
        assert expected in proc.stderr, proc.stderr


def test_provenance_is_recorded_where_keras_and_safetensors_ignore_it(tmp_path):
    source = fixture("keras_cnn.h5")
    wsurgery("replace-head", source, tmp_path / "h.h5", "--classes", 5, "--seed", 7, "--digest", "sha256")
    wsurgery("convert", tmp_path / "h.h5", tmp_path / "h.safetensors")
    with h5py.File(tmp_path / "h.h5", "r") as f:
        history = json.loads(f.attrs["wsurgery_provenance"])
    assert history[0]["passes"][0]["pass"] == "replace-head"
    assert history[0]["passes"][0]["options"]["seed"] == "7" and history[0]["seed"] == "7"
    # Options left to their defaults are recorded too, the initializers as the rule they follow.
    assert history[0]["passes"][0]["options"]["init"].startswith("auto (glorot-uniform for Keras kernels")
    assert history[0]["passes"][0]["options"]["bias"].startswith("auto (")
    assert history[0]["input"] == {"name": "keras_cnn.h5", "format": "keras-legacy-h5", "sha256": sha256(source)}
    assert keras.saving.load_model(tmp_path / "h.h5", compile=False).output_shape == (None, 5)
    with safe_open(tmp_path / "h.safetensors", "np") as f:
        chained = json.loads(f.metadata()["wsurgery_provenance"])
    assert len(chained) == 2 and chained[1]["passes"] == [] and chained[1]["input"]["xxh128"] == xxh128(tmp_path / "h.h5")
    shown = json.loads(wsurgery("inspect", "--json", tmp_path / "h.safetensors").stdout)["history"]
    assert shown == chained
    assert "history (wsurgery runs that made this file" in wsurgery("inspect", tmp_path / "h.safetensors").stdout
    # Layout conversions keep the history too.
    wsurgery("convert", tmp_path / "h.safetensors", tmp_path / "t.safetensors", "--layout", "torch")
    wsurgery("convert", tmp_path / "t.safetensors", tmp_path / "k.h5", "--layout", "keras")
    with h5py.File(tmp_path / "k.h5", "r") as f:
        passes = [entry["passes"] for entry in json.loads(f.attrs["wsurgery_provenance"])]
    assert [p[0]["pass"] if p else "convert" for p in passes] == ["replace-head", "convert", "convert", "convert"]
    assert passes[2][0]["options"] == {"layout": "torch"} and passes[3][0]["options"] == {"layout": "keras"}


def test_diff(tmp_path):
    source = fixture("keras_cnn.h5")
    assert wsurgery("diff", source, source).stdout.strip().endswith("equal")
    wsurgery("collapse-channels", source, tmp_path / "g.h5")
    report = json.loads(wsurgery("diff", source, tmp_path / "g.h5", "--json", expect=1).stdout)
    changed = [t for t in report["tensors"] if t["status"] != "identical"]
    assert [(t["name"], t["shape_a"], t["shape_b"]) for t in changed] == [("conv1/kernel", [3, 3, 3, 8], [3, 3, 1, 8])]
    # Across formats: the same weights in safetensors are equal tensor by tensor.
    wsurgery("convert", source, tmp_path / "s.safetensors")
    wsurgery("diff", source, tmp_path / "s.safetensors")
    # Values nudged by 1e-6: different at atol 0, equal at 1e-5; a removed tensor is listed.
    tensors = load_file(tmp_path / "s.safetensors")
    tensors["conv1/kernel"] = tensors["conv1/kernel"] + np.float32(1e-6)
    del tensors["conv1/bias"]
    tensors["extra"] = np.zeros(2, np.float32)
    save_file(tensors, tmp_path / "n.safetensors")
    report = json.loads(wsurgery("diff", tmp_path / "s.safetensors", tmp_path / "n.safetensors", "--json", expect=1).stdout)
    assert report["only_in_a"] == ["conv1/bias"] and report["only_in_b"] == ["extra"]
    kernel = next(t for t in report["tensors"] if t["name"] == "conv1/kernel")
    assert kernel["status"] == "differs" and 5e-7 < kernel["max_abs"] < 2e-6
    del tensors["extra"]
    tensors["conv1/bias"] = load_file(tmp_path / "s.safetensors")["conv1/bias"]
    save_file(tensors, tmp_path / "m.safetensors")
    wsurgery("diff", tmp_path / "s.safetensors", tmp_path / "m.safetensors", expect=1)
    assert wsurgery("diff", tmp_path / "s.safetensors", tmp_path / "m.safetensors", "--atol", "1e-5").stdout.strip().endswith("equal")
    wsurgery("diff", source, tmp_path / "missing.h5", expect=66)


def run_on_a_terminal(args):
    """Runs wsurgery with stdout and stderr on a pseudo-terminal; returns everything it printed."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([BIN, *map(str, args)], stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    proc.wait()
    os.close(leader)
    return proc.returncode, b"".join(chunks).decode()


def test_progress_only_on_a_terminal(inputs, tmp_path):
    recipe = write_recipe(tmp_path)
    os.remove(inputs / "corrupt.h5")
    code, text = run_on_a_terminal(["run", recipe, inputs, "--out-dir", tmp_path / "t"])
    assert code == 0 and "3/3 files" in text and "\r" in text
    code, text = run_on_a_terminal(["run", recipe, inputs, "--out-dir", tmp_path / "q", "--quiet"])
    assert code == 0 and "files" not in text.split("input")[0]
    proc = wsurgery("run", recipe, inputs, "--out-dir", tmp_path / "p")
    assert "\r" not in proc.stderr and "\r" not in proc.stdout and proc.stderr == ""
    # A large single file shows the bytes written.
    weights = {f"w{i}": np.zeros((1024, 1024), np.float32) for i in range(5)}
    save_file(weights, tmp_path / "big.safetensors")
    code, text = run_on_a_terminal(["convert", tmp_path / "big.safetensors", tmp_path / "big2.safetensors"])
    assert code == 0 and "writing " in text and "of 21.0 MB" in text
    # The line redraws in place: the terminal gets the control codes themselves, never their escaped text
    # (issue 25), for run's bar as for the bytes line ...
    assert "\r\x1b[K" in text and "\\u{1B}" not in text and "\\r" not in text, repr(text[:300])
    code, text = run_on_a_terminal(["run", recipe, inputs, "--out-dir", tmp_path / "t2"])
    assert code == 0 and "\r\x1b[K[" in text and "\\u{1B}" not in text, repr(text[:300])
    # ... while a name that comes from the user or a file is still shown escaped.
    odd = tmp_path / "big\x1b[31m.safetensors"
    code, text = run_on_a_terminal(["convert", tmp_path / "big.safetensors", odd])
    assert code == 0 and "\x1b[31m" not in text and "\\u{1B}[31m" in text, repr(text[:300])


def test_a_folder_of_torch_save_files_runs_and_an_impossible_output_fails_alone(tmp_path):
    import subprocess
    from conftest import BIN
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(fixture("keras_cnn.h5"), src / "a.h5")
    shutil.copy(fixture("pytorch", "tiny_resnet.pth"), src / "b.pth")
    # The default {name}: the .pth becomes b.safetensors.
    proc = subprocess.run([BIN, "run", "--pass", "convert", str(src), "--out-dir", str(tmp_path / "out")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(os.listdir(tmp_path / "out")) == ["a.h5", "b.safetensors"]
    assert load_file(tmp_path / "out" / "b.safetensors")
    # {stem}{ext} asks for a pickle: that input fails alone (64), the other is written.
    proc = subprocess.run([BIN, "run", "--pass", "convert", str(src), "--out-dir", str(tmp_path / "o2"), "--output", "{stem}{ext}"],
                          capture_output=True, text=True)
    assert proc.returncode == 64, proc.stdout + proc.stderr
    assert "never pickles" in proc.stdout and "1 written, 1 failed" in proc.stdout
    assert sorted(os.listdir(tmp_path / "o2")) == ["a.h5"]


def test_run_hints_work_when_followed(tmp_path):
    """Issue 25 item 3: a clash names a pattern that was checked to separate the inputs, and following it
    works; an option written as on the command line is answered with its key=value form."""
    import subprocess
    from conftest import BIN
    src = tmp_path / "in"
    for d in ["a", "b"]:
        (src / d).mkdir(parents=True)
        shutil.copy(fixture("keras_cnn.h5"), src / d / "cnn.h5")
    shutil.copy(fixture("keras_cnn.keras"), src / "a" / "cnn.keras")
    run = lambda *args: subprocess.run([BIN, "run", "--pass", "convert", *map(str, args)], capture_output=True, text=True)  # noqa: E731
    proc = run(src / "a", src / "b", "--out-dir", tmp_path / "o", "--output", "{stem}.safetensors")
    assert proc.returncode == 64 and "names the same output" in proc.stderr
    hint = re.search(r"use --output '([^']+)'", proc.stderr).group(1)
    proc = run(src / "a", src / "b", "--out-dir", tmp_path / "o", "--output", hint)
    assert proc.returncode == 0, proc.stderr
    assert len([f for _, _, files in os.walk(tmp_path / "o") for f in files]) == 3
    proc = subprocess.run([BIN, "run", "--pass", "replace-head --classes 5", src / "a" / "cnn.h5", "--out-dir", tmp_path / "p"],
                          capture_output=True, text=True)
    assert proc.returncode == 64 and "write classes=5" in proc.stderr and "is not a whole number" not in proc.stderr, proc.stderr
    proc = subprocess.run([BIN, "run", "--pass", "replace-head classes=5", src / "a" / "cnn.h5", "--out-dir", tmp_path / "p"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
