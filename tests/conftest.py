import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest_pg import pg_server, pg_url  # noqa: F401 (PostgreSQL fixtures of the store's tests)

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(__file__).resolve().parent / "reference"


def shared_dir() -> Path:
    env = os.environ.get("LNSYNTH_SHARED")
    return Path(env) if env else REPO.parent / "shared"


def _has_metafor() -> bool:
    if shutil.which("Rscript") is None:
        return False
    try:
        r = subprocess.run(["Rscript", "-e", "library(metafor)"], capture_output=True, timeout=120)
    except Exception:
        return False
    return r.returncode == 0


HAS_R = _has_metafor()
needs_r = pytest.mark.skipif(not HAS_R, reason="Rscript with metafor not found (CI installs r-base-core r-cran-metafor)")


@pytest.fixture(scope="session")
def source_text_path() -> Path:
    p = shared_dir() / "sources" / "peleg2020-cjasn-calcineurin-inhibitors-lupus-nephritis.md"
    if not p.exists():
        pytest.skip(f"source text not present at {p}")
    return p


@pytest.fixture(scope="session")
def packaged_answers():
    """The package evidence and every clinical question's answer, computed once per test session (the
    answers take seconds; several test files read them): ``(ev, {question id: Answer})``."""
    from lnsynth.analyses.answer import answer_all
    from lnsynth.evidence import load_evidence

    ev = load_evidence()
    return ev, {a.id: a for a in answer_all(ev)}


@pytest.fixture(scope="session")
def ev(packaged_answers):
    return packaged_answers[0]


@pytest.fixture(scope="session")
def answers(packaged_answers):
    return packaged_answers[1]
