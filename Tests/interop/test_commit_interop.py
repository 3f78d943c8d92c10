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
    (dst / "model.safetensors.index.json").write_bytes(b"theirs")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 73, err
    # Its shard, config and README were linked before the index failed, and removed again.
    assert sorted(os.listdir(dst)) == ["model.safetensors.index.json"], os.listdir(dst)
    assert (dst / "model.safetensors.index.json").read_bytes() == b"theirs"


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
