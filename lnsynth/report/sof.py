"""Summary-of-findings rendering of one answered clinical question (markdown and HTML).

Both renderers read only ``Answer.to_dict()`` (the JSON contract of ``lnsynth answer`` and
``GET /api/questions/{id}``), so the CLI, the report and the web page show the same numbers.
"""

from __future__ import annotations

import html
from typing import Any, Optional


def _num(x: Optional[float], d: int = 2) -> str:
    return "–" if x is None else f"{x:.{d}f}"


def _rel(o: dict) -> str:
    if o["estimate"] is None:
        return "not estimable"
    return f"{o['measure']} {_num(o['estimate'])} ({_num(o['ci_low'])} to {_num(o['ci_high'])})"


def _abs(o: dict) -> str:
    if o["estimate"] is None or o["per1000"] is None:
        return "–"
    def sgn(v: float) -> str:
        return f"{abs(v):.0f} {'more' if v >= 0 else 'fewer'}"
    return f"{sgn(o['per1000'])} per 1000 ({sgn(o['per1000_low'])} to {sgn(o['per1000_high'])})"


def _cr(o: dict) -> str:
    return "–" if o["control_risk"] is None else f"{1000 * o['control_risk']:.0f} per 1000"


def _events(o: dict) -> str:
    if not o["k"]:
        return "–"
    return f"{o['events_int']}/{o['n_int']} vs {o['events_ctrl']}/{o['n_ctrl']}"


def answer_markdown(a: Any) -> str:
    """Markdown summary of findings with footnotes, inclusion table and notes."""
    d = a.to_dict() if hasattr(a, "to_dict") else a
    out = [f"## {d['title']}", "", f"*{d['question']}*", "",
           f"Population: {d['population']}. Intervention: {d['intervention']}. Comparator: {d['comparator']}. "
           f"Relation: **{d['relation']}**. Plan: {d['plan']['measure']}, {d['plan']['model']} ({d['plan']['tau2']}), "
           f"approximate counts {'used and flagged' if d['plan']['approximate'] else 'left out'}.", "",
           "| Outcome | Trials (patients) | Events int vs ctrl | Relative effect (95% CI) | Assumed control risk | Absolute effect | Certainty |",
           "|---|---|---|---|---|---|---|"]
    foot: list[str] = []
    for o in d["outcomes"]:
        refs = []
        for r in o["reasons"]:
            foot.append(r)
            refs.append(str(len(foot)))
        cert = (o["certainty"] or "not rated") + (f" [{','.join(refs)}]" if refs else "")
        out.append(f"| {o['outcome']} | {o['k']} ({o['patients']}) | {_events(o)} | {_rel(o)} | {_cr(o)} | {_abs(o)} | {cert} |")
    out.append("")
    for i, f in enumerate(foot, 1):
        out.append(f"{i}. {f}")
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
    rows, foot = [], []
    for o in d["outcomes"]:
        refs = []
        for r in o["reasons"]:
            foot.append(r)
            refs.append(len(foot))
        sup = f"<sup>{','.join(str(i) for i in refs)}</sup>" if refs else ""
        rows.append(
            f"<tr data-outcome='{e(o['outcome_id'])}'><td>{e(o['outcome'])}</td><td>{o['k']} ({o['patients']})</td>"
            f"<td>{e(_events(o))}</td><td class='num'>{e(_rel(o))}</td><td>{e(_cr(o))}</td><td>{e(_abs(o))}</td>"
            f"<td><strong>{e(o['certainty'] or 'not rated')}</strong>{sup}</td></tr>")
    inc = "".join(
        f"<tr class='{'inc' if r['included'] else 'exc'}'><td>{e(r['study'])}</td><td>{'included' if r['included'] else 'excluded'}</td>"
        f"<td>{e(r['reason'])}</td></tr>" for r in d["inclusion"])
    per_x = "".join(f"<li>{e(o['outcome'])}: <strong>{e(x['study'])}</strong>: {e(x['reason'])}</li>"
                    for o in d["outcomes"] for x in o["excluded"])
    notes = "".join(f"<li>{e(n)}</li>" for n in dict.fromkeys(n for o in d["outcomes"] for n in o["notes"]))
    plan = d["plan"]
    return (
        f"<section class='question' id='{e(anchor or 'q-' + d['id'])}'><h3>{e(d['title'])}</h3>"
        f"<p><em>{e(d['question'])}</em></p>"
        f"<p class='meta'>Population: {e(d['population'])}. Intervention: {e(d['intervention'])}. Comparator: {e(d['comparator'])}. "
        f"Relation: <strong>{e(d['relation'])}</strong>. Plan: {e(plan['measure'])}, {e(plan['model'])} ({e(plan['tau2'])}); "
        f"approximate counts {'used and flagged' if plan['approximate'] else 'left out'}; assumed control risk: median control-arm risk.</p>"
        "<table class='sof data'><thead><tr><th>Outcome</th><th>Trials (patients)</th><th>Events int vs ctrl</th>"
        "<th>Relative effect (95% CI)</th><th>Assumed control risk</th><th>Absolute effect (95% CI)</th><th>Certainty</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
        f"<ol class='footnotes'>{''.join(f'<li>{e(f)}</li>' for f in foot)}</ol>"
        f"<details><summary>Trials included and excluded, with reasons ({sum(r['included'] for r in d['inclusion'])} included)</summary>"
        f"<table><thead><tr><th>Trial</th><th>Decision</th><th>Reason</th></tr></thead><tbody>{inc}</tbody></table></details>"
        + (f"<details><summary>Left out of single outcomes</summary><ul>{per_x}</ul></details>" if per_x else "")
        + (f"<details><summary>Notes (approximations, combined arms, sources)</summary><ul>{notes}</ul></details>" if notes else "")
        + "</section>"
    )
