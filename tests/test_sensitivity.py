"""Sensitivity analyses on the question layer (lnsynth.analyses.sensitivity): every row is the answer,
a refit of the answer's own trials, or the answer machinery re-run with one decision changed."""
from __future__ import annotations

import json
import math
import re
import warnings

import pytest
from typer.testing import CliRunner

from lnsynth.analyses.answer import answer
from lnsynth.analyses.questions import QuestionError, load_questions
from lnsynth.analyses.sensitivity import EARLY_WEEKS, FRAME_COLUMNS, SensitivityReport, run_sensitivity
from lnsynth.effects import effect_sizes
from lnsynth.evidence import load_evidence
from lnsynth.pairwise import meta_analysis


@pytest.fixture(scope="module")
def ev():
    return load_evidence()


@pytest.fixture(scope="module")
def rep(ev):
    return run_sensitivity(ev)


def _refit(trials, method, test="z"):
    es = effect_sizes("RR", events_treat=[t.events_int for t in trials], n_treat=[t.n_int for t in trials],
                      events_ctrl=[t.events_ctrl for t in trials], n_ctrl=[t.n_ctrl for t in trials])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return meta_analysis(es, method=method if len(trials) > 1 else "FE", test=test if len(trials) > 1 else "z")


def test_report_shape(rep):
    assert isinstance(rep, SensitivityReport)
    f = rep.to_frame()
    assert list(f.columns) == list(FRAME_COLUMNS)
    assert [q for q, _ in rep.questions] == [q.id for q in load_questions()]
    with pytest.raises(Exception):
        rep.rows = ()  # frozen
    d = rep.to_dict()
    json.dumps(d)
    assert len(d["rows"]) == len(rep.rows) and "disclaimer" in d
    assert rep.to_markdown().startswith("# Sensitivity analyses")
    assert "leave-one-out" in rep.summary()


def test_main_equals_answer_for_every_question_and_outcome(ev, rep):
    seen = 0
    for q in load_questions():
        a = answer(ev, q.id)
        skipped = {o for qq, o, _ in rep.skipped if qq == q.id}
        for o in a.outcomes:
            mains = [r for r in rep.rows if r.question == q.id and r.outcome == o.spec.id and r.analysis == "main"]
            if o.spec.id in skipped:
                assert ((o.spec.kind == "adverse event" and o.k < 2) or (o.k >= 2 and o.method == "none")
                        or o.spec.kind == "continuous") and not mains
                continue
            assert len(mains) == 1
            m = mains[0]
            assert m.k == o.k and m.studies == tuple(t.study for t in o.analysed)
            if o.result is None:
                assert m.estimate is None and m.not_estimable == o.not_estimable
                continue
            lo, hi = o.conf_int()
            assert m.estimate == pytest.approx(math.exp(o.result.estimate), rel=1e-12, abs=0)
            assert m.ci_low == pytest.approx(lo, rel=1e-12) and m.ci_high == pytest.approx(hi, rel=1e-12)
            # the batch refit machinery reproduces the answer (the plan's estimator row)
            if o.k > 1 and o.method == q.plan.tau2:  # sparse rows are answered by MH / Peto (outcome_rules)
                est = [r for r in rep.rows if r.question == q.id and r.outcome == o.spec.id
                       and r.analysis == "estimator" and r.subgroup == q.plan.tau2]
                assert est and est[0].estimate == pytest.approx(m.estimate, rel=1e-10)
                assert est[0].ci_low == pytest.approx(m.ci_low, rel=1e-10)
            seen += 1
    assert seen >= 8


def test_outcome_inclusion_rules(ev, rep):
    for q in load_questions():
        a = answer(ev, q.id)
        for o in a.outcomes:
            rows = [r for r in rep.rows if r.question == q.id and r.outcome == o.spec.id]
            if o.spec.kind == "efficacy":
                assert rows, (q.id, o.spec.id)
                if o.k == 0:
                    assert [r.analysis for r in rows] == ["main"]
            elif o.k >= 2 and o.result is not None:
                assert {"main", "leave-one-out", "estimator"} <= {r.analysis for r in rows}
            else:
                assert not rows and any(qq == q.id and oo == o.spec.id and w for qq, oo, w in rep.skipped)


def test_leave_one_out_equals_direct_refit(ev, rep):
    n = 0
    for q in load_questions():
        a = answer(ev, q.id)
        for o in a.outcomes:
            loo = {r.subgroup: r for r in rep.rows if r.question == q.id and r.outcome == o.spec.id
                   and r.analysis == "leave-one-out"}
            if o.k < 2 or o.result is None:  # not pooled (sparse-data rule): no variants
                continue
            assert len(loo) == o.k
            for t in o.analysed:
                r = loo[f"omitting {t.study}"]
                rest = [x for x in o.analysed if x is not t]
                fit = _refit(rest, q.plan.method, q.plan.test)
                assert r.k == len(rest) and t.study not in r.studies
                assert r.estimate == pytest.approx(math.exp(fit.estimate), rel=1e-10)
                assert r.ci_low == pytest.approx(math.exp(fit.ci_low), rel=1e-10)
                assert r.ci_high == pytest.approx(math.exp(fit.ci_high), rel=1e-10)
                if len(rest) > 1:
                    assert r.tau2 == pytest.approx(float(fit.tau2), rel=1e-8, abs=1e-12)
                n += 1
    assert n >= 5


def test_every_row_has_a_number_or_a_reason(rep):
    f = rep.to_frame()
    assert len(f) > 50
    for r in rep.rows:
        if r.k == 0:
            assert r.estimate is None and r.not_estimable, r
        else:
            assert r.estimate is not None and r.ci_low <= r.estimate <= r.ci_high, r
            assert r.not_estimable is None
            assert r.patients > 0 and len(r.studies) == r.k
            assert (r.i2 is None) == (r.k == 1)


def test_dose_is_answered_by_separate_questions(ev, rep):
    """The review's dose critique: voclosporin at the approved dose (23.7 mg) and the 39.5 mg dose-ranging arm are
    separate questions, so no answer combines the two arms and no 'dose' variant is needed for them; the arms
    re-answered together (answer_outcome) sum to the two single-arm answers."""
    from lnsynth.analyses.answer import StudyDecision, answer_outcome

    assert not [r for r in rep.rows if r.question == "voclosporin-addon-mmf" and r.analysis == "dose"]
    lo = answer(ev, "voclosporin-addon-mmf")
    hi = answer(ev, "voclosporin-high-dose-addon-mmf")
    t_lo = next(t for t in lo.outcome("complete_remission").analysed if t.study == "rovin2019")
    t_hi = next(t for t in hi.outcome("complete_remission").analysed if t.study == "rovin2019")
    assert t_lo.combined_arms == t_hi.combined_arms == 1 and (t_lo.events_ctrl, t_lo.n_ctrl) == (t_hi.events_ctrl, t_hi.n_ctrl)
    d_lo = next(d for d in lo.decisions if d.study == "rovin2019")
    d_hi = next(d for d in hi.decisions if d.study == "rovin2019")
    both = StudyDecision(d_lo.study, d_lo.label, True, d_lo.reason, d_lo.intervention_arms + d_hi.intervention_arms,
                         d_lo.comparator_arms)
    q = lo.question.model_copy(update={"intervention": lo.question.intervention.model_copy(
        update={"regimens": ["VCS23.7+MMF", "VCS39.5+MMF"]})})
    comb = answer_outcome(ev, type(lo)(q, (both,), ()), lo.outcome("complete_remission").spec, (both,))
    t = comb.analysed[0]
    assert t.combined_arms == 2 and (t.events_int, t.n_int) == (t_lo.events_int + t_hi.events_int, t_lo.n_int + t_hi.n_int)
    es = effect_sizes("RR", events_treat=[t.events_int], n_treat=[t.n_int], events_ctrl=[t.events_ctrl], n_ctrl=[t.n_ctrl])
    assert t.estimate == pytest.approx(math.exp(meta_analysis(es, method="FE").estimate), rel=1e-10)


def test_critique_analyses_present(rep):
    f = rep.to_frame()
    vc = f[(f.question == "voclosporin-addon-mmf") & (f.outcome == "complete_remission")]
    assert {"main", "leave-one-out", "timepoint", "population", "count policy", "estimator"} <= set(vc.analysis)
    # CNI type only where a question pools several CNIs
    assert "CNI type" in set(f[f.question == "cni-addon-mmf"].analysis)
    assert "CNI type" not in set(f[f.question == "tac-vs-mmf"].analysis)
    # the re-answered early window uses the answer machinery: AURA-LV's 24-week result
    early = vc[vc.subgroup.str.startswith("window <= 26")].iloc[0]
    assert "rovin2019 24 wk" in early.description and early.k >= 1
    # every trial in a timepoint "as analysed" subset has its timepoint on the right side
    tp = f[(f.analysis == "timepoint") & f.subgroup.str.startswith("as analysed")]
    assert len(tp) and (tp.k > 0).any()
    for r in tp.itertuples():
        # the description lists every analysed trial's timepoint: "(timepoints: s1 24 wk; s2 52 wk)"
        weeks = {s: float(w) for s, w in re.findall(r"(\S+) (\d+(?:\.\d+)?) wk", r.description.split("timepoints: ", 1)[1])}
        studies = [s for s in str(r.studies).split(", ") if s]
        assert len(studies) == r.k, (r.question, r.outcome, r.subgroup, studies)
        for s in studies:
            early = weeks[s] <= EARLY_WEEKS
            assert early if "<=" in r.subgroup else not early, (r.question, r.outcome, r.subgroup, s, weeks[s])


def test_count_policy_rows_follow_the_answer_flags(ev, rep):
    from lnsynth.evidence.schema import SECONDARY_TYPES

    n_approx = 0
    for q, _ in rep.questions:
        a = answer(ev, q)
        for o in a.outcomes:
            rows = {r.subgroup: r for r in rep.rows if r.question == q and r.outcome == o.spec.id
                    and r.analysis == "count policy"}
            if not rows:
                continue
            strict = [t.study for t in o.analysed if not t.approximate]
            primary = [t.study for t in o.analysed if not (t.source_types and set(t.source_types) <= set(SECONDARY_TYPES))]
            assert list(rows["strict: exact counts only"].studies) == strict
            assert list(rows["primary sources only"].studies) == primary
            n_approx += len(o.analysed) - len(strict)
    assert n_approx >= 1


def test_selection_of_questions_and_method(ev):
    r1 = run_sensitivity(ev, "tac-vs-mmf,voclosporin-addon-mmf")
    assert [q for q, _ in r1.questions] == ["tac-vs-mmf", "voclosporin-addon-mmf"]
    r2 = run_sensitivity(ev, ["tac-vs-mmf"], method="DL")
    assert {r.question for r in r2.rows} == {"tac-vs-mmf"}
    loo = [r for r in r2.rows if r.analysis == "leave-one-out" and r.k > 1]
    assert loo and all(r.model.startswith("DL") for r in loo)
    main = next(r for r in r2.rows if r.analysis == "main" and r.outcome == "overall_remission")
    assert main.model == "REML"  # the answer, not the override
    with pytest.raises(QuestionError):
        run_sensitivity(ev, ["no-such-question"])
    with pytest.raises(ValueError):
        run_sensitivity(ev, ["tac-vs-mmf"], method="nonsense")


def test_figures(rep):
    import matplotlib.pyplot as plt

    from lnsynth.plots.sensitivity import leave_one_out_plot, sensitivity_figures, sensitivity_plot

    figs = sensitivity_figures(rep)
    assert len(figs) >= 6
    for fig in figs:
        plt.close(fig)
    fig = sensitivity_plot(rep, "voclosporin-addon-mmf")
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert any("estimator" in s for s in labels) and any("answer (main)" in s for s in labels)
    plt.close(fig)
    empty = [q for q, _ in rep.questions
             if not any(r.question == q and r.analysis == "main" and r.estimate is not None for r in rep.rows)]
    for q in empty:
        assert sensitivity_plot(rep, q) is None  # nothing estimable: no figure, the table says why
    fig = leave_one_out_plot(rep, "tac-vs-mmf")
    assert any("omitting mok2016" in t.get_text() for t in fig.axes[0].get_yticklabels())
    plt.close(fig)


def test_cli_json_and_figures(tmp_path):
    from lnsynth.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["sensitivity", "--format", "json", "--question", "tac-vs-mmf",
                              "--question", "voclosporin-addon-mmf", "--figures", str(tmp_path)])
    assert res.exit_code == 0, res.output
    d = json.loads(res.stdout[res.stdout.index("{"):])
    assert {r["question"] for r in d["rows"]} == {"tac-vs-mmf", "voclosporin-addon-mmf"}
    assert {"analysis", "subgroup", "k", "estimate", "ci_low", "ci_high", "studies", "not_estimable"} <= set(d["rows"][0])
    pngs = sorted(tmp_path.glob("sensitivity-*.png"))
    assert len(pngs) >= 3 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    res = runner.invoke(app, ["sensitivity", "--question", "no-such-question"])
    assert res.exit_code == 2
    res = runner.invoke(app, ["sensitivity", "--question", "tac-vs-mmf", "--format", "md"])
    assert res.exit_code == 0 and "Tacrolimus instead of MMF" in res.stdout
