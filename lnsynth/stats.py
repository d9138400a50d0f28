"""Levels, critical values, confidence intervals and scalar back-transforms shared by every result.

One place for what each result class and surface used to recompute:

* :func:`normalize_level` accepts a level as a fraction (0.95) or a percentage (95, metafor's
  ``level = 95``) and returns the fraction, or raises one error message;
* :func:`critical_value` gives the two-sided normal (or Student t) quantile of a level, with the
  exact double :data:`Z95` for 95%;
* :class:`ConfidenceInterval` is the ``(low, high)`` pair a ``conf_int`` returns for one estimate;
* :func:`wald_ci` and :func:`back_value` compute a per-study or pooled interval on the model scale
  and take a model-scale value to the natural scale through :mod:`lnsynth.registry`.

Only the standard library and the registry are imported at module level (scipy only for a level
other than 95% or a t quantile).

>>> normalize_level(95)
0.95
>>> critical_value(0.95) == Z95
True
>>> ci = wald_ci(0.0, 1.0)
>>> round(ci.low, 4), round(ci.high, 4)
(-1.96, 1.96)
>>> back_value("RR", 0.0), back_value("RD", 0.25)
(1.0, 0.25)
"""

from __future__ import annotations

import math
from typing import NamedTuple

from lnsynth import registry

__all__ = ["Z95", "DEFAULT_LEVEL", "ConfidenceInterval", "normalize_level", "critical_value", "wald_ci",
           "back_value", "back_ci"]

#: The two-sided 95% standard-normal critical value, ``scipy.special.ndtri(0.975)`` to the last bit.
Z95: float = 1.959963984540054

#: The confidence level every fit uses unless it is given another.
DEFAULT_LEVEL: float = 0.95


class ConfidenceInterval(NamedTuple):
    """A confidence (or credible) interval of one estimate: ``low, high = ci`` still unpacks."""

    low: float
    high: float


def normalize_level(level: float | int | str | None, default: float | None = None) -> float:
    """The confidence level as a fraction in (0, 1).

    Parameters
    ----------
    level : float, int, str or None
        ``0.95`` or ``95`` (a percentage, as metafor's ``level``); None gives ``default``.
    default : float, optional
        The level used when ``level`` is None (a fit's own level); None means ``level`` is required.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        When the level is not a number in (0, 1) or a percentage in (1, 100).

    Examples
    --------
    >>> normalize_level(0.9), normalize_level(90), normalize_level(None, 0.95)
    (0.9, 0.9, 0.95)
    """
    if level is None:
        if default is None:
            raise ValueError("level must be in (0, 1) (or a percentage), got None")
        level = default
    try:
        value = float(level)
    except (TypeError, ValueError):
        raise ValueError(f"level must be in (0, 1) (or a percentage), got {level!r}") from None
    if 1.0 < value < 100.0:
        value /= 100.0
    if not 0.0 < value < 1.0:
        raise ValueError(f"level must be in (0, 1) (or a percentage), got {level}")
    return value


def critical_value(level: float | int = DEFAULT_LEVEL, df: float | None = None) -> float:
    """Two-sided critical value of ``level``: the normal quantile, or Student t with ``df`` degrees of freedom.

    Examples
    --------
    >>> round(critical_value(90), 6)
    1.644854
    >>> round(critical_value(0.95, df=10), 6)
    2.228139
    """
    lev = normalize_level(level)
    q = 1.0 - (1.0 - lev) / 2.0
    if df is not None:
        from scipy import special

        return float(special.stdtrit(df, q))
    if abs(lev - 0.95) < 1e-12:
        return Z95
    from scipy import special

    return float(special.ndtri(q))


def wald_ci(estimate: float, se: float, level: float | int = DEFAULT_LEVEL, df: float | None = None) -> ConfidenceInterval:
    """``estimate -/+ crit * se`` on the model scale (normal, or t with ``df``)."""
    half = critical_value(level, df) * float(se)
    return ConfidenceInterval(float(estimate) - half, float(estimate) + half)


def back_value(measure: str | None, x: float) -> float:
    """One model-scale value on the natural scale: ``exp`` for a ratio measure (registry), else as is.

    Unlike :func:`lnsynth.registry.back_transform` (arrays, every transform) this returns a Python
    float computed with :func:`math.exp`, as the summaries print it.
    """
    return math.exp(x) if registry.is_ratio(measure) else x


def back_ci(measure: str | None, ci: tuple[float, float]) -> ConfidenceInterval:
    """Both limits of a model-scale interval on the natural scale (see :func:`back_value`)."""
    return ConfidenceInterval(back_value(measure, ci[0]), back_value(measure, ci[1]))
