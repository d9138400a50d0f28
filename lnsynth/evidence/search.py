"""The systematic search as data, its deduplication and its PRISMA 2020 flow.

Three files under ``evidence/data/search/`` describe the search behind the evidence base:

``protocol.yaml``
    PICO, eligibility, information sources and the FIXED list of exclusion reasons.
``queries.yaml``
    Every query run (text, source it targeted, date, number of hits returned) and the
    other methods (citation searching).
``records.yaml``
    Every record returned (one entry per hit page; a page returned by several queries lists
    them all in ``found_by``), its title/abstract screening decision, the report-level
    assessment of records that pass screening, and the trial each report belongs to.

Duplicates are *computed* (:func:`deduplicate`: same PMID, DOI, registry id, URL or
normalised title + year), never typed, and the PRISMA counts (:func:`prisma`) follow from
the records, so they add up by construction; :meth:`Prisma.check` verifies the arithmetic
anyway.  Bad input raises :class:`SearchDataError` naming the file, the record and the field.
"""
from __future__ import annotations

import datetime as _dt
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .load import EvidenceError, data_dir

__all__ = [
    "CONTRACT_KEYS",
    "Prisma",
    "Protocol",
    "Query",
    "Record",
    "SearchData",
    "SearchDataError",
    "deduplicate",
    "load_search",
    "prisma",
    "stale_awaiting",
]

#: the keys of ``lnsynth prisma --format json`` (outside checks call it exactly)
CONTRACT_KEYS = ("identified", "duplicates", "screened", "excluded_screening", "sought", "not_retrieved",
                 "assessed", "excluded_full", "studies_included", "reports_included")


class SearchDataError(EvidenceError):
    """A fatal problem in the search files, naming the file, the record and the field."""


# ----------------------------------------------------------------------------- schema
class Protocol(BaseModel):
    """PICO, eligibility, information sources and the fixed list of exclusion reasons."""

    model_config = ConfigDict(extra="forbid")
    title: str
    version: Union[int, str]
    date: _dt.date
    question: dict[str, str]
    eligibility: dict[str, list[str]]
    information_sources: list[dict[str, str]] = Field(min_length=1)
    date_searched: _dt.date
    exclusion_reasons: dict[str, str] = Field(min_length=1)
    dedup: dict[str, Any] = Field(default_factory=dict)

    @field_validator("question")
    @classmethod
    def _pico(cls, v: dict[str, str]) -> dict[str, str]:
        missing = [k for k in ("population", "intervention", "comparator", "outcomes", "study_design") if not v.get(k)]
        if missing:
            raise ValueError(f"PICO incomplete: missing {', '.join(missing)}")
        return v

    @field_validator("exclusion_reasons")
    @classmethod
    def _reason_ids(cls, v: dict[str, str]) -> dict[str, str]:
        bad = [k for k in v if not re.fullmatch(r"[a-z][a-z0-9_]*", k)]
        if bad:
            raise ValueError(f"reason ids must be snake_case: {bad}")
        return v


class Query(BaseModel):
    """One query run against an information source (or one citation-searching step)."""

    model_config = ConfigDict(extra="forbid")
    id: str
    query: str = Field(min_length=1)
    source: str = Field(min_length=1)
    date: _dt.date
    hits: int = Field(ge=0)
    method: Literal["search", "citation"] = "search"
    tool: Optional[str] = None
    corpus: Optional[str] = None


Kind = Literal["article", "abstract", "registry", "review", "news", "other"]


class Record(BaseModel):
    """One record (a page returned by the search, or a report found by citation searching)."""

    model_config = ConfigDict(extra="forbid")
    id: str
    title: str = Field(min_length=1)
    found_by: list[str] = Field(min_length=1)
    kind: Kind = "other"
    url: Optional[str] = None
    pmid: Optional[str] = None
    doi: Optional[str] = None
    nct: Optional[str] = None
    registry_id: Optional[str] = None
    year: Optional[int] = Field(default=None, ge=1950, le=2100)
    screen: Literal["include", "exclude"]
    full: Optional[Literal["include", "exclude", "not_retrieved"]] = None
    reason: Optional[str] = None
    trial: Optional[str] = None
    note: Optional[str] = None

    @field_validator("pmid", "doi", "nct", "registry_id", mode="before")
    @classmethod
    def _as_text(cls, v: Any) -> Any:
        return None if v is None else str(v).strip()

    @field_validator("pmid")
    @classmethod
    def _pmid(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not v.isdigit():
            raise ValueError(f"PMID must be digits, got {v!r}")
        return v

    @field_validator("nct")
    @classmethod
    def _nct(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not re.fullmatch(r"NCT\d{8}", v):
            raise ValueError(f"NCT id must look like NCT01234567, got {v!r}")
        return v

    @model_validator(mode="after")
    def _decisions(self) -> "Record":
        if self.screen == "exclude":
            if not self.reason:
                raise ValueError("screen: exclude needs a reason (an id from protocol.yaml exclusion_reasons)")
            if self.full is not None:
                raise ValueError("a record excluded at screening has no report-level decision (full)")
        else:
            if self.full is None:
                raise ValueError("screen: include needs a report-level decision full: include | exclude | not_retrieved")
            if self.full == "exclude" and not self.reason:
                raise ValueError("full: exclude needs a reason (an id from protocol.yaml exclusion_reasons)")
            if self.full == "include":
                if self.reason:
                    raise ValueError("full: include takes no exclusion reason")
                if not self.trial:
                    raise ValueError("full: include needs the trial the report belongs to (trial: <study id>)")
        return self


# ----------------------------------------------------------------------------- loading
@dataclass
class SearchData:
    """The validated search: protocol, queries and records (file order kept)."""

    protocol: Protocol
    queries: list[Query]
    records: list[Record]
    root: Path
    duplicate_of: dict[str, Optional[str]] = field(default_factory=dict)

    def query(self, qid: str) -> Query:
        return next(q for q in self.queries if q.id == qid)

    def unique(self) -> list[Record]:
        """Records left after deduplication (the screened set)."""
        return [r for r in self.records if self.duplicate_of.get(r.id) is None]

    def trials(self) -> dict[str, list[str]]:
        """Included reports grouped under their trial: ``{trial id: [record ids]}``."""
        out: dict[str, list[str]] = {}
        for r in self.unique():
            if r.full == "include":
                out.setdefault(r.trial, []).append(r.id)
        return out


def _read(path: Path, key: str) -> list[dict] | dict:
    if not path.is_file():
        raise SearchDataError(f"{path.name}: file missing in {path.parent}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise SearchDataError(f"{path.name}: not valid YAML: {exc}") from None
    if key == "":
        if not isinstance(data, dict):
            raise SearchDataError(f"{path.name}: expected a mapping at the top level")
        return data
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise SearchDataError(f"{path.name}: expected a top-level '{key}:' list")
    return data[key]


def _located(fname: str, what: str, exc: ValidationError) -> str:
    lines = []
    for e in exc.errors():
        loc = ".".join(str(x) for x in e["loc"]) or "(record)"
        lines.append(f"{fname}: {what}: field '{loc}': {e['msg']}")
    return "\n".join(lines)


def _parse_list(path: Path, key: str, model: type[BaseModel]) -> list:
    out, errors, seen = [], [], set()
    for i, raw in enumerate(_read(path, key)):
        rid = raw.get("id") if isinstance(raw, dict) else None
        what = f"{key[:-1]} {rid}" if rid else f"entry {i + 1}"
        if not isinstance(raw, dict):
            errors.append(f"{path.name}: {what}: expected a mapping")
            continue
        try:
            item = model.model_validate(raw)
        except ValidationError as exc:
            errors.append(_located(path.name, what, exc))
            continue
        if item.id in seen:
            errors.append(f"{path.name}: {what}: field 'id': duplicate id {item.id!r}")
        seen.add(item.id)
        out.append(item)
    if errors:
        raise SearchDataError("\n".join(errors))
    return out


def search_dir() -> Path:
    return data_dir() / "search"


def load_search(root: Optional[Union[str, Path]] = None, studies_dir: Optional[Union[str, Path]] = None) -> SearchData:
    """Load and validate the search files.

    Parameters
    ----------
    root
        Folder holding ``protocol.yaml``, ``queries.yaml`` and ``records.yaml`` (default: the
        embedded ``evidence/data/search``).
    studies_dir
        Folder of study files; every included report's ``trial`` must be a file stem there
        (default: the embedded ``evidence/data/studies``; ``root/../studies`` when ``root`` has one).

    Returns
    -------
    SearchData
        With ``duplicate_of`` computed by :func:`deduplicate`.

    Raises
    ------
    SearchDataError
        Naming the file, the record and the field of every problem found.
    """
    root = Path(root) if root is not None else search_dir()
    if not root.is_dir():
        raise SearchDataError(f"search folder {root} does not exist")
    try:
        protocol = Protocol.model_validate(_read(root / "protocol.yaml", ""))
    except ValidationError as exc:
        raise SearchDataError(_located("protocol.yaml", "protocol", exc)) from None
    queries = _parse_list(root / "queries.yaml", "queries", Query)
    records = _parse_list(root / "records.yaml", "records", Record)
    if studies_dir is None:
        studies_dir = root.parent / "studies" if (root.parent / "studies").is_dir() else data_dir() / "studies"
    studies = {p.stem for p in Path(studies_dir).glob("*.yaml")}
    reasons = set(protocol.exclusion_reasons)
    qids = {q.id for q in queries}
    errors = []
    for r in records:
        where = f"records.yaml: record {r.id}"
        for q in r.found_by:
            if q not in qids:
                errors.append(f"{where}: field 'found_by': unknown query id {q!r} (not in queries.yaml)")
        if r.reason and r.reason not in reasons:
            errors.append(f"{where}: field 'reason': {r.reason!r} is not in the fixed list of protocol.yaml "
                          f"exclusion_reasons ({', '.join(sorted(reasons))})")
        if r.full == "include" and r.trial not in studies:
            errors.append(f"{where}: field 'trial': included report of trial {r.trial!r}, which has no study file "
                          f"in {Path(studies_dir).name}/ (exclude it as awaiting_extraction until the file exists)")
    hits = Counter(q for r in records for q in r.found_by)
    for q in queries:
        if hits[q.id] != q.hits:
            errors.append(f"queries.yaml: query {q.id}: field 'hits': {q.hits} hits logged but {hits[q.id]} records "
                          f"in records.yaml list it in found_by")
    if errors:
        raise SearchDataError("\n".join(errors))
    data = SearchData(protocol, queries, records, root)
    data.duplicate_of = deduplicate(records)
    return data


# ----------------------------------------------------------------------------- deduplication
def _norm_title(t: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", t.lower()).strip()


def _norm_url(u: str) -> str:
    u = re.sub(r"^[a-z]+://", "", u.strip().lower())
    u = re.sub(r"^www\.", "", u).split("#", 1)[0]
    return u.rstrip("/")


def _norm_registry(s: str) -> str:
    s = re.sub(r"^(eudract|jprn-)\s*", "", s.strip().lower())
    return re.sub(r"[^a-z0-9]+", "", s)


def _keys(r: Any) -> list[tuple]:
    get = (lambda k: r.get(k)) if isinstance(r, dict) else (lambda k: getattr(r, k, None))
    keys = []
    if get("pmid"):
        keys.append(("pmid", str(get("pmid")).strip()))
    if get("doi"):
        keys.append(("doi", str(get("doi")).strip().lower()))
    for k in ("nct", "registry_id"):
        if get(k):
            keys.append(("registry", _norm_registry(str(get(k)))))
    if get("url"):
        keys.append(("url", _norm_url(str(get("url")))))
    if get("title"):
        keys.append(("title", _norm_title(str(get("title"))), get("year")))
    return keys


def deduplicate(records: list) -> dict[str, Optional[str]]:
    """Which records are duplicates of which: ``{record id: canonical id or None}``.

    Records that share a PMID, a DOI, a registry id (NCT, EudraCT, UMIN/JPRN, CTRI), a
    normalised URL, or a normalised title with the same year are one record (transitively);
    the first in file order is kept (``None``), every other maps to it.

    Parameters
    ----------
    records
        :class:`Record` objects or plain mappings with ``id`` and any of ``pmid``, ``doi``,
        ``nct``, ``registry_id``, ``url``, ``title``, ``year``.
    """
    ids = [r["id"] if isinstance(r, dict) else r.id for r in records]
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[tuple, int] = {}
    for i, r in enumerate(records):
        for k in _keys(r):
            if k in first:
                a, b = find(first[k]), find(i)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            else:
                first[k] = i
    return {ids[i]: (None if find(i) == i else ids[find(i)]) for i in range(len(records))}


# ----------------------------------------------------------------------------- PRISMA 2020
@dataclass
class Prisma:
    """The PRISMA 2020 flow counts, computed from the records (see :func:`prisma`)."""

    identified: dict[str, int]
    duplicates: int
    screened: int
    excluded_screening: int
    sought: int
    not_retrieved: int
    assessed: int
    excluded_full: dict[str, int]
    studies_included: int
    reports_included: int
    excluded_screening_reasons: dict[str, int] = field(default_factory=dict)
    identified_other: dict[str, int] = field(default_factory=dict)
    trials: dict[str, list[str]] = field(default_factory=dict)

    @property
    def identified_total(self) -> int:
        return sum(self.identified.values())

    def contract(self) -> dict:
        """Exactly the keys of the CLI contract (``CONTRACT_KEYS``), JSON-ready."""
        return {k: (dict(v) if isinstance(v, dict) else int(v)) for k, v in
                ((k, getattr(self, k)) for k in CONTRACT_KEYS)}

    def check(self) -> None:
        """Raise :class:`SearchDataError` if any box of the flow does not add up."""
        rules = [
            ("identified - duplicates == screened", self.identified_total - self.duplicates, self.screened),
            ("screened - excluded_screening == sought", self.screened - self.excluded_screening, self.sought),
            ("sought - not_retrieved == assessed", self.sought - self.not_retrieved, self.assessed),
            ("assessed - sum(excluded_full) == reports_included",
             self.assessed - sum(self.excluded_full.values()), self.reports_included),
            ("sum(screening reasons) == excluded_screening",
             sum(self.excluded_screening_reasons.values()), self.excluded_screening),
            ("studies_included == number of trials", len(self.trials), self.studies_included),
        ]
        bad = [f"{name}: {a} != {b}" for name, a, b in rules if a != b]
        if self.studies_included > self.reports_included:
            bad.append(f"studies_included {self.studies_included} > reports_included {self.reports_included}")
        if min(self.duplicates, self.excluded_screening, self.not_retrieved) < 0:
            bad.append("a negative count")
        if bad:
            raise SearchDataError("PRISMA flow does not add up: " + "; ".join(bad))


def prisma(data: Optional[SearchData] = None) -> Prisma:
    """The PRISMA 2020 flow of ``data`` (default: the embedded search).

    ``identified`` counts hits per source (a page returned by two queries counts twice);
    ``duplicates`` = identified - unique records (repeated hits plus computed duplicates);
    ``screened`` = unique records; ``sought`` = those passing screening; ``assessed`` = sought -
    not retrieved; ``excluded_full`` = report-level exclusions by reason; ``reports_included``
    = included reports; ``studies_included`` = distinct trials among them.
    """
    data = data if data is not None else load_search()
    src = {q.id: q.source for q in data.queries}
    method = {q.id: q.method for q in data.queries}
    identified: Counter = Counter()
    other: Counter = Counter()
    for r in data.records:
        for q in r.found_by:
            identified[src[q]] += 1
            if method[q] == "citation":
                other[src[q]] += 1
    unique = data.unique()
    excl_s = Counter(r.reason for r in unique if r.screen == "exclude")
    sought = [r for r in unique if r.screen == "include"]
    not_retrieved = sum(1 for r in sought if r.full == "not_retrieved")
    excl_f = Counter(r.reason for r in sought if r.full == "exclude")
    trials = data.trials()
    out = Prisma(
        identified=dict(sorted(identified.items())),
        duplicates=sum(identified.values()) - len(unique),
        screened=len(unique),
        excluded_screening=sum(excl_s.values()),
        sought=len(sought),
        not_retrieved=not_retrieved,
        assessed=len(sought) - not_retrieved,
        excluded_full=dict(sorted(excl_f.items())),
        studies_included=len(trials),
        reports_included=sum(len(v) for v in trials.values()),
        excluded_screening_reasons=dict(sorted(excl_s.items())),
        identified_other=dict(sorted(other.items())),
        trials=trials,
    )
    out.check()
    return out


def stale_awaiting(data: SearchData, studies_dir: Optional[Union[str, Path]] = None) -> list[tuple[str, str]]:
    """``(record id, trial)`` of reports excluded as ``awaiting_extraction`` whose study file now exists."""
    studies_dir = Path(studies_dir) if studies_dir is not None else data.root.parent / "studies"
    have = {p.stem for p in studies_dir.glob("*.yaml")}
    return [(r.id, r.trial) for r in data.unique()
            if r.full == "exclude" and r.reason == "awaiting_extraction" and r.trial in have]


def consistency_warnings(data: SearchData) -> list[str]:
    """Duplicates whose typed decision differs from the record kept (the kept one counts)."""
    by_id = {r.id: r for r in data.records}
    out = []
    for rid, canon in data.duplicate_of.items():
        if canon is None:
            continue
        a, b = by_id[rid], by_id[canon]
        if (a.screen, a.full, a.trial) != (b.screen, b.full, b.trial):
            out.append(f"record {rid} (duplicate of {canon}) says screen={a.screen}, full={a.full}, trial={a.trial}; "
                       f"{canon} says screen={b.screen}, full={b.full}, trial={b.trial}")
    return out
