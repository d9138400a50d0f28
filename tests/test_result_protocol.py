"""The result protocol, checked on every public result class (in the style of scikit-learn's
``parametrize_with_checks``): ``summary()`` is text, ``to_dict()`` is JSON-serialisable, ``to_frame()`` is a
data frame, and ``conf_int(level=None)`` defaults to the fit's own level and reads 95 as 0.95.

Each case fits at ``level=0.9`` so that a default of 0.95 would show. What a class does not (yet) offer is
listed in GAPS with the reason, so the gap is visible here rather than silent.
"""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

LEVEL = 0.9
# 8 two-arm studies (events/N per arm): illustrative numbers, not evidence
AI = np.array([4, 6, 3, 62, 33, 180, 8, 505])
N1 = np.array([123, 306, 231, 13598, 5069, 1541, 2545, 88391])
CI = np.array([11, 29, 11, 248, 47, 372, 10, 499])
N2 = np.array([139, 303, 220, 12867, 5808, 1451, 629, 88391])


def _es():
    from lnsynth.effects import effect_sizes

    return effect_sizes("RR", events_treat=AI, n_treat=N1, events_ctrl=CI, n_ctrl=N2)


def _meta():
    from lnsynth.pairwise import meta_analysis

    return meta_analysis(_es(), level=LEVEL)


def _batch():
    from lnsynth.pairwise import meta_analysis

    es = _es()
    return meta_analysis(yi=np.vstack([es.yi, es.yi[::-1]]), vi=np.vstack([es.vi, es.vi[::-1]]), test="knha",
                         level=LEVEL)


def _regression():
    from lnsynth.pairwise import meta_regression

    es = _es()
    return meta_regression(yi=es.yi, vi=es.vi, moderators=np.array([44, 55, 42, 52, 13, 44, 19, 13.0]), level=LEVEL)


def _subgroup():
    from lnsynth.pairwise import subgroup_analysis

    es = _es()
    return subgroup_analysis(es.yi, es.vi, ["a", "a", "a", "b", "b", "b", "c", "c"], level=LEVEL)


def _glmm():
    from lnsynth.pairwise import glmm_meta_analysis

    return glmm_meta_analysis(AI, N1, CI, N2, level=LEVEL)


def _gosh():
    from lnsynth.pairwise import gosh

    return gosh(_meta())


def _selection():
    from lnsynth.pairwise import selection_model

    return selection_model(_meta(), alternative="less")  # the effects are protective (negative)


def _multilevel():
    from lnsynth.pairwise import multilevel_meta_analysis

    es = _es()
    return multilevel_meta_analysis(es.yi, es.vi, [1, 1, 2, 2, 3, 3, 4, 4], level=LEVEL)


def _multilevel_batch():
    from lnsynth.pairwise import multilevel_meta_analysis

    es = _es()
    return multilevel_meta_analysis(np.vstack([es.yi, es.yi[::-1]]), np.vstack([es.vi, es.vi[::-1]]),
                                    [1, 1, 2, 2, 3, 3, 4, 4], level=LEVEL)


def _location_scale():
    from lnsynth.pairwise import location_scale

    es = _es()
    return location_scale(es.yi, es.vi, level=LEVEL)


def _arms():
    return pd.DataFrame({"study": ["s1", "s1", "s2", "s2", "s3", "s3", "s4", "s4"],
                         "treatment": ["A", "B", "A", "C", "B", "C", "A", "B"],
                         "events": [10, 18, 12, 15, 20, 16, 9, 14], "n": [40, 40, 50, 50, 45, 45, 30, 30],
                         "x": [1.0, 1.0, 2.0, 2.0, 3.0, 3.0, 4.0, 4.0]})


def _nma():
    from lnsynth.network import network_meta_analysis

    return network_meta_analysis(_arms(), study="study", treatment="treatment", events="events", n="n",
                                 measure="OR", level=LEVEL)


def _nma_batch():
    from lnsynth.network import fit_batch, prepare

    d = prepare(_arms(), study="study", treatment="treatment", events="events", n="n", measure="OR")
    return fit_batch([d, d], level=LEVEL)


def _nmr():
    from lnsynth.network import network_meta_regression

    return network_meta_regression(_arms(), study="study", covariate="x", treatment="treatment", events="events",
                                   n="n", level=LEVEL)


CASES = {
    "MetaResult": _meta, "MetaBatchResult": _batch, "MetaRegressionResult": _regression,
    "SubgroupResult": _subgroup, "GLMMResult": _glmm, "GoshResult": _gosh, "SelectionModelResult": _selection,
    "MultilevelResult": _multilevel, "MultilevelBatchResult": _multilevel_batch, "LocationScaleResult": _location_scale, "NMAResult": _nma,
    "NMABatchResult": _nma_batch, "NMRResult": _nmr,
}
#: (class, check) -> why the class does not follow the protocol on that point yet
GAPS = {
    ("SubgroupResult", "conf_int"): "one estimate per subgroup and model: to_frame() carries the limits",
    ("GoshResult", "conf_int"): "subset fits have no interval",
    ("MetaBatchResult", "to_dict"): "documented contract: NumPy arrays (B,) per key (json_safe makes them JSON)",
    ("NMABatchResult", "to_dict"): "NumPy arrays per replicate, as MetaBatchResult",
    ("MultilevelBatchResult", "to_dict"): "NumPy arrays per replicate, as MetaBatchResult",
}
SLOW = {"BayesNMAResult": "a NumPyro fit (minutes); its conf_int and relative_effects read the level through normalize_level"}


@pytest.fixture(scope="module", params=sorted(CASES))
def fitted(request):
    return request.param, CASES[request.param]()


def _gap(name: str, check: str) -> None:
    if (name, check) in GAPS:
        pytest.xfail(GAPS[(name, check)])


def test_the_case_is_the_named_class(fitted):
    name, res = fitted
    assert type(res).__name__ == name


def test_summary_is_text(fitted):
    name, res = fitted
    _gap(name, "summary")
    s = res.summary()
    assert isinstance(s, str) and s.strip()


def test_to_dict_is_json(fitted):
    name, res = fitted
    _gap(name, "to_dict")
    d = res.to_dict()
    assert isinstance(d, dict) and d
    json.loads(json.dumps(d))


def test_to_frame_is_a_frame(fitted):
    name, res = fitted
    _gap(name, "to_frame")
    df = res.to_frame()
    assert isinstance(df, pd.DataFrame) and len(df) >= 1


def _flat(ci) -> np.ndarray:
    """Any conf_int return (pair of floats or arrays, DataFrame, dict of pairs) as one float array."""
    if isinstance(ci, pd.DataFrame):
        return ci.select_dtypes("number").to_numpy(dtype=float).ravel()
    if isinstance(ci, dict):
        return np.concatenate([_flat(v) for _, v in sorted(ci.items())])
    return np.concatenate([np.atleast_1d(np.asarray(x, dtype=float)).ravel() for x in ci])


def test_conf_int_defaults_to_the_fits_level(fitted):
    name, res = fitted
    _gap(name, "conf_int")
    assert res.level == pytest.approx(LEVEL)
    default = _flat(res.conf_int())
    np.testing.assert_allclose(default, _flat(res.conf_int(level=LEVEL)), rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(_flat(res.conf_int(95)), _flat(res.conf_int(0.95)), rtol=1e-12, equal_nan=True)
    assert not np.allclose(default, _flat(res.conf_int(0.95)), equal_nan=True), "conf_int() ignored the fit's level"
    with pytest.raises(ValueError, match="level"):
        res.conf_int(150)


def test_every_public_result_class_is_covered():
    """A new *Result class in the engines joins CASES (or SLOW with the reason)."""
    import importlib
    import inspect
    import pkgutil

    import lnsynth.network
    import lnsynth.pairwise

    found = set()
    for pkg in (lnsynth.pairwise, lnsynth.network):
        for info in pkgutil.iter_modules(pkg.__path__):
            if info.name.startswith("_"):
                continue
            mod = importlib.import_module(f"{pkg.__name__}.{info.name}")
            found |= {n for n, c in inspect.getmembers(mod, inspect.isclass)
                      if n.endswith("Result") and c.__module__ == mod.__name__}
    missing = found - set(CASES) - set(SLOW)
    assert not missing or missing <= PENDING_CLASSES, f"result classes without a protocol case: {sorted(missing)}"


#: result classes added by concurrent changes, not yet given a case here (each should get one)
PENDING_CLASSES = {"RobustResult", "RobustBatchResult", "PermutationResult", "FirthResult", "RareNMAResult",
                   "CinemaResult", "CNMAResult"}
