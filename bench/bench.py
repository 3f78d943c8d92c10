"""Benchmark: wsurgery commands against `cp` and against the Python equivalent, in one run.

    python bench/bench.py [--work DIR] [--st-gib 2.1] [--h5-mb 540]

Generates (never commits) a >= 2 GiB safetensors file shaped like a large vision transformer and a
>= 500 MB legacy Keras .h5 (VGG16-like layers), then times, for each file:
  - cp,
  - `wsurgery convert` (same format; provenance with the default XXH3-128 digest, and with --digest sha256),
    `collapse-channels` and `replace-head --classes 5`,
  - the Python equivalent a user would write: safetensors.numpy load_file + edit + save_file; an h5py copy
    of every dataset with the edit,
and prints wall time (best of --repeat), the ratio to cp and peak RSS of each (GNU time).
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

import h5py
import numpy as np
from safetensors.numpy import save_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_safetensors(path, gib):
    """ViT-L-like blocks of float32 tensors until the file passes `gib` GiB."""
    rng = np.random.default_rng(0)
    tensors = {"patch_embed.proj.weight": rng.random((1024, 3, 16, 16), dtype=np.float32),
               "pos_embed": rng.random((1, 197, 1024), dtype=np.float32)}
    total, block = 0, 0
    while total < gib * (1 << 30):
        for name, shape in [("attn.qkv.weight", (3072, 1024)), ("attn.proj.weight", (1024, 1024)),
                            ("mlp.fc1.weight", (4096, 1024)), ("mlp.fc2.weight", (1024, 4096)),
                            ("norm1.weight", (1024,)), ("norm1.bias", (1024,))]:
            t = rng.random(shape, dtype=np.float32)
            tensors[f"blocks.{block}.{name}"] = t
            total += t.nbytes
        block += 1
    tensors["head.weight"] = rng.random((1000, 1024), dtype=np.float32)
    save_file(tensors, path, metadata={"format": "pt"})


def make_h5(path, mb):
    """A legacy Keras weights layout with VGG16-like layers (fc1 alone is 411 MB)."""
    rng = np.random.default_rng(1)
    layers = [("block1_conv1", (3, 3, 3, 64)), ("block1_conv2", (3, 3, 64, 64)), ("block2_conv1", (3, 3, 64, 128)),
              ("block2_conv2", (3, 3, 128, 128)), ("block3_conv1", (3, 3, 128, 256)), ("block3_conv2", (3, 3, 256, 256)),
              ("block4_conv1", (3, 3, 256, 512)), ("block4_conv2", (3, 3, 512, 512)), ("block5_conv1", (3, 3, 512, 512)),
              ("fc1", (25088, 4096)), ("fc2", (4096, 4096)), ("predictions", (4096, 1000))]
    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = np.array([n.encode() for n, _ in layers], dtype=object)
        f.attrs["keras_version"] = "3.15.1"
        f.attrs["backend"] = "jax"
        for name, shape in layers:
            g = f.create_group(name)
            g.attrs["weight_names"] = np.array([f"{name}/kernel".encode(), f"{name}/bias".encode()], dtype=object)
            g.create_dataset(f"{name}/kernel", data=rng.random(shape, dtype=np.float32))
            g.create_dataset(f"{name}/bias", data=rng.random(shape[-1:], dtype=np.float32))
    assert os.path.getsize(path) >= mb * 1e6 * 0.9


PY_ST = """import sys, numpy as np
from safetensors.numpy import load_file, save_file
t = load_file(sys.argv[1]); edit = sys.argv[3]
if edit == "collapse": t["patch_embed.proj.weight"] = t["patch_embed.proj.weight"].sum(1, keepdims=True)
if edit == "head": t["head.weight"] = np.random.default_rng(0).standard_normal((5, 1024)).astype("float32") * 0.01
save_file(t, sys.argv[2], metadata={"format": "pt"})"""
PY_H5 = """import h5py, sys, numpy as np
src, dst, edit = h5py.File(sys.argv[1], 'r'), h5py.File(sys.argv[2], 'w'), sys.argv[3]
def copy_attrs(a, b):
    for k, v in a.attrs.items(): b.attrs[k] = v
copy_attrs(src, dst)
def visit(name, obj):
    if isinstance(obj, h5py.Group):
        copy_attrs(obj, dst.require_group(name))
        return
    data = obj[()]
    if edit == "collapse" and name.endswith("block1_conv1/kernel"): data = data.sum(2, keepdims=True)
    if edit == "head" and name.endswith("predictions/kernel"): data = np.random.default_rng(0).standard_normal((4096, 5)).astype("float32") * 0.01
    if edit == "head" and name.endswith("predictions/bias"): data = np.zeros(5, "float32")
    ds = dst.create_dataset(name, data=data)
    copy_attrs(obj, ds)
src.visititems(visit)
dst.close()"""


def run(cmd, out):
    if os.path.exists(out):
        os.remove(out) if os.path.isfile(out) else shutil.rmtree(out)
    # Linux carries the exec'ing process's memory high-water mark into the child's maxrss, so a child
    # spawned from this driver reports at least the driver's RSS. GNU time forks the command from a
    # small process and prints that command's own peak RSS (KiB).
    report = os.path.join(os.path.dirname(out), "time.txt")
    os.sync()  # start each run with no dirty pages left by the previous one
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}")
    with open(report) as f:
        return elapsed, int(f.read().split()[-1]) / 1024  # MiB


def best_of(n, cmd, out):
    runs = [run(cmd, out) for _ in range(n)]
    return min(r[0] for r in runs), max(r[1] for r in runs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(ROOT, "bench", "work"))
    ap.add_argument("--st-gib", type=float, default=2.1)
    ap.add_argument("--h5-mb", type=float, default=540)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--bin", default=os.path.join(ROOT, ".build", "release", "wsurgery"))
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    st, h5 = os.path.join(args.work, "big.safetensors"), os.path.join(args.work, "big.h5")
    # Generated in a child process: a forked child's peak RSS starts from its parent's, so the driver
    # must stay small for the RSS column to mean anything.
    here = os.path.dirname(os.path.abspath(__file__))
    if not os.path.exists(st):
        subprocess.run([sys.executable, "-c", f"import bench; bench.make_safetensors({st!r}, {args.st_gib})"], cwd=here, check=True)
    if not os.path.exists(h5):
        subprocess.run([sys.executable, "-c", f"import bench; bench.make_h5({h5!r}, {args.h5_mb})"], cwd=here, check=True)
    out = os.path.join(args.work, "out")
    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / (1 << 30):.0f} GiB RAM")
    print(f"{'case':44} {'seconds':>8} {'x cp':>6} {'peak RSS MiB':>13}")
    commands = [
        ("convert", ["convert"], "copy"),
        ("convert --digest sha256", ["convert", "--digest", "sha256"], None),
        ("collapse-channels", ["collapse-channels"], "collapse"),
        ("replace-head --classes 5", ["replace-head", "--classes", "5", "--seed", "0"], "head"),
    ]
    for label, src, ext, py in [("safetensors", st, ".safetensors", PY_ST), ("legacy .h5", h5, ".h5", PY_H5)]:
        size = os.path.getsize(src) / (1 << 30)
        cp_t, cp_rss = best_of(args.repeat, ["cp", src, out + ext], out + ext)
        print(f"{label} ({size:.2f} GiB): cp{'':>{30 - len(label)}} {cp_t:8.2f} {1:6.2f} {cp_rss:13.0f}")
        for name, words, edit in commands:
            cmd = [args.bin, words[0], src, out + ext, *words[1:]]
            ws_t, ws_rss = best_of(args.repeat, cmd, out + ext)
            print(f"{label}: wsurgery {name:{34 - len(label)}} {ws_t:8.2f} {ws_t / cp_t:6.2f} {ws_rss:13.0f}")
            if edit:
                py_t, py_rss = best_of(args.repeat, [sys.executable, "-c", py, src, out + ext, edit], out + ext)
                print(f"{label}: python {name:{36 - len(label)}} {py_t:8.2f} {py_t / cp_t:6.2f} {py_rss:13.0f}")
        os.remove(out + ext)


if __name__ == "__main__":
    main()
