"""What a user sees on the command line: one error style, usage exit codes, -V, completions with values."""
import subprocess

import pytest

from conftest import BIN, fixture


def run(*args):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)


def test_version_short_and_long():
    for flag in ("-V", "--version"):
        proc = run(flag)
        assert proc.returncode == 0 and proc.stdout.strip() == "0.1.0", proc


@pytest.mark.parametrize("args, message", [
    (["replace-head", fixture("keras_cnn.h5"), "OUT.h5", "--classes", "-3"], "wsurgery: error: --classes: must be at least 1 (got -3)"),
    (["replace-head", fixture("keras_cnn.h5"), "OUT.h5"], "wsurgery: error: Missing expected argument '--classes <classes>'"),
    (["replace-head", fixture("keras_cnn.h5"), "OUT.h5", "--classes", "5", "--bogus"], "wsurgery: error: Unknown option '--bogus'"),
    (["nosuch"], "wsurgery: error: Unexpected argument 'nosuch'"),
    (["adapt-channels", fixture("keras_cnn.h5"), "OUT.h5", "--channels", "-1"], "wsurgery: error: --channels: must be at least 1 (got -1)"),
    (["replace-head", fixture("keras_cnn.h5"), "OUT.h5", "--classes", "3", "--init", "constant:0.1"],
     "wsurgery: error: --init: 'constant:0.1' is for --bias"),
])
def test_usage_errors_share_one_style_and_exit_64(args, message, tmp_path):
    proc = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 64, proc
    assert proc.stderr.startswith(message), proc.stderr
    assert "Error:" not in proc.stderr and proc.stdout == ""
    assert not (tmp_path / "OUT.h5").exists()


def test_completions_offer_each_options_values():
    # bash lists a choice's values one per line ('sum'$'\n''mean'...); zsh and fish list them too.
    bash = run("--generate-completion-script", "bash").stdout
    for values in (["sum", "mean", "luma"], ["reinit", "resample", "error"], ["torch", "keras"], ["xxh128", "sha256"]):
        assert "$'\\n'".join(f"'{v}'" for v in values) in bash, values
    for shell in ("zsh", "fish"):
        script = run("--generate-completion-script", shell).stdout
        assert all(v in script for v in ("luma", "resample", "xxh128", "torch-default")), shell


def png_bytes():
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0\0")) + chunk(b"IEND", b""))


def zip_without_checkpoint():
    import io
    import zipfile
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("readme.txt", "hi")
    return buffer.getvalue()


@pytest.mark.parametrize("name, content, says", [
    ("photo.h5", png_bytes(), "a PNG image"),
    ("photo.keras", png_bytes(), "a PNG image"),
    ("photo.safetensors", png_bytes(), "a PNG image"),
    ("photo.pth", png_bytes(), "a PNG image"),
    ("notes.txt", b"weights are elsewhere\n", "a text file"),
    ("empty.h5", b"", "an empty file"),
    ("packed.safetensors", __import__("gzip").compress(b"x" * 100), "a gzip-compressed file"),
    ("other.keras", zip_without_checkpoint(), "a zip archive holding neither a Keras config.json nor a torch.save data.pkl"),
    ("noise.keras", bytes(range(256)), "not a zip archive (a .keras file is one)"),
    # silero-vad's .onnx opens like this (ir_version 8, producer 'spox', then the graph).
    ("vad.onnx", b"\x08\x08\x12\x04spox:\x02\x0a\x00B\x04\x0a\x00\x10\x11", "an ONNX model (ir_version 8), which wsurgery does not read yet"),
    ("vad.pth", b"\x08\x07\x12\x07pytorch\x1a\x032.1:\x00", "an ONNX model (ir_version 7), which wsurgery does not read yet"),
])
def test_inputs_that_are_no_checkpoint_say_what_they_are(name, content, says, tmp_path):
    path = tmp_path / name
    path.write_bytes(content)
    for args in (["inspect", path], ["convert", path, tmp_path / "out.safetensors"]):
        proc = run(*args)
        assert proc.returncode == 65, proc
        assert proc.stderr.startswith(f"wsurgery: error: {path}: {says}, not a checkpoint"), proc.stderr
    assert not (tmp_path / "out.safetensors").exists()


def test_unknown_layers_are_listed_under_an_honest_label(tmp_path):
    # drop-layer may remove any layer: the list is every layer; replace-head's --layer needs weights.
    proc = run("drop-layer", fixture("keras_cnn.h5"), tmp_path / "x.h5", "--layer", "nope")
    assert proc.returncode == 64 and "no layer named 'nope'; layers: image, conv1, bn1, relu1" in proc.stderr, proc.stderr
    proc = run("replace-head", fixture("keras_cnn.weights.h5"), tmp_path / "x.weights.h5", "--classes", "3", "--layer", "nope")
    assert proc.returncode == 64 and "layers with weights: bn1, conv1, conv2, predictions" in proc.stderr, proc.stderr


def test_inspect_counts_parameters_as_the_frameworks_do():
    import json
    import keras
    from safetensors.numpy import load_file
    # PyTorch: parameters() excludes the BatchNorm buffers.
    report = json.loads(run("inspect", fixture("torch_resnet_tiny.safetensors"), "--json").stdout)
    tensors = load_file(fixture("torch_resnet_tiny.safetensors"))
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    assert report["totals"]["parameters"] == sum(v.size for k, v in tensors.items() if not k.endswith(buffers))
    assert report["totals"]["buffers"] == sum(v.size for k, v in tensors.items() if k.endswith(buffers))
    # Keras: trainable and non-trainable weights.
    model = keras.models.load_model(fixture("keras_cnn.h5"), compile=False)
    report = json.loads(run("inspect", fixture("keras_cnn.h5"), "--json").stdout)
    assert report["totals"]["parameters"] == sum(int(w.numpy().size) for w in model.trainable_weights)
    assert report["totals"]["buffers"] == sum(int(w.numpy().size) for w in model.non_trainable_weights)
    kinds = {layer["name"]: layer["kind"] for layer in report["layers"]}
    assert kinds["relu1"] == "activation" and kinds["pool1"] == "pooling" and "unknown" not in kinds.values()


@pytest.mark.skipif(__import__("shutil").which("dot") is None, reason="Graphviz is not installed (scripts/install-test-deps.sh installs it)")
@pytest.mark.parametrize("args, fates", [
    (["inspect", fixture("keras_cnn.h5")], {}),
    (["inspect", fixture("torch_resnet_tiny.safetensors")], {}),
    (["set-input-shape", fixture("keras_cnn.h5"), "--size", "24x24", "--channels", "1", "--dense-policy", "resample", "--dry-run"],
     {"conv1": "adapted", "predictions": "resampled", "bn1": None}),
    (["set-input-shape", fixture("keras_cnn.h5"), "--size", "24x24", "--dry-run"], {"predictions": "re-initialised", "conv2": None}),
    (["drop-layer", fixture("keras_cnn.h5"), "--top", "--dry-run"], {"flatten": "removed", "predictions": "removed", "conv2": None}),
    (["collapse-channels", fixture("keras_cnn.h5"), "--dry-run"], {"conv1": "adapted", "bn1": None}),
])
def test_graph_pictures_render_with_graphviz(args, fates, tmp_path):
    dot_file = tmp_path / "g.dot"
    proc = run(*args, "--graph", dot_file)
    assert proc.returncode == 0, proc.stderr
    text = dot_file.read_text()
    svg = subprocess.run(["dot", "-Tsvg", dot_file], capture_output=True, text=True)
    assert svg.returncode == 0 and svg.stderr == "", svg.stderr
    for layer, fate in fates.items():
        line = next(l for l in text.splitlines() if l.strip().startswith(f'"{layer}" [label='))
        assert (f"\\n{fate}\"" in line) if fate else ("fillcolor=\"#f0f0f0\"" in line), line
        assert f">{layer}<" in svg.stdout
    if "keras_cnn" in str(args[1]):
        assert '"conv1" -> "bn1";' in text


def test_install_script_puts_binary_man_page_and_completions_under_prefix(tmp_path):
    import os
    import shutil
    from conftest import ROOT
    prefix = tmp_path / "prefix"
    proc = subprocess.run(["bash", os.path.join(ROOT, "scripts", "install.sh"), prefix], capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    version = subprocess.run([prefix / "bin" / "wsurgery", "-V"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == "0.1.0"
    manual = (prefix / "share" / "man" / "man1" / "wsurgery.1").read_text()
    assert manual.startswith(".Dd") or ".Dt WSURGERY 1" in manual
    for text in ("set-input-shape", "Exit codes", "wsurgery replace-head model.h5 five.h5 --classes 5", "resample"):
        assert text in manual, text
    assert "\n\n" not in manual  # an empty line is an mdoc warning
    if shutil.which("man"):
        shown = subprocess.run(["man", "-l", prefix / "share" / "man" / "man1" / "wsurgery.1"], capture_output=True, text=True,
                               env=dict(os.environ, MANPAGER="cat", PAGER="cat"))
        assert shown.returncode == 0 and "warning" not in shown.stderr, shown.stderr
        assert "--size 256x256 --dense-policy resample" in shown.stdout
    assert "luma" in (prefix / "share" / "bash-completion" / "completions" / "wsurgery").read_text()
    assert "luma" in (prefix / "share" / "zsh" / "site-functions" / "_wsurgery").read_text()
    assert "luma" in (prefix / "share" / "fish" / "vendor_completions.d" / "wsurgery.fish").read_text()


def test_messages_speak_of_the_checkpoint_at_hand(tmp_path):
    # Keras weights without a config are not described as a PyTorch state dict (pass notes are part of the report: stdout).
    proc = run("set-input-shape", fixture("keras_cnn.weights.h5"), tmp_path / "x.weights.h5", "--size", "24x24")
    assert proc.returncode == 65 and "Keras weights without their model config" in proc.stderr and "torch" not in proc.stderr
    # A whole-checkpoint problem names no unrelated layer.
    proc = run("convert", fixture("torch_resnet_tiny.safetensors"), tmp_path / "x.safetensors", "--layout", "torch")
    assert proc.returncode == 65 and "layer '" not in proc.stderr and "already in torch layout" in proc.stderr, proc.stderr


def test_inspect_shows_progress_while_it_extracts_a_large_keras_archive(tmp_path):
    import keras
    from test_run_interop import run_on_a_terminal
    model = keras.Sequential([keras.Input((1024,)), keras.layers.Dense(4096)])  # 16.8 MB of weights
    model.save(tmp_path / "big.keras")
    code, text = run_on_a_terminal(["inspect", tmp_path / "big.keras"])
    assert code == 0 and f"extracting model.weights.h5 from {tmp_path / 'big.keras'}" in text and "\r" in text, text[:500]
    assert "totals: 2 layers" in text or "totals:" in text
    proc = run("inspect", tmp_path / "big.keras")
    assert proc.returncode == 0 and "\r" not in proc.stderr + proc.stdout and "extracting" not in proc.stderr


def test_every_problem_found_before_the_work_is_reported_at_once(tmp_path):
    # Issue 25 item 4: an existing output no longer hides a missing input or a layer that is not there.
    taken = tmp_path / "x.keras"
    taken.write_bytes(b"a file the user keeps")
    proc = run("replace-head", tmp_path / "nonexist.keras", taken, "--classes", "5")
    assert proc.returncode == 66, proc.stderr  # the first problem's code: the input cannot be opened
    assert "2 problems" in proc.stderr
    assert "nonexist.keras: cannot open" in proc.stderr and "x.keras: already exists" in proc.stderr
    proc = run("replace-head", fixture("keras_cnn.keras"), taken, "--classes", "5", "--layer", "nope")
    assert proc.returncode == 64, proc.stderr
    assert "no layer named 'nope'" in proc.stderr and "x.keras: already exists" in proc.stderr
    # One problem is reported as it always was.
    proc = run("replace-head", fixture("keras_cnn.keras"), taken, "--classes", "5")
    assert proc.returncode == 73 and "problems" not in proc.stderr and "already exists" in proc.stderr
    assert taken.read_bytes() == b"a file the user keeps"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.keras"]


COMMANDS = ["inspect", "convert", "run", "diff", "collapse-channels", "adapt-channels", "replace-head", "set-input-shape",
            "drop-layer", "resize-dense"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_examples_fit_80_columns_and_paste_whole(command):
    # Issue 25 item 7: an example the help formatter wrapped broke copy and paste; a long one now continues
    # with a shell ' \' and an option keeps its value on its line.
    import shlex
    text = subprocess.run([BIN, command, "--help"], capture_output=True, text=True, env={"COLUMNS": "80"}).stdout
    lines = text.split("Examples:\n", 1)[1].split("\n\n", 1)[0].split("\n")
    assert lines and lines[0].startswith("  wsurgery " + command), lines
    examples = []
    for previous, line in zip([""] + lines, lines):
        assert len(line) <= 80, line
        if previous.endswith(" \\"):
            assert line.startswith("      ") and not line.strip().startswith(("'", ",")), line
            examples[-1] += " " + line.strip()
        else:
            assert line.startswith("  wsurgery "), line
            examples.append(line.strip())
    for example in examples:
        words = shlex.split(example.replace(" \\ ", " "))
        assert words[:2] == ["wsurgery", command] and not any(w.endswith("\\") for w in words), example
        for a, b in zip(words, words[1:]):
            assert not (a.startswith("--") and b == "\\"), example


def test_overview_and_input_help_name_every_input_format():
    overview = run("--help").stdout
    assert "torch.save" in overview and "Hugging Face" in overview
    inspect = " ".join(run("inspect", "--help").stdout.split())
    for kind in (".pth", "FILE#KEY", "pytorch_model.bin.index.json", "Hugging Face model folder"):
        assert kind in inspect, kind


def test_size_takes_one_number_for_a_square_as_the_help_says():
    assert "or N for NxN" in " ".join(run("set-input-shape", "--help").stdout.split())
    import json
    report = json.loads(run("set-input-shape", fixture("keras_cnn.h5"), "--size", "20", "--dry-run", "--json").stdout)
    assert report["passes"][0]["layers"][0]["new_output"] == [None, 20, 20, 3]


def test_inspect_names_merges_and_says_only_what_the_file_records(tmp_path):
    # Issue 25 item 7: an Add was of kind 'shape', and every .keras printed 'backend: ?' (its metadata.json
    # records the Keras version only).
    import json
    import keras
    inputs = keras.Input((4,), name="x")
    a = keras.layers.Dense(4, name="a")(inputs)
    added = keras.layers.Add(name="sum")([inputs, a])
    joined = keras.layers.Concatenate(name="cat")([added, a])
    src = tmp_path / "merge.keras"
    keras.Model(inputs, keras.layers.Dense(2, name="out")(joined)).save(src)
    proc = run("inspect", src)
    assert proc.returncode == 0 and "backend: ?" not in proc.stdout and "keras_version: " in proc.stdout, proc.stdout
    kinds = {layer["name"]: layer["kind"] for layer in json.loads(run("inspect", src, "--json").stdout)["layers"]}
    assert kinds["sum"] == "merge" and kinds["cat"] == "merge" and kinds["a"] == "dense", kinds
