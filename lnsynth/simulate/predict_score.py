"""Blind scoring of the trial predictor (issue 23): MBMA vs the nulls vs the simulator, and the stack.

Three schemes, each predicting a trial from fits that never saw any of its rows:

* ``loto``: every calibration trial of ``params/validation.yaml``, MBMA refitted exactly on the calibration
  rows of the OTHER trials (drop every row of the trial); the null pools the same rows (its own rule already
  drops the trial); the simulator's leave-one-trial-out predictive comes from its cached calibration bank.
* ``external``: the protocol's external rows; MBMA fitted on the calibration rows without the external row's
  trial (a new trial for MBMA and null; the simulator conditions on the trial's own random effect where the
  trial is also a calibration trial: rovin2019 week 24, a small advantage to the simulator).
* ``time``: fit on every stored row (calibration and external) of trials published up to 2019, predict the
  2020+ trials (rovin2021, saxena2024, amudalapalli2025); the simulator's calibration uses only pre-2020 trials,
  so its external predictive for these trials is a time-split prediction too.

Rows: the held-out binomial rows of the predictor's families (complete / overall remission, flare, relapse).
Scores: log P(observed count); per-trial sums; paired differences by trial with SE = sd(d) * sqrt(K) (can be
~2x too small for few trials); coverage of central 95% intervals. Stacking weights over (mbma, null,
simulator) are fitted on the ``loto`` rows only and written to ``params/predict.yaml`` before the external
and time-split scores are computed.

A second null, ``null_arm`` (covariate-free arm-based pooling), pools every stored arm of the same endpoint
family regardless of regimen with a random-effects logit model: the null without regimen information.

Run: ``python -m lnsynth.simulate.predict_score [--write]`` (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import sys
from dataclasses import replace

import numpy as np
import pandas as pd
from scipy import optimize

from .design import stored_targets

LEVEL = 0.95


def _inside(pmf: np.ndarray, x: int) -> bool:
    from .predict import summarise

    _, lo, hi = summarise(pmf, LEVEL)
    return lo <= x <= hi


def _sim_pmfs() -> dict:
    """Simulator predictive pmfs keyed by (set, trial, arm, endpoint, week) from the cached bank (or {})."""
    from .calibrate import cached_bank
    from .validate import _predictions, _settings, external_bank

    bank = cached_bank()
    if bank is None:
        return {}
    eb = external_bank(bank)
    out = {}
    for t, set_, ho, sim, nul, fit in _predictions(bank, eb, "binom", _settings()):
        out[(set_, t.trial, t.arm, t.endpoint, t.week)] = np.asarray(sim[1], float)
    return out


def _null(t, pool, min_arms=None):
    from .calibrate import validation_protocol
    from .null import null_pmf

    vp = validation_protocol()["meta_null"]
    pmf, _ = null_pmf(t, pool, int(min_arms or vp["min_arms"]), int(vp["quadrature_nodes"]), vp["method"])
    return pmf


def _null_arm(t, pool):
    """Covariate-free null: same endpoint family, any regimen class (the class restriction removed)."""
    pool = [replace(p, regimen_class="*") for p in pool]
    return _null(replace(t, regimen_class="*"), pool)


def score_rows(write: bool = False, seed: int = 2024, progress=print) -> pd.DataFrame:
    """One row per (scheme, scored row) with the log score and interval coverage of every model."""
    from . import mbma
    from .calibrate import external_targets, targets
    from .predict import mbma_fit

    st = stored_targets(None, ("loto", "external"))
    sims = _sim_pmfs()
    calib = targets()
    allt = calib + external_targets()
    recs = []

    def add(scheme, d, t, k, pm, pool):
        x = int(t.events)
        rec = {"scheme": scheme, "trial": t.trial, "arm": t.arm, "regimen": t.regimen, "endpoint": t.label,
               "week": t.week,
               "family": d.rows[k].endpoint_family, "x": x, "n": int(t.n), "year": d.year}
        pmfs = {"mbma": pm, "null": _null(t, pool), "null_arm": _null_arm(t, pool),
                "simulator": sims.get((t.set, t.trial, t.arm, t.endpoint, t.week))}
        for m, p in pmfs.items():
            if p is None or len(p) != t.n + 1:
                rec[f"lp_{m}"], rec[f"in_{m}"] = np.nan, np.nan
                rec[f"p_{m}"], rec[f"lo_{m}"], rec[f"hi_{m}"] = None, np.nan, np.nan
                continue
            rec[f"lp_{m}"] = float(np.log(max(p[x], 1e-300)))
            rec[f"in_{m}"] = float(_inside(p, x))
            rec[f"p_{m}"] = p
            rec[f"lo_{m}"], rec[f"hi_{m}"] = _interval(p)
        recs.append(rec)

    def run(scheme, groups, fit_kw, pool_fn):
        for tid, rows in groups.items():
            progress(f"{scheme}: {tid}")
            f = mbma_fit(exclude=(tid,), **fit_kw)
            d = rows[0][0]
            from .design import TrialDesign

            sub = TrialDesign(d.id, d.year, d.region, d.population, d.arms, [d.rows[k] for _, _, k in rows])
            pms = mbma.predict(f, sub, seed=seed)
            for (dd, t, k), pm in zip(rows, pms):
                add(scheme, dd, t, k, pm, pool_fn(tid))

    by_set = {"loto": {}, "external": {}}
    for d, t, k in st:
        by_set[t.set].setdefault(t.trial, []).append((d, t, k))
    run("loto", by_set["loto"], {"only_sets": ("loto",)}, lambda tid: calib)
    df = pd.DataFrame(recs)
    w = stacking_weights(df[df.scheme == "loto"])
    progress(f"stacking weights (loto only): {w}")
    if write:
        _write_weights(w)
    run("external", by_set["external"], {"only_sets": ("loto",)}, lambda tid: calib)
    late = {}
    for d, t, k in st:
        if (d.year or 0) >= 2020:
            late.setdefault(t.trial, []).append((d, t, k))
    early_pool = [t for t in allt if _year(t.trial) is not None and _year(t.trial) <= 2019]
    run("time", late, {"year_max": 2019}, lambda tid: early_pool)
    df = pd.DataFrame(recs)
    return add_stack(df, w)


def _year(trial: str):
    from .design import design_params

    return (design_params()["trials"].get(trial) or {}).get("year")


def stacking_weights(df: pd.DataFrame, models=("mbma", "null", "simulator")) -> dict:
    """Yao et al. (2018) stacking: maximise sum_i log sum_m w_m p_m(y_i) over rows every model predicts."""
    ok = df[[f"lp_{m}" for m in models]].notna().all(axis=1)
    P = np.exp(df.loc[ok, [f"lp_{m}" for m in models]].to_numpy().T)  # (M, rows)

    def neg(a):
        w = np.exp(np.append(a, 0.0))
        w /= w.sum()
        return -np.sum(np.log(np.maximum(w @ P, 1e-300)))

    r = optimize.minimize(neg, np.zeros(len(models) - 1), method="Nelder-Mead",
                          options={"xatol": 1e-6, "fatol": 1e-9, "maxiter": 4000})
    w = np.exp(np.append(r.x, 0.0))
    w /= w.sum()
    return {m: round(float(v), 4) for m, v in zip(models, w)}


def add_stack(df: pd.DataFrame, w: dict) -> pd.DataFrame:
    """Stacked predictive per row: the weighted mixture of the models present (weights renormalised)."""
    lps, ins, los, his = [], [], [], []
    for _, r in df.iterrows():
        ps = [(w[m], r[f"p_{m}"]) for m in w if r.get(f"p_{m}") is not None]
        tot = sum(a for a, _ in ps)
        p = sum(a * q for a, q in ps) / tot
        lps.append(float(np.log(max(p[r.x], 1e-300))))
        ins.append(float(_inside(p, r.x)))
        los.append(_interval(p)[0]), his.append(_interval(p)[1])
    df = df.copy()
    df["lp_stacked"], df["in_stacked"], df["lo_stacked"], df["hi_stacked"] = lps, ins, los, his
    return df


def _interval(p: np.ndarray) -> tuple[int, int]:
    from .predict import summarise

    _, lo, hi = summarise(p, LEVEL)
    return lo, hi


def validate_frame(df: pd.DataFrame, model: str) -> pd.DataFrame:
    """The scored rows of ``model`` in the column layout of ``lnsynth simulate validate``
    (:data:`lnsynth.simulate.validate.COLUMNS`; ``set`` is the scheme: loto, external or time)."""
    from .validate import COLUMNS

    d = df[df[f"lp_{model}"].notna()]
    out = pd.DataFrame({"trial": d.trial, "arm": d.arm, "regimen": d.regimen, "endpoint": d.endpoint,
                        "endpoint_family": d.family, "observed_events": d.x, "observed_n": d.n,
                        "pred_low": d[f"lo_{model}"] / d.n, "pred_high": d[f"hi_{model}"] / d.n, "held_out": True,
                        "log_pred": d[f"lp_{model}"], "set": d.scheme})
    return out[COLUMNS].reset_index(drop=True)


def _write_weights(w: dict) -> None:
    from importlib import resources

    p = resources.files("lnsynth.simulate").joinpath("params/predict.yaml")
    txt = p.read_text(encoding="utf-8").splitlines()
    txt = [ln for ln in txt if not ln.startswith("stacking_weights:")]
    txt.append("stacking_weights: {" + ", ".join(f'"{k}": {v}' for k, v in w.items()) + "}")
    with open(str(p), "w", encoding="utf-8") as fh:
        fh.write("\n".join(txt) + "\n")


def paired(df: pd.DataFrame, a: str, b: str) -> dict:
    """Per-trial paired log-score difference a - b on rows both predict: total, SE = sd * sqrt(K), trials won."""
    m = df[df[f"lp_{a}"].notna() & df[f"lp_{b}"].notna()]
    g = m.groupby("trial")[[f"lp_{a}", f"lp_{b}"]].sum()
    d = g[f"lp_{a}"] - g[f"lp_{b}"]
    k = len(d)
    se = float(d.std(ddof=1) * np.sqrt(k)) if k > 1 else float("nan")
    return {"rows": len(m), "trials": k, "score_a": float(g[f"lp_{a}"].sum()), "score_b": float(g[f"lp_{b}"].sum()),
            "diff": float(d.sum()), "se": se, "won": int((d > 0).sum()),
            "diff_drop_best": float(d.sum() - d.max()) if k else float("nan"),
            "coverage_a": float(m[f"in_{a}"].mean()), "coverage_b": float(m[f"in_{b}"].mean())}


MODELS = ("mbma", "null", "null_arm", "simulator", "stacked")


def scores(seed: int = 2024, cache: bool = True, progress=None) -> pd.DataFrame:
    """:func:`score_rows` with the frozen weights of ``params/predict.yaml`` (never re-fitted here), cached on
    disk by the hash of the predictor's code, parameter files and seed."""
    import hashlib
    import pickle
    from importlib import resources

    from .calibrate import _cache_dir
    from .predict import stack_weights

    root = resources.files("lnsynth.simulate")
    h = hashlib.sha256(str(seed).encode())
    for f in ("mbma.py", "predict.py", "design.py", "predict_score.py", "null.py", "params/design.yaml",
              "params/validation.yaml", "params/predict.yaml"):
        h.update(root.joinpath(f).read_bytes())
    path = _cache_dir() / f"predict-scores-{h.hexdigest()[:16]}.pkl"
    if cache and path.exists():
        with open(path, "rb") as fh:
            return pickle.load(fh)
    df = score_rows(write=False, seed=seed, progress=progress or (lambda s: None))
    df = add_stack(df.drop(columns=[c for c in df.columns if c.endswith("_stacked")]), stack_weights())
    if cache:
        with open(path, "wb") as fh:
            pickle.dump(df, fh)
    return df


def report(df: pd.DataFrame, w: dict) -> str:
    """Markdown tables: per scheme, every model's total, coverage, and paired differences vs both nulls."""
    out = []
    for s in ("loto", "external", "time"):
        d = df[df.scheme == s]
        if not len(d):
            continue
        out.append(f"\n### {s} ({d.trial.nunique()} trials, {len(d)} rows)\n")
        out.append("| model | rows scored | log score | 95% coverage |\n|---|---:|---:|---:|")
        for m in MODELS:
            ok = d[f"lp_{m}"].notna()
            out.append(f"| {m} | {int(ok.sum())} | {d.loc[ok, f'lp_{m}'].sum():.1f} | {d.loc[ok, f'in_{m}'].mean():.0%} |")
        out.append("\nPaired by trial on the rows both predict (difference = first - second; SE = sd x sqrt(K)):\n")
        out.append("| comparison | rows | trials | difference | SE | trials won | without best trial |\n"
                   "|---|---:|---:|---:|---:|---:|---:|")
        for a in ("mbma", "stacked"):
            for b in ("null", "null_arm", "simulator"):
                p = paired(d, a, b)
                out.append(f"| {a} - {b} | {p['rows']} | {p['trials']} | {p['diff']:+.1f} | {p['se']:.1f} | "
                           f"{p['won']}/{p['trials']} | {p['diff_drop_best']:+.1f} |")
    out.append("\nRow detail (log scores):\n")
    out.append("| scheme | trial | arm | endpoint | week | x/n | mbma | null | null_arm | simulator | stacked |\n"
               "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for _, r in df.iterrows():
        def f(v):
            return "-" if pd.isna(v) else f"{v:.2f}"

        out.append(f"| {r.scheme} | {r.trial} | {r.arm} | {r.endpoint} | {r.week:g} | {r.x}/{r.n} | {f(r.lp_mbma)} | "
                   f"{f(r.lp_null)} | {f(r.lp_null_arm)} | {f(r.lp_simulator)} | {f(r.lp_stacked)} |")
    return "\n".join(out)


def main(argv=None) -> int:
    """``--write``: score, fit the stacking weights on the loto rows and freeze them in params/predict.yaml
    before the external and time-split rows are scored. Without it: score with the frozen weights (cached)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    from .predict import stack_weights

    def prog(s):
        print(s, file=sys.stderr)

    if "--write" in argv:
        df = score_rows(write=True, progress=prog)
    else:
        df = scores(progress=prog)
        prog(f"loto-refitted weights (information only, not used): {stacking_weights(df[df.scheme == 'loto'])}")
    print(report(df, stack_weights()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
