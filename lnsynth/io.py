"""Read a researcher's own data: CSV, TSV, Excel ``.xlsx``/``.xls`` and RevMan 5 ``.rm5`` files.

:func:`read_table` returns a :class:`TableData` that gives the inputs of
:func:`lnsynth.effects.effect_sizes` (and fits :func:`lnsynth.pairwise.meta_analysis`,
subgroup analyses, meta-regressions and network meta-analyses) from the same numbers.

Column names follow metafor (``escalc``) by default, matched case-insensitively:

==============  ====================================================================
layout          columns
==============  ====================================================================
binary          ``study, ai, n1i, ci, n2i`` (or ``bi``/``di`` non-events instead of
                ``n1i``/``n2i``; or ``events_treat, n_treat, events_ctrl, n_ctrl``)
continuous      ``study, m1i, sd1i, n1i, m2i, sd2i, n2i`` (or ``mean_treat, ...``)
generic         ``study, yi, vi`` or ``study, yi, sei`` (model scale: log for ratios)
proportion      ``study, xi, ni`` (or ``events, n``)
incidence       ``study, x1i, t1i, x2i, t2i`` (IRR) or ``study, xi, ti`` (IR)
arms (NMA)      ``study, treatment, events, n`` or ``study, treatment, mean, sd, n``
==============  ====================================================================

``columns={"study": "Trial", "ai": "ev_trt", ...}`` maps fields (metafor or lnsynth
names) to the file's own headers.  Every problem with the file raises a
:class:`DataError` naming the file, the row (1-based as a spreadsheet shows it, the
header being row 1) and the column; nothing is turned into NaN silently and no row is
left out without a :class:`DataWarning` saying which and why.
"""
from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from . import registry

__all__ = ["DataError", "DataWarning", "TableData", "read_table", "parse_columns", "FIELD_ALIASES", "LAYOUTS"]


class DataError(ValueError):
    """A problem with an input file, located by file, row and column."""

    def __init__(self, message: str, *, file: str | Path | None = None, row: int | None = None,
                 column: str | None = None):
        self.file = str(file) if file is not None else None
        self.row = row
        self.column = column
        self.reason = message
        where = []
        if self.file:
            where.append(self.file)
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column}")
        super().__init__((", ".join(where) + ": " if where else "") + message)


class DataWarning(UserWarning):
    """A row or study of an input file left out (or kept with a correction), with the reason."""


# field -> accepted header names (case-insensitive); the first is the metafor name
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "study": ("study", "studlab", "trial", "author", "study_id", "id", "label"),
    "events_treat": ("ai", "events_treat", "x1i", "events_1", "events1"),
    "nonevents_treat": ("bi", "nonevents_treat"),
    "n_treat": ("n1i", "n_treat", "total_1", "n1"),
    "events_ctrl": ("ci", "events_ctrl", "x2i", "events_2", "events2"),
    "nonevents_ctrl": ("di", "nonevents_ctrl"),
    "n_ctrl": ("n2i", "n_ctrl", "total_2", "n2"),
    "mean_treat": ("m1i", "mean_treat", "mean_1"),
    "sd_treat": ("sd1i", "sd_treat", "sd_1"),
    "mean_ctrl": ("m2i", "mean_ctrl", "mean_2"),
    "sd_ctrl": ("sd2i", "sd_ctrl", "sd_2"),
    "time_treat": ("t1i", "time_treat"),
    "time_ctrl": ("t2i", "time_ctrl"),
    "yi": ("yi", "effect_size", "te"),
    "vi": ("vi",),
    "sei": ("sei", "se", "sete"),
    "events": ("xi", "events", "r", "event"),
    "n": ("ni", "n", "total"),
    "time": ("ti", "time"),
    "treatment": ("treatment", "treat", "arm", "t"),
    "mean": ("mean", "mi"),
    "sd": ("sd", "sdi"),
}
_ALIAS_TO_FIELD = {a: f for f, names in FIELD_ALIASES.items() for a in names}
_DESCRIBE = {
    "study": "study label", "events_treat": "events, treatment arm", "n_treat": "patients, treatment arm",
    "events_ctrl": "events, control arm", "n_ctrl": "patients, control arm",
    "nonevents_treat": "non-events, treatment arm", "nonevents_ctrl": "non-events, control arm",
    "mean_treat": "mean, treatment arm", "sd_treat": "SD, treatment arm", "mean_ctrl": "mean, control arm",
    "sd_ctrl": "SD, control arm", "time_treat": "person-time, treatment arm", "time_ctrl": "person-time, control arm",
    "yi": "effect size (model scale)", "vi": "sampling variance", "sei": "standard error", "events": "events",
    "n": "patients", "time": "person-time", "treatment": "treatment of the arm", "mean": "mean", "sd": "SD",
}

#: layout -> (fields it needs, in display order)
LAYOUTS: dict[str, tuple[str, ...]] = {
    "binary": ("events_treat", "n_treat", "events_ctrl", "n_ctrl"),
    "continuous": ("mean_treat", "sd_treat", "n_treat", "mean_ctrl", "sd_ctrl", "n_ctrl"),
    "generic": ("yi", "vi"),
    "proportion": ("events", "n"),
    "incidence": ("events_treat", "time_treat", "events_ctrl", "time_ctrl"),
    "rate": ("events", "time"),
    "arms": ("treatment", "events", "n"),
    "arms-continuous": ("treatment", "mean", "sd", "n"),
}
_LAYOUT_KIND = {"binary": "binary", "continuous": "continuous", "proportion": "proportion",
                "incidence": "incidence", "rate": "incidence"}
#: default measure of each layout (when neither measure= nor the file says)
_DEFAULT_MEASURE = {"binary": "RR", "continuous": "MD", "proportion": "PR", "incidence": "IRR", "rate": "IR",
                    "arms": "OR", "arms-continuous": "MD", "generic": None}
_COUNTS = {"events_treat", "n_treat", "events_ctrl", "n_ctrl", "nonevents_treat", "nonevents_ctrl", "events", "n"}
_POSITIVE = {"n_treat", "n_ctrl", "n", "sd_treat", "sd_ctrl", "sd", "time_treat", "time_ctrl", "time", "vi", "sei"}
_MISSING = {"", "na", "n/a", "nan", "null", "none", ".", "-", "—"}


def parse_columns(spec: str | Mapping[str, str] | None) -> dict[str, str]:
    """``"study=Trial,ai=ev1"`` (the CLI's ``--columns``) -> ``{"study": "Trial", "ai": "ev1"}``."""
    if spec is None or spec == "":
        return {}
    if isinstance(spec, Mapping):
        return {str(k).strip(): str(v).strip() for k, v in spec.items()}
    out: dict[str, str] = {}
    for part in str(spec).split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise DataError(f"--columns: expected FIELD=HEADER pairs separated by commas, got {part.strip()!r}")
        k, v = part.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def _col_letter(j: int) -> str:
    s = ""
    j += 1
    while j:
        j, r = divmod(j - 1, 26)
        s = chr(65 + r) + s
    return s


# ----------------------------------------------------------------------------------- raw tables
@dataclass
class _Raw:
    """Cells as read: header names, row numbers as a spreadsheet shows them, cell values."""

    file: str
    format: str
    header: list[str]
    rows: list[int]
    cells: list[list[Any]]
    spreadsheet: bool = True  # columns have letters (CSV/TSV/XLSX); RevMan rows are data elements
    header_row: int = 1
    measure: str | None = None
    outcome: str | None = None
    notes: list[str] = field(default_factory=list)

    def colname(self, j: int) -> str:
        return f"{self.header[j]!r} ({_col_letter(j)})" if self.spreadsheet else self.header[j]


def _sniff_format(path: Path, fmt: str | None) -> str:
    if fmt:
        f = fmt.lower().lstrip(".")
        f = {"xlsm": "xlsx", "excel": "xlsx", "revman": "rm5", "tab": "tsv", "txt": "tsv"}.get(f, f)
        if f not in ("csv", "tsv", "xlsx", "xls", "rm5"):
            raise DataError(f"unknown format {fmt!r}; valid: csv, tsv, xlsx, xls, rm5", file=path)
        return f
    ext = path.suffix.lower()
    if ext in (".xlsx", ".xlsm"):
        return "xlsx"
    if ext == ".xls":
        return "xls"
    if ext == ".rm5":
        return "rm5"
    if ext in (".tsv", ".tab"):
        return "tsv"
    return "csv"


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    for enc in ("utf-8-sig", "cp1252"):
        try:
            return data.decode(enc)
        except UnicodeDecodeError:
            continue
    return data.decode("latin-1")


def _finish(raw_rows: list[tuple[int, list[Any]]], file: str, fmt: str, spreadsheet: bool = True) -> _Raw:
    """Header = first non-blank row; strip trailing blank rows; check widths and duplicate headers."""
    def blank(cells):
        return all(c is None or (isinstance(c, str) and not c.strip()) for c in cells)

    body = [(r, c) for r, c in raw_rows]
    while body and blank(body[0][1]):
        body.pop(0)
    if not body:
        raise DataError("the file is empty (no header row, no data)", file=file)
    hrow, hcells = body.pop(0)
    while hcells and (hcells[-1] is None or str(hcells[-1]).strip() == ""):
        hcells = hcells[:-1]
    header = [("" if c is None else str(c)).strip() for c in hcells]
    seen: dict[str, int] = {}
    for j, h in enumerate(header):
        if not h:
            raise DataError("empty column name in the header", file=file, row=hrow, column=_col_letter(j))
        if h.lower() in seen:
            raise DataError(f"duplicate column name {h!r} (also column {_col_letter(seen[h.lower()])})",
                            file=file, row=hrow, column=f"{h!r} ({_col_letter(j)})")
        seen[h.lower()] = j
    while body and blank(body[-1][1]):
        body.pop()
    if not body:
        raise DataError(f"no data rows under the header (row {hrow})", file=file)
    rows, cells = [], []
    for r, c in body:
        if blank(c):
            warnings.warn(f"{file}, row {r}: blank row skipped", DataWarning, stacklevel=4)
            continue
        if len(c) > len(header):
            extra = [x for x in c[len(header):] if not (x is None or str(x).strip() == "")]
            if extra:
                raise DataError(f"{len(c)} cells but the header (row {hrow}) names {len(header)} columns "
                                f"(a stray delimiter or an unnamed column?)", file=file, row=r,
                                column=_col_letter(len(header)))
            c = c[:len(header)]
        rows.append(r)
        cells.append(list(c) + [None] * (len(header) - len(c)))
    return _Raw(file, fmt, header, rows, cells, spreadsheet, header_row=hrow)


def _read_delimited(path: Path, fmt: str) -> _Raw:
    text = _read_text(path)
    if not text.strip():
        raise DataError("the file is empty (no header row, no data)", file=path)
    if fmt == "tsv":
        delim = "\t"
    else:
        first = text.splitlines()[0] if text.splitlines() else ""
        counts = {d: first.count(d) for d in (",", ";", "\t")}
        delim = max(counts, key=counts.get) if max(counts.values()) > 0 else ","
    try:
        reader = csv.reader(text.splitlines(), delimiter=delim)
        raw_rows = [(i + 1, row) for i, row in enumerate(reader)]
    except csv.Error as exc:
        raise DataError(f"not readable as {'TSV' if delim == chr(9) else 'CSV'} ({exc})", file=path) from None
    return _finish(raw_rows, str(path), fmt)


def _read_xlsx(path: Path, sheet: str | int | None) -> _Raw:
    try:
        import openpyxl
    except ImportError:  # pragma: no cover - a dependency
        raise DataError("reading .xlsx needs openpyxl: pip install openpyxl", file=path) from None
    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # zipfile.BadZipFile, KeyError, InvalidFileException ...
        raise DataError(f"not a readable Excel .xlsx workbook ({type(exc).__name__}: {exc})", file=path) from None
    try:
        names = wb.sheetnames
        ws = wb[_pick_sheet(names, sheet, path)]
        raw_rows = []
        for row in ws.iter_rows():
            cells = [c for c in row if getattr(c, "column", None) is not None]
            if not cells:
                continue
            width = max(c.column for c in cells)
            vals: list[Any] = [None] * width
            for c in cells:
                vals[c.column - 1] = c.value
            raw_rows.append((cells[0].row, vals))
    finally:
        wb.close()
    return _finish(raw_rows, f"{path} [{ws.title}]" if len(names) > 1 else str(path), "xlsx")


def _pick_sheet(names: list[str], sheet: str | int | None, path: Path) -> str:
    """The sheet ``--sheet`` names: a name, a 1-based number, or (None) the first sheet."""
    if sheet is None or sheet == "":
        return names[0]
    if isinstance(sheet, int) or (isinstance(sheet, str) and sheet.isascii() and sheet.isdigit()
                                  and sheet not in names):
        i = int(sheet)
        if not 1 <= i <= len(names):
            raise DataError(f"sheet {i} does not exist; the workbook has {len(names)} sheet(s): "
                            f"{', '.join(names)}", file=path)
        return names[i - 1]
    if sheet in names:
        return sheet
    raise DataError(f"sheet {sheet!r} not found; sheets: {', '.join(names)}", file=path)


def _read_xls(path: Path, sheet: str | int | None) -> _Raw:
    """Excel 97-2003 ``.xls`` (BIFF) workbooks, read with xlrd (which reads only this format).

    Cells keep their types: numbers as floats (``5.0`` counts as the integer 5 downstream), text as
    text, blanks as missing; an error cell (``#DIV/0!``) becomes its error text, so the column check
    names the cell instead of reading it as a number.
    """
    try:
        import xlrd
    except ImportError:  # pragma: no cover - a dependency
        raise DataError("reading .xls needs xlrd: pip install xlrd (or save the sheet as .xlsx or .csv)",
                        file=path) from None
    try:
        wb = xlrd.open_workbook(str(path), on_demand=True)
    except Exception as exc:  # xlrd.XLRDError, struct.error, OSError ...
        raise DataError(f"not a readable Excel 97-2003 .xls workbook ({type(exc).__name__}: {exc})",
                        file=path) from None
    try:
        names = wb.sheet_names()
        name = _pick_sheet(names, sheet, path)
        ws = wb.sheet_by_name(name)
        raw_rows = []
        for r in range(ws.nrows):
            vals: list[Any] = []
            for c in ws.row(r):
                if c.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
                    vals.append(None)
                elif c.ctype == xlrd.XL_CELL_ERROR:
                    vals.append(xlrd.error_text_from_code.get(c.value, "#ERROR"))
                elif c.ctype == xlrd.XL_CELL_BOOLEAN:
                    vals.append(bool(c.value))
                else:
                    vals.append(c.value)
            raw_rows.append((r + 1, vals))
    finally:
        wb.release_resources()
    return _finish(raw_rows, f"{path} [{name}]" if len(names) > 1 else str(path), "xls")


# RevMan 5: outcome element -> (data element, attribute -> field)
_RM5 = {
    "DICH_OUTCOME": ("DICH_DATA", {"EVENTS_1": "events_treat", "TOTAL_1": "n_treat", "EVENTS_2": "events_ctrl",
                                   "TOTAL_2": "n_ctrl"}),
    "CONT_OUTCOME": ("CONT_DATA", {"MEAN_1": "mean_treat", "SD_1": "sd_treat", "TOTAL_1": "n_treat",
                                   "MEAN_2": "mean_ctrl", "SD_2": "sd_ctrl", "TOTAL_2": "n_ctrl"}),
    "IV_OUTCOME": ("IV_DATA", {"EFFECT_SIZE": "yi", "SE": "sei"}),
}
_RM5_MEASURE = {"RR": "RR", "OR": "OR", "RD": "RD", "PETO_OR": "PETO", "MD": "MD", "SMD": "SMD", "HR": "HR"}


def _read_rm5(path: Path, outcome: str | int | None) -> _Raw:
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else None
        raise DataError(f"not a readable RevMan 5 file (XML error: {exc})", file=path,
                        row=None if line is None else line) from None
    except OSError as exc:
        raise DataError(f"cannot read the file ({exc})", file=path) from None
    names = {s.get("ID"): (s.get("NAME") or s.get("ID")) for s in root.iter("STUDY") if s.get("ID")}
    outcomes = []
    for comp in root.iter("COMPARISON"):
        cno = comp.get("NO") or str(len(outcomes) + 1)
        for el in comp:
            if el.tag in _RM5:
                outcomes.append((f"{cno}.{el.get('NO') or '1'}", el))
    if not outcomes:
        raise DataError("no analysis data (no DICH_OUTCOME, CONT_OUTCOME or IV_OUTCOME in ANALYSES_AND_DATA)",
                        file=path)

    def oname(el):
        n = el.find("NAME")
        return (n.text or "").strip() if n is not None else ""

    if outcome is None or outcome == "":
        no, el = outcomes[0]
        if len(outcomes) > 1:
            warnings.warn(f"{path}: {len(outcomes)} outcomes; reading {no} {oname(el)!r} (choose another with "
                          f"sheet=/--sheet: " + ", ".join(f"{n} {oname(e)!r}" for n, e in outcomes[:8]) +
                          (", ..." if len(outcomes) > 8 else "") + ")", DataWarning, stacklevel=3)
    else:
        key = str(outcome).strip()
        hit = [(n, e) for n, e in outcomes if key in (n, e.get("ID"), oname(e))]
        if not hit:
            raise DataError(f"outcome {key!r} not found; outcomes: " +
                            ", ".join(f"{n} {oname(e)!r}" for n, e in outcomes), file=path)
        no, el = hit[0]
    data_tag, attrs = _RM5[el.tag]
    header = ["study", *attrs]
    has_sub = el.find(el.tag.replace("OUTCOME", "SUBGROUP")) is not None
    if has_sub:
        header.append("subgroup")
    raw_rows = [(1, header)]
    i = 1

    def add(d, sub=None):
        nonlocal i
        i += 1
        sid = d.get("STUDY_ID")
        label = names.get(sid) or (sid[4:] if sid and sid.startswith("STD-") else sid)
        row = [label, *[d.get(a) for a in attrs]]
        if has_sub:
            row.append(sub)
        raw_rows.append((i, row))

    for child in el:
        if child.tag == data_tag:
            add(child)
        elif child.tag.endswith("_SUBGROUP"):
            sname = oname(child) or child.get("NO")
            for d in child.iter(data_tag):
                add(d, sname)
    raw = _finish(raw_rows, str(path), "rm5", spreadsheet=False)
    raw.header = header
    raw.measure = _RM5_MEASURE.get((el.get("EFFECT_MEASURE") or "").upper())
    raw.outcome = f"{no} {oname(el)}".strip()
    return raw


# ------------------------------------------------------------------------------- interpretation
def _number(raw: _Raw, i: int, j: int, fieldname: str) -> float:
    v = raw.cells[i][j]
    r, col = raw.rows[i], raw.colname(j)
    if v is None or (isinstance(v, str) and v.strip().lower() in _MISSING):
        raise DataError(f"missing value ({_DESCRIBE.get(fieldname, fieldname)} is required)",
                        file=raw.file, row=r, column=col)
    if isinstance(v, bool):
        raise DataError(f"not a number: {v!r}", file=raw.file, row=r, column=col)
    if isinstance(v, (int, float)):
        x = float(v)
    else:
        s = str(v).strip()
        try:
            x = float(s)
        except ValueError:
            hint = " (decimal comma? use a point)" if "," in s and s.replace(",", "", 1).replace("-", "", 1).isdigit() else ""
            raise DataError(f"not a number: {s!r}{hint}", file=raw.file, row=r, column=col) from None
    if not math.isfinite(x):
        raise DataError(f"not a finite number: {v!r}", file=raw.file, row=r, column=col)
    if fieldname in _COUNTS and x < 0:
        raise DataError(f"negative count {x:g} ({_DESCRIBE[fieldname]})", file=raw.file, row=r, column=col)
    if fieldname in _POSITIVE and x <= 0:
        what = "negative" if x < 0 else "zero"
        raise DataError(f"{what} value {x:g}: {_DESCRIBE[fieldname]} must be > 0", file=raw.file, row=r,
                        column=col)
    return x


def _resolve(raw: _Raw, columns: Mapping[str, str], measure: str | None, layout: str | None):
    """-> (layout, {field: column index}, study column index or None)."""
    lower = {h.lower(): j for j, h in enumerate(raw.header)}
    given: dict[str, int] = {}
    for key, col in columns.items():
        fieldname = _ALIAS_TO_FIELD.get(key.lower(), key.lower() if key.lower() in FIELD_ALIASES else None)
        if fieldname is None:
            raise DataError(f"--columns: unknown field {key!r}; fields: " + ", ".join(sorted(
                {a for a in _ALIAS_TO_FIELD if a.isidentifier() and a not in ("t", "r")})), file=raw.file)
        j = lower.get(col.lower())
        if j is None:
            raise DataError(f"column {col!r} (given for {key}) not found; the header has: "
                            + ", ".join(raw.header), file=raw.file, row=raw.header_row if raw.spreadsheet else None,
                            column=repr(col))
        given[fieldname] = j

    def find(fieldname: str) -> int | None:
        if fieldname in given:
            return given[fieldname]
        for a in FIELD_ALIASES[fieldname]:
            if a in lower and lower[a] not in given.values():
                return lower[a]
        return None

    found = {f: find(f) for f in FIELD_ALIASES}
    found = {f: j for f, j in found.items() if j is not None}
    # non-events instead of totals (metafor ai/bi/ci/di)
    for g in ("treat", "ctrl"):
        if f"n_{g}" not in found and f"nonevents_{g}" in found:
            found[f"n_{g}"] = -1  # computed
    if "sei" in found and "vi" not in found:
        found["vi"] = -2  # from sei

    wanted: str | None = layout
    if wanted is None and measure is not None:
        m = registry.measure(measure)
        by_code = {"HR": "generic", "IRR": "incidence", "IR": "rate"}
        by_kind = {"binary": "binary", "continuous": "continuous", "proportion": "proportion"}
        wanted = by_code.get(m.code) if m.code == "HR" else by_kind.get(m.kind, by_code.get(m.code))
    if wanted is not None and layout is None and not all(f in found for f in LAYOUTS[wanted]):
        if "treatment" in found and wanted in ("binary", "continuous"):
            wanted = "arms" if wanted == "binary" else "arms-continuous"
        elif all(f in found for f in LAYOUTS["generic"]) and registry.measure(measure).groups == 2:
            wanted = "generic"  # effect sizes on the measure's model scale (log for ratios)
    if wanted == "arms" and "treatment" in found and "mean" in found:
        wanted = "arms-continuous"
    if wanted is None:
        order = (["arms-continuous", "arms"] if "treatment" in found else []) + [
            "binary", "continuous", "incidence", "generic", "proportion", "rate"]
        for lay in order:
            if all(f in found for f in LAYOUTS[lay]):
                wanted = lay
                break
    if wanted is None:
        raise DataError("cannot tell which data this is: the header has " + ", ".join(raw.header) +
                        "; expected (metafor names) study, ai, n1i, ci, n2i (2x2 counts) | m1i, sd1i, n1i, m2i, "
                        "sd2i, n2i (means) | yi, vi or yi, sei (effect sizes) | study, treatment, events, n "
                        "(one row per arm, for nma); map other names with --columns/columns=",
                        file=raw.file, row=raw.header_row if raw.spreadsheet else None)
    need = LAYOUTS[wanted]
    missing = [f for f in need if f not in found]
    if missing:
        f = missing[0]
        names = "/".join(FIELD_ALIASES[f][:2])
        why = f" for measure {measure.upper()}" if measure else f" for {wanted} data"
        if measure and registry.measure(measure).code == "HR":
            why = " for measure HR (a log hazard ratio yi with its variance vi or standard error sei)"
        raise DataError(f"missing column {names} ({_DESCRIBE[f]}){why}; the header has: " + ", ".join(raw.header)
                        + "; map it with --columns/columns=", file=raw.file, row=raw.header_row if raw.spreadsheet else None,
                        column=repr(FIELD_ALIASES[f][0]))
    fields = {f: found[f] for f in need}
    for g in ("treat", "ctrl"):
        if fields.get(f"n_{g}") == -1:
            fields[f"nonevents_{g}"] = found[f"nonevents_{g}"]
    if fields.get("vi") == -2:
        fields["sei"] = found["sei"]
    study = found.get("study")
    if wanted.startswith("arms") and study is None:
        raise DataError("missing column study (one row per arm needs the study of each arm); the header has: "
                        + ", ".join(raw.header), file=raw.file, row=raw.header_row, column="'study'")
    return wanted, fields, study


@dataclass(frozen=True)
class TableData:
    """A validated table of studies (or of arms, for network meta-analysis).

    Attributes
    ----------
    file, format : str
    layout : str
        One of :data:`LAYOUTS` (``binary``, ``continuous``, ``generic``, ``proportion``,
        ``incidence``, ``rate``, ``arms``, ``arms-continuous``).
    labels : tuple of str
        Study label of each row.
    rows : tuple of int
        The row of each study (or arm) in the file, as a spreadsheet numbers it (header = 1;
        for RevMan files the position of the data element, first = 2).
    data : dict of str -> numpy.ndarray
        The numeric fields (lnsynth names: ``events_treat, n_treat, ...``) as float arrays,
        validated (no NaN, counts >= 0, events <= n, n > 0, SD > 0).
    columns : dict of str -> str
        Field -> the header it was read from.
    measure : str or None
        The measure given, or the one the file states (RevMan), or the layout's default.
    header : tuple of str
        Every column of the file; :meth:`column` reads any of them (subgroups, moderators).
    outcome : str or None
        RevMan outcome read (number and name).
    """

    file: str
    format: str
    layout: str
    labels: tuple[str, ...]
    rows: tuple[int, ...]
    data: dict
    columns: dict
    measure: str | None
    header: tuple[str, ...]
    outcome: str | None = None
    _raw: Any = field(default=None, repr=False, compare=False)
    _index: tuple[int, ...] = field(default=(), repr=False, compare=False)
    _checked00: bool = field(default=False, repr=False, compare=False)

    # ---------------------------------------------------------------- basics
    @property
    def k(self) -> int:
        """Number of rows (studies; arms for the arm layouts)."""
        return len(self.labels)

    @property
    def kind(self) -> str:
        """Kind of data in the registry's terms (binary, continuous, ...; 'generic' for yi/vi)."""
        if self.layout.startswith("arms"):
            return "continuous" if self.layout == "arms-continuous" else "binary"
        return _LAYOUT_KIND.get(self.layout, "generic")

    def measures(self) -> tuple[str, ...]:
        """Measures this table can be analysed with."""
        if self.layout == "generic":
            return tuple(m.code for m in registry.all_measures() if m.groups == 2)
        if self.layout.startswith("arms"):
            return registry.network_measures(self.kind)
        if self.layout == "incidence":
            return ("IRR",)
        if self.layout == "rate":
            return ("IR",)
        return registry.measures_for(self.kind)

    def check_measure(self, measure: str | None = None) -> str | None:
        """The measure to use (``measure`` or the table's), checked against the data; raises DataError."""
        m = measure if measure not in (None, "") else self.measure
        if m is None:
            return None
        try:
            code = registry.measure(m).code
        except ValueError:
            raise DataError(f"unknown measure {m!r}; valid: {', '.join(registry.measure_codes())}",
                            file=self.file) from None
        if code not in self.measures():
            have = ", ".join(self.columns.values())
            if code == "HR":
                need = "a log hazard ratio yi with its variance vi or standard error sei"
            else:
                need = ", ".join(FIELD_ALIASES[f][0] for f in registry.required_fields(code)) or "yi, vi"
            raise DataError(f"measure {code} does not fit these {self.layout} data (columns {have}); {code} needs "
                            f"{need}; valid here: {', '.join(self.measures())}", file=self.file)
        return code

    def frame(self):
        """The data as a DataFrame: ``row, study`` and the numeric fields (lnsynth names)."""
        import pandas as pd

        d = {"row": list(self.rows), "study": list(self.labels)}
        if self.layout.startswith("arms"):
            d["treatment"] = list(self.column(self.columns["treatment"], numeric=False))
        d.update({f: v for f, v in self.data.items()})
        return pd.DataFrame(d)

    def column(self, name: str, *, numeric: bool | None = None) -> np.ndarray:
        """Values of any column of the file (by its header, case-insensitive), one per row.

        ``numeric=True``: floats (a cell that is not a number raises DataError); ``False``: strings;
        ``None``: floats when every cell is a number, strings otherwise.  A missing cell raises
        DataError naming its row.
        """
        raw = self._raw
        lower = {h.lower(): j for j, h in enumerate(raw.header)}
        j = lower.get(str(name).lower())
        if j is None:
            raise DataError(f"column {name!r} not found; the header has: " + ", ".join(raw.header), file=self.file,
                            row=raw.header_row if raw.spreadsheet else None, column=repr(name))
        vals = []
        for i in self._index:
            v = raw.cells[i][j]
            if v is None or (isinstance(v, str) and v.strip().lower() in _MISSING):
                raise DataError("missing value (every study needs one here)", file=self.file, row=raw.rows[i],
                                column=raw.colname(j))
            vals.append(v)
        if numeric is False:
            return np.array([str(v).strip() if not isinstance(v, float) or not v.is_integer() else str(int(v))
                             for v in vals], dtype=object)
        nums = []
        for i, v in zip(self._index, vals):
            try:
                x = float(v) if not isinstance(v, bool) else math.nan
            except (TypeError, ValueError):
                if numeric:
                    raise DataError(f"not a number: {v!r}", file=self.file, row=raw.rows[i],
                                    column=raw.colname(j)) from None
                return self.column(name, numeric=False)
            if not math.isfinite(x):
                raise DataError(f"not a finite number: {v!r}", file=self.file, row=raw.rows[i], column=raw.colname(j))
            nums.append(x)
        return np.array(nums, dtype=float)

    def _subset(self, keep: np.ndarray) -> "TableData":
        keep = np.asarray(keep, dtype=bool)
        return replace(self, labels=tuple(np.array(self.labels, dtype=object)[keep]),
                       rows=tuple(np.array(self.rows)[keep].tolist()),
                       data={f: v[keep] for f, v in self.data.items()},
                       _index=tuple(np.array(self._index)[keep].tolist()))

    # ------------------------------------------------------------- pairwise
    def double_zero(self, measure: str | None = None) -> np.ndarray:
        """Studies with no events (or only events) in both arms (``drop00`` in metafor's escalc)."""
        if self.layout == "binary":
            a, n1, c, n2 = (self.data[f] for f in LAYOUTS["binary"])
            return ((a == 0) & (c == 0)) | ((a == n1) & (c == n2))
        if self.layout == "incidence":
            return (self.data["events_treat"] == 0) & (self.data["events_ctrl"] == 0)
        return np.zeros(self.k, dtype=bool)

    def usable(self, measure: str | None = None, drop00: bool | None = None) -> "TableData":
        """The table without the studies ``drop00`` removes, with a DataWarning naming them.

        ``drop00=None`` (default): drop them for ratio measures (RR, OR, PETO, IRR), where a study
        with no events (or only events) in both arms carries no information -- metafor's
        ``escalc(drop00=TRUE)`` and ``rma.mh`` -- and keep them (with metafor's 0.5 correction) for
        RD and AS; ``True``/``False`` force either.  Kept double-zero studies are warned about too.
        """
        code = self.check_measure(measure)
        if self._checked00:
            return self
        dz = self.double_zero(code)
        if not dz.any():
            return replace(self, _checked00=True)
        if drop00 is None:
            drop00 = registry.is_ratio(code)
        names = "; ".join(f"{self.labels[i]!r} (row {self.rows[i]})" for i in np.flatnonzero(dz))
        if drop00:
            warnings.warn(f"{self.file}: dropped {int(dz.sum())} stud{'y' if dz.sum() == 1 else 'ies'} with no events "
                          f"(or only events) in both arms, uninformative for {code} (drop00, as metafor "
                          f"escalc(drop00=TRUE)): {names}; --keep00 / drop00=False keeps them with 0.5 added "
                          "to each cell", DataWarning, stacklevel=2)
            if dz.all():
                raise DataError(f"every study has no events (or only events) in both arms; nothing to pool for "
                                f"{code} (use --keep00 / drop00=False, or RD)", file=self.file)
            return replace(self._subset(~dz), _checked00=True)
        warnings.warn(f"{self.file}: kept {int(dz.sum())} stud{'y' if dz.sum() == 1 else 'ies'} with no events (or only "
                      f"events) in both arms, 0.5 added to each cell (metafor's default): {names}",
                      DataWarning, stacklevel=2)
        return replace(self, _checked00=True)

    def effect_size_inputs(self, measure: str | None = None) -> dict[str, Any]:
        """Keyword arguments of :func:`lnsynth.effects.effect_sizes` (fields and ``labels``)."""
        code = self.check_measure(measure)
        if self.layout.startswith("arms"):
            raise DataError("these are arm-level data (one row per arm) for network meta-analysis; "
                            "use lnsynth nma --input / TableData.network()", file=self.file)
        if self.layout == "generic":
            raise DataError("these are effect sizes (yi with vi or sei), not raw data; use "
                            "TableData.meta_analysis() or meta_analysis(yi=, vi=)", file=self.file)
        req = registry.required_fields(code)
        return {"measure": code, **{f: self.data[f] for f in req}, "labels": list(self.labels)}

    def effect_sizes(self, measure: str | None = None, *, drop00: bool | None = None, **kwargs):
        """:func:`lnsynth.effects.effect_sizes` of the (usable) studies; ``kwargs`` go to it (add, to, vtype).

        For generic ``yi``/``vi`` data an :class:`~lnsynth.effects.EffectSizes` holding them is returned.
        """
        from .effects import EffectSizes, effect_sizes

        code = self.check_measure(measure)
        if self.layout == "generic":
            return EffectSizes(measure=code or "GEN", yi=self.data["yi"].copy(), vi=self.data["vi"].copy(),
                               labels=tuple(self.labels))
        td = self.usable(code, drop00)
        return effect_sizes(**td.effect_size_inputs(code), **kwargs)

    def _usable_es(self, measure, drop00, **kwargs):
        """(usable table, its effect sizes): the studies drop00 leaves and their yi/vi, warned once."""
        from .effects import effect_sizes

        code = self.check_measure(measure)
        if self.layout == "generic":
            return self, self.effect_sizes(code)
        td = self.usable(code, drop00)
        return td, effect_sizes(**td.effect_size_inputs(code), **kwargs)

    def meta_analysis(self, measure: str | None = None, method: str = "REML", test: str = "z", *,
                      level: float = 0.95, drop00: bool | None = None, **kwargs):
        """:func:`lnsynth.pairwise.meta_analysis` of these studies."""
        from .pairwise import meta_analysis

        es = self.effect_sizes(measure, drop00=drop00)
        return meta_analysis(es, method=method, test=test, level=level, **kwargs)

    def subgroup_analysis(self, column: str, measure: str | None = None, method: str = "REML", test: str = "z", *,
                          level: float = 0.95, drop00: bool | None = None):
        """:func:`lnsynth.pairwise.subgroup_analysis` by the values of ``column``."""
        from .pairwise import subgroup_analysis

        td, es = self._usable_es(measure, drop00)
        groups = td.column(column, numeric=False)
        return subgroup_analysis(es.yi, es.vi, groups, method=method, test=test, level=level)

    def meta_regression(self, moderators: str | Sequence[str], measure: str | None = None, method: str = "REML",
                        test: str = "z", *, level: float = 0.95, drop00: bool | None = None):
        """:func:`lnsynth.pairwise.meta_regression` on one or more columns (numeric as is, others as factors)."""
        import pandas as pd

        from .pairwise import meta_regression

        td, es = self._usable_es(measure, drop00)
        cols = [moderators] if isinstance(moderators, str) else list(moderators)
        mods = pd.DataFrame({c: td.column(c) for c in cols})
        return meta_regression(yi=es.yi, vi=es.vi, moderators=mods, method=method, test=test, level=level)

    # -------------------------------------------------------------- network
    def network_frame(self):
        """Arm-level DataFrame ``study, treatment, events, n`` (or ``mean, sd, n``) for network meta-analysis."""
        if not self.layout.startswith("arms"):
            raise DataError(f"network meta-analysis needs one row per arm (columns study, treatment, events, n "
                            f"or study, treatment, mean, sd, n); this file has {self.layout} data with columns "
                            + ", ".join(self.header), file=self.file, row=self._raw.header_row if self._raw.spreadsheet else None)
        return self.frame()

    def network(self, measure: str | None = None, method: str = "REML", reference: str | None = None,
                level: float = 0.95):
        """:func:`lnsynth.network.network_meta_analysis` of these arms."""
        from .network import network_meta_analysis

        df = self.network_frame()
        code = self.check_measure(measure) or _DEFAULT_MEASURE[self.layout]
        if reference is not None and reference not in set(df["treatment"]):
            raise DataError(f"reference treatment {reference!r} is not in the column "
                            f"{self.columns['treatment']!r}; treatments: {', '.join(sorted(set(df['treatment'])))}",
                            file=self.file)
        cols = ({"events": "events", "n": "n"} if self.layout == "arms" else {"mean": "mean", "sd": "sd", "n": "n"})
        return network_meta_analysis(df, study="study", treatment="treatment", measure=code, reference=reference,
                                     method=method, level=level, **cols)


def read_table(path: str | Path, *, format: str | None = None, columns: str | Mapping[str, str] | None = None,
               measure: str | None = None, sheet: str | int | None = None, layout: str | None = None) -> TableData:
    """Read and validate a table of studies (or of arms) from CSV, TSV, Excel or RevMan 5 ``.rm5``.

    Parameters
    ----------
    path : str or Path
    format : {"csv", "tsv", "xlsx", "xls", "rm5"}, optional
        Default: from the extension (``.csv``, ``.tsv``/``.tab``, ``.xlsx``/``.xlsm`` (openpyxl),
        ``.xls`` (Excel 97-2003, xlrd), ``.rm5``; anything else is
        read as delimited text, the delimiter sniffed from the header: comma, semicolon or tab).
    columns : mapping or "field=Header,..." string, optional
        Field (metafor name such as ``ai``/``n1i``/``m1i``/``yi``, or lnsynth name such as
        ``events_treat``; ``study``, ``treatment``) -> header in the file.  Unmapped fields are found
        by their default names (:data:`FIELD_ALIASES`), case-insensitively.
    measure : str, optional
        Effect measure (registry code); decides which columns are needed.  Default: the file's
        (RevMan ``EFFECT_MEASURE``) or the layout's (RR for 2x2 counts, MD for means, OR for arms).
    sheet : str or int, optional
        Excel sheet (name or 1-based number; default the first); for ``.rm5`` the outcome (number
        such as ``"1.2"``, ID or name; default the first, with a warning when there are several).
    layout : str, optional
        Force a layout of :data:`LAYOUTS` (``"arms"`` for network data).

    Raises
    ------
    DataError
        Empty file, unknown or missing column, non-numeric or missing cell, negative count or SD,
        zero n, events > n, unknown measure or a measure the data cannot give -- naming file, row
        and column.
    """
    p = Path(path)
    if not p.exists():
        raise DataError("file not found", file=p)
    if p.is_dir():
        raise DataError("is a folder, not a data file", file=p)
    fmt = _sniff_format(p, format)
    if measure is not None and measure != "":
        try:
            measure = registry.measure(measure).code
        except ValueError:
            raise DataError(f"unknown measure {measure!r}; valid: {', '.join(registry.measure_codes())}",
                            file=p) from None
    else:
        measure = None
    if layout is not None and layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}; valid: {', '.join(LAYOUTS)}", file=p)
    if fmt in ("csv", "tsv"):
        raw = _read_delimited(p, fmt)
    elif fmt == "xlsx":
        raw = _read_xlsx(p, sheet)
    elif fmt == "xls":
        raw = _read_xls(p, sheet)
    else:
        raw = _read_rm5(p, sheet)
    lay, fields, study = _resolve(raw, parse_columns(columns), measure or (raw.measure if layout is None else None),
                                  layout)
    k = len(raw.rows)
    data: dict[str, np.ndarray] = {}
    for f, j in fields.items():
        if j < 0 or f in ("treatment",):
            continue
        data[f] = np.array([_number(raw, i, j, f) for i in range(k)], dtype=float)
    for g in ("treat", "ctrl"):
        if f"nonevents_{g}" in data:
            data[f"n_{g}"] = data[f"events_{g}"] + data.pop(f"nonevents_{g}")
            for i in range(k):
                if data[f"n_{g}"][i] <= 0:
                    raise DataError(f"no patients in the {g} arm (events + non-events = 0)", file=raw.file,
                                    row=raw.rows[i], column=raw.colname(fields[f"events_{g}"]))
    if "sei" in data:
        data["vi"] = data.pop("sei") ** 2
    # events <= n
    pairs = [("events_treat", "n_treat"), ("events_ctrl", "n_ctrl"), ("events", "n")]
    for ev, n in pairs:
        if ev in data and n in data and fields.get(n, -1) >= 0:
            bad = np.flatnonzero(data[ev] > data[n])
            if bad.size:
                i = int(bad[0])
                raise DataError(f"{data[ev][i]:g} events > {data[n][i]:g} patients "
                                f"({raw.header[fields[n]]!r}); events cannot exceed n", file=raw.file,
                                row=raw.rows[i], column=raw.colname(fields[ev]))
    if study is not None:
        labels = []
        for i in range(k):
            v = raw.cells[i][study]
            if v is None or (isinstance(v, str) and not v.strip()):
                raise DataError("missing study label", file=raw.file, row=raw.rows[i], column=raw.colname(study))
            labels.append(str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip())
    else:
        labels = [f"Study {i + 1}" for i in range(k)]
    colmap = {f: raw.header[j] for f, j in fields.items() if j >= 0}
    if study is not None:
        colmap = {"study": raw.header[study], **colmap}
    td = TableData(file=raw.file, format=fmt, layout=lay, labels=tuple(labels), rows=tuple(raw.rows), data=data,
                   columns=colmap, measure=measure or raw.measure or _DEFAULT_MEASURE[lay],
                   header=tuple(raw.header), outcome=raw.outcome, _raw=raw, _index=tuple(range(k)))
    if lay.startswith("arms"):
        _check_arms(td, raw, fields, study)
    elif measure is not None:
        td.check_measure(measure)
    return td


def _check_arms(td: TableData, raw: _Raw, fields: dict, study: int) -> None:
    treat = fields["treatment"]
    seen: dict[tuple[str, str], int] = {}
    by_study: dict[str, list[int]] = {}
    for i, (lab, r) in enumerate(zip(td.labels, td.rows)):
        v = raw.cells[i][treat]
        if v is None or (isinstance(v, str) and not v.strip()):
            raise DataError("missing treatment", file=raw.file, row=r, column=raw.colname(treat))
        t = str(v).strip()
        if (lab, t) in seen:
            raise DataError(f"study {lab!r} has treatment {t!r} twice (also row {seen[(lab, t)]})", file=raw.file,
                            row=r, column=raw.colname(treat))
        seen[(lab, t)] = r
        by_study.setdefault(lab, []).append(r)
    for lab, rs in by_study.items():
        if len(rs) < 2:
            raise DataError(f"study {lab!r} has a single arm; a network needs >= 2 arms per study", file=raw.file,
                            row=rs[0], column=raw.colname(study))


# ------------------------------------------------------------------------------------- outputs
def json_safe(x: Any) -> Any:
    """``x`` with NumPy scalars/arrays made Python and every non-finite float made None (JSON null)."""
    if isinstance(x, dict):
        return {str(k): json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    if isinstance(x, np.ndarray):
        return [json_safe(v) for v in x.tolist()]
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x


def _num(x: Any) -> float | None:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _back(measure: str | None, ni=None):
    """(function model -> reported scale, scale name) for a measure code (identity for unknown/GEN)."""
    try:
        m = registry.measure(measure) if measure else None
    except ValueError:
        m = None
    if m is None:
        return (lambda x: np.asarray(x, dtype=float)), "identity"
    f = registry.back_transform(m.code)
    if m.back_transform == "transf.ipft.hm":
        return (lambda x: f(x, ni=ni)), m.scale
    return f, m.scale


def pairwise_summary(res, *, table: TableData | None = None, dropped: Sequence[dict] = (),
                     labels: Sequence[str] | None = None) -> dict[str, Any]:
    """The JSON contract of ``lnsynth meta``: pooled result on the reported scale (ratio scale for ratio
    measures; the metafor ``transf`` inverse for PLO/PAS/PFT) and on the model scale (``model_*``;
    ``log_*`` for log-scale measures, else null), heterogeneity, and one record per study."""
    from scipy.special import ndtri

    measure = res.measure
    ni = table.data.get("n") if table is not None else None
    f, scale = _back(measure, ni)
    is_log = scale == "log"
    fv = lambda x: _num(f(x))  # noqa: E731
    out: dict[str, Any] = {
        "k": int(res.k), "measure": measure, "method": res.method, "test": res.test, "level": float(res.level),
        "scale": scale,
        "estimate": fv(res.estimate), "ci_low": fv(res.ci_low), "ci_high": fv(res.ci_high),
        "pi_low": fv(res.pi_low), "pi_high": fv(res.pi_high),
        "tau2": _num(res.tau2), "tau2_ci_low": _num(res.tau2_ci_low), "tau2_ci_high": _num(res.tau2_ci_high),
        "i2": _num(res.i2), "h2": _num(res.h2), "q": _num(res.q), "q_df": max(int(res.k) - 1, 0),
        "q_pvalue": _num(res.q_pvalue),
        "log_estimate": _num(res.estimate) if is_log else None,
        "log_ci_low": _num(res.ci_low) if is_log else None,
        "log_ci_high": _num(res.ci_high) if is_log else None,
        "model_estimate": _num(res.estimate), "model_ci_low": _num(res.ci_low), "model_ci_high": _num(res.ci_high),
        "model_pi_low": _num(res.pi_low), "model_pi_high": _num(res.pi_high),
        "se": _num(res.se), "zval": _num(res.zval), "pvalue": _num(res.pvalue),
    }
    if table is not None:
        out["file"] = table.file
        if table.outcome:
            out["outcome"] = table.outcome
    crit = float(ndtri(1 - (1 - res.level) / 2))
    labs = list(labels if labels is not None else (res.labels or [f"Study {i + 1}" for i in range(len(res.yi))]))
    studies = []
    for i, lab in enumerate(labs):
        y, v = float(res.yi[i]), float(res.vi[i])
        s = math.sqrt(v)
        rec: dict[str, Any] = {"study": lab}
        if table is not None:
            rec["row"] = int(table.rows[i])
            for fld, arr in table.data.items():
                x = float(arr[i])
                rec[fld] = int(x) if fld in _COUNTS and x.is_integer() else x
        rec.update(yi=_num(y), vi=_num(v), se=_num(s), estimate=fv(y), ci_low=fv(y - crit * s),
                   ci_high=fv(y + crit * s), weight=_num(res.weights[i]))
        studies.append(rec)
    out["studies"] = studies
    out["dropped"] = list(dropped)
    return out


def subgroup_summary(sg, measure: str | None) -> dict[str, Any]:
    """Per-subgroup pooled results (separate tau^2, reported scale) and both tests for subgroup differences."""
    f, _ = _back(measure)
    s = sg.separate
    groups = []
    for j, g in enumerate(sg.groups):
        groups.append({"subgroup": str(g), "k": int(sg.k[j]), "estimate": _num(f(s["estimate"][j])),
                       "ci_low": _num(f(s["ci_low"][j])), "ci_high": _num(f(s["ci_high"][j])),
                       "model_estimate": _num(s["estimate"][j]), "se": _num(s["se"][j]), "pvalue": _num(s["pvalue"][j]),
                       "tau2": _num(s["tau2"][j]), "i2": _num(s["i2"][j]), "q": _num(s["q"][j])})
    return json_safe({"groups": groups, "test_separate": dict(sg.test_separate), "test_common": dict(sg.test_common),
                      "method": sg.method, "test": sg.test})


def regression_summary(reg) -> dict[str, Any]:
    """Coefficients (model scale), the omnibus test of the moderators, residual heterogeneity, R^2."""
    return json_safe(reg.to_dict())


def _fmt(x: Any, digits: int = 2) -> str:
    if x is None:
        return ""
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, float):
        if not math.isfinite(x):
            return ""
        return f"{x:.{digits}f}"
    return str(x)


def _p(p: float | None) -> str:
    if p is None:
        return ""
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def summary_markdown(s: dict[str, Any]) -> str:
    """``summary.md`` of a :func:`pairwise_summary` payload (with ``subgroup``/``moderator`` sections if present)."""
    from tabulate import tabulate

    m = s.get("measure") or "effect"
    pct = int(round(100 * s.get("level", 0.95)))
    title = f"# Meta-analysis: {m}, {s['method']}, test {s['test']}"
    lines = [title, ""]
    if s.get("file"):
        lines.append(f"Data: `{s['file']}`" + (f", outcome {s['outcome']}" if s.get("outcome") else "") + f"; k = {s['k']} studies.")
        lines.append("")
    scale_name = {"log": f"log {m}", "identity": m}.get(s["scale"], f"{m} ({s['scale']} scale)")
    rows = []
    if s["scale"] != "identity":
        rows.append([f"{m} (back-transformed)", _fmt(s["estimate"]), f"{_fmt(s['ci_low'])} to {_fmt(s['ci_high'])}",
                     f"{_fmt(s['pi_low'])} to {_fmt(s['pi_high'])}" if s.get("tau2") not in (None, 0.0) or s["method"] not in ("FE", "MH", "PETO") else "", "", ""])
    rows.append([f"{scale_name} (model scale)", _fmt(s["model_estimate"], 4),
                 f"{_fmt(s['model_ci_low'], 4)} to {_fmt(s['model_ci_high'], 4)}",
                 f"{_fmt(s['model_pi_low'], 4)} to {_fmt(s['model_pi_high'], 4)}", _fmt(s["se"], 4), _p(s["pvalue"])])
    lines.append(tabulate(rows, headers=["scale", "estimate", f"{pct}% CI", f"{pct}% PI", "SE", "p"], tablefmt="github"))
    lines.append("")
    het = f"Heterogeneity: Q = {_fmt(s['q'])} (df = {s['q_df']}, p {_p(s['q_pvalue'])}), I² = {_fmt(s['i2'], 1)}%"
    if s.get("tau2") is not None and s["method"] not in ("FE", "MH", "PETO"):
        het += f", τ² = {_fmt(s['tau2'], 4)}"
        if s.get("tau2_ci_low") is not None:
            het += f" [{_fmt(s['tau2_ci_low'], 4)}, {_fmt(s['tau2_ci_high'], 4)}]"
    lines += [het + ".", ""]
    if s.get("subgroup"):
        sg = s["subgroup"]
        lines += [f"## Subgroups by `{sg.get('column', '')}` (separate τ², {sg['method']})", ""]
        lines.append(tabulate([[g["subgroup"], g["k"], _fmt(g["estimate"]), f"{_fmt(g['ci_low'])} to {_fmt(g['ci_high'])}",
                                _fmt(g["tau2"], 4), _fmt(g["i2"], 1)] for g in sg["groups"]],
                              headers=["subgroup", "k", m, f"{pct}% CI", "τ²", "I² %"], tablefmt="github"))
        ts, tc = sg["test_separate"], sg["test_common"]
        lines += ["", f"Test for subgroup differences: Q = {_fmt(ts['q'])} (df = {ts['df']}, p {_p(ts['pvalue'])}) "
                  f"with separate τ²; QM = {_fmt(tc['q'])} (p {_p(tc['pvalue'])}) with a common τ² (meta-regression).", ""]
    if s.get("moderator"):
        r = s["moderator"]
        lines += [f"## Meta-regression on `{', '.join(r.get('columns', []))}` ({r['method']}, model scale)", ""]
        lines.append(tabulate([[n, _fmt(b, 4), _fmt(se, 4), f"{_fmt(lo, 4)} to {_fmt(hi, 4)}", _p(p)]
                               for n, b, se, lo, hi, p in zip(r["names"], r["coefficients"], r["se"], r["ci_low"],
                                                              r["ci_high"], r["pvalue"])],
                              headers=["term", "estimate", "SE", f"{pct}% CI", "p"], tablefmt="github"))
        lines += ["", f"Test of moderators: QM = {_fmt(r['qm'])} (df = {', '.join(str(d) for d in r['qm_df'] if d is not None)}, "
                  f"p {_p(r['qm_pvalue'])}); residual heterogeneity QE = {_fmt(r['qe'])} (p {_p(r['qe_pvalue'])}), "
                  f"τ² = {_fmt(r['tau2'], 4)}, R² = {_fmt(r['r2'], 1)}%.", ""]
    lines += ["## Studies", ""]
    st = s["studies"]
    fields = [k for k in (st[0] if st else {}) if k not in ("study", "row", "yi", "vi", "se", "estimate", "ci_low",
                                                             "ci_high", "weight")]
    head = ["study"] + (["row"] if st and "row" in st[0] else []) + fields + [m, f"{pct}% CI", "weight %"]
    body = []
    for r in st:
        body.append([r["study"]] + ([r["row"]] if "row" in r else []) + [_fmt(r[k], 4) if isinstance(r[k], float) else _fmt(r[k]) for k in fields]
                    + [_fmt(r["estimate"]), f"{_fmt(r['ci_low'])} to {_fmt(r['ci_high'])}", _fmt(r["weight"], 1)])
    lines.append(tabulate(body, headers=head, tablefmt="github", disable_numparse=True))
    if s.get("dropped"):
        lines += ["", "Left out: " + "; ".join(f"{d['study']} (row {d['row']}): {d['reason']}" if d.get("row") else
                                                f"{d['study']}: {d['reason']}" for d in s["dropped"])]
    for n in s.get("notes", []):
        lines.append(f"- note: {n}")
    return "\n".join(lines) + "\n"


_CSV_KEYS = ("k", "measure", "method", "test", "level", "scale", "estimate", "ci_low", "ci_high", "pi_low", "pi_high",
             "model_estimate", "model_ci_low", "model_ci_high", "model_pi_low", "model_pi_high", "se", "zval", "pvalue",
             "tau2", "tau2_ci_low", "tau2_ci_high", "i2", "h2", "q", "q_df", "q_pvalue")


def summary_csv(s: dict[str, Any]) -> str:
    """``summary.csv``: one labelled row for the pooled result (both scales), one per subgroup if any."""
    import io as _io

    buf = _io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["row_type", "subgroup", *_CSV_KEYS])
    cell = lambda v: "" if v is None else (repr(v) if isinstance(v, float) else str(v))  # noqa: E731
    w.writerow(["overall", "", *[cell(s.get(k)) for k in _CSV_KEYS]])
    for g in (s.get("subgroup") or {}).get("groups", []):
        w.writerow(["subgroup", g["subgroup"], *[cell(g.get(k)) if k in ("k", "estimate", "ci_low", "ci_high", "model_estimate",
                                                                        "se", "pvalue", "tau2", "i2", "q") else
                                                 (cell(s.get(k)) if k in ("measure", "method", "test", "level", "scale") else "")
                                                 for k in _CSV_KEYS]])
    return buf.getvalue()
