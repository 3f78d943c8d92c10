"""run as an array job: Slurm (a real single-node cluster started here), Kubernetes Indexed Jobs and GNU
parallel through their environment contracts, using the scripts the README shows (examples/array-jobs)."""
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest
from safetensors.numpy import load_file

from conftest import BIN, ROOT, fixture, wsurgery

EXAMPLES = os.path.join(ROOT, "examples", "array-jobs")
RECIPE = "passes:\n  - collapse-channels: {mode: sum}\noutput: \"{parent}-{stem}{ext}\"\n"


@pytest.fixture
def job(tmp_path):
    """A working directory as the examples expect it: recipe.yaml and inputs/ with 5 checkpoints."""
    work = tmp_path / "job"
    (work / "inputs" / "a").mkdir(parents=True)
    (work / "inputs" / "b").mkdir()
    (work / "recipe.yaml").write_text(RECIPE)
    shutil.copy(fixture("keras_cnn.h5"), work / "inputs" / "a" / "cnn.h5")
    shutil.copy(fixture("keras_cnn.h5"), work / "inputs" / "b" / "cnn.h5")
    shutil.copy(fixture("keras_cnn.keras"), work / "inputs" / "a" / "cnn.keras")
    shutil.copy(fixture("torch_resnet_tiny.safetensors"), work / "inputs" / "a" / "resnet.safetensors")
    shutil.copy(fixture("torch_resnet_tiny.safetensors"), work / "inputs" / "b" / "resnet.safetensors")
    return work


def env_with_wsurgery(**extra):
    """The environment with the binary under test first on PATH, as `wsurgery`, and no scheduler variables."""
    bindir = os.path.join(os.path.dirname(BIN), "wsurgery-on-path")
    os.makedirs(bindir, exist_ok=True)
    link = os.path.join(bindir, "wsurgery")
    if not os.path.lexists(link):
        os.symlink(BIN, link)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "PARALLEL_", "JOB_COMPLETION"))}
    env["PATH"] = bindir + os.pathsep + env["PATH"]
    env.update({k: str(v) for k, v in extra.items()})
    return env


def check_complete(work):
    """Every input converted exactly once, every output loads, the merged report lists them all."""
    reports = sorted(os.listdir(work / "reports"))
    seen = []
    for name in reports:
        report = json.loads((work / "reports" / name).read_text())
        assert report["shard_source"] != "option" and report["inputs_total"] == 5
        seen += [f["input"] for f in report["files"] if f["status"] == "written"]
    assert len(seen) == 5 and len(set(seen)) == 5, seen
    outputs = sorted(os.listdir(work / "out"))
    assert outputs == ["a-cnn.h5", "a-cnn.keras", "a-resnet.safetensors", "b-cnn.h5", "b-resnet.safetensors"]
    for name in outputs:
        if name.endswith(".safetensors"):
            assert load_file(work / "out" / name)["conv1.weight"].shape[1] == 1
    merged = wsurgery("run", "--merge-reports", work / "reports", "--json")
    summary = json.loads(merged.stdout)
    assert summary["counts"]["written"] == 5 and summary["missing_slices"] == [] and summary["slices"] == 3
    return summary


def test_kubernetes_indexed_job_manifest(job):
    manifest = open(os.path.join(EXAMPLES, "indexed-job.yaml")).read()
    completions = int(re.search(r"^\s*completions:\s*(\d+)", manifest, re.M).group(1))
    # The container's command is a YAML flow sequence of double-quoted strings: JSON.
    command = json.loads(re.search(r"^\s*command:\s*(\[.*\])\s*$", manifest, re.M).group(1))
    assert command[0] == "wsurgery" and command[command.index("--shard-count") + 1] == str(completions)
    for index in range(completions):
        # What the Job controller does: JOB_COMPLETION_INDEX in the environment and $(VAR) expanded.
        args = [a.replace("$(JOB_COMPLETION_INDEX)", str(index)) for a in command]
        subprocess.run(args, cwd=job, env=env_with_wsurgery(JOB_COMPLETION_INDEX=index), check=True, capture_output=True)
    check_complete(job)


@pytest.mark.skipif(shutil.which("parallel") is None, reason="GNU parallel is not installed (scripts/install-test-deps.sh installs it)")
def test_gnu_parallel_script(job):
    proc = subprocess.run(["bash", os.path.join(EXAMPLES, "parallel.sh")], cwd=job, env=env_with_wsurgery(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    summary = check_complete(job)
    assert {json.loads((job / "reports" / n).read_text())["shard_source"] for n in os.listdir(job / "reports")} == {"gnu-parallel"}
    assert len(summary["reports"]) == 3


def test_clashes_across_slices_are_refused_by_every_task(job):
    # a/cnn.h5 and b/cnn.h5 both map to cnn.h5, and fall in different slices.
    for index in range(3):
        proc = subprocess.run([BIN, "run", "--pass", "convert", job / "inputs", "--out-dir", job / "out", "--output", "{stem}{ext}",
                               "--shard", "auto", "--shard-count", "3"], env=env_with_wsurgery(JOB_COMPLETION_INDEX=index),
                              capture_output=True, text=True)
        assert proc.returncode == 64 and "names the same output" in proc.stderr, proc.stderr
    assert not (job / "out").exists()


def test_resubmitted_tasks_resume_and_merge_keeps_the_success(job):
    def task(index, expect=0):
        proc = subprocess.run([BIN, "run", "recipe.yaml", "inputs/", "--out-dir", "out/", "--shard", "auto", "--shard-count", "3",
                               "--report", f"reports/task-{index}.json"], cwd=job, env=env_with_wsurgery(JOB_COMPLETION_INDEX=index),
                              capture_output=True, text=True)
        assert proc.returncode == expect, proc.stderr
        return json.loads((job / "reports" / f"task-{index}.json").read_text())

    for index in range(3):
        task(index)
    stamps = {n: os.stat(job / "out" / n).st_mtime_ns for n in os.listdir(job / "out")}
    # Slice 1 lost an output (a node died): the re-submitted array redoes only that one.
    lost = json.loads((job / "reports" / "task-1.json").read_text())["files"][0]["output"]
    os.remove(job / lost)
    reports = [task(index) for index in range(3)]
    statuses = sorted(f["status"] for r in reports for f in r["files"])
    assert statuses == ["up-to-date"] * 4 + ["written"]
    for name, stamp in stamps.items():
        if job / "out" / name != job / lost:
            assert os.stat(job / "out" / name).st_mtime_ns == stamp, name
    summary = json.loads(wsurgery("run", "--merge-reports", job / "reports", "--json").stdout)
    assert summary["counts"]["written"] + summary["counts"]["up-to-date"] == 5
    # An input that changed since is not up to date: its existing output is refused (--force replaces it).
    changed = job / "inputs" / "a" / "resnet.safetensors"
    data = bytearray(changed.read_bytes())
    data[-1] ^= 1
    changed.write_bytes(bytes(data))
    results = []
    for index in range(3):
        proc = subprocess.run([BIN, "run", "recipe.yaml", "inputs/", "--out-dir", "out/", "--shard", "auto", "--shard-count", "3", "--json"],
                              cwd=job, env=env_with_wsurgery(JOB_COMPLETION_INDEX=index), capture_output=True, text=True)
        results += [(proc.returncode, f) for f in json.loads(proc.stdout)["files"]]
    failed = [f for _, f in results if f["status"] == "failed"]
    assert [f["input"] for f in failed] == ["inputs/a/resnet.safetensors"] and "exists" in failed[0]["error"]
    # A missing task report is named and makes the merge fail with 66.
    os.remove(job / "reports" / "task-2.json")
    proc = wsurgery("run", "--merge-reports", job / "reports", expect=66)
    assert "no report for slice(s) 2/3" in proc.stdout + proc.stderr


class SlurmCluster:
    """slurmctld, slurmd and (when not running) munged on this machine, configured for localhost in a
    scratch folder; stop() kills what start() started, by pid file."""

    def __init__(self, scratch):
        self.scratch = str(scratch)
        self.conf = os.path.join(self.scratch, "slurm.conf")
        self.started = []

    def start(self):
        s, host = self.scratch, socket.gethostname().split(".")[0]
        for d in ("state", "spool"):
            os.makedirs(os.path.join(s, d), exist_ok=True)
        with open(self.conf, "w") as f:
            f.write("\n".join([
                "ClusterName=wsurgery", f"SlurmctldHost={host}", "AuthType=auth/munge", "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none", "SchedulerType=sched/builtin", "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core",
                "SlurmUser=root", "SlurmdUser=root", "ReturnToService=2", "JobAcctGatherType=jobacct_gather/none",
                f"StateSaveLocation={s}/state", f"SlurmdSpoolDir={s}/spool", f"SlurmctldPidFile={s}/slurmctld.pid",
                f"SlurmdPidFile={s}/slurmd.pid", f"SlurmctldLogFile={s}/slurmctld.log", f"SlurmdLogFile={s}/slurmd.log",
                f"NodeName={host} CPUs={os.cpu_count()} State=UNKNOWN",
                f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP", ""]))
        with open(os.path.join(s, "cgroup.conf"), "w") as f:
            f.write("CgroupPlugin=autodetect\nIgnoreSystemd=yes\n")
        env = dict(os.environ, SLURM_CONF=self.conf)
        if not os.path.exists("/run/munge/munged.pid") or subprocess.run(["pgrep", "-x", "munged"], capture_output=True).returncode != 0:
            os.makedirs("/run/munge", exist_ok=True)
            subprocess.run(["chown", "-R", "munge:munge", "/etc/munge", "/run/munge", "/var/lib/munge", "/var/log/munge"], check=True)
            subprocess.run(["runuser", "-u", "munge", "--", "munged", "--force"], check=True)
            self.started.append("/run/munge/munged.pid")
        subprocess.run(["slurmctld"], env=env, check=True)
        self.started.append(os.path.join(s, "slurmctld.pid"))
        subprocess.run(["slurmd"], env=env, check=True)
        self.started.append(os.path.join(s, "slurmd.pid"))
        for _ in range(60):
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], env=env, capture_output=True, text=True).stdout.strip()
            if state == "idle":
                return env
            time.sleep(0.5)
        raise RuntimeError(f"the Slurm node did not become idle (state '{state}'); see {s}/slurmctld.log and slurmd.log")

    def stop(self):
        for pidfile in reversed(self.started):
            try:
                os.kill(int(open(pidfile).read().strip()), 15)
            except (OSError, ValueError):
                pass
        time.sleep(1)


def slurm_unavailable():
    missing = [tool for tool in ("sbatch", "slurmctld", "slurmd", "munged") if shutil.which(tool) is None]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing; scripts/install-test-deps.sh installs slurm-wlm and munge)"
    if os.geteuid() != 0:
        return "starting slurmd and munged needs root"
    if subprocess.run(["pgrep", "-x", "slurmctld"], capture_output=True).returncode == 0:
        return "a slurmctld is already running on this machine"
    return None


def test_slurm_array_job_on_a_real_cluster(job, tmp_path):
    reason = slurm_unavailable()
    if reason:
        print(f"SKIPPED the Slurm test: {reason}")
        pytest.skip(reason)
    cluster = SlurmCluster(tmp_path / "slurm")
    try:
        env = cluster.start()
        env.update({k: v for k, v in env_with_wsurgery().items() if k == "PATH"})
        proc = subprocess.run(["sbatch", "--wait", os.path.join(EXAMPLES, "convert.sbatch")], cwd=job, env=env,
                              capture_output=True, text=True, timeout=300)
        logs = "".join(open(job / n).read() for n in os.listdir(job) if n.endswith(".out"))
        assert proc.returncode == 0, proc.stdout + proc.stderr + logs
        summary = check_complete(job)
        sources = {json.loads((job / "reports" / n).read_text())["shard_source"] for n in os.listdir(job / "reports")}
        assert sources == {"slurm"} and sorted(os.listdir(job / "reports")) == ["task-1.json", "task-2.json", "task-3.json"]
        assert len(summary["files"]) == 5
    finally:
        cluster.stop()


def test_readme_shows_the_tested_scripts():
    readme = open(os.path.join(ROOT, "README.md")).read()
    for name in ("convert.sbatch", "indexed-job.yaml"):
        text = open(os.path.join(EXAMPLES, name)).read()
        assert text.strip() in readme, f"README does not show examples/array-jobs/{name} as it is"
    line = [l for l in open(os.path.join(EXAMPLES, "parallel.sh")).read().splitlines() if l.startswith("parallel ")][0]
    assert line in readme
