#!/usr/bin/env python3
"""Mutation fuzzing of wsurgery's readers (standard library only).

Each mutant of a bundled fixture is converted by the real binary, in its own output directory and its
own $TMPDIR, with a time limit. A run fails when wsurgery
  - dies by a signal (a crash, in our code or in libhdf5),
  - runs longer than --timeout seconds (a hang),
  - exits with a code other than 0, 64, 65, 66 or 74,
  - leaves any file in $TMPDIR or in the output directory besides a complete output,
  - modifies its input, or
  - stops on a runtime trap inside the HDF5 probe (a bug of ours).
libhdf5 crashes are counted apart: caught by the probe (the child crashed), or past it (the file passed
the probe and libhdf5 crashed in wsurgery's own process anyway, turned into exit 65 by the signal
handler: such crashes depend on the heap's layout).
Inputs the HDF5 probe caught crashing libhdf5 are worth keeping as regression cases (--keep-crashers).

    scripts/fuzz.py --bin .build/debug/wsurgery --per-reader 10000 --jobs 2 --out /tmp/fuzz
    scripts/fuzz.py --seconds 60            # the time-boxed run the test suite does

Zip inputs (.keras, torch.save) are mutated either as bytes (the zip's own checks must catch it) or
inside one entry, re-zipped with correct CRCs, so the HDF5 and pickle readers behind them see the damage.

--readers pickle-ops: an opcode-level mutator for the pickle interpreter. The pickle of a torch.save zip
(archive/data.pkl) or one of the five pickles of a legacy file is split into opcodes
(pickletools.genops) and mutated as opcodes: random opcodes inserted with valid-looking arguments, a run
of opcodes duplicated, a value wrapped in 10^3-10^5 levels of nesting (TUPLE1, EMPTY_LIST+APPEND,
MARK...LIST, dicts), a value replaced by a DUP+TUPLE2 DAG, memo edits (BINPUT/BINGET indexes changed,
MEMOIZE floods), persistent-id edits (storage keys, storage classes, element counts) and rebuild-argument
edits (every int opcode: shapes, strides, offsets set to 0, negative or huge values); then re-serialised
and re-zipped with correct CRCs, so the mutants reach the interpreter. Same run and failure checks.

    scripts/fuzz.py --readers pickle-ops --seconds 60 --seed 1

--faults N: fault injection instead of mutation. N times, one of three commands (`run RECIPE INPUTS
--jobs 2` with fixtures/recipes/gray5.yaml over three Keras fixtures, a sharded
`convert torch_resnet_tiny.safetensors OUT/ --shard-size 1KB`, or `run --jobs 2` of a recipe that writes
each of two inputs as a sharded folder) gets SIGINT, SIGTERM, SIGHUP or SIGKILL
at a random moment of its undisturbed run time. A trial fails when, after the signal, a file under its
final name differs from the undisturbed output (an output is complete or absent), or when a re-run of the
same command (`run` resumes: finished outputs are up-to-date) does not exit 0, leaves anything in
$TMPDIR or the output directory besides the undisturbed run's outputs, or writes different outputs
(bytes, else `wsurgery diff`), or when `run`'s worker processes go on running more than 0.1 s after
SIGINT/SIGTERM/SIGHUP ended it (a re-run started then races with them: "already exists"). The re-run
starts only once every process of the trial's session has ended. After SIGKILL named leftovers, and the
journal of a set killed between two of its files (`.OUT.wsurgery-set`) with the files it had committed,
may exist until that re-run, which must remove them.

    scripts/fuzz.py --faults 50 --seed 1 --json /tmp/faults.json
"""

import argparse
import concurrent.futures
import hashlib
import io
import json
import os
import pickletools
import random
import signal
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "fixtures")

# reader -> (seed files, output suffix)
READERS = {
    "safetensors": (["torch_resnet_tiny.safetensors", "dtypes.safetensors"], ".safetensors"),
    "hdf5": (["keras_cnn.h5", "keras_cnn.weights.h5", "keras_nested.h5", "keras2_style.h5"], ".h5"),
    "keras": (["keras_cnn.keras", "keras_nested.keras"], ".h5"),
    "pickle": (["pytorch/tiny_resnet.pth", "pytorch/tiny_resnet_legacy.pth", "pytorch/views.pth", "pytorch/two_models.pth#model"], ".safetensors"),
    "pickle-ops": (["pytorch/tiny_resnet.pth", "pytorch/tiny_resnet_legacy.pth", "pytorch/views.pth", "pytorch/views_legacy.pth",
                    "pytorch/two_models.pth#model", "pytorch/lightning_like.ckpt", "pytorch/data_parallel.pth"], ".safetensors"),
}
ALLOWED = {0, 64, 65, 66, 74}
INTERESTING = [0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE]
WIDE = [0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFFFFFFFFFF, 0x7FFFFFFFFFFFFFFF, 1 << 62, 1 << 32, 0]


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """One to four byte-level mutations."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not b:
            b = bytearray(rng.randbytes(8))
        kind = rng.randrange(7)
        at = rng.randrange(len(b))
        if kind == 0:
            b[at] ^= 1 << rng.randrange(8)
        elif kind == 1:
            b[at] = rng.choice(INTERESTING)
        elif kind == 2:
            b[at] = rng.randrange(256)
        elif kind == 3:
            width = rng.choice([4, 8])
            value = rng.choice(WIDE) & ((1 << (8 * width)) - 1)
            b[at : at + width] = value.to_bytes(width, rng.choice(["little", "big"]))
        elif kind == 4:
            del b[at:]
        elif kind == 5:
            n = rng.randint(1, 64)
            b[at:at] = b[rng.randrange(len(b)) :][:n]
        else:
            n = rng.randint(1, 64)
            del b[at : at + n]
    return bytes(b)


def mutate_zip_entry(data: bytes, rng: random.Random) -> bytes:
    """Mutates one entry of a zip (weighted towards the parsed ones) and re-zips it with correct CRCs."""
    try:
        source = zipfile.ZipFile(io.BytesIO(data))
        infos = source.infolist()
    except Exception:
        return mutate_bytes(data, rng)
    parsed = [i for i in infos if i.filename.endswith((".pkl", ".h5", ".json"))]
    target = rng.choice(parsed or infos)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
        for info in infos:
            content = source.read(info.filename)
            if info.filename == target.filename:
                content = mutate_bytes(content, rng)
            z.writestr(info, content)
    return out.getvalue()


def mutant(seed_bytes: bytes, rng: random.Random) -> bytes:
    if seed_bytes[:4] == b"PK\x03\x04" and rng.random() < 0.6:
        return mutate_zip_entry(seed_bytes, rng)
    return mutate_bytes(seed_bytes, rng)


# ---------------------------------------------------------------------------------------------------
# Opcode-level pickle mutation (--readers pickle-ops)

PUSH_OPS = {"BININT1", "BININT2", "BININT", "LONG1", "INT", "LONG", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
            "BINGET", "LONG_BINGET", "GET", "NONE", "NEWTRUE", "NEWFALSE", "EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT",
            "BINFLOAT", "SHORT_BINBYTES", "BINBYTES"}
INT_OPS = {"BININT1", "BININT2", "BININT", "LONG1"}
BIG_INTS = [0, -1, 1, 2, -(2**31), 2**31 - 1, 2**32, 2**40, 2**60, 2**62, 2**63 - 1, -(2**63), 2**64, 2**64 + 1, 10**30]
GLOBALS = [("torch._utils", "_rebuild_tensor_v2"), ("torch._utils", "_rebuild_tensor_v3"), ("torch._utils", "_rebuild_tensor"),
           ("torch._utils", "_rebuild_parameter"), ("torch._utils", "_rebuild_parameter_with_state"),
           ("torch._tensor", "_rebuild_from_type_v2"), ("torch.nn", "Parameter"), ("torch", "Size"), ("torch", "Tensor"),
           ("collections", "OrderedDict"), ("_codecs", "encode"), ("torch", "FloatStorage"), ("torch", "HalfStorage"),
           ("torch", "BFloat16Storage"), ("torch", "LongStorage"), ("torch", "BoolStorage"), ("torch", "ByteStorage"),
           ("torch", "float32"), ("torch", "Float8_e4m3fnStorage"), ("os", "system"), ("builtins", "eval"),
           ("fuzz.module", "Thing"), ("torch", "UntypedStorage")]
STORAGES = ["FloatStorage", "HalfStorage", "DoubleStorage", "BFloat16Storage", "LongStorage", "IntStorage", "ShortStorage",
            "CharStorage", "ByteStorage", "BoolStorage", "ComplexFloatStorage", "QInt8Storage", "NoSuchStorage"]


def op_int(value):
    if 0 <= value < 256:
        return b"K" + bytes([value])
    if 0 <= value < 65536:
        return b"M" + value.to_bytes(2, "little")
    if -(2**31) <= value < 2**31:
        return b"J" + value.to_bytes(4, "little", signed=True)
    n = (value.bit_length() + 8) // 8
    return b"\x8a" + bytes([n]) + value.to_bytes(n, "little", signed=True)


def op_text(text):
    b = text.encode("utf-8", "surrogatepass")
    return (b"\x8c" + bytes([len(b)]) + b) if len(b) < 256 else (b"X" + len(b).to_bytes(4, "little") + b)


def random_op(rng):
    """One opcode with a valid-looking argument."""
    k = rng.randrange(12)
    if k == 0:
        return op_int(rng.choice(BIG_INTS + [rng.randrange(-5, 300)]))
    if k == 1:
        return op_text(rng.choice(["storage", "cpu", "0", "1", "99", "weight", "", "\x00", "a" * 300, "cuda:0"]))
    if k == 2:
        m, n = rng.choice(GLOBALS)
        return b"c" + m.encode() + b"\n" + n.encode() + b"\n"
    if k == 3:
        return rng.choice([b"h", b"q"]) + bytes([rng.randrange(256)])
    if k == 4:
        return rng.choice([b"j", b"r"]) + rng.choice([0, 1, 255, 2**31 - 1, 2**32 - 1]).to_bytes(4, "little")
    if k == 5:
        return b"G" + rng.choice([b"\x7f\xf8\x00\x00\x00\x00\x00\x00", b"\x7f\xf0\x00\x00\x00\x00\x00\x00", b"\x00" * 8])
    if k == 6:
        return rng.choice([b"\xff", b"\x82\x01", b"\x83\x01\x00", b"\x84\x01\x00\x00\x00", b"\x97", b"\x98", b"\x96"])
    if k == 7:
        return b"\x95" + rng.choice([0, 8, 2**40]).to_bytes(8, "little")
    return rng.choice([b"N", b")", b"]", b"}", b"(", b"t", b"l", b"d", b"a", b"e", b"s", b"u", b"R", b"Q", b"0", b"1", b"2",
                       b"\x85", b"\x86", b"\x87", b"\x88", b"\x89", b"\x94", b"\x93", b"b", b"\x81", b"\x90", b"\x91", b"."])


def nest(value, rng):
    """`value` (the bytes of one pushed value) wrapped `depth` levels deep."""
    depth = rng.choice([10**3, 10**3, 10**4, 10**5])
    kind = rng.randrange(4)
    if kind == 0:
        return value + b"\x85" * depth
    if kind == 1:
        return b"]" * depth + value + b"a" * depth
    if kind == 2:
        return b"(" * depth + value + b"l" * depth
    return b"}" + b"K\x00}" * (depth - 1) + b"K\x00" + value + b"s" * depth


def split_ops(data):
    """The opcodes of one pickle as (name, argument, bytes) up to and including STOP; raises on junk."""
    ops = list(pickletools.genops(data))
    out = []
    for i, (op, arg, pos) in enumerate(ops):
        end = ops[i + 1][2] if i + 1 < len(ops) else pos + 1
        out.append((op.name, arg, data[pos:end]))
    return out, (ops[-1][2] + 1 if ops else 0)


def mutate_pickle(data, rng):
    """One to three opcode-level mutations of one pickle (falls back to bytes if it does not parse)."""
    try:
        ops, end = split_ops(data)
    except Exception:
        return mutate_bytes(data, rng)
    tail = data[end:]
    segs = [list(o) for o in ops]
    body = segs[:-1] if segs and segs[-1][0] == "STOP" else segs
    stop = segs[len(body):]
    for _ in range(rng.randint(1, 3)):
        if not body:
            body = [["NONE", None, b"N"]]
        kind = rng.randrange(9)
        at = rng.randrange(len(body))
        pushes = [i for i, s in enumerate(body) if s[0] in PUSH_OPS]
        ints = [i for i, s in enumerate(body) if s[0] in INT_OPS]
        if kind == 0:  # insert opcodes
            body[at:at] = [["?", None, random_op(rng)] for _ in range(rng.randint(1, 4))]
        elif kind == 1:  # duplicate a run
            n = rng.randint(1, 32)
            body[at:at] = [list(s) for s in body[at:at + n]] * rng.choice([1, 2, 100])
        elif kind == 2 and pushes:  # deep nesting around a value
            i = rng.choice(pushes)
            body[i] = ["?", None, nest(body[i][2], rng)]
        elif kind == 3 and pushes:  # a DAG instead of a value
            i = rng.choice(pushes)
            body[i] = ["?", None, b"N" + b"2\x86" * rng.choice([30, 64, 100, 1000])]
        elif kind == 4:  # memo edits
            memo = [i for i, s in enumerate(body) if s[0] in ("BINPUT", "BINGET", "LONG_BINPUT", "LONG_BINGET", "MEMOIZE")]
            if memo and rng.random() < 0.7:
                i = rng.choice(memo)
                name = body[i][0]
                if name in ("BINPUT", "BINGET"):
                    body[i] = ["?", None, body[i][2][:1] + bytes([rng.randrange(256)])]
                elif name in ("LONG_BINPUT", "LONG_BINGET"):
                    body[i] = ["?", None, body[i][2][:1] + rng.choice([0, 255, 2**20, 2**31 - 1, 2**32 - 1]).to_bytes(4, "little")]
                else:
                    body[i] = ["?", None, rng.choice([b"h\x00", b"q\x00", b"0"])]
            elif pushes:
                i = rng.choice(pushes)
                body[i + 1:i + 1] = [["?", None, b"\x94" * rng.choice([10, 1000, 10**5, 10**6])]]
        elif kind == 5:  # persistent-id edits: storage keys, classes, element counts
            texts = [i for i, s in enumerate(body) if s[0] in ("BINUNICODE", "SHORT_BINUNICODE") and isinstance(s[1], str)
                     and (s[1].isdigit() or s[1] in ("storage", "cpu"))]
            globs = [i for i, s in enumerate(body) if s[0] == "GLOBAL" and "Storage" in str(s[1])]
            choice = rng.randrange(3)
            if choice == 0 and texts:
                i = rng.choice(texts)
                body[i] = ["?", None, op_text(rng.choice(["0", "1", "7", "999999", "-1", "../0", "0\x00", "", "data/0", "storage", "cuda"]))]
            elif choice == 1 and globs:
                i = rng.choice(globs)
                body[i] = ["?", None, b"ctorch\n" + rng.choice(STORAGES).encode() + b"\n"]
            elif ints:
                i = rng.choice(ints)
                body[i] = ["?", None, op_int(rng.choice(BIG_INTS))]
        elif kind == 6 and ints:  # rebuild-argument edits: shapes, strides, offsets
            for i in rng.sample(ints, min(len(ints), rng.randint(1, 3))):
                body[i] = ["?", None, op_int(rng.choice(BIG_INTS + [0, 0, -1]))]
        elif kind == 7:  # delete a run
            del body[at:at + rng.randint(1, 8)]
        else:  # swap two opcodes
            j = rng.randrange(len(body))
            body[at], body[j] = body[j], body[at]
    return b"".join(s[2] for s in body + stop) + tail


def split_legacy(data):
    """The five pickles of a legacy torch.save file and the raw storages after them, or None."""
    parts, pos = [], 0
    for _ in range(5):
        try:
            _, end = split_ops(data[pos:])
        except Exception:
            return None
        parts.append(data[pos:pos + end])
        pos += end
    return parts, data[pos:]


def pickle_ops_mutant(seed_bytes, rng):
    """A mutant whose pickle was edited as opcodes: data.pkl of a zip (re-zipped with valid CRCs), else one
    of a legacy file's pickles (mostly the object pickle and the storage-key list)."""
    if seed_bytes[:4] == b"PK\x03\x04":
        try:
            source = zipfile.ZipFile(io.BytesIO(seed_bytes))
            infos = source.infolist()
        except Exception:
            return mutate_bytes(seed_bytes, rng)
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as z:
            for info in infos:
                content = source.read(info.filename)
                if info.filename.endswith("data.pkl"):
                    content = mutate_pickle(content, rng)
                info.compress_type = zipfile.ZIP_STORED
                z.writestr(info, content)
        return out.getvalue()
    split = split_legacy(seed_bytes)
    if split is None:
        return mutate_bytes(seed_bytes, rng)
    parts, rest = split
    i = rng.choices(range(5), weights=[1, 1, 2, 8, 4])[0]
    parts[i] = mutate_pickle(parts[i], rng)
    return b"".join(parts) + rest


def listing(directory):
    found = []
    for base, dirs, files in os.walk(directory):
        found += [os.path.relpath(os.path.join(base, f), directory) for f in files + dirs]
    return sorted(found)


def run_one(binary, reader, seed_name, index, data, suffix, timeout, keep_dir):
    """Runs one mutant; returns (verdict, details)."""
    work = tempfile.mkdtemp(prefix=f"fuzz-{reader}-")
    try:
        selector = ""
        if "#" in seed_name:
            seed_name, selector = seed_name.split("#")
            selector = "#" + selector
        name = "in" + os.path.splitext(seed_name)[1]
        if seed_name.endswith(".weights.h5"):
            name = "in.weights.h5"
        source = os.path.join(work, name)
        with open(source, "wb") as f:
            f.write(data)
        digest = hashlib.sha256(data).hexdigest()
        out_dir = os.path.join(work, "out")
        tmp_dir = os.path.join(work, "tmp")
        os.mkdir(out_dir)
        os.mkdir(tmp_dir)
        env = dict(os.environ, TMPDIR=tmp_dir)
        start = time.monotonic()
        try:
            proc = subprocess.run(
                [binary, "convert", source + selector, os.path.join(out_dir, "out" + suffix)],
                capture_output=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
            rc, stderr = proc.returncode, proc.stderr.decode(errors="replace")
        except subprocess.TimeoutExpired:
            rc, stderr = None, "timeout"
        seconds = time.monotonic() - start
        problems = []
        if rc is None:
            problems.append(f"hang (> {timeout} s)")
        elif rc < 0:
            problems.append(f"signal {-rc}")
        elif rc not in ALLOWED:
            problems.append(f"exit {rc}")
        stray_tmp = listing(tmp_dir)
        if stray_tmp:
            problems.append(f"left in TMPDIR: {stray_tmp}")
        outputs = listing(out_dir)
        expected = ["out" + suffix] if rc == 0 else []
        if outputs != expected:
            problems.append(f"output directory holds {outputs}, expected {expected}")
        with open(source, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != digest:
                problems.append("input modified")
        crashed_libhdf5 = "crashed reading it" in stderr or "did not finish reading it" in stderr
        # The probe passed the file, and libhdf5 still crashed in wsurgery's own process (a crash that
        # depends on the heap's layout): the signal handler made it exit 65. Counted on its own.
        backstop = "crashed reading it (SIG" in stderr
        if "a bug in wsurgery" in stderr:
            problems.append("a runtime trap in the HDF5 probe")
        details = {"reader": reader, "seed": seed_name + selector, "index": index, "rc": rc, "seconds": round(seconds, 3),
                   "problems": problems, "stderr": stderr.strip().splitlines()[-1:] if stderr else []}
        if keep_dir and (problems or crashed_libhdf5):
            kind = "failures" if problems else "backstop" if backstop else "crashers"
            os.makedirs(os.path.join(keep_dir, kind), exist_ok=True)
            keep = os.path.join(keep_dir, kind, f"{reader}-{hashlib.sha256(data).hexdigest()[:16]}{os.path.splitext(name)[1] if not name.endswith('.weights.h5') else '.weights.h5'}")
            with open(keep, "wb") as f:
                f.write(data)
            details["kept"] = keep
        return ("fail" if problems else "backstop" if backstop else "caught" if crashed_libhdf5 else "ok"), details
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------
# Fault injection (--faults N)

FAULT_SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL]


def fault_commands(binary, work):
    """name -> (argv builder taking the output directory, rerun argv builder)."""
    inputs = [os.path.join(FIXTURES, n) for n in ("keras_cnn.h5", "keras_cnn.keras", "keras_nested.h5")]
    recipe = os.path.join(FIXTURES, "recipes", "gray5.yaml")
    shard_source = os.path.join(FIXTURES, "torch_resnet_tiny.safetensors")
    run_cmd = lambda out: [binary, "run", recipe, *inputs, "--out-dir", out, "--jobs", "2", "--quiet"]
    shard_cmd = lambda out: [binary, "convert", shard_source, os.path.join(out, "sharded") + "/", "--shard-size", "1KB"]
    # Workers killed while committing sets: each input becomes a sharded folder.
    sharded_recipe = os.path.join(work, "sharded.yaml")
    with open(sharded_recipe, "w") as f:
        f.write('passes:\n  - convert: {}\noutput: "{stem}/"\nshard-size: 1KB\n')
    run_shards = lambda out: [binary, "run", sharded_recipe, shard_source, inputs[0], "--out-dir", out, "--jobs", "2", "--quiet"]
    return {"run": run_cmd, "sharded-convert": shard_cmd, "sharded-run": run_shards}


def same_outputs(binary, a, b, env):
    """Lists of differing relative paths between directories a and b (bytes, else `wsurgery diff`)."""
    la, lb = listing(a), listing(b)
    problems = []
    if la != lb:
        problems.append(f"files {sorted(set(la) ^ set(lb))} differ in presence")
    for rel in sorted(set(la) & set(lb)):
        pa, pb = os.path.join(a, rel), os.path.join(b, rel)
        if os.path.isdir(pa) or os.path.isdir(pb):
            continue
        if open(pa, "rb").read() == open(pb, "rb").read():
            continue
        if rel.endswith(".json"):
            problems.append(f"{rel} differs")
            continue
        d = subprocess.run([binary, "diff", pa, pb], capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=60)
        if d.returncode != 0:
            problems.append(f"{rel} differs (diff exit {d.returncode})")
    return problems


def partial_outputs(binary, out, reference, env, sig):
    """Files under their final names after a disturbed run that are not identical to the reference's."""
    problems = []
    for rel in listing(out):
        path, ref = os.path.join(out, rel), os.path.join(reference, rel)
        if os.path.isdir(path):
            continue
        if os.path.basename(rel).endswith(".wsurgery-set") and sig == signal.SIGKILL:
            continue  # the journal of a set whose writer was killed: the next writer of it undoes the set
        if not os.path.exists(ref):
            problems.append(f"unexpected file {rel}")
        elif open(path, "rb").read() != open(ref, "rb").read():
            d = subprocess.run([binary, "diff", path, ref], capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=60)
            if d.returncode != 0 and not rel.endswith(".json"):
                problems.append(f"{rel} is incomplete or different (diff exit {d.returncode})")
            elif rel.endswith(".json"):
                problems.append(f"{rel} differs from the undisturbed one")
    return problems


def session_members(sid):
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                pids.append(int(entry))
    return pids


def wait_session(sid, timeout):
    """Waits until no process of session `sid` (one this script started) runs; after `timeout` s
    SIGKILLs those left, by pid. Returns how long they ran on."""
    start = time.monotonic()
    while session_members(sid):
        if time.monotonic() - start > timeout:
            for pid in session_members(sid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.1)
            break
        time.sleep(0.02)
    return time.monotonic() - start


def run_faults(args, seed):
    rng = random.Random(seed)
    base = tempfile.mkdtemp(prefix="fuzz-faults-")
    results, failures = [], []
    try:
        commands = fault_commands(args.bin, base)
        references, durations = {}, {}
        for name, make in commands.items():
            ref = os.path.join(base, f"ref-{name}")
            tmp = os.path.join(base, f"ref-{name}-tmp")
            os.makedirs(ref)
            os.makedirs(tmp)
            start = time.monotonic()
            proc = subprocess.run(make(ref), capture_output=True, env=dict(os.environ, TMPDIR=tmp), stdin=subprocess.DEVNULL,
                                  timeout=args.timeout * 10)
            durations[name] = time.monotonic() - start
            if proc.returncode != 0:
                print(f"faults: the undisturbed {name} failed: exit {proc.returncode}: {proc.stderr.decode(errors='replace')[-500:]}")
                return 1
            references[name] = ref
            print(f"faults: undisturbed {name}: {durations[name]:.2f} s, {len(listing(ref))} files", flush=True)
        for trial in range(args.faults):
            name = rng.choice(sorted(commands))
            sig = rng.choice(FAULT_SIGNALS)
            delay = rng.uniform(0, durations[name] * 1.1)
            work = os.path.join(base, f"trial-{trial}")
            out, tmp = os.path.join(work, "out"), os.path.join(work, "tmp")
            os.makedirs(out)
            os.makedirs(tmp)
            env = dict(os.environ, TMPDIR=tmp)
            argv = commands[name](out)
            proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            time.sleep(delay)
            sent = proc.poll() is None
            if sent:
                try:
                    os.kill(proc.pid, sig)
                except ProcessLookupError:
                    sent = False
            try:
                _, err = proc.communicate(timeout=args.timeout * 3)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                _, err = proc.communicate()
            # The workers of `run --jobs` (each in its own process group) are in the session this trial
            # started: wait for them to end before the re-run, and end any left (by pid, only ours).
            orphans_seconds = wait_session(proc.pid, args.timeout)
            problems = []
            rc = proc.returncode
            if sent and rc not in (-sig, 128 + sig) and rc not in ALLOWED:
                problems.append(f"disturbed run ended with {rc}")
            problems += [f"after the signal: {p}" for p in partial_outputs(args.bin, out, references[name], env, sig)]
            if sent and sig != signal.SIGKILL and orphans_seconds > 0.1:
                problems.append(f"worker processes ran on {orphans_seconds:.1f} s after `{name}` ended by {signal.Signals(sig).name}")
            if sig != signal.SIGKILL and listing(tmp):
                problems.append(f"after the signal, left in TMPDIR: {listing(tmp)}")
            rerun_rc = None
            if rc != 0 or not sent:
                if rc == 0:
                    pass
                else:
                    # A signal after the last file got its name (the process was ending) leaves the whole
                    # output: re-running a single command then rightly refuses to replace it (73).
                    finished = not same_outputs(args.bin, out, references[name], env)
                    again = subprocess.run(argv, capture_output=True, env=env, stdin=subprocess.DEVNULL, timeout=args.timeout * 10)
                    rerun_rc = again.returncode
                    if again.returncode == 73 and finished and argv[1] != "run":
                        pass
                    elif again.returncode != 0:
                        said = (again.stderr + again.stdout).decode(errors="replace").strip()
                        problems.append(f"re-run exit {again.returncode}: {said[-400:]}")
            if listing(tmp):
                problems.append(f"left in TMPDIR after the re-run: {listing(tmp)}")
            problems += same_outputs(args.bin, out, references[name], env)
            details = {"trial": trial, "command": name, "signal": signal.Signals(sig).name, "delay": round(delay, 3),
                       "signal_sent": sent, "rc": rc, "rerun_rc": rerun_rc, "problems": problems,
                       "stderr": err.decode(errors="replace").strip().splitlines()[-1:] if err else []}
            results.append(details)
            if problems:
                failures.append(details)
                print("FAIL", json.dumps(details), flush=True)
            shutil.rmtree(work, ignore_errors=True)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"faults: {len(results)} trials, {len(failures)} failures, seed {seed}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seed": seed, "faults": results, "failures": failures}, f, indent=1)
    return 1 if failures else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.environ.get("WSURGERY_BIN", os.path.join(ROOT, ".build/debug/wsurgery")))
    parser.add_argument("--readers", default=",".join(r for r in READERS if r != "pickle-ops"),
                        help=f"comma-separated, of {', '.join(READERS)} (default: all but pickle-ops, so a fixed seed "
                             "replays the mutants it always did)")
    parser.add_argument("--per-reader", type=int, default=10000, help="mutations per reader")
    parser.add_argument("--seconds", type=float, help="stop after this long in all (time-boxed run)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a run counts as a hang")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time); printed for replay")
    parser.add_argument("--out", help="directory to keep failing inputs and libhdf5 crashers in")
    parser.add_argument("--json", help="write the summary as JSON here")
    parser.add_argument("--faults", type=int, metavar="N",
                        help="instead of mutating: N signal-injection trials on `run --jobs 2` and a sharded convert (see above)")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
    if args.faults:
        print(f"faults: seed {seed}, {args.faults} trials", flush=True)
        return run_faults(args, seed)
    unknown = [r for r in args.readers.split(",") if r not in READERS]
    if unknown:
        parser.error(f"unknown reader {', '.join(unknown)}; known: {', '.join(READERS)}")
    readers = args.readers.split(",")
    deadline = time.monotonic() + args.seconds if args.seconds else None
    per_reader = args.per_reader if not args.seconds else 10**9
    print(f"fuzz: seed {seed}, readers {readers}, {args.per_reader if not args.seconds else 'time-boxed'} per reader", flush=True)
    summary = {r: {"runs": 0, "ok": 0, "caught": 0, "backstop": 0, "fail": 0, "max_seconds": 0.0, "exits": {}} for r in readers}
    failures = []
    seeds = {}
    for r in readers:
        for s in READERS[r][0]:
            with open(os.path.join(FIXTURES, s.split("#")[0]), "rb") as f:
                seeds[s] = f.read()

    def jobs():
        rng = random.Random(seed)
        for i in range(per_reader):
            for r in readers:
                s = rng.choice(READERS[r][0])
                yield r, s, i, (pickle_ops_mutant if r == "pickle-ops" else mutant)(seeds[s], rng)

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
        pending = set()
        for job in jobs():
            if deadline and time.monotonic() > deadline:
                break
            r, s, i, data = job
            pending.add(pool.submit(run_one, args.bin, r, s, i, data, READERS[r][1], args.timeout, args.out))
            if len(pending) >= args.jobs * 4:
                done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for d in done:
                    verdict, details = d.result()
                    record(summary, failures, verdict, details)
        for d in concurrent.futures.as_completed(pending):
            verdict, details = d.result()
            record(summary, failures, verdict, details)
    elapsed = time.monotonic() - started
    for r, s in summary.items():
        print(f"{r}: {s['runs']} runs, {s['fail']} failures, {s['caught']} caught by the HDF5 probe, "
              f"{s['backstop']} crashes past it turned into exit 65 by the handler, "
              f"slowest {s['max_seconds']:.2f} s, exits {dict(sorted(s['exits'].items()))}")
    for f in failures[:20]:
        print("FAIL", json.dumps(f))
    print(f"fuzz: {sum(s['runs'] for s in summary.values())} runs in {elapsed:.0f} s, seed {seed}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seed": seed, "seconds": elapsed, "readers": summary, "failures": failures}, f, indent=1)
    return 1 if failures else 0


def record(summary, failures, verdict, details):
    s = summary[details["reader"]]
    s["runs"] += 1
    s[verdict] += 1
    s["max_seconds"] = max(s["max_seconds"], details["seconds"])
    key = str(details["rc"])
    s["exits"][key] = s["exits"].get(key, 0) + 1
    if verdict == "fail":
        failures.append(details)


if __name__ == "__main__":
    sys.exit(main())
