"""Several assumed control risks (baseline risks) per outcome, each with its source, and the
absolute effects they imply.

A GRADE summary of findings turns a relative effect into "so many more or fewer per 1000"
from an assumed control risk; a panel needs several, because the risk of the outcome without the
intervention differs between settings (GRADE Handbook 5.2.2; Guyatt et al. J Clin Epidemiol
2011;64:1283-93). Each question declares its rows in its catalogue file::

    baseline_risks:
      - {label: "multinational trials", rule: median, trials: evidence, setting: multinational}
      - {label: "Asian trials", rule: median, trials: evidence, setting: asian}
      - {label: "poorest-prognosis included trial", rule: worst, trials: included}

rule
    ``median``, ``lowest``, ``highest`` of the control-arm risks, ``worst`` (the lowest for an
    outcome where higher is better, the highest for a harm: the control arm of the poorest
    prognosis), or ``value`` with a declared ``risk`` that must name its ``source``.
trials
    ``included``: the control arms of the trials this outcome analyses; ``evidence``: the arms of
    the question's comparator regimens in every stored randomised trial of the question's
    population and phase (pure class V kept apart as the question says), whatever the intervention,
    with this outcome's endpoints (in order of preference), window and timepoint preference.
setting
    ``any``; ``multinational`` (the stored setting names two or more countries, or "multinational"
    / "international"); ``asian`` (the stored setting or population names an Asian country or city
    and no other countries). Trials whose setting is not stored are not classified.
outcomes
    optional list of outcome ids the row applies to (default: every outcome).

A control arm's risk is events/n, or the printed percentage when the count is not stored (a
risk needs no integer count). The first row of every outcome is always the answer's own assumed
control risk (``control_risk``, ``per1000``); a panel's own value is added as the row ``user``
(``lnsynth answer ID --baseline-risk R``, ``GET /api/questions/{id}?baseline_risk=R``).

Examples
--------
>>> rows = absolute_rows("RR", 1.5, 1.2, 2.0, [{"label": "user", "risk": 0.2, "source": "given"}])
>>> [round(rows[0][k]) for k in ("per1000", "per1000_low", "per1000_high")]
[100, 40, 200]
"""

from __future__ import annotations

import math
import re
import statistics
from typing import Any, Iterable, Optional, Sequence

import pandas as pd

from .grade import intervention_risk

#: Rows used when a question declares none (the same three kinds every question file declares).
DEFAULT_RULES: tuple[dict, ...] = (
    {"label": "multinational trials' control arms", "rule": "median", "trials": "evidence", "setting": "multinational"},
    {"label": "Asian trials' control arms", "rule": "median", "trials": "evidence", "setting": "asian"},
    {"label": "poorest-prognosis control arm (included trials)", "rule": "worst", "trials": "included", "setting": "any"},
)
ASIAN_HINTS = ("china", "chinese", "hong kong", "japan", "korea", "taiwan", "india", "nepal", "thailand", "malaysia",
               "singapore", "kolkata", "chandigarh", "asia")
_COUNTRIES = re.compile(r"\b(\d+)\s+countries\b", re.I)
_MULTI = re.compile(r"multinational|international|multi-country|multicountry", re.I)
RULES = ("median", "lowest", "highest", "worst", "value")


class BaselineRiskError(ValueError):
    """A baseline risk outside (0, 1) or a declaration that cannot be computed."""


def check_user_risk(value: Any) -> float:
    """A panel's own baseline risk: a number strictly between 0 and 1.

    Raises
    ------
    BaselineRiskError
        Naming the value and the valid range.
    """
    try:
        r = float(value)
    except (TypeError, ValueError):
        raise BaselineRiskError(f"baseline risk: expected a number strictly between 0 and 1, got {value!r}") from None
    if not math.isfinite(r) or not 0.0 < r < 1.0:
        raise BaselineRiskError(f"baseline risk: expected a number strictly between 0 and 1 (e.g. 0.35), got {value!r}")
    return r


def setting_group(study: Any) -> Optional[str]:
    """``multinational``, ``asian`` or ``other`` from the stored setting/population text; ``None`` when no setting is stored."""
    setting = study.setting.value if getattr(study, "setting", None) is not None else ""
    pop = study.population.value if getattr(study, "population", None) is not None else ""
    m = _COUNTRIES.search(setting or "")
    if (m and int(m.group(1)) >= 2) or _MULTI.search(setting or "") or _MULTI.search(getattr(study.design, "value", "") or ""):
        return "multinational"
    txt = f"{setting} {pop}".lower()
    if any(h in txt for h in ASIAN_HINTS):
        return "asian"
    return "other" if setting else None


def absolute_rows(measure: str, est: Optional[float], lo: Optional[float], hi: Optional[float],
                  rows: Iterable[dict]) -> list[dict]:
    """Each baseline row with the absolute effect it implies: ``per1000`` (and its CI limits) is
    ``1000 * (risk_int - risk)`` for the relative effect ``est`` (CI ``lo``, ``hi``; ratio scale for
    RR/OR). ``None`` when the outcome is not estimable, the row has no risk or the measure has no
    absolute effect (mean differences)."""
    out = []
    for r in rows:
        risk = r.get("risk")
        row = {"label": r["label"], "risk": risk, "source": r.get("source", ""),
               "per1000": None, "per1000_low": None, "per1000_high": None}
        row.update({k: v for k, v in r.items() if k not in row})
        ok = (risk is not None and est is not None and lo is not None and hi is not None
              and measure in ("RR", "OR", "RD") and 0 < float(risk) < 1)
        if ok:
            for key, eff in (("per1000", est), ("per1000_low", lo), ("per1000_high", hi)):
                row[key] = 1000.0 * (intervention_risk(measure, float(risk), float(eff)) - float(risk))
        out.append(row)
    return out


def add_user_baseline(d: dict, risk: float) -> dict:
    """Add the row ``user`` (a panel's own baseline risk) to every outcome of an answer's JSON
    (:meth:`lnsynth.analyses.answer.Answer.to_dict`); returns the same dict."""
    r = check_user_risk(risk)
    for o in d.get("outcomes", []):
        row = absolute_rows(o.get("measure", ""), o.get("estimate"), o.get("ci_low"), o.get("ci_high"),
                            [{"label": "user", "risk": r, "source": "given by the user (--baseline-risk / ?baseline_risk=)",
                              "rule": "user"}])[0]
        o.setdefault("baseline_risks", [])
        o["baseline_risks"] = [x for x in o["baseline_risks"] if x.get("label") != "user"] + [row]
    return d


# ----------------------------------------------------------------------------- control arms


def _phase_ok(arm_phase: str, phase: str) -> bool:
    return arm_phase == phase or arm_phase == "induction+maintenance"


def _pick_timepoint(tps: list[float], prefer: Any) -> float:
    tps = sorted(tps)
    if prefer == "earliest":
        return tps[0]
    if prefer == "latest" or not isinstance(prefer, (int, float)):
        return tps[-1]
    return min(tps, key=lambda w: abs(w - float(prefer)))


def _risk_of(rows: pd.DataFrame) -> Optional[tuple[float, float, float, bool]]:
    """(events, n, risk, from_percent) summed over a trial's comparator arms; None when not computable."""
    ev_, n_, pct = 0.0, 0.0, False
    for r in rows.itertuples():
        n = r.n if pd.notna(r.n) else getattr(r, "arm_n", float("nan"))
        if pd.isna(n) or not n:
            return None
        if pd.notna(r.events):
            e = float(r.events)
        elif pd.notna(r.percent):
            try:
                e = float(r.percent) / 100.0 * float(n)
            except (TypeError, ValueError):
                return None
            pct = True
        else:
            return None
        ev_ += e
        n_ += float(n)
    if not n_:
        return None
    return ev_, n_, ev_ / n_, pct


def evidence_control_arms(ev: Any, question: Any, spec: Any) -> list[dict]:
    """Control-arm risks for ``spec`` across the evidence base: arms of the question's comparator
    regimens in randomised trials of its population and phase. One entry per trial:
    ``{study, risk, events, n, from_percent, timepoint_weeks, what, group}``."""
    from lnsynth.analyses.selection import one_record_per_arm

    from .answer import is_class_v_only

    phase = question.population.phase
    cv = question.population.class_v
    efficacy = spec.kind == "efficacy"
    frame = ev.outcomes_frame() if efficacy else ev.adverse_events_frame()
    if frame is None or not len(frame):
        return []
    col = "endpoint" if efficacy else "category"
    wanted = list(spec.endpoints if efficacy else spec.categories)
    frame = frame[frame[col].isin(wanted) & frame["regimen"].isin(question.comparator.regimens)]
    if "superseded_by" in frame:
        frame = frame[frame["superseded_by"].isna()]
    out = []
    for sid, g in frame.groupby("study", sort=False):
        st = ev.study(sid)
        if not st.randomised:
            continue
        v = is_class_v_only(st)
        if (cv == "exclude" and v) or (cv == "only" and not v):
            continue
        arms = {a.id for a in st.arms if a.regimen in question.comparator.regimens and _phase_ok(a.phase, phase)}
        g = g[g["arm"].isin(arms)]
        if efficacy:
            win = spec.window
            g = g[[win.contains(None if pd.isna(w) else float(w)) for w in g["timepoint_weeks"]]]
        elif getattr(spec, "periods", None) and "period" in g:
            g = g[[(None if pd.isna(p) else p) in spec.periods for p in g["period"]]]
        for what in wanted:
            x = g[g[col] == what]
            if not len(x):
                continue
            tp = None
            if efficacy:
                tps = sorted(set(x["timepoint_weeks"].dropna()))
                tp = _pick_timepoint(tps, spec.prefer) if tps else None
                if tp is not None:
                    x = x[x["timepoint_weeks"] == tp]
            if x["arm"].duplicated().any():  # one record per arm (best-ranked source) when several documents report it
                x, _ = one_record_per_arm(x, key=("arm",))
            got = _risk_of(x)
            if got is None:
                continue
            e, n, risk, pct = got
            out.append({"study": sid, "risk": risk, "events": e, "n": n, "from_percent": pct,
                        "timepoint_weeks": tp, "what": what, "group": setting_group(st)})
            break
    return out


def _included_arms(ev: Any, analysed: Sequence[Any]) -> list[dict]:
    return [{"study": t.study, "risk": t.events_ctrl / t.n_ctrl, "events": t.events_ctrl, "n": t.n_ctrl,
             "from_percent": False, "timepoint_weeks": t.timepoint_weeks, "what": t.endpoint,
             "group": setting_group(ev.study(t.study))} for t in analysed if t.n_ctrl]


def _as_dict(rule: Any) -> dict:
    return rule if isinstance(rule, dict) else rule.model_dump()


def _arm_text(a: dict) -> str:
    cnt = (f"{a['events']:.0f}/{a['n']:.0f}" if not a["from_percent"] else f"{100 * a['risk']:.1f}% of {a['n']:.0f} (printed %)")
    tp = f", {a['timepoint_weeks']:g} wk" if a.get("timepoint_weeks") is not None else ""
    return f"{a['study']} {cnt}{tp}"


def baseline_rows(ev: Any, question: Any, spec: Any, analysed: Sequence[Any], control_risk: Optional[float],
                  control_risk_source: str) -> tuple[dict, ...]:
    """The declared baseline risks of one outcome: ``({label, risk, source, rule}, ...)``; the
    first row is the answer's own assumed control risk. Absolute effects are added by
    :func:`absolute_rows` where the relative effect is known."""
    rows = [{"label": "included trials (answer)", "risk": control_risk, "source": control_risk_source, "rule": "answer"}]
    declared = list(getattr(question, "baseline_risks", None) or []) or list(DEFAULT_RULES)
    cache: dict = {}
    benefit_higher = getattr(spec, "benefit", "higher") == "higher"
    for rule in declared:
        r = _as_dict(rule)
        if r.get("outcomes") and spec.id not in r["outcomes"]:
            continue
        how = r.get("rule", "median")
        if how == "value":
            rows.append({"label": r["label"], "risk": float(r["risk"]), "source": r.get("source") or "declared", "rule": "value"})
            continue
        scope, setting = r.get("trials", "evidence"), r.get("setting", "any")
        if scope not in cache:
            cache[scope] = _included_arms(ev, analysed) if scope == "included" else evidence_control_arms(ev, question, spec)
        arms = [a for a in cache[scope] if setting == "any" or a["group"] == setting]
        where = ("control arm(s) of the trials this outcome analyses" if scope == "included" else
                 f"comparator arm(s) ({', '.join(question.comparator.regimens)}) of stored randomised trials "
                 f"({question.population.phase}, this outcome's endpoints and window)")
        where += "" if setting == "any" else f" in {setting} settings"
        if not arms:
            rows.append({"label": r["label"], "risk": None, "rule": how,
                         "source": f"{how} of the {where}: none reports this outcome"})
            continue
        risks = [a["risk"] for a in arms]
        if how == "worst":
            how_used = "lowest" if benefit_higher else "highest"
        else:
            how_used = how
        val = {"median": statistics.median, "lowest": min, "highest": max}[how_used](risks)
        label_how = how if how == how_used else f"{how} ({how_used})"
        rows.append({"label": r["label"], "risk": float(val), "rule": how,
                     "source": f"{label_how} of {len(arms)} {where}: " + "; ".join(_arm_text(a) for a in arms)})
    return tuple(rows)


__all__ = ["ASIAN_HINTS", "BaselineRiskError", "DEFAULT_RULES", "RULES", "absolute_rows", "add_user_baseline",
           "baseline_rows", "check_user_risk", "evidence_control_arms", "setting_group"]
