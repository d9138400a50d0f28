"""Run every example of docs/own-data.md: the ```python blocks and the ```sh lines that start with
`lnsynth` or `python -m lnsynth`, in a temporary copy of docs/examples/."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "own-data.md"
EXAMPLES = REPO / "docs" / "examples"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)


PY_BLOCKS = _blocks("python")
SH_LINES = [ln.strip() for b in _blocks("sh") for ln in b.splitlines()
            if ln.strip().startswith(("lnsynth ", "python -m lnsynth "))]


def test_the_doc_has_examples():
    assert len(PY_BLOCKS) >= 4 and len(SH_LINES) >= 5


@pytest.fixture
def workdir(tmp_path):
    for p in EXAMPLES.iterdir():
        shutil.copy(p, tmp_path / p.name)
    return tmp_path


def _env():
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize("i", range(len(PY_BLOCKS)))
def test_python_example_runs(workdir, i):
    script = workdir / f"example_{i}.py"
    script.write_text(PY_BLOCKS[i])
    r = subprocess.run([sys.executable, str(script)], cwd=workdir, capture_output=True, text=True, env=_env(),
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("line", SH_LINES)
def test_cli_example_runs(workdir, line):
    args = shlex.split(line)
    args = args[1:] if args[0] == "lnsynth" else args[3:]
    r = subprocess.run([sys.executable, "-m", "lnsynth", *args], cwd=workdir, capture_output=True, text=True,
                       env=_env(), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    if "--out" in args:
        out = workdir / args[args.index("--out") + 1]
        assert any(out.iterdir())
