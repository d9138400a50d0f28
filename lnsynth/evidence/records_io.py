"""Bibliographic records in, from the formats review teams export (issue 22, item 1).

Parsers only (no database code): each returns a list of :class:`ImportedRecord` or raises
:class:`RecordsFormatError` naming the file, the record number, the line and the field of
every problem found, so a caller can refuse the whole file and write nothing.

Formats
-------
``medline``     PubMed/MEDLINE tagged text (``.nbib``, ``.txt``): ``PMID-``, ``TI  -``, ``AB  -``,
                ``DP  -``, ``LID``/``AID`` (``... [doi]``), ``SI`` (``ClinicalTrials.gov/NCT...``).
``pubmed-xml``  PubMed XML (``PubmedArticleSet``; ``.xml``).
``ris``         RIS (``TY  - ... ER  -``; ``.ris``).
``ctgov``       ClinicalTrials.gov API v2 JSON: ``{"studies": [...]}`` or one study (``.json``);
                ``has_results`` comes from ``hasResults`` / a ``resultsSection``.
``csv``         CSV with a header holding ``title`` and any of ``year, pmid, doi, nct, url, abstract``
                (other columns are ignored).

Deduplication reuses the keys of :func:`lnsynth.evidence.search.deduplicate` (PMID, DOI, registry
id, normalised URL, normalised title + year): :func:`dedup_against`.  A trial registration *cited
by* an article (MEDLINE ``SI``, PubMed XML ``DataBank``) is kept as ``registration`` and is not a
dedup key: a new report of a known trial is a new record (protocol.yaml: registry ids identify
registry records).  Registry records (ClinicalTrials.gov, CSV ``nct``) carry ``nct``.
"""
from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Optional, Union

from .load import EvidenceError
from .search import _keys

__all__ = ["FORMATS", "ImportedRecord", "RecordsFormatError", "dedup_against", "detect_format", "parse_records"]

FORMATS = ("medline", "pubmed-xml", "ris", "ctgov", "csv")
YEAR_MIN, YEAR_MAX = 1950, 2100  # as lnsynth.evidence.search.Record
_NCT = re.compile(r"NCT\d{8}")
_DOI = re.compile(r"10\.\d{4,9}/\S+")


class RecordsFormatError(EvidenceError):
    """A malformed records file; ``errors`` holds one located message per problem."""

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(errors[0] + more if errors else "malformed file")


@dataclass
class ImportedRecord:
    """One bibliographic or registry record read from a file (``number`` counts from 1)."""

    number: int
    line: int
    title: str
    year: Optional[int] = None
    pmid: Optional[str] = None
    doi: Optional[str] = None
    nct: Optional[str] = None
    url: Optional[str] = None
    abstract: Optional[str] = None
    registration: Optional[str] = None
    has_results: Optional[bool] = None
    kind: str = "article"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass
class _Ctx:
    """Collects located errors while parsing one file."""

    name: str
    errors: list[str] = field(default_factory=list)

    def err(self, number: Optional[int], line: Optional[int], fld: str, msg: str) -> None:
        where = [self.name]
        if number is not None:
            where.append(f"record {number}")
        if line is not None:
            where.append(f"line {line}")
        self.errors.append(f"{': '.join(where)}: field '{fld}': {msg}")


def _year(ctx: _Ctx, text: Optional[str], number: int, line: int, fld: str) -> Optional[int]:
    if text is None or not str(text).strip():
        return None
    m = re.search(r"\b(1[89]\d\d|2[01]\d\d)\b", str(text))
    if m is None or not YEAR_MIN <= int(m.group(1)) <= YEAR_MAX:
        ctx.err(number, line, fld, f"no year between {YEAR_MIN} and {YEAR_MAX} in {str(text)[:40]!r}")
        return None
    return int(m.group(1))


def _check(ctx: _Ctx, rec: ImportedRecord, lines: Optional[dict[str, int]] = None) -> None:
    """The checks every format shares: a title, digit PMIDs, NCT ids, DOIs that look like DOIs."""
    lines = lines or {}

    def at(f: str) -> int:
        return lines.get(f, rec.line)

    if not (rec.title or "").strip():
        ctx.err(rec.number, at("title"), "title", "missing or empty (every record needs a title)")
    if rec.pmid is not None and not rec.pmid.isdigit():
        ctx.err(rec.number, at("pmid"), "pmid", f"PMID must be digits, got {rec.pmid!r}")
    if rec.nct is not None and not _NCT.fullmatch(rec.nct):
        ctx.err(rec.number, at("nct"), "nct", f"NCT id must look like NCT01234567, got {rec.nct!r}")
    if rec.doi is not None and not _DOI.fullmatch(rec.doi):
        ctx.err(rec.number, at("doi"), "doi", f"DOI must start with '10.' and a registrant code, got {rec.doi!r}")


def _clean(s: Optional[str]) -> Optional[str]:
    if s is None:
        return None
    s = " ".join(str(s).split())
    return s or None


def _doi(s: Optional[str]) -> Optional[str]:
    s = _clean(s)
    if s is None:
        return None
    s = re.sub(r"^(https?://(dx\.)?doi\.org/|doi:\s*)", "", s, flags=re.I)
    return s.split(" ")[0]


# ----------------------------------------------------------------------------- MEDLINE / .nbib
_TAG = re.compile(r"^([A-Z][A-Z0-9]{0,3})\s*- ?(.*)$")


def _tagged_blocks(ctx: _Ctx, text: str, first_tag: str, tag_re: re.Pattern, cont_indent: bool,
                   end_tag: Optional[str] = None) -> list[tuple[int, dict[str, list[tuple[str, int]]]]]:
    """Split MEDLINE/RIS text into records: ``[(start line, {tag: [(value, line)]})]``."""
    blocks: list[tuple[int, dict[str, list[tuple[str, int]]]]] = []
    cur: Optional[dict[str, list[tuple[str, int]]]] = None
    last: Optional[tuple[str, int]] = None
    for ln, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r\n").lstrip("\ufeff")
        if not line.strip():
            if end_tag is None:
                cur, last = None, None
            continue
        m = tag_re.match(line)
        if m and not (cont_indent and line.startswith(" ")):
            tag, val = m.group(1), m.group(2).strip()
            if tag == first_tag or (cur is None and end_tag is None):
                if tag != first_tag:
                    ctx.err(len(blocks) + 1, ln, tag, f"a record must start with the {first_tag} tag")
                cur = {}
                blocks.append((ln, cur))
            elif cur is None:
                ctx.err(len(blocks) + 1, ln, tag, f"tag outside a record (a record starts with {first_tag})")
                continue
            if end_tag is not None and tag == end_tag:
                cur, last = None, None
                continue
            cur.setdefault(tag, []).append((val, ln))
            last = (tag, len(cur[tag]) - 1)
        elif cur is not None and last is not None and (line.startswith(" ") or not cont_indent):
            tag, i = last
            v, l0 = cur[tag][i]
            cur[tag][i] = (f"{v} {line.strip()}", l0)
        else:
            ctx.err(len(blocks) + (0 if cur is not None else 1) or 1, ln, "(line)",
                    f"not a tag line ('XXXX- value') nor a continuation: {line.strip()[:40]!r}")
    return blocks


def _first(tags: dict[str, list[tuple[str, int]]], *names: str) -> tuple[Optional[str], Optional[int]]:
    for n in names:
        if tags.get(n):
            return tags[n][0]
    return None, None


def parse_medline(text: str, name: str) -> list[ImportedRecord]:
    """PubMed/MEDLINE tagged text (``.nbib`` / ``.txt``)."""
    ctx = _Ctx(name)
    out = []
    blocks = _tagged_blocks(ctx, text, "PMID", _TAG, cont_indent=True)
    if not blocks and not ctx.errors:
        ctx.err(None, 1, "PMID", "no MEDLINE record (expected 'PMID- ' lines)")
    for i, (start, tags) in enumerate(blocks, start=1):
        pmid, l_pmid = _first(tags, "PMID")
        title, l_ti = _first(tags, "TI", "BTI")
        dp, l_dp = _first(tags, "DP")
        doi = l_doi = None
        for v, ln in tags.get("LID", []) + tags.get("AID", []):
            if v.endswith("[doi]"):
                doi, l_doi = _doi(v[:-5]), ln
                break
        reg = next((m.group(0) for v, _ in tags.get("SI", []) for m in [_NCT.search(v)] if m), None)
        ab = " ".join(v for v, _ in tags.get("AB", [])) or None
        rec = ImportedRecord(i, start, _clean(title) or "", _year(ctx, dp, i, l_dp or start, "DP"),
                             _clean(pmid), doi, None, None, _clean(ab), reg, None, "article")
        _check(ctx, rec, {"title": l_ti or start, "pmid": l_pmid or start, "doi": l_doi or start})
        if not pmid:
            ctx.err(i, start, "PMID", "missing")
        out.append(rec)
    if ctx.errors:
        raise RecordsFormatError(ctx.errors)
    return out


# ----------------------------------------------------------------------------- RIS
_RIS_TAG = re.compile(r"^([A-Z][A-Z0-9])  - ?(.*)$")


def parse_ris(text: str, name: str) -> list[ImportedRecord]:
    """RIS (``TY  - JOUR`` ... ``ER  -``)."""
    ctx = _Ctx(name)
    out = []
    blocks = _tagged_blocks(ctx, text, "TY", _RIS_TAG, cont_indent=False, end_tag="ER")
    if not blocks and not ctx.errors:
        ctx.err(None, 1, "TY", "no RIS record (expected 'TY  - ' lines)")
    n_er = sum(1 for ln in text.splitlines() if _RIS_TAG.match(ln.rstrip()) and ln.startswith("ER"))
    if blocks and n_er < len(blocks):
        ctx.err(len(blocks), blocks[-1][0], "ER", "record not closed by 'ER  -'")
    for i, (start, tags) in enumerate(blocks, start=1):
        title, l_ti = _first(tags, "TI", "T1", "CT", "BT")
        year_txt, l_y = _first(tags, "PY", "Y1", "DA")
        doi, l_doi = _first(tags, "DO")
        ty = (tags.get("TY") or [("", start)])[0][0].upper()
        urls = [v for v, _ in tags.get("UR", [])]
        pmid = l_pm = None
        an, l_an = _first(tags, "AN")
        if an and re.fullmatch(r"\d{1,9}", an.strip()):
            pmid, l_pm = an.strip(), l_an
        for u in urls:
            m = re.search(r"pubmed(?:\.ncbi\.nlm\.nih\.gov)?/(\d+)", u)
            if pmid is None and m:
                pmid, l_pm = m.group(1), start
        nct = reg = None
        text_ids = " ".join([an or ""] + urls + [v for v, _ in tags.get("M1", [])])
        m = _NCT.search(text_ids)
        if m:
            if ty in ("CTR", "DBASE", "DATA") or "clinicaltrials.gov" in text_ids.lower():
                nct = m.group(0)
            else:
                reg = m.group(0)
        ab = " ".join(v for v, _ in tags.get("AB", []) + tags.get("N2", [])) or None
        rec = ImportedRecord(i, start, _clean(title) or "", _year(ctx, year_txt, i, l_y or start, "PY"), pmid,
                             _doi(doi), nct, _clean(urls[0]) if urls else None, _clean(ab), reg, None,
                             "registry" if nct else "article")
        _check(ctx, rec, {"title": l_ti or start, "pmid": l_pm or start, "doi": l_doi or start})
        out.append(rec)
    if ctx.errors:
        raise RecordsFormatError(ctx.errors)
    return out


# ----------------------------------------------------------------------------- PubMed XML
def parse_pubmed_xml(text: str, name: str) -> list[ImportedRecord]:
    """PubMed XML (``PubmedArticleSet`` of ``PubmedArticle``); DTDs and entities are refused."""
    import xml.etree.ElementTree as ET
    from xml.parsers import expat

    ctx = _Ctx(name)
    if re.search(r"<!ENTITY", text):
        ctx.err(None, None, "(xml)", "entity declarations are not accepted")
        raise RecordsFormatError(ctx.errors)
    # the line of each <PubmedArticle> start tag, from a pass of expat (ElementTree keeps no lines)
    starts: list[int] = []
    p = expat.ParserCreate()
    p.StartElementHandler = lambda tag, _a: starts.append(p.CurrentLineNumber) if tag == "PubmedArticle" else None
    try:
        p.Parse(text.encode("utf-8"), True)
        root = ET.fromstring(text.encode("utf-8"))
    except (expat.ExpatError, ET.ParseError) as exc:
        line = getattr(exc, "lineno", None) or getattr(exc, "position", (None,))[0]
        msg = expat.ErrorString(exc.code) if isinstance(getattr(exc, "code", None), int) else str(exc)
        ctx.err(len(starts) or None, line, "(xml)", f"not well-formed XML: {msg}")
        raise RecordsFormatError(ctx.errors) from None
    arts = root.findall(".//PubmedArticle") if root.tag != "PubmedArticle" else [root]
    if not arts:
        ctx.err(None, 1, "PubmedArticle", f"no PubmedArticle element under <{root.tag}>")
    out = []
    for i, a in enumerate(arts, start=1):
        line = starts[i - 1] if i - 1 < len(starts) else 1

        def txt(path: str) -> Optional[str]:
            el = a.find(path)
            return _clean("".join(el.itertext())) if el is not None else None

        pmid = txt("MedlineCitation/PMID")
        title = txt("MedlineCitation/Article/ArticleTitle")
        parts = []
        for el in a.findall("MedlineCitation/Article/Abstract/AbstractText"):
            t = _clean("".join(el.itertext()))
            if t:
                parts.append(f"{el.get('Label')}: {t}" if el.get("Label") else t)
        y = (txt("MedlineCitation/Article/Journal/JournalIssue/PubDate/Year")
             or txt("MedlineCitation/Article/Journal/JournalIssue/PubDate/MedlineDate")
             or txt("MedlineCitation/Article/ArticleDate/Year"))
        doi = next((_doi("".join(e.itertext())) for e in a.findall("PubmedData/ArticleIdList/ArticleId")
                    if e.get("IdType") == "doi"), None)
        if doi is None:
            doi = next((_doi("".join(e.itertext())) for e in a.findall("MedlineCitation/Article/ELocationID")
                        if e.get("EIdType") == "doi"), None)
        reg = next((m.group(0) for e in a.findall(".//DataBank/AccessionNumberList/AccessionNumber")
                    for m in [_NCT.search("".join(e.itertext()))] if m), None)
        rec = ImportedRecord(i, line, title or "", _year(ctx, y, i, line, "PubDate/Year"), pmid, doi, None, None,
                             " ".join(parts) or None, reg, None, "article")
        _check(ctx, rec)
        if not pmid:
            ctx.err(i, line, "MedlineCitation/PMID", "missing")
        out.append(rec)
    if ctx.errors:
        raise RecordsFormatError(ctx.errors)
    return out


# ----------------------------------------------------------------------------- ClinicalTrials.gov v2
def _get(d: Any, path: str) -> Any:
    for k in path.split("."):
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def parse_ctgov(text: str, name: str) -> list[ImportedRecord]:
    """ClinicalTrials.gov API v2 JSON: ``{"studies": [...]}`` (a search page) or one study."""
    ctx = _Ctx(name)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        ctx.err(None, exc.lineno, "(json)", f"not valid JSON: {exc.msg} (column {exc.colno})")
        raise RecordsFormatError(ctx.errors) from None
    if isinstance(data, dict) and isinstance(data.get("studies"), list):
        studies = data["studies"]
    elif isinstance(data, dict) and "protocolSection" in data:
        studies = [data]
    elif isinstance(data, list):
        studies = data
    else:
        ctx.err(None, 1, "studies", "expected a ClinicalTrials.gov API v2 study or {\"studies\": [...]}")
        raise RecordsFormatError(ctx.errors)
    # a study's line: where its n-th "protocolSection" key sits in the file (JSON keeps no lines)
    lines = [text.count("\n", 0, m.start()) + 1 for m in re.finditer(r'"protocolSection"\s*:', text)]
    out = []
    for i, s in enumerate(studies, start=1):
        line = lines[i - 1] if i - 1 < len(lines) else 1
        if not isinstance(s, dict) or not isinstance(s.get("protocolSection"), dict):
            ctx.err(i, line, "protocolSection", "missing (not a ClinicalTrials.gov API v2 study)")
            continue
        ps = s["protocolSection"]
        nct = _get(ps, "identificationModule.nctId")
        title = _get(ps, "identificationModule.officialTitle") or _get(ps, "identificationModule.briefTitle")
        date = (_get(ps, "statusModule.studyFirstPostDateStruct.date")
                or _get(ps, "statusModule.studyFirstSubmitDate") or _get(ps, "statusModule.startDateStruct.date"))
        has = s.get("hasResults")
        if has is not None and not isinstance(has, bool):
            ctx.err(i, line, "hasResults", f"expected true or false, got {has!r}")
            has = None
        if has is None:
            has = isinstance(s.get("resultsSection"), dict)
        rec = ImportedRecord(i, line, _clean(title) or "",
                             _year(ctx, date, i, line, "statusModule.studyFirstPostDateStruct.date"), None, None,
                             _clean(nct) if nct is not None else None,
                             f"https://clinicaltrials.gov/study/{nct}"
                             if isinstance(nct, str) and _NCT.fullmatch(nct) else None,
                             _clean(_get(ps, "descriptionModule.briefSummary")), None, has, "registry")
        if not nct:
            ctx.err(i, line, "protocolSection.identificationModule.nctId", "missing")
        elif not title:
            ctx.err(i, line, "protocolSection.identificationModule.briefTitle", "missing (no brief or official title)")
        else:
            _check(ctx, rec)
        out.append(rec)
    if not studies:
        ctx.err(None, 1, "studies", "empty list")
    if ctx.errors:
        raise RecordsFormatError(ctx.errors)
    return out


# ----------------------------------------------------------------------------- CSV
CSV_COLUMNS = ("title", "year", "pmid", "doi", "nct", "url", "abstract")


def parse_csv(text: str, name: str) -> list[ImportedRecord]:
    """CSV with a ``title`` column and any of ``year, pmid, doi, nct, url, abstract`` (case-insensitive)."""
    ctx = _Ctx(name)
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        ctx.err(None, 1, "(header)", "empty file")
        raise RecordsFormatError(ctx.errors) from None
    cols = [h.strip().lower() for h in header]
    if "title" not in cols:
        ctx.err(None, 1, "title", f"the header has no 'title' column (columns: {', '.join(cols)})")
        raise RecordsFormatError(ctx.errors)
    out = []
    start = reader.line_num + 1
    try:
        for i, row in enumerate(reader, start=1):
            line, start = start, reader.line_num + 1
            if not any(c.strip() for c in row):
                continue
            if len(row) != len(cols):
                ctx.err(i, line, "(row)", f"{len(row)} cells but the header has {len(cols)} columns")
                continue
            d = {c: (v.strip() or None) for c, v in zip(cols, row) if c in CSV_COLUMNS}
            rec = ImportedRecord(i, line, _clean(d.get("title")) or "", _year(ctx, d.get("year"), i, line, "year"),
                                 d.get("pmid"), _doi(d.get("doi")), d.get("nct"), d.get("url"),
                                 _clean(d.get("abstract")), None, None,
                                 "registry" if d.get("nct") and not d.get("pmid") else "article")
            _check(ctx, rec)
            out.append(rec)
    except csv.Error as exc:
        ctx.err(len(out) + 1, reader.line_num, "(csv)", f"malformed CSV: {exc}")
    if not out and not ctx.errors:
        ctx.err(None, 2, "(rows)", "no record under the header")
    if ctx.errors:
        raise RecordsFormatError(ctx.errors)
    return out


# ----------------------------------------------------------------------------- entry points
PARSERS: dict[str, Callable[[str, str], list[ImportedRecord]]] = {
    "medline": parse_medline, "pubmed-xml": parse_pubmed_xml, "ris": parse_ris, "ctgov": parse_ctgov,
    "csv": parse_csv}


def detect_format(path: Path, text: str) -> Optional[str]:
    """The format from the file's extension, else from its first non-blank characters."""
    ext = path.suffix.lower()
    head = text.lstrip("\ufeff \t\r\n")[:200]
    if ext == ".nbib" or (ext == ".txt" and head.startswith("PMID")):
        return "medline"
    if ext == ".ris" or head.startswith("TY  -"):
        return "ris"
    if ext == ".xml" or head.startswith("<"):
        return "pubmed-xml"
    if ext == ".json" or head.startswith(("{", "[")):
        return "ctgov"
    if ext == ".csv":
        return "csv"
    if head.startswith("PMID"):
        return "medline"
    return None


def parse_records(path: Union[str, Path], fmt: Optional[str] = None) -> tuple[str, list[ImportedRecord]]:
    """Read ``path`` in format ``fmt`` (default: detected). Returns ``(format, records)``.

    Raises
    ------
    RecordsFormatError
        Naming the file, the record, the line and the field of every problem; nothing is returned.
    """
    path = Path(path)
    ctx = _Ctx(str(path))
    if not path.is_file():
        ctx.err(None, None, "(file)", "no such file")
        raise RecordsFormatError(ctx.errors)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        ctx.err(None, line, "(encoding)", "not UTF-8 text")
        raise RecordsFormatError(ctx.errors) from None
    if text.startswith("\ufeff"):  # a byte-order mark (Excel, some reference managers)
        text = text[1:]
    fmt = fmt or detect_format(path, text)
    if fmt not in PARSERS:
        ctx.err(None, None, "(format)", f"cannot tell the format; give --as one of {', '.join(FORMATS)}")
        raise RecordsFormatError(ctx.errors)
    return fmt, PARSERS[fmt](text, str(path))


def dedup_against(records: Iterable[ImportedRecord], known: Iterable[tuple[str, Any]]) -> list[Optional[str]]:
    """For each record, what it duplicates (``"<label> (<key>)"``) or ``None`` when it is new.

    ``known`` holds ``(label, record)`` pairs (search-log records, records already queued; any
    object or mapping :func:`lnsynth.evidence.search.deduplicate` accepts).  The keys are those of
    the search log (PMID, DOI, registry id, normalised URL, normalised title + year); a record
    also duplicates an earlier one of the same file.
    """
    seen: dict[tuple, str] = {}
    for label, r in known:
        for k in _keys(r):
            seen.setdefault(k, label)
    out: list[Optional[str]] = []
    for rec in records:
        ks = _keys(rec.to_dict())
        hit = next((k for k in ks if k in seen), None)
        out.append(None if hit is None else f"{seen[hit]} ({hit[0]})")
        for k in ks:
            seen.setdefault(k, f"record {rec.number} of this file")
    return out
