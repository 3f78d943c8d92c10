"""Benchmark: every wsurgery command against `cp` of the same file and against the Python a user would
write instead, alternated in one run.

    python bench/bench.py [--work DIR] [--st-gib 2.1] [--repeat 3] [--only SUBSTRING]

Generates (never commits) a >= 2 GiB safetensors file shaped like a large vision transformer and a Keras
VGG16 saved as a full-model legacy .h5 (553 MB, random weights), then, for each case, runs `cp`, wsurgery
and the Python equivalent (safetensors.numpy load_file/save_file; h5py; Keras load_weights with
skip_mismatch for set-input-shape) in turn, --repeat rounds, and prints the median wall time, its ratio to
the median cp time and the peak RSS (GNU time) of each.
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_safetensors(path, gib):
    """ViT-L-like blocks of float32 tensors until the file passes `gib` GiB."""
    import numpy as np
    from safetensors.numpy import save_file
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


def make_vgg16(path):
    """keras.applications.VGG16 (random weights) saved as a legacy full-model .h5."""
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras
    keras.applications.VGG16(weights=None).save(path)


# The Python a user would write for each case: argv = input, output.
PY_ST = {
    "convert": "t = load_file(src)",
    "collapse-channels": "t = load_file(src); t['patch_embed.proj.weight'] = t['patch_embed.proj.weight'].sum(1, keepdims=True)",
    "replace-head": "t = load_file(src); t['head.weight'] = (np.random.default_rng(0).standard_normal((5, 1024)) * 0.01).astype('float32')",
}
PY_ST_HEAD = "import sys, numpy as np\nfrom safetensors.numpy import load_file, save_file\nsrc, dst = sys.argv[1:3]\n"
PY_ST_TAIL = "\nsave_file(t, dst, metadata={'format': 'pt'})"

# h5py: copy every dataset and attribute, with an edit of some datasets and of the model config.
PY_H5_HEAD = """import h5py, json, sys, numpy as np
src, dst = h5py.File(sys.argv[1], 'r'), h5py.File(sys.argv[2], 'w')
def edit(name, data): return data
def edit_config(config): return config
"""
PY_H5_TAIL = """
def copy_attrs(a, b):
    for k, v in a.attrs.items(): b.attrs[k] = v
copy_attrs(src, dst)
config = json.loads(src.attrs['model_config'])
dst.attrs['model_config'] = json.dumps(edit_config(config))
def visit(name, obj):
    if isinstance(obj, h5py.Group):
        copy_attrs(obj, dst.require_group(name))
        return
    data = edit(name, obj[()])
    if data is not None: dst.create_dataset(name, data=data)
src.visititems(visit)
dst.close()"""
PY_H5 = {
    "convert": "",
    "collapse-channels": """
def edit(name, data): return data.sum(2, keepdims=True) if name.endswith('block1_conv1/kernel') else data
def edit_config(config):
    config['config']['layers'][0]['config']['batch_shape'][-1] = 1
    return config""",
    "replace-head": """
def edit(name, data):
    if name.endswith('predictions/kernel'): return (np.random.default_rng(0).uniform(-0.05, 0.05, (4096, 5))).astype('float32')
    if name.endswith('predictions/bias'): return np.zeros(5, 'float32')
    return data
def edit_config(config):
    config['config']['layers'][-1]['config']['units'] = 5
    return config""",
    "resize-dense": """
def edit(name, data):
    if name.endswith('fc2/kernel'): return data[:, :2048]
    if name.endswith('fc2/bias'): return data[:2048]
    if name.endswith('predictions/kernel'): return data[:2048]
    return data
def edit_config(config):
    next(l for l in config['config']['layers'] if l['name'] == 'fc2')['config']['units'] = 2048
    return config""",
    "adapt-channels": """
def edit(name, data): return np.concatenate([data, data[:, :, :1]], 2) * 0.75 if name.endswith('block1_conv1/kernel') else data
def edit_config(config):
    config['config']['layers'][0]['config']['batch_shape'][-1] = 4
    return config""",
}
PY_H5_TO_ST = """import h5py, sys, numpy as np
from safetensors.numpy import save_file
tensors = {}
def visit(name, obj):
    if isinstance(obj, h5py.Dataset):
        data = obj[()]
        if TORCH and data.ndim == 4: data = data.transpose(3, 2, 0, 1)
        if TORCH and data.ndim == 2: data = data.T
        tensors[name] = np.ascontiguousarray(data)
h5py.File(sys.argv[1], 'r').visititems(visit)
save_file(tensors, sys.argv[2])"""
PY_KERAS = """import os, sys
os.environ.setdefault('KERAS_BACKEND', 'jax')
import keras, numpy as np
src, dst = sys.argv[1:3]
model = keras.applications.VGG16(weights=None, input_shape=(256, 256, 3))
model.load_weights(src, skip_mismatch=True)
if RESAMPLE:
    import h5py
    old = h5py.File(src, 'r')['model_weights/fc1/fc1/kernel'][()].reshape(7, 7, 512, 4096)
    def bilinear(n, m):
        w = np.zeros((m, n))
        for j in range(m):
            x = min(max((j + 0.5) * n / m - 0.5, 0), n - 1)
            i = min(int(x), n - 2)
            w[j, i], w[j, i + 1] = 1 - (x - i), x - i
        return w
    r = bilinear(7, 8)
    new = np.einsum('yi,xj,ijcu->yxcu', r, r, old, optimize=True) * (49 / 64)
    fc1 = model.get_layer('fc1')
    fc1.set_weights([new.reshape(-1, 4096).astype('float32'), fc1.get_weights()[1]])
model.save(dst)"""
PY_KERAS_TOP = """import os, sys
os.environ.setdefault('KERAS_BACKEND', 'jax')
import keras
model = keras.saving.load_model(sys.argv[1], compile=False)
keras.Model(model.input, model.get_layer('block5_pool').output).save(sys.argv[2])"""


def run(cmd, out):
    """Seconds and peak RSS (MiB) of one run, the output removed first."""
    for path in (out, out + ".json"):
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    # Linux carries the exec'ing process's memory high-water mark into the child's maxrss, so a child
    # spawned from this driver reports at least the driver's RSS. GNU time forks the command from a
    # small process and prints that command's own peak RSS (KiB).
    report = os.path.join(os.path.dirname(out), "time.txt")
    os.sync()  # start each run with no dirty pages left by the previous one
    start = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", report, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{proc.stderr.decode()[-2000:]}")
    with open(report) as f:
        return elapsed, int(f.read().split()[-1]) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default=os.path.join(ROOT, "bench", "work"))
    ap.add_argument("--st-gib", type=float, default=2.1)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--only", default="", help="run only the cases whose label contains this")
    ap.add_argument("--bin", default=os.path.join(ROOT, ".build", "release", "wsurgery"))
    ap.add_argument("--json", help="also write the table as JSON here")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    st, h5 = os.path.join(args.work, "big.safetensors"), os.path.join(args.work, "vgg16.h5")
    # Generated in a child process: a forked child's peak RSS starts from its parent's, so the driver
    # must stay small for the RSS column to mean anything.
    here = os.path.dirname(os.path.abspath(__file__))
    if not os.path.exists(st):
        subprocess.run([sys.executable, "-c", f"import bench; bench.make_safetensors({st!r}, {args.st_gib})"], cwd=here, check=True)
    if not os.path.exists(h5):
        subprocess.run([sys.executable, "-c", f"import bench; bench.make_vgg16({h5!r})"], cwd=here, check=True)
    out = os.path.join(args.work, "out")
    py = sys.executable

    def st_case(label, words, edit):
        return (label, st, ".safetensors", words, [py, "-c", PY_ST_HEAD + PY_ST[edit] + PY_ST_TAIL] if edit else None)

    def h5_case(label, words, ext=".h5", python=None):
        return (label, h5, ext, words, python)

    cases = [
        st_case("convert", ["convert"], "convert"),
        st_case("convert --digest sha256", ["convert", "--digest", "sha256"], None),
        st_case("collapse-channels", ["collapse-channels"], "collapse-channels"),
        st_case("replace-head --classes 5", ["replace-head", "--classes", "5"], "replace-head"),
        h5_case("convert", ["convert"], python=[py, "-c", PY_H5_HEAD + PY_H5["convert"] + PY_H5_TAIL]),
        h5_case("convert to .safetensors", ["convert"], ".safetensors", [py, "-c", PY_H5_TO_ST.replace("TORCH", "False")]),
        h5_case("collapse-channels", ["collapse-channels"], python=[py, "-c", PY_H5_HEAD + PY_H5["collapse-channels"] + PY_H5_TAIL]),
        h5_case("replace-head --classes 5", ["replace-head", "--classes", "5"], python=[py, "-c", PY_H5_HEAD + PY_H5["replace-head"] + PY_H5_TAIL]),
        h5_case("set-input-shape 256 (reinit)", ["set-input-shape", "--size", "256x256"], python=[py, "-c", PY_KERAS.replace("RESAMPLE", "False")]),
        h5_case("set-input-shape 256 (resample)", ["set-input-shape", "--size", "256x256", "--dense-policy", "resample"],
                python=[py, "-c", PY_KERAS.replace("RESAMPLE", "True")]),
        h5_case("convert --layout torch", ["convert", "--layout", "torch"], ".safetensors", [py, "-c", PY_H5_TO_ST.replace("TORCH", "True")]),
        h5_case("drop-layer --top", ["drop-layer", "--top"], python=[py, "-c", PY_KERAS_TOP]),
        h5_case("resize-dense fc2 --units 2048", ["resize-dense", "--layer", "fc2", "--units", "2048"],
                python=[py, "-c", PY_H5_HEAD + PY_H5["resize-dense"] + PY_H5_TAIL]),
        h5_case("adapt-channels --channels 4", ["adapt-channels", "--channels", "4"],
                python=[py, "-c", PY_H5_HEAD + PY_H5["adapt-channels"] + PY_H5_TAIL]),
    ]
    print(f"machine: {os.cpu_count()} cores, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / (1 << 30):.0f} GiB RAM; "
          f"medians of {args.repeat} alternated runs")
    print(f"| input | command | cp s | wsurgery s | x cp | RSS MiB | Python s | x cp | RSS MiB |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    rows = []
    for label, src, ext, words, python in cases:
        name = f"{'safetensors' if src == st else 'VGG16 .h5'} {label}"
        if args.only and args.only not in name:
            continue
        target = out + ext
        runners = {"cp": ["cp", src, target], "wsurgery": [args.bin, words[0], src, target, *words[1:]]}
        if python:
            runners["python"] = [*python, src, target]
        results = {key: [] for key in runners}
        for _ in range(args.repeat):
            for key, cmd in runners.items():
                results[key].append(run(cmd, target))
        med = {key: (statistics.median(r[0] for r in runs), max(r[1] for r in runs)) for key, runs in results.items()}
        cp_t = med["cp"][0]
        row = {"input": os.path.basename(src), "size_bytes": os.path.getsize(src), "command": label,
               **{f"{k}_seconds": v[0] for k, v in med.items()}, **{f"{k}_rss_mib": v[1] for k, v in med.items()}}
        rows.append(row)
        py_text = f"{med['python'][0]:.2f} | {med['python'][0] / cp_t:.1f} | {med['python'][1]:.0f}" if python else "- | - | -"
        print(f"| {'%.2f GB ' % (os.path.getsize(src) / 1e9)}{'safetensors' if src == st else 'VGG16 .h5'} | {label} | {cp_t:.2f} | "
              f"{med['wsurgery'][0]:.2f} | {med['wsurgery'][0] / cp_t:.2f} | {med['wsurgery'][1]:.0f} | {py_text} |", flush=True)
        for path in (target,):
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
