"""Summary-of-findings rendering of one answered clinical question (markdown and HTML).

Both renderers read only ``Answer.to_dict()`` (the JSON contract of ``lnsynth answer`` and
``GET /api/questions/{id}``), so the CLI, the report and the web page show the same numbers.
Every row shows the timepoint rule and each trial's timepoint, the relative effect with its
model, one absolute effect per declared baseline risk (GRADE Handbook 5.2.2), and the certainty
with one footnote per GRADE domain stating the judgement and the numbers behind it.
"""

from __future__ import annotations

import html
from typing import Any, Optional

MAIN_BASELINE = "included trials (answer)"


def _num(x: Optional[float], d: int = 2) -> str:
    return "–" if x is None else f"{x:.{d}f}"


def _rel(o: dict) -> str:
    if o["estimate"] is None:
        return "not estimable"
    return f"{o['measure']} {_num(o['estimate'])} ({_num(o['ci_low'])} to {_num(o['ci_high'])})"


def _model(o: dict) -> str:
    m = o.get("method") or o.get("model")
    if not m or o["estimate"] is None:
        return ""
    if m == "none":
        return "not pooled (single trial)" if o["k"] == 1 else "not pooled"
    return str(m)


def _sgn(v: float) -> str:
    return f"{abs(v):.0f} {'more' if v >= 0 else 'fewer'}"


def _abs(o: dict) -> str:
    if o["estimate"] is None or o["per1000"] is None:
        return "–"
    return f"{_sgn(o['per1000'])} per 1000 ({_sgn(o['per1000_low'])} to {_sgn(o['per1000_high'])})"


def _cr(o: dict) -> str:
    return "–" if o["control_risk"] is None else f"{1000 * o['control_risk']:.0f} per 1000"


def _baseline_cell(b: Optional[dict]) -> str:
    """``risk per 1000: absolute effect (CI)`` for one baseline row."""
    if b is None or b.get("risk") is None:
        return "–"
    head = f"{1000 * b['risk']:.0f} per 1000"
    if b.get("per1000") is None:
        return head
    return f"{head}: {_sgn(b['per1000'])} ({_sgn(b['per1000_low'])} to {_sgn(b['per1000_high'])})"


def _events(o: dict) -> str:
    if not o["k"]:
        return "–"
    return f"{o['events_int']}/{o['n_int']} vs {o['events_ctrl']}/{o['n_ctrl']}"


def timepoint_text(o: dict) -> str:
    """The row's timepoint rule and each analysed trial's timepoint."""
    w = o.get("window") or "any timepoint"
    rule = o.get("timepoint_rule") or (("latest timepoint reported" if w == "any timepoint" else f"latest timepoint within {w}")
                                       if o.get("kind") == "efficacy" else "as reported by each trial")
    per = [f"{t['study']} {t['timepoint_weeks']:g} wk" if t.get("timepoint_weeks") is not None else f"{t['study']} period as reported"
           for t in o.get("trials", []) if t.get("in_model", True)]
    return rule + (f" [{'; '.join(per)}]" if per else "")


def baseline_labels(d: dict) -> list[str]:
    """The extra baseline-risk columns of a question (every label but the answer's own), in order."""
    seen: dict[str, None] = {}
    for o in d["outcomes"]:
        for b in o.get("baseline_risks") or []:
            if b["label"] != MAIN_BASELINE:
                seen.setdefault(b["label"], None)
    return list(seen)


def _baseline(o: dict, label: str) -> Optional[dict]:
    return next((b for b in o.get("baseline_risks") or [] if b["label"] == label), None)


def _footnotes(o: dict, foot: list[str]) -> list[int]:
    refs = []
    for r in o["reasons"]:
        foot.append(r)
        refs.append(len(foot))
    return refs


def _overridden(o: dict) -> bool:
    return any(dm.get("overridden") for dm in o.get("domains") or [])


def _baseline_sources(d: dict) -> list[str]:
    out = []
    for o in d["outcomes"]:
        for b in o.get("baseline_risks") or []:
            if b.get("source"):
                out.append(f"{o['outcome']}: {b['label']}: {b['source']}")
    return out


def profiles_markdown(rows: list) -> list[str]:
    """The "Patient profiles" list (issue 21, item 6): review statements and the included trials' subgroup records."""
    out = ["", "### Patient profiles", ""]
    for r in rows:
        src = f" [{r['source']}, {r['location']}: \"{r['quote']}\"]" if r.get("source") else ""
        out.append(f"- **{r['profile']}** ({r['kind']}): {r['statement']}{src}")
    return out if rows else []


def profiles_html(rows: list) -> str:
    """HTML "Patient profiles" list under the summary of findings."""
    if not rows:
        return ""
    e = html.escape
    items = "".join(
        f"<li><strong>{e(r['profile'])}</strong> <span class='meta'>({e(r['kind'])})</span>: {e(r['statement'])}"
        + (f" <span class='meta'>[{e(r['source'])}, {e(r['location'] or '')}: &ldquo;{e(r['quote'] or '')}&rdquo;]</span>"
           if r.get("source") else "") + "</li>" for r in rows)
    return f"<details class='profiles'><summary>Patient profiles ({len(rows)} rows)</summary><ul>{items}</ul></details>"


def answer_markdown(a: Any) -> str:
    """Markdown summary of findings with footnotes, inclusion table and notes."""
    d = a.to_dict() if hasattr(a, "to_dict") else a
    extra = baseline_labels(d)
    out = [f"## {d['title']}", "", f"*{d['question']}*", "",
           f"Population: {d['population']}. Intervention: {d['intervention']}. Comparator: {d['comparator']}. "
           f"Relation: **{d['relation']}**. Plan: {d['plan']['measure']}, {d['plan']['model']} ({d['plan']['tau2']}), "
           f"approximate counts {'used and flagged' if d['plan']['approximate'] else 'left out'}.", "",
           "| Outcome | Timepoint (rule [trials]) | Trials (patients) | Events int vs ctrl | Relative effect (95% CI) | Model "
           "| Assumed control risk | Absolute effect | " + "".join(f"Baseline: {x} |" for x in extra) + " Certainty |",
           "|" + "---|" * (9 + len(extra))]
    foot: list[str] = []
    for o in d["outcomes"]:
        refs = _footnotes(o, foot)
        cert = (o["certainty"] or "not rated") + (" (panel override)" if _overridden(o) else "") + (
            f" [{','.join(map(str, refs))}]" if refs else "")
        cells = [o["outcome"] + (f" (counted: {o['counted']})" if o.get("counted") else ""), timepoint_text(o), f"{o['k']} ({o['patients']})", _events(o), _rel(o), _model(o), _cr(o),
                 _abs(o)] + [_baseline_cell(_baseline(o, x)) for x in extra] + [cert]
        out.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    out.append("")
    for i, f in enumerate(foot, 1):
        out.append(f"{i}. {f}")
    src = _baseline_sources(d)
    if src:
        out += ["", "### Baseline risks (assumed control risks) and their sources", ""] + [f"- {s}" for s in src]
    out += profiles_markdown(d.get("profiles") or [])
    out += ["", "### Trials", "", "| Trial | Included | Reason |", "|---|---|---|"]
    for r in d["inclusion"]:
        out.append(f"| {r['study']} | {'yes' if r['included'] else 'no'} | {r['reason']} |")
    notes = [n for o in d["outcomes"] for n in o["notes"]]
    per_outcome_x = [f"{o['outcome']}: {x['study']}: {x['reason']}" for o in d["outcomes"] for x in o["excluded"]]
    if per_outcome_x:
        out += ["", "### Left out of single outcomes", ""] + [f"- {x}" for x in per_outcome_x]
    if notes:
        out += ["", "### Notes", ""] + [f"- {n}" for n in dict.fromkeys(notes)]
    ev = d.get("evidence") or {}
    if ev.get("statement"):
        out += ["", f"Evidence currency: {ev['statement']}"]
    return "\n".join(out)


def answer_html(a: Any, anchor: Optional[str] = None) -> str:
    """HTML summary-of-findings table (GRADE style) with footnotes and the inclusion table."""
    d = a.to_dict() if hasattr(a, "to_dict") else a
    e = html.escape
    extra = baseline_labels(d)
    rows, foot = [], []
    for o in d["outcomes"]:
        refs = _footnotes(o, foot)
        sup = f"<sup>{','.join(str(i) for i in refs)}</sup>" if refs else ""
        ov = " <span class='override'>(panel override)</span>" if _overridden(o) else ""
        model = _model(o)
        rows.append(
            f"<tr data-outcome='{e(o['outcome_id'])}'><td>{e(o['outcome'])}"
            + (f"<br><span class='meta'>counted: {e(o['counted'])}</span>" if o.get("counted") else "")
            + f"</td><td class='tp'>{e(timepoint_text(o))}</td>"
            f"<td>{o['k']} ({o['patients']})</td><td>{e(_events(o))}</td><td class='num'>{e(_rel(o))}"
            + (f"<br><span class='meta'>{e(model)}</span>" if model else "") + "</td>"
            f"<td>{e(_cr(o))}</td><td>{e(_abs(o))}</td>"
            + "".join(f"<td class='baseline'>{e(_baseline_cell(_baseline(o, x)))}</td>" for x in extra)
            + f"<td><strong>{e(o['certainty'] or 'not rated')}</strong>{ov}{sup}</td></tr>")
    inc = "".join(
        f"<tr class='{'inc' if r['included'] else 'exc'}'><td>{e(r['study'])}</td><td>{'included' if r['included'] else 'excluded'}</td>"
        f"<td>{e(r['reason'])}</td></tr>" for r in d["inclusion"])
    per_x = "".join(f"<li>{e(o['outcome'])}: <strong>{e(x['study'])}</strong>: {e(x['reason'])}</li>"
                    for o in d["outcomes"] for x in o["excluded"])
    notes = "".join(f"<li>{e(n)}</li>" for n in dict.fromkeys(n for o in d["outcomes"] for n in o["notes"]))
    src = "".join(f"<li>{e(s)}</li>" for s in _baseline_sources(d))
    plan = d["plan"]
    return (
        f"<section class='question' id='{e(anchor or 'q-' + d['id'])}'><h3>{e(d['title'])}</h3>"
        f"<p><em>{e(d['question'])}</em></p>"
        f"<p class='meta'>Population: {e(d['population'])}. Intervention: {e(d['intervention'])}. Comparator: {e(d['comparator'])}. "
        f"Relation: <strong>{e(d['relation'])}</strong>. Plan: {e(plan['measure'])}, {e(plan['model'])} ({e(plan['tau2'])}); "
        f"approximate counts {'used and flagged' if plan['approximate'] else 'left out'}; assumed control risk: median control-arm "
        f"risk of the included trials, and one column per declared baseline risk (sources below the table).</p>"
        "<div class='table-wrap'><table class='sof data'><thead><tr><th>Outcome</th><th>Timepoint (rule [trials])</th>"
        "<th>Trials (patients)</th><th>Events int vs ctrl</th><th>Relative effect (95% CI)</th><th>Assumed control risk</th>"
        "<th>Absolute effect (95% CI)</th>"
        + "".join(f"<th>Baseline: {e(x)} (risk: absolute effect, 95% CI)</th>" for x in extra)
        + f"<th>Certainty</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
        f"<ol class='footnotes'>{''.join(f'<li>{e(f)}</li>' for f in foot)}</ol>"
        + (f"<details><summary>Baseline risks and their sources</summary><ul>{src}</ul></details>" if src else "")
        + profiles_html(d.get("profiles") or [])
        + f"<details><summary>Trials included and excluded, with reasons ({sum(r['included'] for r in d['inclusion'])} included)</summary>"
        f"<table><thead><tr><th>Trial</th><th>Decision</th><th>Reason</th></tr></thead><tbody>{inc}</tbody></table></details>"
        + (f"<details><summary>Left out of single outcomes</summary><ul>{per_x}</ul></details>" if per_x else "")
        + (f"<details><summary>Notes (approximations, combined arms, sources)</summary><ul>{notes}</ul></details>" if notes else "")
        + "</section>"
    )


def sof_frame_rows(d: dict) -> list[dict]:
    """One flat row per outcome with the baseline-risk columns (``lnsynth answer --format csv``):
    ``baseline[<label>]_risk``, ``_per1000``, ``_per1000_low``, ``_per1000_high`` for every label of the question."""
    labels: dict[str, None] = {}
    for o in d["outcomes"]:
        for b in o.get("baseline_risks") or []:
            labels.setdefault(b["label"], None)
    out = []
    for o in d["outcomes"]:
        row: dict = {"outcome_id": o["outcome_id"], "timepoint": timepoint_text(o)}
        for lab in labels:
            b = _baseline(o, lab) or {}
            for k in ("risk", "per1000", "per1000_low", "per1000_high"):
                row[f"baseline[{lab}]_{k}"] = b.get(k)
        out.append(row)
    return out
