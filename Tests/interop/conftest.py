import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "fixtures")
BIN = os.environ.get("WSURGERY_BIN", os.path.join(ROOT, ".build", "debug", "wsurgery"))


def fixture(*parts):
    return os.path.join(FIXTURES, *parts)


def wsurgery(*args, expect=0):
    """Runs the wsurgery binary and checks its exit code."""
    proc = subprocess.run([BIN, *map(str, args)], capture_output=True, text=True)
    assert proc.returncode == expect, f"exit {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
    return proc


@pytest.fixture
def out(tmp_path):
    return tmp_path
