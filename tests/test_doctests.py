"""The examples in the docstrings run: doctest over every lnsynth module that has one.

A module whose examples take long (they answer every question on the package evidence or build a
simulator bank) is listed in SLOW with the reason and left to the tests that cover the same call.
"""
from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

import lnsynth

PKG = Path(lnsynth.__file__).resolve().parent

SLOW = {
    "lnsynth.analyses.answer": "answers every catalogued question (~30 s); tests/test_analyses.py covers answer()",
    "lnsynth.analyses.sensitivity": "runs every sensitivity analysis of a question (~30 s); tests/test_sensitivity.py",
    "lnsynth.simulate.null": "builds the meta-analytic null over the stored trials (~25 s); tests/test_simulate_validation.py",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(_module_name(p) for p in PKG.rglob("*.py")
                 if ">>> " in p.read_text(encoding="utf-8") and p.name != "__main__.py")


def test_doctest_modules_found():
    assert {"lnsynth.stats", "lnsynth.registry", "lnsynth.network", "lnsynth.pairwise.api"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    if name in SLOW:
        pytest.skip(SLOW[name])
    mod = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    out: list[str] = []
    for test in finder.find(mod, name):
        runner.run(test, out=out.append)
    res = runner.summarize(verbose=False)
    assert res.failed == 0, "".join(out)
