"""File formats in: CSV/TSV, Excel .xlsx/.xls and RevMan 5 .rm5 to one raw grid of cells (with the errors and
warnings every reader shares).  :mod:`lnsynth.io.tables` turns the grid into a :class:`TableData`."""

from __future__ import annotations

import csv
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping




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
