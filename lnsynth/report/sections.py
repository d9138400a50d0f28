"""Report sections built on the analysis engines (network, sensitivity, simulator; the
clinical questions' summaries of findings are in :mod:`lnsynth.report.questions`). Each builder takes the evidence base and a shared
context dict (results computed once and reused, e.g. by the summary of findings)."""

from __future__ import annotations

import html
import math
import warnings

import pandas as pd


def _S():
    from .markup import Section, figure_html

    return Section, figure_html


def _fmt(x, d=2) -> str:
    return "NA" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def _table(df: pd.DataFrame, caption: str = "", table_id: str = "") -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in df.itertuples(index=False))
    cap = f"<caption>{html.escape(caption)}</caption>" if caption else ""
    tid = f' id="{table_id}"' if table_id else ""
    return f"<table{tid}>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ----------------------------------------------------------------------------- network


def section_network(ev, ctx):
    Section, figure_html = _S()
    from lnsynth.analyses.network_data import REFERENCE_NODE
    from lnsynth.analyses.network_evidence import evidence_network
    from lnsynth.analyses.rederive import rederive
    from lnsynth.plots.network import network_graph, nma_forest

    parts, figs = [], []
    d, fit, _ = evidence_network(ev, "complete remission", raise_errors=True, min_studies=0)
    ctx["nma"] = fit
    parts.append(
        f"<p>Contrast-based random-effects network meta-analysis (REML, log odds ratio, one tau² with correlation 1/2 between "
        f"contrasts of multi-arm studies, as metafor <code>rma.mv</code>) of <strong>complete remission</strong> across "
        f"{d.k} induction trials ({d.patients} patients); reference: {REFERENCE_NODE}. tau² = {_fmt(float(fit.tau2), 3)}.</p>"
    )
    if d.notes or d.excluded:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in list(d.notes) + [f"{a}: excluded ({b})" for a, b in d.excluded]) + "</ul>")
    parts.append(_transitivity(ev, d.frame))
    fh = figure_html(network_graph(fit), f"Network graph of {len(fit.treatments)} induction regimens; edges are direct comparisons, width proportional to the number of trials.",
                     "Network of induction regimens (complete remission). Edge width: number of trials; node size: patients.")
    figs.append(fh)
    parts.append(fh)
    fh = figure_html(nma_forest(fit), "Forest plot of network odds ratios for complete remission of each regimen versus IV cyclophosphamide.",
                     f"Network estimates vs {REFERENCE_NODE} (odds ratio, 95% CI).")
    figs.append(fh)
    parts.append(fh)
    lt = fit.league_table(exponentiate=True).reset_index().rename(columns={"index": ""})
    parts.append("<h3>League table (odds ratio, row vs column)</h3>" + _table(lt, table_id="league-table"))
    rk = fit.sucra(small_values="bad").assign(pscore=lambda x: x["treatment"].map(fit.pscores(small_values="bad")))
    rk = rk.sort_values("pscore", ascending=False)
    rk_fmt = rk.assign(**{c: rk[c].map(lambda v: f"{v:.3f}") for c in ("sucra", "mean_rank", "p_best", "pscore")})
    parts.append("<h3>Rankings (higher remission is better)</h3>" + _table(rk_fmt, table_id="ranking-table")
                 + "<p class='meta'>Rankings from sparse, mostly single-trial edges are fragile; read them with the intervals above.</p>")
    q = fit.q_decomposition().reset_index()
    q_fmt = q.assign(Q=q["Q"].map(lambda v: f"{v:.3f}"), pvalue=q["pvalue"].map(lambda v: "NA" if pd.isna(v) else f"{v:.3f}"))
    dbt = fit.design_by_treatment()
    ns = fit.node_split()
    parts.append("<h3>Heterogeneity and inconsistency</h3>" + _table(q_fmt, table_id="qdecomp-table")
                 + f"<p>Design-by-treatment interaction: chi² = {_fmt(dbt['chi2'], 3)}, df = {dbt['df']}, p = {_fmt(dbt['pvalue'], 3)}. "
                 + ("Node-splitting: the network has no closed loop, so no comparison has both direct and indirect evidence; "
                    "consistency cannot be checked from these trials.</p>" if ns.empty else "</p>" + _table(ns.round(3), table_id="nodesplit-table")))
    from .cinema import cinema_html

    parts.append(cinema_html(ev, fit=fit, data=d))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        red = rederive(ev)
    ctx["rederive"] = red
    f = red.frame
    tab = pd.DataFrame({
        "Synthesis": f["synthesis"],
        "Comparison": f["treatment"] + " vs " + f["control"],
        "Outcome": f["outcome"],
        "Published": [f"{m} {_fmt(e)} [{_fmt(l)}, {_fmt(h)}]" for m, e, l, h in zip(f["measure"], f["published_estimate"], f["published_ci_low"], f["published_ci_high"])],
        "Published trials (patients)": [f"{t} ({'NA' if pd.isna(p) else int(p)})" for t, p in zip(f["published_trials"], f["published_patients"])],
        "Re-derived": ["not estimable" if pd.isna(e) else f"{_fmt(e)} [{_fmt(l)}, {_fmt(h)}]" for e, l, h in zip(f["our_estimate"], f["our_ci_low"], f["our_ci_high"])],
        "Our trials (patients)": [f"{k} ({p})" for k, p in zip(f["our_k"], f["our_patients"])],
        "Range over count variants": ["" if pd.isna(a) else f"{_fmt(a)} to {_fmt(b)}" for a, b in zip(f["range_low"], f["range_high"])],
        "Why they differ": f["why_different"],
    })
    parts.append("<h3>The review's syntheses re-derived from the stored trials</h3>" + _table(tab, table_id="rederive-table"))
    return Section("network", "Network meta-analysis and the review's syntheses re-derived", "".join(parts), figures=figs)


def transitivity_frame(ev, frame: pd.DataFrame) -> pd.DataFrame:
    """One row per network node: its trials (patients), the timepoints used, the steroid regimen and
    the population of each trial as stored (the effect modifiers to judge transitivity on before
    reading any ranking)."""
    from lnsynth.analyses.network_data import INDUCTION_NODES

    rows = []
    for node, g in frame.groupby("treatment", sort=True):
        ster, pops, tps = [], [], []
        for r in g.itertuples():
            st = ev.study(r.study)
            bgs = sorted({a.background.value for a in st.arms
                          if INDUCTION_NODES.get(a.regimen) == node and a.background is not None})
            ster.append(f"{r.study}: {' / '.join(bgs) if bgs else 'not stated'}")
            pops.append(f"{r.study}: {st.population.value if st.population else 'not stated'}")
            tps.append(f"{r.study} {r.timepoint_weeks:g}" if pd.notna(r.timepoint_weeks) else f"{r.study} not stated")
        rows.append({"Node": node, "Trials (patients)": f"{g['study'].nunique()} ({int(g['n'].sum())})",
                     "Timepoint (weeks)": "; ".join(tps), "Steroid regimen (arm background as stored)": "; ".join(ster),
                     "Population (as stored)": "; ".join(pops)})
    return pd.DataFrame(rows)


def _transitivity(ev, frame: pd.DataFrame) -> str:
    tab = transitivity_frame(ev, frame)
    return ("<h3>Transitivity: what differs between the nodes (read before any ranking)</h3>"
            "<p>Indirect comparisons are valid only if the trials of each node are alike in what modifies the effect. "
            "The table lists, per node, each trial's timepoint, steroid regimen and population as stored; where they differ "
            "(for example rapidly tapered low-dose versus standard steroid regimens, 24-week versus 48-52-week timepoints, "
            "single-country versus multinational populations), the league table and rankings below compare unlike "
            "trials.</p>" + _table(tab, table_id="transitivity-table"))


# ----------------------------------------------------------------------------- sensitivity


def section_sensitivity(ev, ctx):
    Section, figure_html = _S()
    from lnsynth.analyses.sensitivity import run_sensitivity

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rep = run_sensitivity(ev)
    ctx["sensitivity"] = rep
    parts = ["<p>Each clinical question's answer (row <em>main</em>) refitted on subsets and variants of the trials it "
             "analysed (Cochrane Handbook 10.14): each trial left out in turn; the review's critiques (remission assessed "
             "at &le; 26 weeks vs later, and the question re-answered with the outcome window moved; trials from a single "
             "Asian country vs multinational or other; voclosporin vs tacrolimus vs cyclosporin where a question pools "
             "them; each dose arm of a trial whose arms the answer combines); counts (approximate counts or counts "
             "resting only on news or secondary summaries left out); and the estimator (fixed effect, REML, "
             "DerSimonian-Laird). No trial is selected outside the answer; with so few trials per question, agreement "
             "between variants is weak reassurance and a difference is a reason for caution, not a finding.</p>"]
    figs = []
    from lnsynth.plots.sensitivity import sensitivity_figures

    titles = dict(rep.questions)
    for i, fig in enumerate(sensitivity_figures(rep)):
        title = fig.axes[0].get_title() if fig.axes else f"Sensitivity analysis {i + 1}"
        fh = figure_html(fig, f"{title}: estimates with 95% confidence intervals of each sensitivity analysis "
                              "(log scale; the answer in the pooled colour).", html.escape(title) + ".")
        figs.append(fh)
        parts.append(fh)
    f = rep.to_frame()

    def _num(v, d=2):
        return "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"

    tab = pd.DataFrame({
        "Question": f["question"],
        "Outcome": f["outcome_label"].map(lambda s: s.split(" (")[0]),
        "Analysis": f["analysis"],
        "Variant": f["subgroup"],
        "k": f["k"],
        "Patients": f["patients"],
        "Estimate [95% CI]": [(f"not estimable: {ne}" if pd.isna(e) else f"{m} {_num(e)} [{_num(lo)}, {_num(hi)}]")
                              for m, e, lo, hi, ne in zip(f["measure"], f["estimate"], f["ci_low"], f["ci_high"], f["not_estimable"])],
        "I² (%)": [_num(x, 0) for x in f["i2"]],
        "Studies": f["studies"],
        "Note": ["; ".join(x for x in (d, n) if isinstance(x, str) and x) for d, n in zip(f["description"], f["note"])],
    })
    parts.append(_table(tab, table_id="sensitivity-table"))
    if rep.skipped:
        by_q: dict = {}
        for q, o, _ in rep.skipped:
            by_q.setdefault(q, []).append(o.replace("_", " "))
        parts.append("<p class='meta'>Adverse-event outcomes with fewer than 2 analysed trials are not analysed here "
                     "(their answers are in the summaries of findings): "
                     + "; ".join(f"{html.escape(titles.get(q, q))}: {html.escape(', '.join(os_))}" for q, os_ in by_q.items())
                     + ".</p>")
    return Section("sensitivity", "Sensitivity: the review's critiques tested", "".join(parts), figures=figs)


# ----------------------------------------------------------------------------- simulator


def section_simulator(ev, ctx):
    Section, figure_html = _S()
    from lnsynth.plots.simulate import simulator_figures
    from lnsynth.simulate import provenance_frame

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        figs_map = simulator_figures()
    prov = provenance_frame()
    kinds = prov["provenance"].value_counts().to_dict() if "provenance" in prov else {}
    parts = [
        "<p class='disclaimer'><strong>Hypothesis-generating simulation, not treatment advice.</strong> "
        "A mechanistic model (drug exposure → calcineurin inhibition → immune activity and podocyte/haemodynamic "
        "proteinuria effects → remission, flare, kidney function), calibrated to the stored arm-level outcomes and checked "
        "by leave-one-trial-out prediction. Most parameters are stated assumptions"
        + (f" ({', '.join(f'{v} {k}' for k, v in kinds.items())})" if kinds else "")
        + "; intervals reflect parameter uncertainty given those assumptions, not the assumptions themselves.</p>"
    ]
    parts += _simulator_scores()
    alts = {
        "sim_validation": "Interval plot of leave-one-trial-out 95% predictive intervals for each held-out trial arm, with the observed proportion marked.",
        "sim_q_a_trajectories": "Line plot of simulated proteinuria over weeks on CNI therapy, split into the immune and the non-immune (podocyte and haemodynamic) components.",
        "sim_q_a_share": "Chart of the simulated share of 6-month complete remission on CNI regimens attributable to non-immune mechanisms, with its interval.",
        "sim_q_b_flares": "Plot of simulated cumulative kidney flares after tacrolimus induction versus MMF induction, both followed by azathioprine.",
        "sim_q_c_power": "Power curves for a trial on eGFR decline of 40% or more or kidney failure, by patients per arm and follow-up years.",
        "sim_q_d_remission": "Simulated complete remission at 6, 12 and 24 months for each regimen, with intervals.",
    }
    figs = []
    for name, (fig, caption) in figs_map.items():
        fh = figure_html(fig, alts.get(name, f"Simulator figure {name.replace('_', ' ')}."), html.escape(caption))
        figs.append(fh)
        parts.append(fh)
    if len(prov):
        cols = [c for c in ("parameter", "module", "value", "unit", "provenance", "source", "quote", "range_or_prior", "why") if c in prov.columns]
        parts.append("<details><summary>Parameters and their provenance</summary>" + _table(prov[cols], table_id="sim-params-table") + "</details>")
    return Section("simulator", "Simulator: what the mechanism implies (hypothesis-generating)", "".join(parts), figures=figs)


def _simulator_scores() -> list[str]:
    """Proper scoring against the meta-analytic null (docs/simulator-protocol.md): totals, per trial, and the
    envelope of question (a) over structures and priors when the alternative structure's bank is cached."""
    from lnsynth.simulate.validate import scorecard

    sc = scorecard()
    c = sc["compare"]
    tot = pd.DataFrame([{"set": k, "rows": t["rows"], "trials": t["trials"],
                         "log score simulator": round(t["log_score_sim"], 1), "log score null": round(t["log_score_null"], 1),
                         "coverage simulator": f"{100 * t['coverage_sim']:.0f}%", "coverage null": f"{100 * t['coverage_null']:.0f}%"}
                        for k, t in c["totals"].items()])
    def _cmp(k, what):
        t = c["totals"].get(k)
        if not t:
            return f"{what}: no rows"
        return (f"{what} {'better' if t['simulator_beats_null'] else 'worse'} than the null "
                f"(log score {t['log_score_sim']:.1f} vs {t['log_score_null']:.1f})")

    verdict = ("The simulator predicts " + _cmp("loto", "held-out (leave-one-trial-out) trials") + " and "
               + _cmp("external", "external trials") + "; "
               + ("it meets the issue-15 criterion of beating a plain random-effects meta-analysis." if c["beats_null"] else
                  "it does not beat a plain random-effects meta-analysis of the other trials, so read it as a "
                  "hypothesis explorer, not as a predictor."))
    out = [f"<p><strong>{html.escape(verdict)}</strong> Scores are log predictive probabilities of the observed counts "
           "(higher is better) on rows neither model was fitted to; the protocol is frozen in "
           "lnsynth/simulate/params/validation.yaml (docs/simulator-protocol.md).</p>",
           "<p><strong>The trial predictor (a model-based meta-analysis on latent proteinuria, stacked with the null "
           "and the simulator; <code>lnsynth simulate predict</code>) does not beat the better null: with stacking "
           "weights frozen on leave-one-trial-out scores it scores worse on the external trials (-6.6 &plusmn; 2.5 "
           "nats) and on the time split (-4.8 &plusmn; 1.7); see benchmarks/results_predict.md.</strong></p>",
           _table(tot, "Simulator vs meta-analytic null: total log scores and 95% coverage", table_id="sim-scores-table")]
    pt = c["per_trial"].copy()
    for col in ("log_score_sim", "log_score_null"):
        pt[col] = pt[col].round(1)
    out.append("<details><summary>Per-trial log scores</summary>" + _table(pt, table_id="sim-pertrial-table") + "</details>")
    ident = sc["identification"].copy()
    ident["width_ratio"] = ident["width_ratio"].round(2)
    out.append("<details><summary>Posterior/prior width of the free parameters (not identified above 0.8)</summary>"
               + _table(ident[["parameter", "prior_low", "prior_high", "post_low", "post_high", "width_ratio", "identified"]],
                        table_id="sim-ident-table") + "</details>")
    try:
        from lnsynth.simulate.calibrate import cached_bank
        from lnsynth.simulate.params import structures
        from lnsynth.simulate.questions import envelope, envelope_text

        banks = {s: cached_bank(structure=s) for s in structures()}
        if all(b is not None for b in banks.values()):
            env = envelope("a", banks, k=20, n=600, trajectories=False)
            out.append("<p>Question (a), non-immune share of 6-month complete remission: "
                       + html.escape(envelope_text(env, banks, "f_nonimmune")) + "</p>")
        else:
            missing = [s for s, b in banks.items() if b is None]
            out.append("<p>Question (a) envelope over structures: not computed (calibration of "
                       + html.escape(", ".join(missing)) + " not cached; `python benchmarks/simulate.py --validate`).</p>")
    except Exception as exc:  # the envelope is optional in the report; say why it is absent
        out.append(f"<p>Question (a) envelope over structures: not computed ({html.escape(type(exc).__name__)}).</p>")
    return out


# ----------------------------------------------------------------------------- summary of findings
