"""The review's Tables 1 and 2 rebuilt from the stored data.

Each row comes from a study's ``tables`` entry: the cell wording is a template whose
``{ref}`` placeholders name stored numbers, so every number in the rebuilt table is
read from the evidence base (and carries provenance), not retyped.
"""

from __future__ import annotations

import html
from typing import Literal

import pandas as pd

from .load import EvidenceBase, render_template, resolve_ref, template_refs
from .schema import Study

TABLE1_COLUMNS = ["Trial", "Design", "N", "Outcome Measure", "Treatment Arms", "Follow-Up Duration", "Response Rate"]
TABLE2_COLUMNS = ["Trial", "Calcineurin Inhibitor Used", "Most Common AEs"]
TABLE_TITLES = {
    "table1": "Table 1. Selected trials evaluating calcineurin inhibitors in lupus nephritis",
    "table2": "Table 2. Summary of adverse events of calcineurin inhibitors among selected trials evaluating calcineurin inhibitors in lupus nephritis",
}
TABLE_FOOTNOTES = {
    "table1": "RCT, randomized, control trial; MMF, mycophenolate mofetil.",
    "table2": "AE, adverse event; MMF, mycophenolate mofetil; GI, gastrointestinal; HTN, hypertension; "
    "DM, diabetes mellitus; VCS, voclosporin.",
}
_CELL_KEYS = {
    "table1": {
        "Outcome Measure": "outcome_measure",
        "Treatment Arms": "treatment_arms",
        "Follow-Up Duration": "follow_up",
        "Response Rate": "response_rate",
    },
    "table2": {"Calcineurin Inhibitor Used": "cni", "Most Common AEs": "aes"},
}


def _rows(ev: EvidenceBase, table: str) -> list[tuple[int, Study, dict]]:
    rows = []
    for s in ev.studies:
        for t in s.tables:
            if t.table == table:
                rows.append((t.order, s, t.cells))
    rows.sort(key=lambda r: r[0])
    return rows


def build_table(ev: EvidenceBase, table: Literal["table1", "table2"]) -> pd.DataFrame:
    """The rebuilt table as a DataFrame (string cells, numbers as printed) plus a ``study`` column."""
    cols = TABLE1_COLUMNS if table == "table1" else TABLE2_COLUMNS
    out = []
    for _order, s, cells in _rows(ev, table):
        row = {"Trial": s.label}
        if table == "table1":
            row["Design"] = s.design.value
            row["N"] = s.n_total.text if s.n_total else ""
        for col, key in _CELL_KEYS[table].items():
            cell = cells.get(key)
            row[col] = render_template(s, cell.template) if cell else ""
        row["study"] = s.id
        out.append(row)
    return pd.DataFrame(out, columns=cols + ["study"])


def table1(ev: EvidenceBase) -> pd.DataFrame:
    return build_table(ev, "table1")


def table2(ev: EvidenceBase) -> pd.DataFrame:
    return build_table(ev, "table2")


def cell_refs(ev: EvidenceBase, table: str) -> list[tuple[str, str, str]]:
    """(study, column, ref) for every number placeholder of a table (N included)."""
    out = []
    for _o, s, cells in _rows(ev, table):
        if table == "table1" and s.n_total is not None:
            out.append((s.id, "N", "n_randomised" if s.n_randomised is not None else "n_enrolled"))
        for col, key in _CELL_KEYS[table].items():
            cell = cells.get(key)
            if cell:
                out.extend((s.id, col, r) for r in template_refs(cell.template))
    return out


def _md_escape(s: str) -> str:
    return str(s).replace("|", "\\|")


def to_markdown(df: pd.DataFrame, table: str) -> str:
    cols = [c for c in df.columns if c != "study"]
    lines = [f"**{TABLE_TITLES[table]}**", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_md_escape(r[c]) for c in cols) + " |")
    lines += ["", TABLE_FOOTNOTES[table], "", "Rebuilt by lnsynth from its evidence base (source: peleg2020)."]
    return "\n".join(lines) + "\n"


def to_html(ev: EvidenceBase, table: str, with_provenance: bool = True) -> str:
    """HTML table; each number is a link-like span whose title shows source, location and quote."""
    df = build_table(ev, table)
    cols = [c for c in df.columns if c != "study"]
    parts = [f'<table class="review-table" id="{table}"><caption>{html.escape(TABLE_TITLES[table])}</caption><thead><tr>']
    parts += [f"<th>{html.escape(c)}</th>" for c in cols]
    parts.append("</tr></thead><tbody>")
    for _o, s, cells in _rows(ev, table):
        parts.append(f'<tr id="{table}-{s.id}">')
        for col in cols:
            if col == "Trial":
                parts.append(f"<td>{html.escape(s.label)}</td>")
            elif col == "Design":
                parts.append(f"<td>{_prov_span(s.design.value, s.design.provenance, with_provenance)}</td>")
            elif col == "N":
                q = s.n_total
                parts.append(f"<td>{_prov_span(q.text, q.provenance, with_provenance) if q else ''}</td>")
            else:
                cell = cells.get(_CELL_KEYS[table][col])
                parts.append(f"<td>{_render_html(s, cell.template, with_provenance) if cell else ''}</td>")
        parts.append("</tr>")
    parts.append(f'</tbody><tfoot><tr><td colspan="{len(cols)}">{html.escape(TABLE_FOOTNOTES[table])}</td></tr></tfoot></table>')
    return "".join(parts)


def _prov_for_ref(s: Study, ref: str):
    parts = ref.split(".")
    if parts in (["n_randomised"], ["n_enrolled"]):
        return s.n_total.provenance
    if parts == ["follow_up"]:
        return s.follow_up.provenance
    if parts[0] == "arm":
        return getattr(s.arm(parts[1]), parts[2]).provenance
    rid, field = parts
    for rec in list(s.outcomes) + list(s.adverse_events) + list(s.facts):
        if rec.id == rid:
            q = rec.quantity if field == "value" and hasattr(rec, "quantity") else getattr(rec, field)
            return q.provenance
    raise KeyError(ref)


def _prov_span(text: str, prov, on: bool) -> str:
    if not on:
        return html.escape(text)
    tip = f"{prov.source}, {prov.location}: “{prov.quote}”" + (f" [derived: {prov.rule}]" if prov.derived else "")
    cls = "num derived" if prov.derived else "num"
    return f'<span class="{cls}" title="{html.escape(tip, quote=True)}">{html.escape(text)}</span>'


def _render_html(s: Study, template: str, on: bool) -> str:
    import re

    out, last = [], 0
    for m in re.finditer(r"\{([a-zA-Z0-9_.]+)\}", template):
        out.append(html.escape(template[last : m.start()]))
        ref = m.group(1)
        out.append(_prov_span(resolve_ref(s, ref), _prov_for_ref(s, ref), on))
        last = m.end()
    out.append(html.escape(template[last:]))
    return "".join(out)
