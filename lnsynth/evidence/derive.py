"""Rules for numbers derived from printed ones (counts from percentages, arm sizes).

These are the only rules the data files use; each derived record quotes its rule.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Union

Number = Union[int, float]


def decimals_of(printed: Number) -> int:
    """Number of decimals a printed value shows (``63.0`` -> 1, ``65`` -> 0, ``5.47`` -> 2)."""
    if isinstance(printed, int):
        return 0
    s = repr(float(printed))
    return len(s.split(".")[1]) if "." in s and "e" not in s else 0


def round_half_up(x: float, decimals: int) -> Decimal:
    q = Decimal(1).scaleb(-decimals)
    return Decimal(repr(x)).quantize(q, rounding=ROUND_HALF_UP)


def percent_of(events: int, n: int, decimals: int) -> Decimal:
    """100*events/n rounded half-up to ``decimals`` (exact rational arithmetic)."""
    q = Decimal(1).scaleb(-decimals)
    return (Decimal(100 * events) / Decimal(n)).quantize(q, rounding=ROUND_HALF_UP)


def count_candidates(percent: Number, n: int) -> list[int]:
    """Every count ``e`` in ``0..n`` whose percentage ``100*e/n``, rounded to the printed
    number of decimals, equals the printed percentage. Empty when none reproduces it."""
    d = decimals_of(percent)
    target = Decimal(repr(float(percent))).quantize(Decimal(1).scaleb(-d)) if d else Decimal(int(round(percent)))
    return [e for e in range(n + 1) if percent_of(e, n, d) == target]


def nearest_count(percent: Number, n: int) -> int:
    """``round(pct/100*n)`` (half up): the rule used for derived counts."""
    return int(round_half_up(float(percent) / 100.0 * n, 0))


def n_candidates(percent: Number, max_n: int, min_n: int = 1) -> list[tuple[int, int]]:
    """All (events, n) with ``min_n <= n <= max_n`` reproducing the printed percentage."""
    out = []
    for n in range(min_n, max_n + 1):
        for e in count_candidates(percent, n):
            out.append((e, n))
    return out
