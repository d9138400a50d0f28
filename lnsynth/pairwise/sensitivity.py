"""The review's sensitivity questions, answered on the stored trials.

``run_sensitivity(ev)`` builds every CNI-containing vs comparator contrast it can
from the evidence base (arm-level events / n for "complete remission" and
"overall remission"), and asks:

* **overall**: pooled risk ratio (RR) of remission, CNI-containing vs comparator;
* **population**: Chinese/Asian vs multinational cohorts (from the study's stated
  setting; "not stated" where the data do not say);
* **timepoint**: endpoint at <= 26 weeks vs later;
* **CNI type**: tacrolimus vs cyclosporin vs voclosporin;
* **CNI regimen**: CNI alone vs CNI + MMF;
* **dose**: by the stated CNI dose (arms without a stated dose grouped as such);
* a meta-regression on each moderator (common tau^2, the test for subgroup
  differences) and leave-one-out on the overall analysis.

Rules (honesty first):

* Only events / n present in the data are used; a contrast missing either is
  listed in ``excluded`` with the reason.  Counts derived from percentages are
  flagged (``derived_k`` = number of studies with a derived count).
* Where a derived count has several candidates (``events_candidates``), the
  analysis is repeated at the least and most favourable candidates and the
  pooled RR range is reported (``range_low``/``range_high``).
* Several CNI arms of one study in the same analysis (e.g. two voclosporin doses)
  are combined (events and n summed) so no control group is counted twice;
  several comparator arms are combined likewise.
* One timepoint per study and endpoint: the latest reported (the timepoint
  question uses the latest within each window).
* k = 0: "no data"; k = 1: the single study's RR, marked "single study, not
  pooled"; tests for subgroup differences need >= 2 subgroups with data and
  k >= 3; a meta-regression needs k >= p + 1 (and is marked as weak below k = 10).

Effect sizes: log RR with metafor's zero-cell default (add 1/2 to zero cells);
pooling by REML with z tests unless ``method`` / ``test`` say otherwise.
"""
from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field

import numpy as np

ENDPOINTS = ("complete remission", "overall remission")
CNI_CLASSES = ("CNI", "CNI+MMF")
CNI_DRUG = {"TAC": "tacrolimus", "CSA": "cyclosporin", "VCS": "voclosporin"}
EARLY_WEEKS = 26.0
_ASIAN = re.compile(r"\b(chin|hong kong|taiwan|japan|korea|asia|singapore|thai|malaysia|india|vietnam|philippin)",
                    re.I)
_MULTI = re.compile(r"(\bcountries\b|multinational|international|multi-national|worldwide|global)", re.I)

FRAME_COLUMNS = ("question", "outcome", "subgroup", "k", "studies", "estimate", "ci_low", "ci_high",
                 "log_estimate", "log_se", "log_ci_low", "log_ci_high", "pvalue", "tau2", "i2",
                 "test_statistic", "test_df", "test_pvalue", "range_low", "range_high", "derived_k", "note")


def population_group(population, setting) -> str:
    """"Chinese/Asian", "multinational", "other: <setting>" or "not stated" from the stated setting/population."""
    texts = [str(t) for t in (setting, population) if isinstance(t, str) and t.strip()]
    joined = " ".join(texts)
    if not joined:
        return "not stated"
    if _MULTI.search(joined):
        return "multinational"
    if _ASIAN.search(joined):
        return "Chinese/Asian"
    if isinstance(setting, str) and setting.strip():
        return f"other: {setting.strip()}"
    return "not stated"


def cni_drug(regimen: str) -> str | None:
    for code, name in CNI_DRUG.items():
        if regimen.startswith(code):
            return name
    return None


def _arm_doses(ev) -> dict:
    """(study, arm) -> stated CNI dose text, from the arms' drug entries."""
    out = {}
    for s in ev.studies:
        for a in s.arms:
            for d in a.drugs:
                name = d.name.lower()
                if any(n in name for n in ("tacrolimus", "cyclosporin", "ciclosporin", "voclosporin")) and d.dose:
                    out[(s.id, a.id)] = f"{d.name} {d.dose.value}"
    return out


def _cands(row):
    c = row.get("events_candidates")
    if c is None or (isinstance(c, float) and math.isnan(c)) or len(c) == 0:
        return row["events"], row["events"]
    return min(c), max(c)


def build_contrasts(ev=None):
    """Arm-level CNI vs comparator contrasts (one row per CNI arm, study, endpoint, timepoint).

    Returns (contrasts DataFrame, excluded DataFrame).
    """
    import pandas as pd

    if ev is None:
        from lnsynth.evidence import load_evidence

        ev = load_evidence()
    of = ev.outcomes_frame()
    of = of[of["endpoint"].isin(ENDPOINTS)].copy()
    doses = _arm_doses(ev)
    rows, excluded = [], []
    tp = of["timepoint_weeks"].astype(float).fillna(-1.0)
    of["_tp"] = tp
    for (study, endpoint, t), g in of.groupby(["study", "endpoint", "_tp"], sort=True):
        cni = g[g["regimen_class"].isin(CNI_CLASSES)]
        comp = g[~g["regimen_class"].isin(CNI_CLASSES)]
        if cni.empty or comp.empty:
            excluded.append({"study": study, "endpoint": endpoint, "timepoint_weeks": t if t >= 0 else np.nan,
                             "reason": "no CNI-containing arm" if cni.empty else "no comparator arm with this outcome"})
            continue
        comp_ok = comp[comp["events"].notna() & comp["n"].notna()]
        for _, r in comp[~comp.index.isin(comp_ok.index)].iterrows():
            excluded.append({"study": study, "endpoint": endpoint, "timepoint_weeks": t if t >= 0 else np.nan,
                             "reason": f"comparator arm {r['arm']} ({r['regimen']}): events or n not reported"})
        if comp_ok.empty:
            continue
        ec = float(comp_ok["events"].sum())
        nc = float(comp_ok["n"].sum())
        lo_c = sum(_cands(r)[0] for _, r in comp_ok.iterrows())
        hi_c = sum(_cands(r)[1] for _, r in comp_ok.iterrows())
        comp_derived = bool(comp_ok["events_derived"].fillna(False).astype(bool).any()
                            or comp_ok["n_derived"].fillna(False).astype(bool).any())
        for _, r in cni.iterrows():
            if pd.isna(r["events"]) or pd.isna(r["n"]):
                excluded.append({"study": study, "endpoint": endpoint, "timepoint_weeks": t if t >= 0 else np.nan,
                                 "reason": f"CNI arm {r['arm']} ({r['regimen']}): events or n not reported"})
                continue
            lo_t, hi_t = _cands(r)
            rows.append({
                "study": study, "study_label": r["study_label"], "year": r["year"], "endpoint": endpoint,
                "timepoint_weeks": t if t >= 0 else np.nan, "cni_arm": r["arm"], "cni_regimen": r["regimen"],
                "cni_drug": cni_drug(r["regimen"]),
                "cni_regimen_class": "CNI + MMF" if r["regimen_class"] == "CNI+MMF" else "CNI alone",
                "dose": doses.get((study, r["arm"]), "dose not stated"),
                "comparator": "+".join(sorted(comp_ok["regimen"])),
                "events_treat": float(r["events"]), "n_treat": float(r["n"]), "events_ctrl": ec, "n_ctrl": nc,
                "events_treat_lo": float(lo_t), "events_treat_hi": float(hi_t),
                "events_ctrl_lo": float(lo_c), "events_ctrl_hi": float(hi_c),
                "derived": bool(bool(r["events_derived"]) or bool(r["n_derived"]) or comp_derived),
                "ambiguous": bool(lo_t != hi_t or lo_c != hi_c),
                "population_group": population_group(r["population"], r["setting"]),
            })
    cols = ["study", "study_label", "year", "endpoint", "timepoint_weeks", "cni_arm", "cni_regimen", "cni_drug",
            "cni_regimen_class", "dose", "comparator", "events_treat", "n_treat", "events_ctrl", "n_ctrl",
            "events_treat_lo", "events_treat_hi", "events_ctrl_lo", "events_ctrl_hi", "derived", "ambiguous",
            "population_group"]
    return pd.DataFrame(rows, columns=cols), pd.DataFrame(excluded, columns=["study", "endpoint",
                                                                              "timepoint_weeks", "reason"])


def _latest(c):
    """Keep, per study, the latest timepoint (NaN timepoints only when nothing else)."""
    if c.empty:
        return c
    t = c["timepoint_weeks"].fillna(-1.0)
    best = t.groupby(c["study"]).transform("max")
    return c[t == best]


def _collapse(c, by=()):
    """One contrast per study (and per ``by`` group): CNI arms summed, the shared comparator kept once."""
    import pandas as pd

    if c.empty:
        return c
    keys = ["study", *by]
    agg = []
    for _, g in c.groupby(keys, sort=False):
        r = g.iloc[0].copy()
        for col in ("events_treat", "n_treat", "events_treat_lo", "events_treat_hi"):
            r[col] = g[col].sum()
        r["cni_arm"] = "+".join(g["cni_arm"])
        r["cni_regimen"] = "+".join(g["cni_regimen"])
        r["derived"] = bool(g["derived"].any())
        r["ambiguous"] = bool(g["ambiguous"].any())
        agg.append(r)
    out = pd.DataFrame(agg)
    return out.sort_values(["year", "study"]).reset_index(drop=True)


def _pool(c, method, test):
    """Pooled log RR for a set of contrasts; returns a dict (fields of FRAME_COLUMNS) and the fit."""
    from lnsynth.effects import effect_sizes

    from .api import meta_analysis

    k = len(c)
    base = {"k": k, "studies": ", ".join(c["study_label"]) if k else "", "derived_k": int(c["derived"].sum()) if k else 0}
    if k == 0:
        return {**base, "note": "no data"}, None
    es = effect_sizes("RR", events_treat=c["events_treat"].to_numpy(), n_treat=c["n_treat"].to_numpy(),
                      events_ctrl=c["events_ctrl"].to_numpy(), n_ctrl=c["n_ctrl"].to_numpy(),
                      labels=list(c["study_label"]))
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="k = 1")
        fit = meta_analysis(es, method=method, test=test if k > 1 else "z", ci_tau2=False)
    out = {**base, "log_estimate": fit.estimate, "log_se": fit.se, "log_ci_low": fit.ci_low,
           "log_ci_high": fit.ci_high, "pvalue": fit.pvalue, "tau2": fit.tau2 if k > 1 else np.nan,
           "i2": fit.i2 if k > 1 else np.nan}
    out.update(estimate=math.exp(fit.estimate), ci_low=math.exp(fit.ci_low), ci_high=math.exp(fit.ci_high))
    notes = []
    if k == 1:
        notes.append("single study, not pooled")
    elif k < 5:
        notes.append(f"only {k} studies: tau^2 and its CI are very imprecise")
    if c["ambiguous"].any():
        ests = []
        for tcol, ccol in (("events_treat_lo", "events_ctrl_hi"), ("events_treat_hi", "events_ctrl_lo")):
            es2 = effect_sizes("RR", events_treat=c[tcol].to_numpy(), n_treat=c["n_treat"].to_numpy(),
                               events_ctrl=c[ccol].to_numpy(), n_ctrl=c["n_ctrl"].to_numpy())
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="k = 1")
                f2 = meta_analysis(es2, method=method, test=test if k > 1 else "z", ci_tau2=False)
            ests.append(math.exp(f2.estimate))
        out["range_low"], out["range_high"] = min(ests), max(ests)
        notes.append("ambiguous derived counts: range over candidates")
    else:
        out["range_low"] = out["range_high"] = out["estimate"]
    if out["derived_k"]:
        notes.append(f"{out['derived_k']} of {k} with counts derived from percentages")
    out["note"] = "; ".join(notes)
    return out, fit


@dataclass
class SensitivityReport:
    """Result of :func:`run_sensitivity`: a tidy frame, the contrasts used and the excluded ones."""

    frame: object
    contrasts: object
    excluded: object
    fits: dict = field(default_factory=dict)
    loo: dict = field(default_factory=dict)
    method: str = "REML"
    test: str = "z"

    def to_frame(self):
        return self.frame.copy()

    def to_markdown(self, digits: int = 2) -> str:
        f = self.frame
        lines = ["# Sensitivity analyses: CNI-containing regimens vs comparators (risk ratio of remission)", "",
                 f"Pooling: {self.method}, test {self.test}; RR > 1 favours the CNI-containing arm. "
                 "Counts derived from percentages are flagged; ambiguous derived counts give a range.", ""]
        for (outcome, question), g in f.groupby(["outcome", "question"], sort=False):
            lines.append(f"## {outcome}: {question}")
            lines.append("")
            lines.append("| subgroup | k | RR | 95% CI | p | tau^2 | I^2 | range (candidates) | note |")
            lines.append("|---|---:|---:|---|---:|---:|---:|---|---|")
            for _, r in g.iterrows():
                fmt = lambda x, d=digits: "" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.{d}f}"  # noqa: E731
                if r["subgroup"] == "test for subgroup differences" or str(r["subgroup"]).startswith("meta-regression"):
                    stat = (f"Q = {fmt(r['test_statistic'])} (df {int(r['test_df'])}), p = {fmt(r['test_pvalue'], 3)}"
                            if np.isfinite(r["test_statistic"]) else "")
                    lines.append(f"| *{r['subgroup']}* | {r['k']} | | {stat} | | | | | {r['note']} |")
                    continue
                ci = f"{fmt(r['ci_low'])} to {fmt(r['ci_high'])}" if np.isfinite(r["ci_low"]) else ""
                rng = ""
                if np.isfinite(r["range_low"]) and r["range_low"] != r["range_high"]:
                    rng = f"{fmt(r['range_low'])} to {fmt(r['range_high'])}"
                lines.append(f"| {r['subgroup']} | {r['k']} | {fmt(r['estimate'])} | {ci} | {fmt(r['pvalue'], 3)} | "
                             f"{fmt(r['tau2'], 3)} | {fmt(r['i2'], 0)} | {rng} | {r['note']} |")
            lines.append("")
        if len(self.excluded):
            lines.append("## Contrasts not analysable")
            lines.append("")
            lines.append("| study | endpoint | weeks | reason |")
            lines.append("|---|---|---:|---|")
            for _, r in self.excluded.iterrows():
                w = "" if not np.isfinite(r["timepoint_weeks"]) else f"{r['timepoint_weeks']:g}"
                lines.append(f"| {r['study']} | {r['endpoint']} | {w} | {r['reason']} |")
            lines.append("")
        return "\n".join(lines)


def _question_rows(question, outcome, c, by, method, test, label_fn=None):
    """Rows for one question: each subgroup, the subgroup-difference test and a meta-regression."""
    from lnsynth.effects import effect_sizes

    from .regression import meta_regression
    from .subgroup import subgroup_analysis

    rows = []
    if c.empty:
        return [{"question": question, "outcome": outcome, "subgroup": "all", "k": 0, "note": "no data"}]
    groups = sorted(c[by].astype(str).unique())
    collapsed = {}
    for gname in groups:
        cg = _collapse(c[c[by].astype(str) == gname])
        collapsed[gname] = cg
        r, _ = _pool(cg, method, test)
        rows.append({"question": question, "outcome": outcome, "subgroup": label_fn(gname) if label_fn else gname, **r})
    allc = _collapse(c, by=(by,))
    k = len(allc)
    G = len(groups)
    test_row = {"question": question, "outcome": outcome, "subgroup": "test for subgroup differences", "k": k}
    reg_row = {"question": question, "outcome": outcome, "subgroup": f"meta-regression on {by}", "k": k}
    same_study = allc["study"].duplicated().any()
    if G < 2:
        test_row["note"] = "only one subgroup has data: no comparison possible"
        reg_row["note"] = "only one subgroup has data: no comparison possible"
    elif k < 3:
        test_row["note"] = f"k = {k}: too few studies to compare subgroups"
        reg_row["note"] = f"k = {k}: too few studies for a meta-regression"
    else:
        es = effect_sizes("RR", events_treat=allc["events_treat"].to_numpy(), n_treat=allc["n_treat"].to_numpy(),
                          events_ctrl=allc["events_ctrl"].to_numpy(), n_ctrl=allc["n_ctrl"].to_numpy())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sg = subgroup_analysis(es.yi, es.vi, allc[by].astype(str).to_numpy(), method=method, test=test)
        notes = ["separate tau^2 per subgroup"]
        if same_study:
            notes.append("a study contributes to more than one subgroup: subgroups not independent, test approximate")
        test_row.update(test_statistic=sg.test_separate["q"], test_df=sg.test_separate["df"],
                        test_pvalue=sg.test_separate["pvalue"], note="; ".join(notes))
        p = G
        if k <= p:
            reg_row["note"] = f"k = {k} <= {p} coefficients: meta-regression not estimable"
        else:
            import pandas as pd

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                mr = meta_regression(yi=es.yi, vi=es.vi,
                                     moderators=pd.DataFrame({by: allc[by].astype(str).to_numpy()}),
                                     method=method, test=test)
            coef = ", ".join(f"{n}: RR ratio {math.exp(b):.2f}" for n, b in zip(mr.names[1:], mr.coefficients[1:]))
            notes = [f"common tau^2 = {mr.tau2:.3g}; {coef}"]
            if k - p < 3 or k < 10:
                notes.append(f"k = {k}: meta-regression has little power")
            if same_study:
                notes.append("non-independent rows (same study in several subgroups)")
            reg_row.update(test_statistic=mr.qm, test_df=mr.qm_df[0], test_pvalue=mr.qm_pvalue,
                           tau2=mr.tau2, note="; ".join(notes))
    rows.append(test_row)
    rows.append(reg_row)
    return rows


def _joint_regression(outcome, prim, method, test):
    """Meta-regression on all moderators at once (population, late timepoint, CNI + MMF), when estimable."""
    import pandas as pd

    from lnsynth.effects import effect_sizes

    from .regression import design_matrix, meta_regression

    row = {"question": "meta-regression (joint)", "outcome": outcome,
           "subgroup": "meta-regression on population + late timepoint + CNI regimen", "k": len(prim)}
    if len(prim) == 0:
        row["note"] = "no data"
        return row
    mods = pd.DataFrame({
        "population_group": prim["population_group"].astype(str).to_numpy(),
        "late": (prim["timepoint_weeks"].fillna(-1.0) > EARLY_WEEKS).astype(float).to_numpy(),
        "cni_regimen_class": prim["cni_regimen_class"].astype(str).to_numpy(),
    })
    mods = mods[[c for c in mods.columns if mods[c].nunique() > 1]]
    if mods.shape[1] == 0:
        row["note"] = "no moderator varies across the studies"
        return row
    X, names = design_matrix(mods)
    k, p = X.shape
    if k < p + 2 or np.linalg.matrix_rank(X) < p:
        row["note"] = (f"k = {k} for {p} coefficients ({', '.join(names[1:])}): not estimable "
                       "(needs k >= p + 2 and moderators that are not confounded)")
        return row
    es = effect_sizes("RR", events_treat=prim["events_treat"].to_numpy(), n_treat=prim["n_treat"].to_numpy(),
                      events_ctrl=prim["events_ctrl"].to_numpy(), n_ctrl=prim["n_ctrl"].to_numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mr = meta_regression(yi=es.yi, vi=es.vi, moderators=mods, method=method, test=test)
    coef = ", ".join(f"{n}: RR ratio {math.exp(b):.2f}" for n, b in zip(mr.names[1:], mr.coefficients[1:]))
    row.update(test_statistic=mr.qm, test_df=mr.qm_df[0], test_pvalue=mr.qm_pvalue, tau2=mr.tau2,
               note=f"residual tau^2 = {mr.tau2:.3g}; {coef}" + ("; k < 10: little power" if k < 10 else ""))
    return row


def run_sensitivity(ev=None, method: str = "REML", test: str = "z") -> SensitivityReport:
    """Answer the review's sensitivity questions on the stored trials (see module docstring)."""
    import pandas as pd

    from .influence import leave_one_out

    contrasts, excluded = build_contrasts(ev)
    rows = []
    fits = {}
    loos = {}
    for outcome in ENDPOINTS:
        c_all = contrasts[contrasts["endpoint"] == outcome]
        c = _latest(c_all)
        prim = _collapse(c)
        r, fit = _pool(prim, method, test)
        rows.append({"question": "overall", "outcome": outcome, "subgroup": "all CNI-containing vs comparator",
                     **r})
        fits[outcome] = fit
        # leave-one-out
        if fit is not None and fit.k >= 3:
            loo = leave_one_out(fit)
            loos[outcome] = loo
            lf = loo.to_frame()
            for _, lr in lf.iterrows():
                rows.append({"question": "leave-one-out", "outcome": outcome, "subgroup": f"omitting {lr['study']}",
                             "k": int(lr["k"]), "estimate": math.exp(lr["estimate"]), "ci_low": math.exp(lr["ci_low"]),
                             "ci_high": math.exp(lr["ci_high"]), "log_estimate": lr["estimate"], "log_se": lr["se"],
                             "log_ci_low": lr["ci_low"], "log_ci_high": lr["ci_high"], "pvalue": lr["pvalue"],
                             "tau2": lr["tau2"], "i2": lr["i2"], "note": ""})
        else:
            loos[outcome] = None
            rows.append({"question": "leave-one-out", "outcome": outcome, "subgroup": "all", "k": len(prim),
                         "note": f"k = {len(prim)}: leave-one-out needs at least 3 studies"})
        rows += _question_rows("population", outcome, c, "population_group", method, test)
        # timepoint: latest within each window
        if not c_all.empty:
            cw = c_all[c_all["timepoint_weeks"].notna()].copy()
            cw["window"] = np.where(cw["timepoint_weeks"] <= EARLY_WEEKS, f"<= {EARLY_WEEKS:g} weeks",
                                    f"> {EARLY_WEEKS:g} weeks")
            parts = []
            for _, g in cw.groupby("window"):
                parts.append(_latest(g))
            cw = pd.concat(parts) if parts else cw
            rows += _question_rows("timepoint", outcome, cw, "window", method, test)
            nots = c_all[c_all["timepoint_weeks"].isna() & ~c_all["study"].isin(cw["study"])]
            if len(nots):
                labs = sorted(set(nots["study_label"]))
                rows.append({"question": "timepoint", "outcome": outcome, "subgroup": "timepoint not stated",
                             "k": len(labs), "studies": ", ".join(labs),
                             "note": "excluded from this question (no timepoint stated): " + ", ".join(labs)})
        else:
            rows += _question_rows("timepoint", outcome, c_all, "timepoint_weeks", method, test)
        rows += _question_rows("CNI type", outcome, c, "cni_drug", method, test)
        rows += _question_rows("CNI alone vs CNI + MMF", outcome, c, "cni_regimen_class", method, test)
        dose_rows = _question_rows("dose", outcome, c, "dose", method, test)
        stated = c[c["dose"] != "dose not stated"] if not c.empty else c
        if not c.empty:
            multi = [d for d, g in stated.groupby("cni_drug") if g["dose"].nunique() > 1]
            msg = ("dose groups mix different drugs and studies; "
                   + (f"within-drug dose contrasts exist only for {', '.join(multi)}" if multi
                      else "no drug has more than one stated dose"))
            for r in dose_rows:
                if r["subgroup"] == "test for subgroup differences":
                    r["note"] = (r.get("note", "") + "; " if r.get("note") else "") + msg
        rows += dose_rows
        rows.append(_joint_regression(outcome, prim, method, test))
    frame = pd.DataFrame(rows)
    for col in FRAME_COLUMNS:
        if col not in frame:
            frame[col] = np.nan
    frame["note"] = frame["note"].fillna("")
    frame["studies"] = frame["studies"].fillna("")
    frame["derived_k"] = frame["derived_k"].fillna(0).astype(int)
    frame = frame[list(FRAME_COLUMNS)]
    return SensitivityReport(frame, contrasts, excluded, fits, loos, method, test)
