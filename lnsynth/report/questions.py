"""Report section: the clinical questions, each with its GRADE summary of findings.

Every table is rendered from :meth:`lnsynth.analyses.answer.Answer.to_dict`, the same object
``lnsynth answer ID --format json`` prints and ``GET /api/questions/{id}`` returns; the page also
embeds those objects (``<script type="application/json" id="answers-json">``) so anyone can check
that the report shows the same numbers as the other surfaces.
"""

from __future__ import annotations

import html
import json

from lnsynth import registry


def answers(ev, ctx) -> list:
    """Every question answered once per report, in clinical order (the catalogue's ``order``: add-on first)."""
    if "answers" not in ctx:
        from lnsynth.analyses.answer import answer_all

        ctx["answers"] = sorted(answer_all(ev), key=lambda a: (getattr(a.question, "order", 100), a.id))
    return ctx["answers"]


def _is_harm(o: dict) -> bool:
    return bool(o.get("harm", o.get("kind") == "adverse event"))


def _one(o: dict, what: str) -> str:
    e = html.escape
    k = o["k"]
    absolute = ""
    if o.get("per1000") is not None and o.get("control_risk") is not None:
        def sgn(v: float) -> str:
            return f"{abs(v):.0f} {'more' if v >= 0 else 'fewer'}"
        absolute = f", {sgn(o['per1000'])} per 1000 from {1000 * o['control_risk']:.0f}"
    return (f"<span class='{what}'>{what}: {e(o['outcome'].split(' (')[0])}, {o['measure']} {o['estimate']:.2f} "
            f"(95% CI {o['ci_low']:.2f} to {o['ci_high']:.2f}{absolute}; {k} trial{'s' if k != 1 else ''}, "
            f"{o['patients']} patients; certainty {e(o['certainty'] or 'not rated')})</span>")


def headline(a) -> str:
    """One line per question: its first estimable benefit outcome and its first estimable harm
    (or why none is), each with its certainty."""
    d = a.to_dict()
    e = html.escape
    est = [o for o in d["outcomes"] if o["estimate"] is not None]
    ben = next((o for o in est if not _is_harm(o)), None)
    harm = next((o for o in est if _is_harm(o)), None)
    head = f"<a href='#q-{e(d['id'])}'>{e(d['title'])}</a> [{e(d['relation'])}]: "
    if not est:
        return head + "no outcome estimable from the stored trials"
    parts = [_one(ben, "benefit") if ben else "<span class='benefit'>benefit: no benefit outcome estimable</span>",
             _one(harm, "harm") if harm else "<span class='harm'>harm: no harm outcome estimable from the stored trials</span>"]
    return head + "; ".join(parts)


def section_questions(ev, ctx):
    from lnsynth.analyses.grade import __doc__ as grade_doc

    from .markup import Section, figure_html
    from .sof import answer_html
    from .thresholds import report_block

    parts = [
        "<p>Each clinical question is answered by one pipeline: study selection (every stored trial is listed as "
        "included or excluded, with the reason), effect sizes, a random-effects model (REML, risk ratio) and GRADE "
        "certainty from five domains. A question never mixes relations: a calcineurin inhibitor <em>added to</em> MMF "
        "(add-on) is a different question from one <em>instead of</em> MMF (substitution). The command line "
        "(<code>lnsynth answer ID</code>) and the web app (<code>/questions/ID</code>) show these same numbers.</p>",
        "<p class='meta'>Absolute effects use the median control-arm risk of the included trials and, in further columns, "
        "each baseline risk the question declares (e.g. the median of multinational or of Asian trials' control arms, the "
        "poorest-prognosis control arm), each with its source; <code>lnsynth answer ID --baseline-risk R</code> and the web "
        "page add a panel's own value. Every row states its timepoint rule and each trial's timepoint. Each certainty has "
        "one footnote per GRADE domain giving the judgement and the numbers behind it; a panel's override is shown with its "
        "written reason and the rule's own judgement. Counts that no integer reproduces from a printed percentage are "
        "approximated as <code>round(pct/100*n)</code> and flagged in the notes.</p>",
    ]
    figs = []
    payload = []
    for a in answers(ev, ctx):
        d = a.to_dict()
        payload.append(d)
        parts.append(answer_html(a))
        parts.append(report_block(ev, ctx, a, d))  # decision thresholds, what would change the answer, update notice
        main = next((o for o in a.outcomes if o.result is not None and o.k >= 2), None)
        if main is not None:
            from lnsynth.plots.forest import forest_plot

            od = main.to_dict()
            arms = {"events_int": [t.events_int for t in main.analysed], "n_int": [t.n_int for t in main.analysed],
                    "events_ctrl": [t.events_ctrl for t in main.analysed], "n_ctrl": [t.n_ctrl for t in main.analysed]}
            fav = ("favours comparator", "favours intervention") if main.spec.benefit == "higher" else (
                "favours intervention", "favours comparator")
            robs = [getattr(ev.study(t.study), "rob", None) for t in main.analysed]  # RoB 2 traffic lights where stored
            fig = forest_plot(main.result, labels=[t.label for t in main.analysed], title=f"{a.question.title}: {main.spec.label}",
                              transf="exp" if registry.is_ratio(main.measure) else None, arm_data=arms,
                              arm_labels=("Intervention", "Comparator"), favours=fav,
                              rob=robs if any(r is not None and r.assessed for r in robs) else None)
            fh = figure_html(fig, f"Forest plot of {main.spec.label} for {a.question.title}: {od['k']} trials, pooled "
                                  f"{od['measure']} {od['estimate']:.2f} (95% CI {od['ci_low']:.2f} to {od['ci_high']:.2f}).",
                             f"{html.escape(main.spec.label)}: {od['measure']} {od['estimate']:.2f} [{od['ci_low']:.2f}, "
                             f"{od['ci_high']:.2f}], k = {od['k']}, {od['patients']} patients.")
            figs.append(fh)
            parts.append(fh)
    blob = json.dumps(payload, ensure_ascii=False, sort_keys=True).replace("</", "<\\/")
    parts.append(f"<script type='application/json' id='answers-json'>{blob}</script>")
    parts.append(f"<details><summary>Certainty rules used</summary><pre>{html.escape(grade_doc or '')}</pre></details>")
    parts.append("<p class='disclaimer'>A summary of published evidence, not a recommendation for any patient.</p>")
    return Section("questions", "Clinical questions: summary of findings", "".join(parts), figures=figs)
