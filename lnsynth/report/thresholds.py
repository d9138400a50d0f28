"""Decision thresholds and update notices, rendered for the report and the web question page (issue 22).

Presentation only: the numbers come from :func:`lnsynth.analyses.threshold.new_trial_thresholds`
(what would change the answer) and :func:`lnsynth.analyses.updates.latest_notices` (what the
latest ``lnsynth update`` run changed against the run before).  :func:`thresholds_html` and
:func:`notice_html` read only those plain dicts, the question and ``Answer.to_dict()``.
"""

from __future__ import annotations

import html
from typing import Any, Optional

__all__ = ["cached_thresholds", "notice_html", "report_block", "thresholds_html"]

_RATIO_FIELDS = ("estimate", "ci_low", "ci_high")


def _fmt(field: Optional[str], x: Any) -> str:
    if x is None:
        return "–"
    try:
        v = float(x)
    except (TypeError, ValueError):
        return html.escape(str(x))
    if field in _RATIO_FIELDS:
        return f"{v:.3g}"
    return f"{v:+.1f}" if field and field.startswith("per1000") else f"{v:.4g}"


def _side(now: Any, value: Any) -> str:
    if now is None or value is None:
        return "not estimable"
    return "at or above" if float(now) >= float(value) else "below"


def cached_thresholds(ev: Any, question_id: str, cache: dict) -> dict:
    """:func:`~lnsynth.analyses.threshold.new_trial_thresholds` once per question per ``cache``.

    An analysis error is kept as ``{"error": message}`` (shown on the page, never raised).
    """
    if question_id not in cache:
        from lnsynth.analyses.threshold import new_trial_thresholds

        try:
            cache[question_id] = new_trial_thresholds(ev, question_id)
        except (ValueError, ArithmeticError, LookupError) as exc:
            cache[question_id] = {"error": f"{type(exc).__name__}: {exc}"}
    return cache[question_id]


def _outcome_row(answer_dict: Optional[dict], outcome_id: Optional[str]) -> dict:
    for o in (answer_dict or {}).get("outcomes", []):
        if o.get("outcome_id") == outcome_id:
            return o
    return {}


def thresholds_html(d: dict, question: Any = None, answer_dict: Optional[dict] = None) -> str:
    """The "Decision thresholds" block of one question.

    Parameters
    ----------
    d : dict
        :func:`~lnsynth.analyses.threshold.new_trial_thresholds` of the question (or ``{"error": ...}``).
    question : lnsynth.analyses.questions.Question, optional
        Adds the declared thresholds the new-trial analysis does not cover (certainty levels, other outcomes).
    answer_dict : dict, optional
        ``Answer.to_dict()``: current values of those other thresholds.
    """
    from lnsynth.analyses.questions import DEFAULT_THRESHOLDS

    e = html.escape
    qid = (d.get("question") if isinstance(d, dict) else None) or getattr(question, "id", "") or ""
    head = f"<div class='thresholds' id='thresholds-{e(qid)}'><h4>Decision thresholds</h4>"
    if not isinstance(d, dict) or "error" in d:
        why = d.get("error") if isinstance(d, dict) else "no result"
        return head + f"<p class='warn'>The threshold analysis could not be run: {e(str(why))}.</p></div>"
    c = d.get("current") or {}
    cr = d.get("assumed_control_risk")
    intro = (f"<p class='meta'>Headline outcome: <strong>{e(str(d.get('outcome_label') or d.get('outcome')))}</strong>, now "
             f"{e(str(d.get('measure') or ''))} {_fmt('estimate', c.get('estimate'))} (95% CI {_fmt('ci_low', c.get('ci_low'))} "
             f"to {_fmt('ci_high', c.get('ci_high'))}), certainty {e(str(c.get('certainty') or 'not rated'))}. "
             "<em>What would change the answer</em>: the smallest new two-arm trial (patients per arm) at the assumed "
             f"control risk {('%.3f' % cr) if cr is not None else '–'} "
             f"({e(str(d.get('control_risk_source') or 'none'))}) whose result would move the row across the threshold "
             f"(searched up to {d.get('n_max', '–')} per arm).</p>")
    rows = []
    covered = set()
    for r in d.get("results", []):
        t = r.get("threshold") or {}
        f = t.get("field")
        covered.add((d.get("outcome"), f, t.get("value")))
        n = r.get("new_trial_n")
        change = (f"{n} per arm ({2 * n} in total)" if n is not None else "none found")
        detail = e(str(r.get("direction") or "")) if n is not None else e(str(r.get("note") or ""))
        rows.append(
            f"<tr data-field='{e(str(f))}'><td>{e(str(t.get('label') or ''))}"
            + (f"<br><span class='meta'>assumption: {e(str(t['assumption']))}</span>" if t.get("assumption") else "")
            + f"</td><td><code>{e(str(f))}</code></td><td class='num'>{_fmt(f, t.get('value'))}</td>"
            f"<td class='num current'>{_fmt(f, r.get('current'))}</td><td>{_side(r.get('current'), t.get('value'))}</td>"
            f"<td class='num new-trial-n'>{e(change)}</td><td>{e(str(r.get('trial_result') or '–'))}</td>"
            f"<td>{detail}</td></tr>")
    for t in getattr(question, "thresholds", None) or []:
        if t.certainty_levels is not None:
            o = _outcome_row(answer_dict, t.outcome or d.get("outcome"))
            rows.append(
                f"<tr data-field='certainty'><td>{e(t.name())}</td><td><code>certainty</code></td>"
                f"<td class='num'>{t.certainty_levels} level(s)</td><td class='current'>{e(str(o.get('certainty') or '–'))}</td>"
                "<td>–</td><td>not analysed</td><td>–</td><td>a GRADE judgement: no single trial is computed for it</td></tr>")
        elif (t.outcome or d.get("outcome"), t.field, t.value) not in covered:
            o = _outcome_row(answer_dict, t.outcome)
            now = o.get(t.field) if o else None
            rows.append(
                f"<tr data-field='{e(str(t.field))}'><td>{e(t.name())}"
                + (f"<br><span class='meta'>assumption: {e(t.assumption)}</span>" if t.assumption else "")
                + f"</td><td><code>{e(str(t.field))}</code></td><td class='num'>{_fmt(t.field, t.value)}</td>"
                f"<td class='num current'>{_fmt(t.field, now)}</td><td>{_side(now, t.value)}</td>"
                "<td>not analysed</td><td>–</td><td>not the headline outcome (<code>lnsynth threshold</code> analyses the headline "
                "outcome only)</td></tr>")
    table = ("<table class='thresholds-table'><thead><tr><th>Threshold</th><th>Field</th><th>Value</th><th>Now</th>"
             "<th>Now is</th><th>Smallest new trial</th><th>Trial result assumed</th><th>What would change</th></tr></thead>"
             "<tbody>" + "".join(rows) + "</tbody></table>")
    always = "; ".join(e(x) for x in DEFAULT_THRESHOLDS)
    return head + intro + table + f"<p class='meta'>Always watched by <code>lnsynth update</code>: {always}.</p></div>"


def _row_text(r: Optional[dict]) -> str:
    if not r:
        return "–"
    ci = (f" (95% CI {_fmt('ci_low', r.get('ci_low'))} to {_fmt('ci_high', r.get('ci_high'))})"
          if r.get("ci_low") is not None else "")
    return (f"{_fmt('estimate', r.get('estimate'))}{ci}, k={r.get('k') if r.get('k') is not None else '–'}, "
            f"certainty {r.get('certainty') or 'not rated'}")


def notice_html(notice: Optional[dict], question_id: str) -> str:
    """The update notice of one question: the rows the latest ``lnsynth update`` run changed and the
    thresholds crossed (``notice`` from :func:`lnsynth.analyses.updates.notices_for`).

    ``None`` (no snapshot stored): nothing is said.
    """
    if notice is None:
        return ""
    e = html.escape
    run = f"run {notice.get('run')}, snapshot <code>{e(str(notice.get('snapshot') or '')[:12])}</code>" + (
        f", {e(str(notice['created_at']))}" if notice.get("created_at") else "")
    base = f"<div class='update-notice' id='update-notice-{e(question_id)}'"
    if notice.get("previous") is None:
        return (base + "><p class='meta'>Latest <code>lnsynth update</code>: " + run + ", the first stored snapshot: "
                "no earlier answer to compare with.</p></div>")
    changed = notice.get("changed") or []
    if not changed:
        return (base + f"><p class='meta'>No change and no decision threshold crossed by the latest <code>lnsynth update</code> "
                f"({run}) against run {e(str(notice.get('previous_run')))}.</p></div>")
    crossed = [x for c in changed for x in c.get("crossed", [])]
    rows = "".join(
        f"<tr data-outcome='{e(str(c['outcome']))}'><td>{e(str(c['outcome']))}</td><td>{e(_row_text(c.get('before')))}</td>"
        f"<td>{e(_row_text(c.get('after')))}</td><td>{e(', '.join(c.get('added_trials') or []) or '–')}"
        + (f"<br><span class='meta'>removed: {e(', '.join(c['removed_trials']))}</span>" if c.get("removed_trials") else "")
        + f"</td><td>{e('; '.join(c.get('crossed') or []) or 'none')}</td></tr>"
        for c in changed)
    title = ("<p><strong>Decision threshold crossed</strong> by the latest <code>lnsynth update</code> "
             if crossed else "<p><strong>Changed</strong> (no decision threshold crossed) in the latest "
             "<code>lnsynth update</code> ")
    items = "".join(f"<li>{e(x)}</li>" for x in crossed)
    return (base + (" role='alert'" if crossed else "") + f" data-crossed='{'true' if crossed else 'false'}'>"
            + title + f"({run}) against run {e(str(notice.get('previous_run')))}:</p>"
            + (f"<ul class='crossed'>{items}</ul>" if items else "")
            + "<table class='update-diff'><thead><tr><th>Outcome</th><th>Before</th><th>After</th><th>Trials added</th>"
            "<th>Thresholds crossed</th></tr></thead><tbody>" + rows + "</tbody></table></div>")


def report_block(ev: Any, ctx: dict, a: Any, answer_dict: Optional[dict] = None) -> str:
    """The report's thresholds block and update notice for one answered question.

    ``ctx["threshold_cache"]`` keeps each question's analysis for the build; ``ctx["snapshots"]``
    (optional: a store or :class:`~lnsynth.analyses.updates.StateDir`) supplies the notice.
    """
    from lnsynth.analyses.updates import latest_notices, notices_for

    q = a.question
    d = cached_thresholds(ev, q.id, ctx.setdefault("threshold_cache", {}))
    notice = ""
    if ctx.get("snapshots") is not None:
        if "notices" not in ctx:
            ctx["notices"] = latest_notices(ctx["snapshots"])
        notice = notice_html(notices_for(ctx["notices"], q.id), q.id)
    return notice + thresholds_html(d, q, answer_dict if answer_dict is not None else a.to_dict())
