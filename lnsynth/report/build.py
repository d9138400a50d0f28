"""Build the self-contained HTML evidence report (``lnsynth report``, ``make report``).

The page embeds every figure as an SVG data URI with alt text and loads nothing from
the network. Sections are produced by small builder functions run under a rich
progress bar; each returns an HTML fragment and the figures it drew.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import html
from pathlib import Path
from typing import Callable, Optional

import jinja2

from lnsynth import DISCLAIMER, __version__

from .markup import Section, figure_html  # noqa: F401  (re-exported: lnsynth.report.build.Section)
from .prisma import section_prisma
from .questions import section_questions
from .sections import section_network, section_sensitivity, section_simulator


def data_version(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.yaml")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:12]


# ----------------------------------------------------------------------------- sections


def _headlines(ev, ctx) -> str:
    """Headline per clinical question (the same Answer objects as the summary-of-findings section)."""
    from .questions import answers, headline

    items = [f"<li>{headline(a)}</li>" for a in answers(ev, ctx)]
    if not items:
        return ""
    return ("<h3>Headline results, one per clinical question</h3><ul>" + "".join(items) + "</ul>"
            "<p class='meta'>Each question's full summary of findings, with every trial included or excluded and why, "
            "is in the next section; certainty follows the GRADE rules stated there.</p>")


def _currency(ev) -> str:
    from lnsynth.evidence.load import currency

    c = currency(ev)
    new = ", ".join(html.escape(x) for x in c["new_since_review"])
    srcs = "".join(f"<li>{html.escape(x)}</li>" for x in c["sources_searched"])
    return (f"<div class='currency' id='evidence-currency'><h3>Evidence currency</h3><p><strong>Evidence searched "
            f"{html.escape(str(c['searched']))}</strong>: {c['trials']} trials and {c['syntheses']} published syntheses. "
            f"The base is the 2020 review (Peleg et al.); trials with publications from 2021 on: {new or 'none'}.</p>"
            f"<p>Sources searched:</p><ul>{srcs}</ul><p class='meta'>{html.escape(c['method'] or '')}</p>"
            f"<details><summary>Trials included in the evidence base</summary><p>{', '.join(html.escape(x) for x in c['trial_ids'])}</p></details></div>")


def section_overview(ev, ctx) -> Section:
    n_arms = sum(len(s.arms) for s in ev.studies)
    _ = html
    prov = ev.provenance_rows()
    n_vals = len(prov)
    n_derived = sum(r.derived for r in prov)
    body = f"""
<p>This report starts from the evidence summarised by Peleg, Bomback and Radhakrishnan,
<em>The Evolving Role of Calcineurin Inhibitors in Treating Lupus Nephritis</em> (CJASN 2020), brought up to date
from public abstracts, trial registries and open-access articles, in a machine-readable evidence base in which every
number carries its source (with URL, source type and date accessed), location and verbatim quote. It answers a
catalogue of clinical questions with lnsynth's statistics engine.</p>
<ul>
<li><strong>{len(ev.studies)}</strong> studies ({n_arms} arms) and <strong>{len(ev.syntheses)}</strong> published meta-analyses;</li>
<li><strong>{n_vals}</strong> sourced values, of which <strong>{n_derived}</strong> are derived (counts computed from printed percentages,
arm sizes from N), each with its rule;</li>
<li>the review's Tables 1 and 2 are rebuilt from these records, not retyped;</li>
<li id='verification'>verification: all {n_vals} values are <strong>curated in the repository</strong> (one extraction each,
with the quote and automated consistency checks); <strong>0</strong> have been verified by two people. In the web app a new
or changed value enters the analyses only after a second curator verifies it against its quote.</li>
</ul>
{_currency(ev)}
{_headlines(ev, ctx)}
<p>The review's argument, which later sections test: calcineurin inhibitors (CNIs) lower proteinuria through
podocyte stabilisation and afferent vasoconstriction as well as through T-cell suppression, so 6-month
proteinuria-based remission may overstate what they do for the immune disease; flares follow their taper; most
trials are small, short and from China.</p>
<p class="meta">Rebuild: <code>make report</code> (creates <code>.venv</code>, installs lnsynth, writes <code>report/index.html</code>).
Check the data: <code>python -m lnsynth validate</code>.</p>
"""
    return Section("overview", "Overview", body)


def section_tables(ev, ctx) -> Section:
    from lnsynth.evidence import tables
    from lnsynth.evidence.checks import check_consistency

    findings = [f for f in check_consistency(ev) if f.level == "warning"]
    items = "".join(
        f"<li class='warn'><strong>{html.escape(f.study)}</strong> <code>{html.escape(f.field)}</code>: {html.escape(f.message)}</li>"
        for f in findings
    )
    notes = "".join(
        f"<li><strong>{html.escape(s.label)}</strong>: {html.escape(n)}</li>" for s in ev.studies for n in s.notes
    )
    body = (
        "<p>Hover any number for its provenance (source, location, quote). Shaded numbers are derived.</p>"
        + tables.to_html(ev, "table1")
        + tables.to_html(ev, "table2")
        + f"<h3>Suspected errors and inconsistencies in the source ({len(findings)})</h3>"
        + "<p>Printed values are kept; these are flagged for the reader.</p>"
        + f"<ul>{items}</ul>"
        + (f"<details><summary>Curation notes per study</summary><ul>{notes}</ul></details>" if notes else "")
    )
    return Section("tables", "The review's Tables 1 and 2, rebuilt from data", body)


def section_evidence_figures(ev, ctx) -> Section:
    from lnsynth.plots import evidence as ep

    figs = [
        figure_html(
            ep.response_rates_figure(ev),
            "Dot plot of complete and overall remission percentages per trial arm, coloured by regimen class, "
            "with Wilson 95% intervals where arm sizes are known.",
            "Figure: response rates per arm as printed. Hollow markers: the count was derived from the printed percentage.",
        ),
        figure_html(
            ep.adverse_events_figure(ev),
            "Horizontal interval plot of adverse-event proportions in calcineurin-inhibitor arms, grouped by event category.",
            "Figure: adverse events in CNI arms (events over the printed denominator).",
        ),
        figure_html(
            ep.trial_landscape_figure(ev),
            "Scatter plot of trial size against follow-up duration in weeks on a log scale; most trials are under 100 weeks.",
            "Figure: trial size and follow-up. The review notes a median follow-up of 52 weeks among the induction trials.",
        ),
        figure_html(
            ep.provenance_mix_figure(ev),
            "Stacked bar chart of the number of stored numeric values per study, printed versus derived.",
            "Figure: provenance of the stored numbers.",
        ),
    ]
    return Section("evidence", "The evidence at a glance", "".join(figs), figures=figs)


SECTION_BUILDERS: list[tuple[str, Callable]] = [
    ("Overview", section_overview),
    ("Clinical questions", section_questions),
    ("Tables 1 and 2", section_tables),
    ("Evidence figures", section_evidence_figures),
    ("Systematic search", section_prisma),
    ("Network", section_network),
    ("Sensitivity", section_sensitivity),
    ("Simulator", section_simulator),
]


def build_report(out: Path | str, data: Optional[Path] = None, progress: bool = True, snapshots=None,
                 ev=None) -> Path:
    """Write ``<out>/index.html``; returns its path.

    ``snapshots`` (optional): a store or :class:`lnsynth.analyses.updates.StateDir` whose latest
    ``lnsynth update`` run is shown as each question's update notice.  ``ev`` (optional): the evidence
    to report (e.g. a curation store's ``store.evidence()``); by default the YAML evidence under ``data``.
    """
    from rich.progress import Progress

    from lnsynth.evidence import load_evidence

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if ev is None:
        ev = load_evidence(data)
    sections: list[Section] = []
    ctx: dict = {} if snapshots is None else {"snapshots": snapshots}
    with Progress(disable=not progress, transient=False) as prog:
        task = prog.add_task("building report", total=len(SECTION_BUILDERS))
        for name, fn in SECTION_BUILDERS:
            prog.update(task, description=f"section: {name}")
            try:
                sections.append(fn(ev, ctx))
            except ImportError as exc:  # an engine not installed/built: say so on the page, never hide it
                sections.append(Section(fn.__name__.replace("section_", ""), name,
                                        f"<p class='warn'>This section could not be built: {html.escape(str(exc))}.</p>"))
            prog.advance(task)
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("lnsynth.report", "templates"), autoescape=jinja2.select_autoescape(["html", "j2"])
    )
    tpl = env.get_template("report.html.j2")
    page = tpl.render(
        sections=[{"id": s.id, "title": s.title, "html": jinja2.utils.markupsafe.Markup(s.html)} for s in sections],
        version=__version__,
        data_version=data_version(ev.root),
        build_date=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        disclaimer=DISCLAIMER,
    )
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path
