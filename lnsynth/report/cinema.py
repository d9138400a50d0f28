"""CINeMA table for the report's network section (issue 24, item 4).

:func:`cinema_html` rates every estimate of the network the section shows
(:func:`lnsynth.analyses.cinema.network_cinema`) and renders one row per estimate: the odds ratio
with its CI, the kind of evidence, the six CINeMA domains and the confidence, each domain cell
carrying its reason (as a tooltip and in a list under the table).
"""

from __future__ import annotations

import html
import math
from typing import Any

from lnsynth.network.cinema import DOMAIN_LABELS, DOMAINS

_CLASS = {"no concerns": "cinema-no", "some concerns": "cinema-some", "major concerns": "cinema-major"}


def _or(x: float) -> str:
    return "NA" if x is None or not math.isfinite(x) else f"{math.exp(x):.2f}"


def cinema_html(ev: Any, fit: Any = None, data: Any = None, outcome: str = "complete remission") -> str:
    """HTML block: heading, method note, the CINeMA table (``id="cinema-table"``) and the reasons.

    ``fit``/``data``: the network the section already fitted (so the table rates exactly the
    estimates shown); refitted from the evidence base when omitted.
    """
    from lnsynth.analyses.cinema import NETWORK_POPULATION, network_cinema

    nc = network_cinema(ev, outcome, fit=fit, data=data)
    f = nc.frame
    lo, hi = nc.thresholds
    head = ("<tr><th>Comparison</th><th>OR [95% CI]</th><th>Evidence</th>"
            + "".join(f"<th>{html.escape(DOMAIN_LABELS[d])}</th>" for d in DOMAINS) + "<th>Confidence</th></tr>")
    body = []
    notes = []
    for r in f.itertuples(index=False):
        cells = [html.escape(r.comparison), f"{_or(r.estimate)} [{_or(r.ci_low)}, {_or(r.ci_high)}]",
                 html.escape(f"{r.evidence} ({r.n_direct} trial{'s' if r.n_direct != 1 else ''} direct)")]
        tds = "".join(f"<td>{c}</td>" for c in cells)
        for d in DOMAINS:
            j, why = getattr(r, d), getattr(r, d + "_reason")
            tds += f"<td class='{_CLASS[j]}' title='{html.escape(why, quote=True)}'>{html.escape(j)}</td>"
        tds += f"<td><strong>{html.escape(r.confidence)}</strong></td>"
        body.append(f"<tr>{tds}</tr>")
        notes.append(f"<li><strong>{html.escape(r.comparison)}</strong> ({html.escape(r.confidence)}): "
                     + "; ".join(f"{html.escape(DOMAIN_LABELS[d])}: {html.escape(getattr(r, d))} -- "
                                 f"{html.escape(getattr(r, d + '_reason'))}" for d in DOMAINS) + "</li>")
    studies = "; ".join(f"{html.escape(s.study)}: RoB {html.escape(s.rob)}, indirectness {html.escape(s.indirectness)}"
                        for s in nc.studies.itertuples(index=False))
    intro = (
        "<h3>Confidence in each network estimate (CINeMA)</h3>"
        "<p>Six domains per estimate (Nikolakopoulou et al., PLoS Med 2020; the CINeMA application's rules, "
        "Papakonstantinou et al., Campbell Syst Rev 2020): within-study bias and indirectness weight each trial's "
        "level by its contribution to the estimate (contribution matrix, shortest-path flows; "
        f"{html.escape(nc.result.rule)} rule); the trial levels are the stored RoB 2 overall judgements and each "
        f"trial's indirectness for {html.escape(NETWORK_POPULATION)}. Imprecision, heterogeneity and incoherence "
        f"compare the confidence, prediction and direct/indirect intervals with the declared range of equivalence "
        f"(OR {lo:g} to {hi:g}, the clinical questions' thresholds); incoherence of estimates with only indirect "
        "evidence uses the design-by-treatment test. Reporting bias: undetected unless declared. Confidence starts "
        "at high and drops one level per domain with some concerns and two per major concerns; domains overlap "
        "(imprecision and heterogeneity share thresholds), so a panel may rate down less. Hover a cell for its "
        "reason; all reasons are listed below the table.</p>")
    table = f"<table id='cinema-table'><thead>{head}</thead><tbody>{''.join(body)}</tbody></table>"
    more = (f"<details><summary>Reasons per estimate and trial inputs</summary><ul>{''.join(notes)}</ul>"
            f"<p class='meta'>Trial inputs: {studies}.</p></details>")
    return intro + table + more


__all__ = ["cinema_html"]
