"""Run every example of the docs/*.md pages: the ```python blocks and the ```sh lines that start with
`lnsynth` or `python -m lnsynth`, in a temporary copy of docs/examples/ (pages without such blocks, e.g.
the evidence schema's YAML, contribute nothing)."""
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
DOCS = REPO / "docs"
EXAMPLES = DOCS / "examples"
PAGES = sorted(DOCS.glob("*.md"))
TASK_PAGES = ("own-data.md", "subgroup-and-regression.md", "network.md", "figures.md", "clinical-questions.md")


def _blocks(doc: Path, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", doc.read_text(), flags=re.S | re.M)


def _sh_lines(doc: Path) -> list[str]:
    return [ln.strip() for b in _blocks(doc, "sh") for ln in b.splitlines()
            if ln.strip().startswith(("lnsynth ", "python -m lnsynth "))]


PY_BLOCKS = [(p.name, i, b) for p in PAGES for i, b in enumerate(_blocks(p, "python"))]
SH_LINES = [(p.name, ln) for p in PAGES for ln in _sh_lines(p)]


def test_the_doc_has_examples():
    own = DOCS / "own-data.md"
    assert len(_blocks(own, "python")) >= 4 and len(_sh_lines(own)) >= 5


@pytest.mark.parametrize("page", TASK_PAGES)
def test_every_task_page_has_runnable_examples(page):
    doc = DOCS / page
    assert doc.exists(), page
    assert _blocks(doc, "python") and _sh_lines(doc), f"{page}: needs ```python and ```sh examples"


@pytest.fixture
def workdir(tmp_path):
    for p in EXAMPLES.iterdir():
        shutil.copy(p, tmp_path / p.name)
    return tmp_path


def _env():
    env = dict(os.environ, MPLBACKEND="Agg")
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env


@pytest.mark.parametrize("page,i,code", PY_BLOCKS, ids=[f"{p}-{i}" for p, i, _ in PY_BLOCKS])
def test_python_example_runs(workdir, page, i, code):
    script = workdir / f"example_{i}.py"
    script.write_text(code)
    r = subprocess.run([sys.executable, str(script)], cwd=workdir, capture_output=True, text=True, env=_env(),
                       timeout=600)
    assert r.returncode == 0, f"{page}, python block {i}:\n" + r.stdout + r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("page,line", SH_LINES, ids=[f"{p}: {ln}" for p, ln in SH_LINES])
def test_cli_example_runs(workdir, page, line):
    args = shlex.split(line)
    args = args[1:] if args[0] == "lnsynth" else args[3:]
    r = subprocess.run([sys.executable, "-m", "lnsynth", *args], cwd=workdir, capture_output=True, text=True,
                       env=_env(), timeout=600)
    assert r.returncode == 0, f"{page}: {line}\n" + r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    if "--out" in args:
        out = workdir / args[args.index("--out") + 1]
        assert any(out.iterdir())
