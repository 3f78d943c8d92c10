"""Outputs never clobber and model folders carry files safely (issue 24, items 3 and 4).

The race between the existence check and the commit is made deterministic by the test-only
WSURGERY_TEST_PAUSE_BEFORE_COMMIT (seconds to wait just before an output set is committed).
"""
import os
import shutil
import stat
import subprocess
import time

from conftest import BIN, fixture

PAUSE = "WSURGERY_TEST_PAUSE_BEFORE_COMMIT"


def start(*args, env=None):
    return subprocess.Popen([BIN, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})), stdin=subprocess.DEVNULL)


def run(*args, env=None):
    return subprocess.run([BIN, *map(str, args)], capture_output=True, text=True, env=dict(os.environ, **(env or {})),
                          stdin=subprocess.DEVNULL, timeout=60)


def test_an_output_that_appears_before_the_commit_is_not_replaced(tmp_path):
    out = tmp_path / "o.safetensors"
    proc = start("convert", fixture("keras_cnn.h5"), out, env={PAUSE: "1.5"})
    time.sleep(0.7)
    out.write_bytes(b"another writer's output")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 73, err
    assert "already exists" in err and str(out) in err
    assert out.read_bytes() == b"another writer's output"
    assert sorted(os.listdir(tmp_path)) == ["o.safetensors"]


def test_two_writers_of_one_output_one_wins_the_other_reports_73(tmp_path):
    out = tmp_path / "o.h5"
    a = start("convert", fixture("keras_cnn.h5"), out, env={PAUSE: "1"})
    b = start("replace-head", fixture("keras_cnn.h5"), out, "--classes", "5", env={PAUSE: "1"})
    codes = sorted([a.wait(timeout=60), b.wait(timeout=60)])
    assert codes == [0, 73], (a.stderr.read(), b.stderr.read())
    assert sorted(os.listdir(tmp_path)) == ["o.h5"]


def test_with_force_the_later_writer_replaces(tmp_path):
    out = tmp_path / "o.safetensors"
    proc = start("convert", fixture("keras_cnn.h5"), out, "--force", env={PAUSE: "1.5"})
    time.sleep(0.7)
    out.write_bytes(b"old")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.read_bytes() != b"old"


def test_a_folder_set_that_loses_the_race_leaves_nothing_of_its_own(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(fixture("hf", "resnet"), src)
    dst = tmp_path / "gray"
    proc = start("collapse-channels", src, f"{dst}/", env={PAUSE: "1.5"})
    time.sleep(0.7)
    # Another writer made the folder and its weights meanwhile.
    (dst / "model.safetensors").write_bytes(b"theirs")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 73, err
    # Its config and README were linked before the weights (committed last) failed, and removed again.
    assert sorted(os.listdir(dst)) == ["model.safetensors"], os.listdir(dst)
    assert (dst / "model.safetensors").read_bytes() == b"theirs"


def folder_with(tmp_path, **extra):
    src = tmp_path / "src"
    shutil.copytree(fixture("hf", "resnet"), src)
    for name, make in extra.items():
        make(src / name.replace("__", "."))
    return src


def test_symlinks_in_a_model_folder_are_never_carried(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("do not upload")
    src = tmp_path / "src"
    shutil.copytree(fixture("hf", "resnet"), src)
    (src / "README.md").unlink()
    (src / "README.md").symlink_to(secret)
    (src / "notes.txt").symlink_to("/etc/passwd")
    (src / "tokenizer.json").write_text("{}")
    proc = run("collapse-channels", src, f"{tmp_path}/gray/")
    assert proc.returncode == 0, proc.stderr
    names = sorted(os.listdir(tmp_path / "gray"))
    assert "README.md" not in names and "notes.txt" not in names and "tokenizer.json" in names, names
    assert "symlinks are never carried" in proc.stderr and "README.md" in proc.stderr
    for name in names:
        assert "do not upload" not in (tmp_path / "gray" / name).read_text(errors="replace")
        assert not (tmp_path / "gray" / name).is_symlink()


def test_carried_files_get_the_permissions_of_a_new_file(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(fixture("hf", "resnet"), src)
    (src / "tokenizer.json").write_text("{}")
    os.chmod(src / "tokenizer.json", 0o4755)
    os.chmod(src / "README.md", 0o600)
    proc = subprocess.run(["bash", "-c", 'umask 022; exec "$@"', "_", BIN, "collapse-channels", str(src), f"{tmp_path}/gray/"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for name in ("tokenizer.json", "README.md"):
        assert stat.S_IMODE(os.stat(tmp_path / "gray" / name).st_mode) == 0o644, name
    assert (tmp_path / "gray" / "README.md").read_bytes() == (src / "README.md").read_bytes()


def test_a_sparse_64_gib_folder_file_is_refused_in_bounded_memory(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(fixture("hf", "resnet"), src)
    with open(src / "tokenizer.json", "wb") as f:
        f.truncate(64 << 30)
    started = time.monotonic()
    proc = subprocess.run(["bash", "-c", 'ulimit -v 4000000; exec "$@"', "_", BIN, "collapse-channels", str(src), f"{tmp_path}/gray/"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 65, proc.stderr
    assert "carried-bytes" in proc.stderr and "tokenizer.json" in proc.stderr
    assert time.monotonic() - started < 10
    assert not (tmp_path / "gray").exists()
    # Raised, a file under the limit is streamed.
    (src / "tokenizer.json").unlink()
    (src / "tokenizer.json").write_bytes(os.urandom(3 << 20))
    proc = run("collapse-channels", src, f"{tmp_path}/gray/", env={"WSURGERY_LIMITS": "carried-bytes=4MiB"})
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "gray" / "tokenizer.json").read_bytes() == (src / "tokenizer.json").read_bytes()


def test_run_workers_end_with_their_run_however_it_is_stopped(tmp_path):
    """`run --jobs 2` stopped (SIGTERM, SIGKILL) while its workers are about to commit: the workers end
    with it (parent-death signal), so no output appears afterwards and a re-run is not blocked."""
    import signal

    inputs = [fixture("keras_cnn.h5"), fixture("keras_cnn.keras"), fixture("keras_nested.h5")]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        out = tmp_path / f"out-{sig}"
        proc = start("run", fixture("recipes", "gray5.yaml"), *inputs, "--out-dir", out, "--jobs", "2", env={PAUSE: "2"})
        time.sleep(1.0)
        proc.send_signal(sig)
        proc.wait(timeout=30)
        time.sleep(2.5)
        assert [n for n in os.listdir(out) if not n.startswith(".")] == [], os.listdir(out)
        rerun = run("run", fixture("recipes", "gray5.yaml"), *inputs, "--out-dir", out, "--jobs", "2")
        assert rerun.returncode == 0, rerun.stderr


# ---------------------------------------------------------------------------------------------------
# A set of several files is committed under a journal: a kill between two of its files leaves nothing
# that blocks a re-run, and the re-run (or a resumed run) completes it.

BETWEEN = "WSURGERY_TEST_PAUSE_BETWEEN_COMMITS"


def killed_between_commits(tmp_path, sig, *args):
    """Starts a sharded write, kills it with `sig` after its first file got its name; returns the folder."""
    out = tmp_path / "shards"
    proc = start("convert", fixture("torch_resnet_tiny.safetensors"), f"{out}/", "--shard-size", "1KB", *args, env={BETWEEN: "30"})
    wait_for_journal(tmp_path / ".shards.wsurgery-set", proc)
    proc.send_signal(sig)
    proc.wait(timeout=30)
    return out


def wait_for_journal(journal, proc):
    """Waits until `proc` has written its set's journal and committed the first file (it then pauses)."""
    deadline = time.time() + 60
    while time.time() < deadline and not journal.exists():
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    assert journal.exists()
    time.sleep(0.5)


def shard_names(out):
    return sorted(n for n in os.listdir(out) if n.endswith(".safetensors"))


def test_a_sharded_write_killed_between_its_files_is_completed_by_a_re_run(tmp_path):
    import signal
    out = killed_between_commits(tmp_path, signal.SIGKILL)
    # What SIGKILL leaves: one shard, no index, and the journal beside the folder naming the dead writer.
    assert len(shard_names(out)) == 1 and not (out / "model.safetensors.index.json").exists()
    assert (tmp_path / ".shards.wsurgery-set").exists()
    proc = run("convert", fixture("torch_resnet_tiny.safetensors"), f"{out}/", "--shard-size", "1KB")
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / ".shards.wsurgery-set").exists()
    index = __import__("json").loads((out / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == shard_names(out) and len(shard_names(out)) > 2
    from safetensors.numpy import load_file
    original = load_file(fixture("torch_resnet_tiny.safetensors"))
    written = {}
    for name in shard_names(out):
        written.update(load_file(out / name))
    assert written.keys() == original.keys()
    assert all((written[k] == original[k]).all() for k in original)


def test_a_sharded_write_stopped_with_sigterm_between_its_files_leaves_nothing(tmp_path):
    import signal
    out = killed_between_commits(tmp_path, signal.SIGTERM)
    assert not out.exists(), os.listdir(out)
    assert os.listdir(tmp_path) == []


def test_a_forced_rewrite_killed_midway_never_leaves_the_old_index_over_new_shards(tmp_path):
    import signal
    first = run("convert", fixture("torch_resnet_tiny.safetensors"), f"{tmp_path / 'shards'}/", "--shard-size", "1KB")
    assert first.returncode == 0, first.stderr
    out = killed_between_commits(tmp_path, signal.SIGKILL, "--force")
    # The old index went first: what is left cannot pass for a whole set.
    assert not (out / "model.safetensors.index.json").exists()
    proc = run("convert", fixture("torch_resnet_tiny.safetensors"), f"{out}/", "--shard-size", "1KB", "--force")
    assert proc.returncode == 0, proc.stderr and (out / "model.safetensors.index.json").exists()


def test_a_writer_committing_now_makes_another_writer_of_that_output_fail_73(tmp_path):
    out = tmp_path / "shards"
    a = start("convert", fixture("torch_resnet_tiny.safetensors"), f"{out}/", "--shard-size", "1KB", env={BETWEEN: "3"})
    wait_for_journal(tmp_path / ".shards.wsurgery-set", a)
    b = run("convert", fixture("torch_resnet_tiny.safetensors"), f"{out}/", "--shard-size", "1KB")
    assert b.returncode == 73 and "is committing it now" in b.stderr, b.stderr
    _, err = a.communicate(timeout=60)
    assert a.returncode == 0, err
    assert (out / "model.safetensors.index.json").exists() and not (tmp_path / ".shards.wsurgery-set").exists()


def test_a_run_worker_killed_between_shards_is_resumed_with_skip_existing(tmp_path):
    import signal
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(fixture("torch_resnet_tiny.safetensors"), inputs / "a.safetensors")
    outdir = tmp_path / "out"
    recipe = tmp_path / "shards.yaml"
    recipe.write_text('passes:\n  - convert: {}\noutput: "{stem}/"\nshard-size: 1KB\n')
    args = ["run", str(recipe), str(inputs / "a.safetensors"), "--out-dir", str(outdir), "--skip-existing"]
    proc = start(*args, env={BETWEEN: "30"})
    wait_for_journal(outdir / ".a.wsurgery-set", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    resumed = run(*args)
    assert resumed.returncode == 0, resumed.stderr
    index = __import__("json").loads((outdir / "a" / "model.safetensors.index.json").read_text())
    assert sorted(set(index["weight_map"].values())) == shard_names(outdir / "a")
    assert sorted(os.listdir(outdir)) == ["a"]


# ---------------------------------------------------------------------------------------------------
# run writes through directories opened from --out-dir down with O_NOFOLLOW.


def test_a_directory_swapped_for_a_symlink_during_run_cannot_redirect_a_write(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b"):
        shutil.copy(fixture("keras_cnn.h5"), inputs / f"{name}.h5")
    outdir, outside = tmp_path / "out", tmp_path / "outside"
    (outdir / "sub").mkdir(parents=True)
    outside.mkdir()
    proc = start("run", "--pass", "convert", inputs / "a.h5", inputs / "b.h5", "--out-dir", outdir, "--output", "sub/{stem}.safetensors",
                 env={PAUSE: "2"})
    # While job a waits to commit, sub/ is moved away and replaced by a symlink that leads outside.
    time.sleep(1.0)
    os.rename(outdir / "sub", outdir / "moved")
    os.symlink(outside, outdir / "sub")
    out, err = proc.communicate(timeout=120)
    assert os.listdir(outside) == [], os.listdir(outside)
    # Job a lands in the directory it opened (moved, still inside); job b refuses the symlink.
    assert sorted(os.listdir(outdir / "moved")) == ["a.safetensors"]
    assert proc.returncode == 64, (out, err)
    assert "symlink" in out + err and "b.h5" in out + err


def test_run_refuses_a_symlinked_directory_below_out_dir_even_one_leading_inside(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(fixture("keras_cnn.h5"), inputs / "a.h5")
    outdir = tmp_path / "out"
    (outdir / "real").mkdir(parents=True)
    os.symlink(outdir / "real", outdir / "sub")
    proc = run("run", "--pass", "convert", inputs / "a.h5", "--out-dir", outdir, "--output", "sub/{stem}.safetensors")
    assert proc.returncode == 64 and "symlink" in proc.stderr, proc.stderr
    assert os.listdir(outdir / "real") == []


def test_a_failed_run_output_leaves_no_directories_behind(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "broken.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    shutil.copy(fixture("keras_cnn.h5"), inputs / "good.h5")
    outdir = tmp_path / "out"
    outdir.mkdir()
    proc = run("run", "--pass", "convert", inputs / "broken.h5", inputs / "good.h5", "--out-dir", outdir,
               "--output", "{stem}/deeper/model.safetensors")
    assert proc.returncode != 0
    assert sorted(os.listdir(outdir)) == ["good"] and os.listdir(outdir / "good" / "deeper") == ["model.safetensors"]
    # A job that fails while writing (a full disk) removes the directories it made, too.
    proc = subprocess.run(["bash", "-c", f'trap "" XFSZ; ulimit -f 8; exec "$@"', "_", BIN, "run", "--pass", "convert",
                           str(inputs / "good.h5"), "--out-dir", str(outdir), "--output", "x/y/{stem}.safetensors"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 74, proc.stderr
    assert sorted(os.listdir(outdir)) == ["good"]


def test_a_weights_file_with_its_config_appears_last_so_skip_existing_never_takes_half_a_set(tmp_path):
    import signal
    inputs = tmp_path / "in"
    shutil.copytree(fixture("hf", "resnet"), inputs / "resnet")
    outdir = tmp_path / "out"
    args = ["run", "--pass", "convert", str(inputs / "resnet"), "--out-dir", str(outdir), "--output", "{parent}.safetensors", "--skip-existing"]
    proc = start(*args, env={BETWEEN: "30"})
    wait_for_journal(outdir / ".resnet.safetensors.wsurgery-set", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    # The config went first; the weights, which --skip-existing looks at, are not there yet.
    assert "config.json" in os.listdir(outdir) and not (outdir / "resnet.safetensors").exists()
    resumed = run(*args)
    assert resumed.returncode == 0 and "written" in resumed.stdout, resumed.stdout + resumed.stderr
    assert sorted(n for n in os.listdir(outdir)) == sorted(["resnet.safetensors", "config.json", "preprocessor_config.json"])


def test_a_run_worker_killed_between_shards_is_undone_by_its_run(tmp_path):
    import signal
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b"):
        shutil.copy(fixture("torch_resnet_tiny.safetensors"), inputs / f"{name}.safetensors")
    outdir = tmp_path / "out"
    recipe = tmp_path / "shards.yaml"
    recipe.write_text('passes:\n  - convert: {}\noutput: "{stem}.safetensors"\nshard-size: 1KB\n')
    args = ["run", str(recipe), str(inputs), "--out-dir", str(outdir), "--jobs", "2"]
    proc = start(*args, env={BETWEEN: "5"})
    wait_for_journal(outdir / ".a.safetensors.wsurgery-set", proc)
    # SIGKILL the worker writing a (not run itself): run reports it and undoes its half-committed set.
    workers = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        except OSError:
            continue
        if b"--worker" in cmdline and str(inputs / "a.safetensors").encode() in cmdline:
            workers.append(int(pid))
    assert len(workers) == 1, workers
    os.kill(workers[0], signal.SIGKILL)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode != 0 and "killed by signal 9" in out + err, out + err
    left = sorted(os.listdir(outdir))
    assert not any(n.startswith("a-") or n.startswith(".a.") for n in left), left
    resumed = run(*args)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert (outdir / "a.safetensors.index.json").exists() and (outdir / "b.safetensors.index.json").exists()
