"""Predict a trial from its design (``lnsynth simulate predict``, issue 23).

Models: ``mbma`` (:mod:`lnsynth.simulate.mbma`), ``null`` (the validation protocol's random-effects null,
:mod:`lnsynth.simulate.null`, pooled over the stored rows), ``stacked`` (mixture of the two with the stacking
weights frozen in ``params/predict.yaml``; the simulator's weight is dropped and the rest renormalised
because the simulator needs a hand-written protocol and cannot read a design file) and ``simulator``
(refused for design files: exit 2 with the reason).

No outcome of a trial named in the design is ever read: every stored trial whose id matches a design trial
is removed from the training rows of both models before fitting (:func:`training_items`).

Output: ``{model, rows: [{trial, arm, endpoint_family, week, n, pmf, mean, low, high}]}``; ``pmf`` the
predictive probability of each count 0..n, ``low``/``high`` the central 95% interval of the count.
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import numpy as np

from .design import REGIMEN_CLASS, DesignError, Row, TrialDesign, stored_targets

MODELS = ("stacked", "mbma", "null", "simulator")
LEVEL = 0.95


def training_items(exclude=(), sets: tuple[str, ...] = ("loto", "external"), year_max: int | None = None,
                   only_sets: tuple[str, ...] | None = None):
    """Stored rows for fitting: [(design, row, events)] and the matching null pool [Target], without any trial
    whose id is in ``exclude`` (and, with ``year_max``, only trials published up to that year)."""
    ex = linked(exclude)
    items, pool = [], []
    for d, t, k in stored_targets(None, tuple(sets)):
        if d.id in ex or (year_max is not None and (d.year or 9999) > year_max):
            continue
        if only_sets is not None and t.set not in only_sets:
            continue
        items.append((d, d.rows[k], d.events[k]))
        pool.append(t)
    return items, pool


def linked(ids) -> set[str]:
    """``ids`` plus every stored trial that follows the same patients (``same_patients`` in params/design.yaml)."""
    from .design import design_params

    dp = design_params()["trials"]
    out = set(ids)
    for i in list(out):
        out.update((dp.get(i) or {}).get("same_patients") or [])
    return out


@lru_cache(maxsize=32)
def _fit_cached(key: tuple):
    from . import mbma

    exclude, sets, year_max, only = key
    items, _ = training_items(exclude, sets, year_max, only)
    return mbma.fit(items)


def mbma_fit(exclude=(), sets=("loto", "external"), year_max=None, only_sets=None):
    """MBMA fit on the stored rows without the trials in ``exclude`` (cached per process)."""
    stored = {d.id for d, _, _ in stored_targets(None, tuple(sets))}
    return _fit_cached((tuple(sorted(linked(exclude) & stored)), tuple(sets), year_max,
                        tuple(only_sets) if only_sets else None))


def _null_target(trial: TrialDesign, r: Row):
    from .calibrate import Target

    fam = "overall_remission" if r.endpoint_family == "treatment_failure" else r.endpoint_family
    reg = trial.arms[r.arm].regimen
    return Target(trial.id, r.arm, fam, r.week, "binom", 0, r.n, fam, regimen=reg,
                  regimen_class=REGIMEN_CLASS.get(reg, reg), family=fam)


def null_row_pmf(trial: TrialDesign, r: Row, pool) -> np.ndarray | None:
    """Null predictive pmf of a design row (pool = stored Targets of OTHER trials); treatment failure is
    1 - overall remission. None when no stored arm of the family exists."""
    from .calibrate import validation_protocol
    from .null import null_pmf

    vp = validation_protocol()["meta_null"]
    fam_map = {"relapse": "flare"}
    pool = [replace(t, family=fam_map.get(t.family, t.family)) for t in pool if t.kind == "binom"]
    pmf, _ = null_pmf(_null_target(trial, r), pool, int(vp["min_arms"]), int(vp["quadrature_nodes"]), vp["method"])
    if pmf is None:
        return None
    return pmf[::-1].copy() if r.endpoint_family == "treatment_failure" else pmf


def stack_weights() -> dict:
    """Frozen stacking weights (``params/predict.yaml``), fitted on leave-one-trial-out scores only."""
    from importlib import resources

    import yaml

    p = resources.files("lnsynth.simulate").joinpath("params/predict.yaml")
    return {k: float(v) for k, v in yaml.safe_load(p.read_text(encoding="utf-8"))["stacking_weights"].items()}


def summarise(pmf: np.ndarray, level: float = LEVEL) -> tuple[float, int, int]:
    """Mean and central ``level`` interval (counts) of a pmf over 0..n."""
    xs = np.arange(len(pmf))
    cdf = np.cumsum(pmf)
    a = (1 - level) / 2
    lo = int(min(np.searchsorted(cdf, a), len(xs) - 1))
    hi = int(min(np.searchsorted(cdf, 1 - a - 1e-12), len(xs) - 1))
    return float((xs * pmf).sum()), lo, hi


def predict_designs(trials: list[TrialDesign], model: str = "stacked", seed: int = 2024) -> dict:
    """Predict every row of ``trials`` (validated designs) with ``model``; the output contract of
    ``lnsynth simulate predict``. Raises :class:`DesignError` for the simulator (no protocol for a design)."""
    from . import mbma

    if model not in MODELS:
        raise DesignError(f"--model: unknown model {model!r} (valid: {', '.join(MODELS)})")
    if model == "simulator":
        raise DesignError("--model simulator: the mechanistic simulator needs a hand-written protocol "
                          "(lnsynth/simulate/protocols/) and cannot predict a design file; use stacked, mbma or null")
    ids = {t.id for t in trials}
    _, pool = training_items(exclude=ids)
    f = mbma_fit(exclude=ids) if model in ("stacked", "mbma") else None
    w = stack_weights() if model == "stacked" else None
    rows = []
    for t in trials:
        mp = mbma.predict(f, t, seed=seed) if f is not None else [None] * len(t.rows)
        for r, pm in zip(t.rows, mp):
            if model == "null":
                pmf = null_row_pmf(t, r, pool)
                if pmf is None:
                    raise DesignError(f"trial {t.id}: row {r.arm}/{r.endpoint_family}: the null has no stored arm "
                                      f"of this endpoint family")
            elif model == "mbma":
                pmf = pm
            else:
                pn = null_row_pmf(t, r, pool)
                wm, wn = w.get("mbma", 0.0), w.get("null", 0.0)
                if pn is None or wm + wn <= 0:
                    pmf = pm
                else:
                    pmf = (wm * pm + wn * pn) / (wm + wn)
            pmf = np.asarray(pmf, float)
            pmf = pmf / pmf.sum()
            mean, lo, hi = summarise(pmf)
            rows.append({"trial": t.id, "arm": r.arm, "endpoint_family": r.endpoint_family, "week": r.week,
                         "n": int(r.n), "pmf": [float(x) for x in pmf], "mean": mean, "low": lo, "high": hi})
    return {"model": model, "rows": rows}


def predict_file(path, model: str = "stacked", seed: int = 2024) -> dict:
    """Validate the design FILE and predict it (:func:`predict_designs`); :class:`DesignError` on bad input."""
    from .design import load_design_file

    return predict_designs(load_design_file(path), model, seed)


def table_text(out: dict) -> str:
    """Plain-text table of a prediction (no pmf): trial, arm, family, week, n, mean and 95% interval."""
    head = (f"{'trial':<16} {'arm':<10} {'endpoint_family':<20} {'week':>6} {'n':>5} "
            f"{'mean':>7} {'95% interval':>13}")
    lines = [f"model: {out['model']}", head]
    for r in out["rows"]:
        lines.append(f"{r['trial']:<16} {r['arm']:<10} {r['endpoint_family']:<20} {r['week']:>6g} {r['n']:>5} "
                     f"{r['mean']:>7.1f} {r['low']:>6}-{r['high']:<6}")
    return "\n".join(lines)
