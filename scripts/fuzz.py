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
"""

import argparse
import concurrent.futures
import hashlib
import io
import json
import os
import random
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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.environ.get("WSURGERY_BIN", os.path.join(ROOT, ".build/debug/wsurgery")))
    parser.add_argument("--readers", default=",".join(READERS))
    parser.add_argument("--per-reader", type=int, default=10000, help="mutations per reader")
    parser.add_argument("--seconds", type=float, help="stop after this long in all (time-boxed run)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds before a run counts as a hang")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: time); printed for replay")
    parser.add_argument("--out", help="directory to keep failing inputs and libhdf5 crashers in")
    parser.add_argument("--json", help="write the summary as JSON here")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int(time.time())
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
                yield r, s, i, mutant(seeds[s], rng)

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
