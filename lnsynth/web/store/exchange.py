"""Exchange with the YAML layout of the evidence: :func:`export_store` writes the store as the files
:func:`lnsynth.evidence.load_evidence` reads, :func:`import_store` brings such an export (or one study
file) back, checked by the evidence loader first and written in one transaction."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lnsynth.evidence.load import load_evidence
from lnsynth.evidence.schema import Source, Study

from .base import audit_row, bump, insert_aes, insert_outcome, insert_studies
from .common import dumps, now

if TYPE_CHECKING:  # pragma: no cover
    from . import Store

# ------------------------------------------------------------------ export
_SLUG = re.compile(r"[^a-z0-9_]+")


def source_slug(s: str) -> str:
    slug = _SLUG.sub("_", s.lower()).strip("_") or "source"
    return slug[:60]


def _typed_source_id(text: str, taken: set[str]) -> str:
    """A source id for free text typed as a source, never one already taken.

    The plain slug when free; otherwise the slug with the first 8 hex digits of the text's
    SHA-256 (deterministic: the same store exports the same ids), so "Smith 2020, NEJM" and
    "smith 2020 nejm" -- or a text whose slug is a registered id -- stay different sources.
    """
    slug = source_slug(text)
    if slug not in taken:
        return slug
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    for n in range(8, 65, 4):
        cand = f"{slug[:50]}_{digest[:n]}"
        if cand not in taken:
            return cand
    raise RuntimeError(f"no free source id for {text[:60]!r}")  # pragma: no cover - 2**256 collisions


def _shorthand(node: Any) -> Any:
    """Collapse ``{value, provenance: {...}}`` into the loader's inline-provenance form."""
    if isinstance(node, list):
        return [_shorthand(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _shorthand(v) for k, v in node.items() if k != "provenance"}
    if "provenance" in node:
        p = node["provenance"]
        out["source"] = p["source"]
        out["location"] = p["location"]
        out["quote"] = p["quote"]
        if p.get("derived"):
            out["derived"] = True
            out["rule"] = p["rule"]
    return out


def _prov_sources(node: Any, out: list[str]) -> None:
    """Append the ``source`` of every provenance inside ``node`` (document order)."""
    if isinstance(node, dict):
        p = node.get("provenance")
        if isinstance(p, dict) and isinstance(p.get("source"), str):
            out.append(p["source"])
        for v in node.values():
            _prov_sources(v, out)
    elif isinstance(node, list):
        for v in node:
            _prov_sources(v, out)


def _fix_sources(node: Any, mapping: dict[str, str]) -> Any:
    if isinstance(node, list):
        return [_fix_sources(x, mapping) for x in node]
    if isinstance(node, dict):
        out = {k: _fix_sources(v, mapping) for k, v in node.items()}
        if "provenance" in out and isinstance(out["provenance"], dict):
            s = out["provenance"].get("source")
            if s in mapping:
                out["provenance"] = {**out["provenance"], "source": mapping[s]}
        return out
    return node


def export_store(store: "Store", out: Path) -> Path:
    """Write the store as ``sources.yaml``, ``studies/<id>.yaml``, ``syntheses/<id>.yaml``.

    The layout is the one :func:`lnsynth.evidence.load_evidence` reads.  Free-text
    sources typed into the web app that are not known source ids are added to
    ``sources.yaml`` under a slug id (kind ``other``, citation = the text typed); two
    different texts never share an id (:func:`_typed_source_id`), so each keeps its citation.
    The files depend only on the store's content (no timestamp), so export -> ``lnsynth
    import`` -> export gives the same bytes.
    """
    out = Path(out)
    ev = store.evidence()
    sources = [s.model_dump(mode="json", exclude_none=True) for s in ev.sources]
    known = {s["id"] for s in sources}
    mapping: dict[str, str] = {}
    study_docs = []
    for st in ev.studies:
        d = st.model_dump(mode="json", exclude_none=True)
        used: list[str] = []
        _prov_sources(d, used)  # outcomes, adverse events, study-level values: every provenance
        for src in used:
            if src not in known and src not in mapping:
                slug = _typed_source_id(src, known)
                mapping[src] = slug
                known.add(slug)
                sources.append(Source.model_validate({"id": slug, "citation": src, "kind": "other"}).model_dump(
                    mode="json", exclude_none=True))  # canonical form: re-imported, it exports the same
        study_docs.append(d)
    (out / "studies").mkdir(parents=True, exist_ok=True)
    (out / "syntheses").mkdir(parents=True, exist_ok=True)
    if sources:
        _write_yaml(out / "sources.yaml", sources)
    for d in study_docs:
        d = _shorthand(_fix_sources(d, mapping))
        _write_yaml(out / "studies" / f"{d['id']}.yaml", d,
                    header="# exported by lnsynth web (re-import with `lnsynth import --db DB DIR`)\n")
    for sy in ev.syntheses:
        d = _shorthand(sy.model_dump(mode="json", exclude_none=True))
        _write_yaml(out / "syntheses" / f"{d['id']}.yaml", d)
    return out


def _write_yaml(path: Path, data: Any, header: str = "") -> None:
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(header + text, encoding="utf-8")
    tmp.replace(path)


# ------------------------------------------------------------------ import
class ImportRefused(ValueError):
    """An import refused as a whole (incomplete provenance, a clash with the store); nothing was written."""


_PROV_SHORTHAND = ("quote", "location", "loc")


def _explicit_sources(path: Path, raw: Any) -> None:
    """Every provenance in an imported file names its source (unless the file names one at the top).

    The loader attributes a value without ``source`` to the review; in a file to import that
    would silently credit a number to a document nobody named, so it is refused instead.
    """
    if not isinstance(raw, dict) or isinstance(raw.get("source"), str):
        return
    sid = str(raw.get("id", path.stem))

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            prov = node.get("provenance")
            if (any(k in node for k in _PROV_SHORTHAND) and "provenance" not in node and "source" not in node) or (
                    isinstance(prov, dict) and "source" not in prov):
                raise ImportRefused(f"{path.name}: study {sid!r}: field {where or '<root>'}: provenance without a "
                                    f"source (name the source id the value comes from)")
            for k, v in node.items():
                walk(v, f"{where}.{k}" if where else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                ident = v.get("id") if isinstance(v, dict) else None
                walk(v, f"{where}[{i}]" + (f"({ident})" if ident else ""))

    walk(raw, "")


def _study_rows_doc(s: Study) -> dict:
    doc = s.model_dump(mode="json", exclude_none=True)
    doc.pop("outcomes", None)
    doc.pop("adverse_events", None)
    return doc


def import_store(store: "Store", path: Path, actor: str = "cli:import") -> dict[str, list[str]]:
    """Bring an export (a directory as :func:`export_store` writes it, or one study file) into ``store``.

    Everything is checked before anything is written, by the evidence loader itself
    (:func:`lnsynth.evidence.load.load_evidence`: every value has a source, location and quote,
    sources are registered, quotes from external sources are short, links resolve) plus
    :func:`_explicit_sources`; a single file is checked in the context of the store (its
    sources and trials).  Any problem raises :class:`ImportRefused` naming the file, the trial
    and the field, and the store is left as it was.

    Then, in one transaction: a trial not in the store is added; a trial whose content differs
    from the store's replaces it (its old values are kept as audited tombstones); an identical
    trial is left alone, so importing an export of the same store changes nothing.  A trial with
    values still awaiting a second curator is refused rather than overwritten.  Sources in the
    file are merged into the register (the file's entry wins), and a directory's syntheses replace
    the store's.  Imported values count like the package's own files (status ``repository``):
    the two-person rule governs values entered in the app.  Trials of the store that the import
    does not mention are kept.  Restart a running server after an import (it caches trial facts).

    Returns the ids ``added``, ``replaced``, ``unchanged`` and the ``sources_added``.
    """
    import shutil
    import tempfile

    from lnsynth.evidence.load import EvidenceError, _read_yaml, load_study_file

    path = Path(path)
    if not path.exists():
        raise ImportRefused(f"{path}: no such file or directory")
    with tempfile.TemporaryDirectory(prefix="lnsynth-import-") as tmp:
        if path.is_dir():
            root = path
            files = sorted((root / "studies").glob("*.yaml"))
            if not files:
                raise ImportRefused(f"{path}: no studies/*.yaml (expected the layout `lnsynth export` writes)")
            take_sources = (root / "sources.yaml").exists() or (root / "sources").is_dir()
            take_synth = (root / "syntheses").is_dir()
        else:
            try:
                raw = _read_yaml(path)
            except EvidenceError as exc:
                raise ImportRefused(str(exc)) from None
            if not isinstance(raw, dict) or not isinstance(raw.get("id", path.stem), str):
                raise ImportRefused(f"{path.name}: expected one study (a mapping with an id)")
            sid = str(raw.get("id", path.stem))
            root = Path(tmp) / "context"
            export_store(store, root)  # the store as files: the study is checked against its sources and trials
            (root / "studies" / f"{sid}.yaml").unlink(missing_ok=True)
            target = root / "studies" / path.name
            if target.exists():
                raise ImportRefused(f"{path.name}: the store has another trial in a file of this name; "
                                    f"rename the file to {sid}.yaml")
            shutil.copyfile(path, target)
            files, take_sources, take_synth = [target], False, False
        for f in files:
            try:
                _explicit_sources(f, _read_yaml(f))
            except EvidenceError as exc:
                raise ImportRefused(str(exc)) from None
        try:
            ev = load_evidence(root)
            studies = [load_study_file(f) for f in files]  # as written (the loader adds publications on load)
        except EvidenceError as exc:
            raise ImportRefused(str(exc)) from None
        names = {s.id: f.name for s, f in zip(studies, files)}
        sources = [s.model_dump(mode="json", exclude_none=True) for s in ev.sources] if take_sources else None
        synth = [s.model_dump(mode="json", exclude_none=True) for s in ev.syntheses] if take_synth else None

    current = {st.id: st for st in store.evidence().studies}
    ts = now()
    out: dict[str, list[str]] = {"added": [], "replaced": [], "unchanged": [], "sources_added": []}
    max_web = {"outcomes": 0, "adverse_events": 0}
    with store._tx() as tx:
        have = {r[0] for r in tx.execute("SELECT id FROM studies")}
        for s in studies:
            for o in s.outcomes:
                m = re.fullmatch(r"web_([0-9]{1,15})", o.id)
                max_web["outcomes"] = max(max_web["outcomes"], int(m.group(1)) if m else 0)
            for a in s.adverse_events:
                m = re.fullmatch(r"web_ae_([0-9]{1,15})", a.id)
                max_web["adverse_events"] = max(max_web["adverse_events"], int(m.group(1)) if m else 0)
            if s.id not in have:
                n_out = insert_studies(tx, [s], ts)
                for table in ("outcomes", "adverse_events"):
                    tx.execute(f"UPDATE {table} SET origin = 'import' WHERE trial_id = ?", (s.id,))
                audit_row(tx, actor, "import", s.id, None, None,
                             {"from": str(path), "file": names[s.id], "added": True, "outcomes": n_out,
                              "adverse_events": len(s.adverse_events)})
                out["added"].append(s.id)
                continue
            cur = current.get(s.id)
            if cur is not None and cur.model_dump(mode="json", exclude_none=True) == s.model_dump(
                    mode="json", exclude_none=True):
                out["unchanged"].append(s.id)
                continue
            waiting = sum(tx.execute(f"SELECT COUNT(*) FROM {t} WHERE trial_id = ? AND deleted = 0 AND status NOT IN"
                                     f" ('repository', 'verified')", (s.id,)).fetchone()[0]
                          for t in ("outcomes", "adverse_events"))
            waiting += tx.execute("SELECT COUNT(*) FROM studies WHERE id = ? AND status NOT IN ('repository',"
                                  " 'verified')", (s.id,)).fetchone()[0]
            if waiting:
                raise ImportRefused(f"{names[s.id]}: trial {s.id!r}: {waiting} value(s) in the store await a second "
                                    f"curator; verify or delete them before importing over this trial")
            before = [store.record(r) for r in tx.execute(
                "SELECT * FROM outcomes WHERE trial_id = ? AND deleted = 0 ORDER BY id", (s.id,))]
            for table in ("outcomes", "adverse_events"):  # tombstones (keys freed for the imported records)
                tx.execute(f"UPDATE {table} SET deleted = 1, key = key || '~' || id, version = version + 1,"
                           f" updated_at = ? WHERE trial_id = ? AND deleted = 0", (ts, s.id))
            tx.execute("UPDATE studies SET doc = ? WHERE id = ?", (dumps(_study_rows_doc(s)), s.id))
            insert_aes(tx, s.id, s.adverse_events, ts)
            for o in s.outcomes:
                insert_outcome(tx, s, o, ts, origin="import")
            tx.execute("UPDATE adverse_events SET origin = 'import' WHERE trial_id = ? AND deleted = 0", (s.id,))
            audit_row(tx, actor, "import", s.id, None, {"outcomes": before},
                         {"from": str(path), "file": names[s.id], "outcomes": [o.id for o in s.outcomes],
                          "adverse_events": [a.id for a in s.adverse_events]})
            out["replaced"].append(s.id)
        if sources is not None:
            reg = json.loads(tx.execute("SELECT value FROM meta WHERE key = 'sources'").fetchone()[0] or "[]")
            ids = {x["id"] for x in sources}
            merged = sources + [x for x in reg if x["id"] not in ids]
            if merged != reg:
                out["sources_added"] = [x["id"] for x in sources if x["id"] not in {r["id"] for r in reg}]
                tx.execute("UPDATE meta SET value = ? WHERE key = 'sources'", (dumps(merged),))
                audit_row(tx, actor, "import", None, None, {"sources": reg}, {"from": str(path), "sources": merged})
        changed_synth = False
        if synth is not None:
            cur_synth = json.loads(tx.execute("SELECT value FROM meta WHERE key = 'syntheses'").fetchone()[0] or "[]")
            if synth != cur_synth:
                tx.execute("UPDATE meta SET value = ? WHERE key = 'syntheses'", (dumps(synth),))
                audit_row(tx, actor, "import", None, None, {"syntheses": [x["id"] for x in cur_synth]},
                             {"from": str(path), "syntheses": [x["id"] for x in synth]})
                changed_synth = True
        for table, n in max_web.items():  # keys web_<id> of records made later never meet imported ones
            if n:
                store.backend.raise_ids_above(tx, table, n)
        if out["added"] or out["replaced"] or out["sources_added"] or changed_synth or (
                sources is not None and merged != reg):
            bump(tx)
    shells = getattr(store, "_shells", None)
    if isinstance(shells, dict):
        shells.clear()
    return out
