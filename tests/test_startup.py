"""Start-up: a single analysis runs core.py interpreted (no numba), with the same numbers.

Timing itself is measured by ``benchmarks/startup.py``, never asserted here.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lnsynth.pairwise import _kernels
from lnsynth.pairwise.core import METHOD_CODES, OUT_FIELDS

ROOT = Path(__file__).resolve().parents[1]


def _batch(rng, B, kmax):
    K = rng.integers(1, kmax + 1, size=B)
    Y = rng.normal(0.0, 0.6, size=(B, kmax))
    V = rng.uniform(0.005, 0.8, size=(B, kmax)) ** rng.uniform(0.5, 2.0, size=(B, 1))
    cols = np.arange(kmax)[None, :]
    Y = np.where(cols < K[:, None], Y, 0.0)
    V = np.where(cols < K[:, None], V, np.inf)  # absent studies: weight 0, as the API encodes them
    return np.ascontiguousarray(Y), np.ascontiguousarray(V), K.astype(np.int64)


@pytest.mark.parametrize("method", list(METHOD_CODES))
@pytest.mark.parametrize("knha", [False, True])
def test_interpreted_kernels_equal_compiled(method, knha):
    rng = np.random.default_rng(20261201 + METHOD_CODES[method])
    Y, V, K = _batch(rng, 60, 25)
    a = _kernels.interpreted().fit_batch(Y, V, K, method, knha, True, 0.95, parallel=False)
    b = _kernels.compiled().fit_batch(Y, V, K, method, knha, True, 0.95, parallel=False)
    for f in OUT_FIELDS:
        np.testing.assert_allclose(a[f], b[f], rtol=1e-12, atol=1e-14, err_msg=f"{method} {f}")


def test_selection_rule(monkeypatch):
    monkeypatch.delenv("LNSYNTH_JIT", raising=False)
    assert _kernels.kernels(_kernels.COMPILED_FROM) is _kernels.compiled()
    monkeypatch.setenv("LNSYNTH_JIT", "0")
    assert _kernels.kernels(10**6) is _kernels.interpreted()
    monkeypatch.setenv("LNSYNTH_JIT", "1")
    assert _kernels.kernels(1) is _kernels.compiled()


def test_cli_meta_does_not_import_numba(tmp_path):
    """``lnsynth meta`` on a file fits one analysis: numba is neither compiled nor loaded."""
    code = ("import sys, runpy; sys.argv = ['lnsynth', 'meta', '--input', sys.argv[1], '--format', 'json', "
            "'--out', sys.argv[2], '--plot', '']\n"
            "try:\n    runpy.run_module('lnsynth', run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "sys.stderr.write('NUMBA=%s\\n' % ('numba' in sys.modules))\n")
    env = {k: v for k, v in os.environ.items() if k != "LNSYNTH_JIT"}
    r = subprocess.run([sys.executable, "-c", code, str(ROOT / "docs/examples/bcg.csv"), str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "NUMBA=False" in r.stderr
    out = json.loads(r.stdout)
    ref = json.loads((ROOT / "tests/reference/pairwise_reference.json").read_text())
    case = next(c for c in ref["cases"] if c["dataset"] == "bcg_logRR" and c["method"] == "REML" and c["test"] == "z")
    np.testing.assert_allclose(out["log_estimate"], case["estimate"], rtol=1e-7)
