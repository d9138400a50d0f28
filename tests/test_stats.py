"""The shared levels/critical-values module: one rule for 0.95 and 95 at every result."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import special

from lnsynth import registry
from lnsynth.stats import (
    Z95,
    ConfidenceInterval,
    back_ci,
    back_value,
    critical_value,
    normalize_level,
    wald_ci,
)


@pytest.mark.parametrize("given, expected", [(0.95, 0.95), (95, 0.95), ("95", 0.95), (0.5, 0.5), (99.9, 0.999),
                                             (1.5, 0.015)])
def test_normalize_level_fraction_or_percentage(given, expected):
    assert normalize_level(given) == pytest.approx(expected, rel=1e-15)


@pytest.mark.parametrize("bad", [0, 1, 100, 150, -0.5, float("nan"), "x", None])
def test_normalize_level_rejects(bad):
    with pytest.raises(ValueError, match="level must be in"):
        normalize_level(bad)


def test_normalize_level_default_is_the_fits():
    assert normalize_level(None, 0.9) == 0.9
    assert normalize_level(80, 0.9) == pytest.approx(0.8)


def test_critical_values_equal_scipy():
    assert Z95 == float(special.ndtri(0.975))
    assert critical_value(95) == Z95
    for lev in (0.5, 0.8, 0.9, 0.99, 0.999):
        assert critical_value(lev) == float(special.ndtri(1 - (1 - lev) / 2))
        assert critical_value(lev, df=7) == float(special.stdtrit(7, 1 - (1 - lev) / 2))


def test_confidence_interval_is_a_pair():
    ci = wald_ci(1.0, 0.5)
    lo, hi = ci
    assert isinstance(ci, ConfidenceInterval) and (lo, hi) == (ci.low, ci.high)
    assert ci == pytest.approx((1.0 - 0.5 * Z95, 1.0 + 0.5 * Z95), rel=1e-15)
    assert wald_ci(1.0, 0.5, 90).high < ci.high


@pytest.mark.parametrize("code", registry.measure_codes())
def test_back_value_follows_the_registry(code):
    x = 0.3
    if registry.is_ratio(code):
        assert back_value(code, x) == math.exp(x)
        assert back_ci(code, (-x, x)) == (math.exp(-x), math.exp(x))
    elif registry.measure(code).back_transform == "identity":
        assert back_value(code, x) == x


def _two_arm_network():
    return pd.DataFrame({"study": ["s1", "s1", "s2", "s2", "s3", "s3"], "treatment": ["A", "B", "A", "B", "A", "C"],
                         "events": [3, 8, 5, 9, 4, 7], "n": [40, 40, 50, 50, 30, 30]})


def test_every_level_check_agrees_on_95():
    """The pairwise, Mantel-Haenszel, GLMM and network fits take 95 as 0.95 (they disagreed before)."""
    from lnsynth.network import network_meta_analysis
    from lnsynth.pairwise import meta_analysis
    from lnsynth.pairwise.mh import peto_core

    yi, vi = np.array([0.1, 0.3, -0.2, 0.5]), np.array([0.04, 0.09, 0.05, 0.12])
    a, b = meta_analysis(yi=yi, vi=vi, level=0.95), meta_analysis(yi=yi, vi=vi, level=95)
    assert (a.ci_low, a.ci_high) == (b.ci_low, b.ci_high)
    assert a.conf_int() == a.conf_int(95) == pytest.approx((a.ci_low, a.ci_high), rel=1e-12)
    p1, p2 = peto_core([3, 5], [37, 45], [8, 9], [32, 41], level=0.95), peto_core([3, 5], [37, 45], [8, 9], [32, 41], level=95)
    assert p1["ci_low"] == p2["ci_low"]
    df = _two_arm_network()
    n1 = network_meta_analysis(df, study="study", treatment="treatment", events="events", n="n", measure="OR", level=0.95)
    n2 = network_meta_analysis(df, study="study", treatment="treatment", events="events", n="n", measure="OR", level=95)
    pd.testing.assert_frame_equal(n1.relative_effects(), n2.relative_effects())
    pd.testing.assert_frame_equal(n1.conf_int(), n1.conf_int(95))
