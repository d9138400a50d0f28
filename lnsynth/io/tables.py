"""Cells to fields: :func:`read_table` resolves the columns and layout of a :class:`~lnsynth.io.readers` grid and
returns a :class:`TableData` (effect sizes, pairwise, subgroup, regression and network fits from the same numbers)."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from .. import registry
from .readers import (
    _ALIAS_TO_FIELD, _COUNTS, _DEFAULT_MEASURE, _DESCRIBE, _LAYOUT_KIND, _MISSING, _POSITIVE, FIELD_ALIASES, LAYOUTS,
    DataError, DataWarning, _Raw, _read_delimited, _read_rm5, _read_xls, _read_xlsx, _sniff_format, parse_columns,
)


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
        from ..effects import EffectSizes, effect_sizes

        code = self.check_measure(measure)
        if self.layout == "generic":
            return EffectSizes(measure=code or "GEN", yi=self.data["yi"].copy(), vi=self.data["vi"].copy(),
                               labels=tuple(self.labels))
        td = self.usable(code, drop00)
        return effect_sizes(**td.effect_size_inputs(code), **kwargs)

    def _usable_es(self, measure, drop00, **kwargs):
        """(usable table, its effect sizes): the studies drop00 leaves and their yi/vi, warned once."""
        from ..effects import effect_sizes

        code = self.check_measure(measure)
        if self.layout == "generic":
            return self, self.effect_sizes(code)
        td = self.usable(code, drop00)
        return td, effect_sizes(**td.effect_size_inputs(code), **kwargs)

    def meta_analysis(self, measure: str | None = None, method: str = "REML", test: str = "z", *,
                      level: float = 0.95, drop00: bool | None = None, **kwargs):
        """:func:`lnsynth.pairwise.meta_analysis` of these studies."""
        from ..pairwise import meta_analysis

        es = self.effect_sizes(measure, drop00=drop00)
        return meta_analysis(es, method=method, test=test, level=level, **kwargs)

    def subgroup_analysis(self, column: str, measure: str | None = None, method: str = "REML", test: str = "z", *,
                          level: float = 0.95, drop00: bool | None = None):
        """:func:`lnsynth.pairwise.subgroup_analysis` by the values of ``column``."""
        from ..pairwise import subgroup_analysis

        td, es = self._usable_es(measure, drop00)
        groups = td.column(column, numeric=False)
        return subgroup_analysis(es.yi, es.vi, groups, method=method, test=test, level=level)

    def meta_regression(self, moderators: str | Sequence[str], measure: str | None = None, method: str = "REML",
                        test: str = "z", *, level: float = 0.95, drop00: bool | None = None):
        """:func:`lnsynth.pairwise.meta_regression` on one or more columns (numeric as is, others as factors)."""
        import pandas as pd

        from ..pairwise import meta_regression

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
        from ..network import network_meta_analysis

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
