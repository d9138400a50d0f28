"""Clinical answers record the model's warnings and convergence instead of silencing them."""

from __future__ import annotations

import json
import warnings

import pytest

import lnsynth.pairwise as pairwise
from lnsynth.analyses.answer import answer, fit_diagnostics
from lnsynth.evidence import load_evidence


@pytest.fixture(scope="module")
def ev():
    return load_evidence()


def test_single_trial_warning_is_recorded(ev):
    a = answer(ev, "csa-vs-cyc")
    o = next(o for o in a.outcomes if o.k == 1 and o.result is not None)
    d = o.to_dict()
    assert any("k = 1: tau^2 set to 0" in w for w in d["warnings"])
    assert d["converged"] is True and d["n_maxima"] == 1
    json.dumps(d["warnings"])  # part of the JSON contract


def test_forced_nonconvergence_shows_in_answer(monkeypatch):
    ev = load_evidence()  # a fresh object: answers are cached per evidence object
    real = pairwise.meta_analysis

    def failing(*args, **kwargs):
        res = real(*args, **kwargs)
        warnings.warn("REML did not converge (forced by the test)", RuntimeWarning)
        object.__setattr__(res, "converged", False)
        return res

    monkeypatch.setattr(pairwise, "meta_analysis", failing)
    a = answer(ev, "csa-vs-cyc")
    fitted = [o.to_dict() for o in a.outcomes if o.result is not None]
    assert fitted
    for d in fitted:
        assert "RuntimeWarning: REML did not converge (forced by the test)" in d["warnings"]
        assert d["converged"] is False


def test_fit_diagnostics_without_flags():
    class Bare:
        pass

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("x", UserWarning)
        warnings.warn("x", UserWarning)
    d = fit_diagnostics(Bare(), caught)
    assert d == {"warnings": ("UserWarning: x",), "converged": None, "n_maxima": None}
