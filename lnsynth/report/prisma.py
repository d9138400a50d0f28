"""Report section: the systematic search and its PRISMA 2020 flow (computed from data/search)."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported inside the function at run time (build imports the sections)
    from .markup import Section


def _rows(head: list[str], rows: list[list]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def section_prisma(ev, ctx) -> "Section":
    """The search (protocol, queries, dates), the PRISMA 2020 diagram and the included/awaiting trials."""
    from lnsynth.evidence.search import load_search, prisma
    from lnsynth.plots.prisma import prisma_figure

    from .markup import Section, figure_html

    data = load_search()
    flow = prisma(data)
    p = data.protocol
    fig = figure_html(
        prisma_figure(flow),
        f"PRISMA 2020 flow diagram: {flow.identified_total} records identified, {flow.duplicates} duplicates removed, "
        f"{flow.screened} screened, {flow.excluded_screening} excluded, {flow.sought} reports sought, "
        f"{flow.not_retrieved} not retrieved, {flow.assessed} assessed, {sum(flow.excluded_full.values())} excluded, "
        f"{flow.studies_included} studies in {flow.reports_included} reports included.",
        "Figure: PRISMA 2020 flow, computed from <code>evidence/data/search/records.yaml</code> "
        "(duplicates are computed from PMID, DOI, registry id, URL and title + year; <code>lnsynth prisma</code>).",
    )
    pico = "".join(f"<li><b>{html.escape(k.replace('_', ' '))}</b>: {html.escape(v)}</li>" for k, v in p.question.items())
    queries = _rows(["id", "query", "source", "date", "hits"],
                    [[q.id, q.query, q.source, q.date, q.hits] for q in data.queries])
    trials = _rows(["trial", "reports included"], [[t, ", ".join(ids)] for t, ids in sorted(flow.trials.items())])
    waiting = [[r.trial or "", r.reason, r.title] for r in data.unique()
               if r.full == "exclude" and r.reason in ("awaiting_extraction", "awaiting_classification", "no_usable_data")]
    body = (
        f"<p>Searched {p.date_searched} with {sum(1 for q in data.queries if q.method == 'search')} queries "
        f"and {sum(1 for q in data.queries if q.method == 'citation')} citation-searching steps. "
        "Every query reached one stored index of public pages (PubMed abstracts and mirrors, PMC, journal and "
        "open-access pages, trial registries, conference abstracts, Chinese-language journal pages); each page "
        "shows only its opening, so a report is counted as retrieved when that opening carried the trial's design "
        "and results.</p>"
        f"<ul>{pico}</ul>{fig}"
        f"<h3>Included trials and their reports</h3>{trials}"
        + (f"<h3>Eligible trials not in the base (awaiting extraction or classification, or no arm-level numbers reachable)</h3>"
           f"{_rows(['trial', 'reason', 'record'], waiting)}" if waiting else "")
        + f"<details><summary>Search log ({len(data.queries)} queries and steps)</summary>{queries}</details>"
    )
    return Section("search", "Systematic search (PRISMA 2020)", body, figures=[fig])
